"""What tracking steadies: a track's label (score-weighted vote) and relation scores (EMA).

Both work on track ids, so they are free of the frame's region order.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perception_nodes.core.tracking.tracker import Track
from perception_nodes.core.types import RegionLabels, Relations

MIN_KEPT_SCORE = (
    0.01  # smoothed relations that decayed below this are forgotten (bounds the memory)
)


def vote_label(
    history: list[tuple[int, int, float]], version: int, window: int
) -> tuple[int, float]:
    """``(label_index, score)`` winning the score-weighted vote over the last ``window`` frames.

    ``history`` holds ``(vocabulary_version, label_index, label_score)`` per observed frame,
    newest last; only entries of ``version`` vote (indices of another vocabulary mean something
    else). Each frame votes for its label with its score; the winner's score is its summed
    score divided by the number of voting frames (so a label that won every frame keeps its
    mean score). Ties go to the newest frame's label.
    """
    totals: dict[int, float] = {}
    voters, newest = 0, -1
    for v, idx, sc in history[-window:]:
        if v == version:
            totals[idx] = totals.get(idx, 0.0) + (sc if sc > 0.0 else 0.0)
            voters, newest = voters + 1, idx
    if not voters:
        return -1, 0.0
    # the largest total, ties to the newest frame's label, then to the first voted (what
    # max(totals, key=lambda i: (totals[i], i == newest)) picks, without a call per label)
    best, best_total = newest, totals[newest]
    for idx, total in totals.items():
        if total > best_total:
            best, best_total = idx, total
    return best, best_total / voters


def voted_labels(labels: RegionLabels, tracks: list[Track], window: int) -> RegionLabels:
    """Record each region's label in its track and return the labels replaced by the votes.

    ``label_index``/``label_score`` become the vote of the region's track; ``topk_*`` (this
    frame's alternatives) are left as they are.
    """
    version = int(labels.vocabulary_version)
    votes = []
    for track, i, sc in zip(tracks, labels.label_index.tolist(), labels.label_score.tolist()):
        track.history.append((version, i, sc))
        del track.history[:-window]
        votes.append(vote_label(track.history, version, window))
    idx = np.array([v[0] for v in votes], dtype=np.int64).reshape(-1)
    score = np.array([v[1] for v in votes], dtype=np.float32).reshape(-1)
    return replace(labels, label_index=idx, label_score=score)


class RelationSmoother:
    """Exponential moving average of relation scores per (subject track, predicate, object track).

    ``s <- alpha * frame_score + (1 - alpha) * s``; a relation first seen starts at its frame
    score; a known relation whose two tracks are in the frame but that the predictor did not
    return this frame counts as score 0 (it decays rather than vanishing at once). Relations of
    tracks that died are forgotten.
    """

    def __init__(self) -> None:
        self.scores: dict[tuple[int, str, int], float] = {}

    def smooth(
        self, relations: Relations, tracks: list[Track], alpha: float, alive: set[int]
    ) -> Relations:
        """Smoothed relations between the frame's regions (indices into ``tracks``)."""
        region_of = {t.track_id: i for i, t in enumerate(tracks)}
        tids, predicates = [t.track_id for t in tracks], relations.predicates
        seen: dict[tuple[int, str, int], float] = {}
        for s, o, p, sc in zip(
            relations.subject.tolist(),
            relations.object.tolist(),
            relations.predicate_index.tolist(),
            relations.score.tolist(),
        ):
            key = (tids[s], predicates[p], tids[o])
            if sc > seen.get(key, 0.0):
                seen[key] = sc
        updated: dict[tuple[int, str, int], float] = {}
        keep = 1.0 - alpha
        for key, old in self.scores.items():  # known relations
            s, _, o = key
            if s not in alive or o not in alive:
                continue
            if s in region_of and o in region_of:
                old = alpha * seen.get(key, 0.0) + keep * old
            # else a track missed this frame: keep the score until it is seen again or dies
            if old >= MIN_KEPT_SCORE:
                updated[key] = old
        for key, value in seen.items():  # first seen this frame (between live tracks only)
            if key not in self.scores and key[0] in alive and key[2] in alive:
                if value >= MIN_KEPT_SCORE:
                    updated[key] = value
        self.scores = updated
        return self._frame_relations(relations, region_of)

    def _frame_relations(self, relations: Relations, region_of: dict[int, int]) -> Relations:
        pred_index = {p: i for i, p in enumerate(relations.predicates)}
        rows = [
            (region_of[s], region_of[o], pred_index[p], sc)
            for (s, p, o), sc in self.scores.items()
            if s in region_of and o in region_of and p in pred_index
        ]
        if not rows:
            return Relations.empty(relations.predicates, relations.source)
        arr = np.array(rows, dtype=np.float64)
        arr = arr[
            np.lexsort((arr[:, 2], arr[:, 1], arr[:, 0], -arr[:, 3]))
        ]  # best first, then by index
        return Relations(
            arr[:, 0].astype(np.int64),
            arr[:, 1].astype(np.int64),
            arr[:, 2].astype(np.int64),
            arr[:, 3].astype(np.float32),
            list(relations.predicates),
            relations.source,
        )
