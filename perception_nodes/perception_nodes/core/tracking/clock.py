"""Frames elapsed between processed frames of one stream, from their stamps.

The node drops frames when it falls behind; the tracker never sees them, but its motion model
must predict over the whole gap. The nominal frame interval is the lower quartile of the
recent stamp gaps (drops make a minority of long gaps); the gap over it, rounded, is the frames
elapsed.
"""

from __future__ import annotations

from collections import deque

import numpy as np

RECENT_GAPS = 15
MAX_ELAPSED = 30.0  # a longer pause counts as this many frames (the prediction stays bounded)


class FrameClock:
    """Frames elapsed since the previous stamp of one stream (1 without usable stamps)."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._gaps: deque[float] = deque(maxlen=RECENT_GAPS)

    def elapsed(self, stamp: float | None) -> float:
        """Frames from the previous call's ``stamp`` (seconds) to this one: >= 1, rounded."""
        if stamp is None or not np.isfinite(stamp):
            return 1.0
        last, self._last = self._last, float(stamp)
        if last is None or stamp <= last:
            return 1.0
        gap = stamp - last
        self._gaps.append(gap)
        interval = float(np.percentile(self._gaps, 25))
        return float(min(MAX_ELAPSED, max(1.0, round(gap / interval))))
