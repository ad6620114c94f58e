"""Abandoning a frame in flight (shutdown, deactivation): the one exception for it.

ROS-free: the core takes a plain ``should_stop() -> bool`` callable (e.g. a
``threading.Event().is_set``) and polls it between stages and between SAM decoder batches.
"""

from __future__ import annotations

from typing import Callable


class FrameAbandoned(Exception):
    """The frame was dropped on request before it finished; nothing of it is kept."""


def raise_if_stopped(should_stop: Callable[[], bool] | None) -> None:
    """:class:`FrameAbandoned` when ``should_stop`` is given and returns True."""
    if should_stop is not None and should_stop():
        raise FrameAbandoned("frame abandoned: stop requested")
