"""Newest-frame slots: the perception worker always takes the latest frame of each camera.

A frame that arrives before the previous one of the same camera was taken replaces it and
counts as dropped, so no backlog ever builds up (memory and latency stay flat).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SlotStats:
    received: int = 0
    dropped: int = 0  # replaced before processing
    rejected: int = 0  # bad input (logged)
    failed: int = 0  # failed inside the worker (logged with the reason)
    processed: int = 0
    refused_3d: int = 0  # processed without 3D: depth or CameraInfo did not fit (logged)


@dataclass
class LatestFrameSlots:
    """Thread-safe per-key newest item, with a condition to wait for any new item.

    ``stats`` (key -> :class:`SlotStats`) is written under the condition's lock; other threads
    read it through :meth:`stats_snapshot` (iterating it while a new key is added raised
    "dictionary changed size during iteration")."""

    _items: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, SlotStats] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _closed: bool = False

    def put(self, key: str, item: Any) -> None:
        with self._cond:
            st = self.stats.setdefault(key, SlotStats())
            st.received += 1
            if key in self._items:
                st.dropped += 1
            self._items[key] = item
            self._cond.notify()

    def take_all(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait up to ``timeout`` s for items, then take every pending one (oldest key first)."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            items, self._items = self._items, {}
            return items

    def count(self, key: str, what: str) -> None:
        with self._cond:
            st = self.stats.setdefault(key, SlotStats())
            setattr(st, what, getattr(st, what) + 1)

    def stats_snapshot(self) -> dict[str, SlotStats]:
        """A copy of every key's counters, taken under the lock (consistent with each other)."""
        with self._cond:
            return {key: dataclasses.replace(st) for key, st in self.stats.items()}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
