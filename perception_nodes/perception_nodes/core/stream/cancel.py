"""Abandoning a frame in flight (shutdown, deactivation), and a long load on shutdown.

ROS-free: the core takes a plain ``should_stop() -> bool`` callable (e.g. a
``threading.Event().is_set``) and polls it between stages and between SAM decoder batches.
"""

from __future__ import annotations

import sys
import threading
import traceback
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


PACKAGE = __name__.split(".")[0]  # "perception_nodes"


class FrameAbandoned(Exception):
    """The frame was dropped on request before it finished; nothing of it is kept."""


def raise_if_stopped(should_stop: Callable[[], bool] | None) -> None:
    """:class:`FrameAbandoned` when ``should_stop`` is given and returns True."""
    if should_stop is not None and should_stop():
        raise FrameAbandoned("frame abandoned: stop requested")


class WorkAbandoned(Exception):
    """A long call was left behind on request (shutdown): its result will never be used."""


def run_abandonable(
    work: Callable[[], T], should_stop: Callable[[], bool], poll_s: float = 0.05
) -> T:
    """``work()`` on a daemon thread, waited for while ``should_stop()`` is False.

    Returns its result or raises its exception; :class:`WorkAbandoned` as soon as
    ``should_stop()`` returns True (checked every ``poll_s`` s). The abandoned thread runs on
    until ``work`` returns or the process exits: use this only for work without side effects
    that matter after a stop (loading models, exporting ONNX into a staging folder), so a
    shutdown does not wait for a load of many seconds (first-run export, TensorRT build).
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="abandonable_work", daemon=True)
    thread.start()
    while thread.is_alive():
        if should_stop():
            raise WorkAbandoned("work abandoned: stop requested")
        thread.join(timeout=poll_s)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def where_thread_is(thread: threading.Thread, depth: int = 2) -> str:
    """Where ``thread`` is now: its innermost call, then the innermost ``depth`` calls in this
    package (innermost first), as ``file:line function``; ``"not running"`` once it ended. Says
    which model call a worker that does not stop in time is in.

    A call is the package's by its module's name, not its file's path: ``colcon build
    --symlink-install`` runs the package from build/ through a symlink to the sources, so the
    path of the running code and this file's resolved path differ."""
    frame = sys._current_frames().get(thread.ident) if thread.ident is not None else None
    if frame is None:
        return "not running"
    calls = list(traceback.walk_stack(frame))  # (frame, line), innermost first
    ours = [c for c in calls[1:] if _module_of(c[0]).split(".")[0] == PACKAGE][:depth]
    return " <- ".join(_call_name(f, line) for f, line in calls[:1] + ours)


def _module_of(frame) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _call_name(frame, line: int) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{line} {frame.f_code.co_name}"
