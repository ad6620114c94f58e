"""Pair each frame with the depth image taken at the same time (by header stamp).

Image and depth travel on separate topics: a frame's own depth can arrive after the frame (a
RealSense driver publishes them from separate threads; ``image_folder_publisher`` sends the
image first), and a stalled depth camera leaves an old depth image behind. Taking "the last
depth received" pairs a frame with another moment's depth, silently. :class:`StampMatcher`
keeps the last few stamped items of each stream and gives a frame the one nearest its stamp
within ``slop``, waiting up to ``wait_s`` for one that has not arrived yet.

Written here rather than taken from ``message_filters``' ``ApproximateTimeSynchronizer``: that
package is not on PyPI, and its callback-driven design does not fit a worker that takes the
newest frame and asks for that frame's depth.

ROS-free. Stamps are integer nanoseconds (:func:`perception_nodes.core.stream.stamps.stamp_to_ns`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perception_nodes.core.stream.stamps import NS_PER_SEC

#: Longest single wait between checks of ``should_stop`` (s): a stopping node waits no longer.
POLL_S = 0.02


@dataclass(frozen=True)
class StampMatch:
    """Outcome of :meth:`StampMatcher.match`: ``item`` (None when nothing fits) and, when
    nothing fits, ``reason`` (a sentence for the log) and ``kind`` (a stable key for
    throttling: ``"none yet"``, ``"too far"``)."""

    item: Any = None
    reason: str = ""
    kind: str = ""


class StampMatcher:
    """Thread-safe per-stream buffer of the last ``capacity`` ``(stamp_ns, item)`` entries.

    Producers call :meth:`put` (a subscription callback), the consumer :meth:`match` (the worker).
    """

    def __init__(self, capacity: int = 8, what: str = "depth image") -> None:
        self._what = what
        self._capacity = int(capacity)
        self._items: dict[str, deque[tuple[int, Any]]] = {}
        self._cond = threading.Condition()

    def put(self, stream: str, stamp_ns: int, item: Any) -> None:
        with self._cond:
            self._items.setdefault(stream, deque(maxlen=self._capacity)).append(
                (int(stamp_ns), item)
            )
            self._cond.notify_all()

    def match(
        self,
        stream: str,
        stamp_ns: int,
        slop_s: float,
        wait_s: float,
        should_stop: Callable[[], bool] | None = None,
    ) -> StampMatch:
        """The item of ``stream`` whose stamp is nearest ``stamp_ns`` and at most ``slop_s`` away.

        When none is buffered, waits up to ``wait_s`` for one, unless an item stamped more than
        ``slop_s`` after the frame is already here (the stream has moved past the frame: in-order
        delivery brings no matching one). ``should_stop()`` ends the wait early (no match).
        """
        slop_ns = int(round(float(slop_s) * NS_PER_SEC))
        deadline = time.monotonic() + max(0.0, float(wait_s))
        with self._cond:
            while True:
                entries = list(self._items.get(stream, ()))
                nearest = min(entries, key=lambda e: abs(e[0] - stamp_ns), default=None)
                if nearest is not None and abs(nearest[0] - stamp_ns) <= slop_ns:
                    return StampMatch(item=nearest[1])
                moved_past = any(s > stamp_ns + slop_ns for s, _ in entries)
                remaining = deadline - time.monotonic()
                if moved_past or remaining <= 0 or (should_stop is not None and should_stop()):
                    return self._no_match(nearest, stamp_ns, slop_s, wait_s)
                self._cond.wait(min(remaining, POLL_S))

    def _no_match(self, nearest, stamp_ns: int, slop_s: float, wait_s: float) -> StampMatch:
        if nearest is None:
            return StampMatch(
                reason=f"no {self._what} received yet (waited {wait_s:g} s)", kind="none yet"
            )
        offset = (nearest[0] - stamp_ns) / NS_PER_SEC
        return StampMatch(
            reason=(
                f"no {self._what} within {slop_s:g} s of the frame's stamp (nearest is "
                f"{abs(offset):.3f} s {'after' if offset > 0 else 'before'} it)"
            ),
            kind="too far",
        )
