"""Time stamps: the one place that converts ROS ``builtin_interfaces/Time`` stamps.

A stamp is ``(sec, nanosec)`` with ``sec`` a signed 32-bit integer and ``0 <= nanosec < 1e9``:
``-0.25 s`` is ``sec=-1, nanosec=750000000``. Integer nanoseconds are exact (a float of seconds
is not: ~1.7e9 s leaves ~0.2 us of resolution), so identities (matching an image to its scene
graph, answering a query with the frame's stamp) use :func:`stamp_to_ns`; floats of seconds
(:func:`stamp_to_seconds`) are for arithmetic and display only.

ROS-free: any object with ``sec``/``nanosec`` attributes works (the message types included).
"""

from __future__ import annotations

NS_PER_SEC = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """Exact integer nanoseconds of a stamp (``sec * 1e9 + nanosec``; negative stamps too)."""
    return int(stamp.sec) * NS_PER_SEC + int(stamp.nanosec)


def ns_to_sec_nanosec(ns: int) -> tuple[int, int]:
    """``(sec, nanosec)`` of integer nanoseconds, ``nanosec`` in ``[0, 1e9)`` (floor division)."""
    sec, nanosec = divmod(int(ns), NS_PER_SEC)
    return sec, nanosec


def set_stamp(stamp, ns: int):
    """Write integer nanoseconds ``ns`` into ``stamp`` (its ``sec``/``nanosec``); returns it."""
    stamp.sec, stamp.nanosec = ns_to_sec_nanosec(ns)
    return stamp


def stamp_to_seconds(stamp) -> float:
    """Seconds as a float (rounded to the float's resolution: not for identities)."""
    return ns_to_seconds(stamp_to_ns(stamp))


def ns_to_seconds(ns: int) -> float:
    """Float seconds of integer nanoseconds (``-1.25`` for ``-1_250_000_000``)."""
    sec, nanosec = ns_to_sec_nanosec(ns)
    return sec + nanosec * 1e-9
