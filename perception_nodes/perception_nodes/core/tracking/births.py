"""When a new track gets its id: the hits it needs, and the score bar that calibrates itself.

A tentative track is confirmed (its id shows) after ``birth_hits`` hits, :data:`EXTRA_HITS` more
when its mean score is below the *birth bar* (blobs, split pieces, partly hidden objects), one
more per frame it missed while tentative.

ByteTrack opens tracks only for detections above a threshold set above its association
threshold, tuned for its detector. SAM's scores (predicted IoU x stability) depend on the model,
its weights and the segmenter's filter thresholds, so one fixed bar cannot fit them all: on a
stream whose objects score 0.94, spurious blobs at 0.87 passed the fixed ``sure_score`` 0.85 and
got ids (held-out benchmark: 36 % of blobs). :class:`BirthBar` sets the bar from the stream
itself: the lower quartile (:data:`BAR_QUANTILE`) of the scores of the regions confirmed tracks
took over the last frames, never below ``TrackerSettings.sure_score``.
"""

from __future__ import annotations

import numpy as np

EXTRA_HITS = 2  # hits more for a new track whose mean score is below the bar
BAR_QUANTILE = 0.25  # of the confirmed objects' scores
BAR_WINDOW = 600  # scores kept (about 20 frames of 30 objects)
BAR_MIN_SCORES = 30  # fewer known: the fixed sure_score alone


class BirthBar:
    """The mean score a new track needs to be confirmed after ``birth_hits`` hits (one stream).

    The last :data:`BAR_WINDOW` scores live in a ring buffer (``np.partition`` of it per frame:
    ~10 us, a quarter of ``np.quantile`` on a deque)."""

    def __init__(self) -> None:
        self._ring = np.zeros(BAR_WINDOW)
        self._count = 0  # scores written so far (the ring holds the last BAR_WINDOW)

    def step(self, floor: float, scores: np.ndarray, matches: dict[int, int], tracks) -> float:
        """This frame's bar (from the frames before it; ``floor``: ``sure_score``); then
        remembers the ``(R,)`` ``scores`` of the regions that ``matches`` (``{region: track
        index}``) gave to tracks of ``tracks`` confirmed before this frame."""
        level = self.level(floor)
        rows = [r for r, t in matches.items() if tracks[t].confirmed][-BAR_WINDOW:]
        if rows:
            at = (self._count + np.arange(len(rows))) % BAR_WINDOW
            self._ring[at] = np.asarray(scores, np.float64)[rows]
            self._count += len(rows)
        return level

    def level(self, floor: float) -> float:
        """The bar: ``floor`` or the confirmed objects' lower quartile, whichever is higher."""
        n = min(self._count, BAR_WINDOW)
        if n < BAR_MIN_SCORES:
            return floor
        k = int(BAR_QUANTILE * (n - 1))  # the lower-quartile order statistic
        return max(floor, float(np.partition(self._ring[:n], k)[k]))


def hits_needed(track, birth_hits: int, bar: float) -> int:
    """Hits the tentative ``track`` (a :class:`.track.Track`) needs to be confirmed:
    ``birth_hits``, :data:`EXTRA_HITS` more when its mean score is below ``bar``, one more per
    frame it missed while tentative."""
    weak = track.score_sum / max(track.hits, 1) < bar
    return birth_hits + (EXTRA_HITS if weak else 0) + track.gaps
