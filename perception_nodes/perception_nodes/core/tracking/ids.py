"""Track ids shared by every camera stream of a pipeline: increasing, never reused."""

from __future__ import annotations

import itertools
import threading


class TrackIdSource:
    """Thread-safe increasing ids starting at 1 (0 means "untracked" on the wire)."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            return next(self._next)
