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
LOOKUP_SPAN = 4096  # track ids this close together are found by a table, not by a search
GRID_CELLS_PER_ROW = 8  # the frame's relations go on a grid if it has <= 8 cells per row


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

    Kept as arrays (one row per relation: subject track id, predicate code, object track id;
    and its score) and updated in batch: with a dict entry per relation, the geometric
    predictor's ~7,000 relations of 50 regions cost ~8 ms a frame.
    """

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}  # predicate name -> code (every name seen so far)
        self._keys = np.zeros((0, 3), np.int64)  # (K, 3) subject id, predicate code, object id
        self._values = np.zeros(0)  # (K,) smoothed scores

    @property
    def scores(self) -> dict[tuple[int, str, int], float]:
        """``{(subject track id, predicate, object track id): smoothed score}``."""
        names = {c: p for p, c in self._codes.items()}
        keys, values = self._keys.tolist(), self._values.tolist()
        return {(s, names[p], o): v for (s, p, o), v in zip(keys, values)}

    def smooth(
        self, relations: Relations, tracks: list[Track], alpha: float, alive: set[int]
    ) -> Relations:
        """Smoothed relations between the frame's regions (indices into ``tracks``)."""
        tids = np.array([t.track_id for t in tracks], np.int64)
        codes = np.array(
            [self._codes.setdefault(p, len(self._codes)) for p in relations.predicates], np.int64
        )
        cells = len(tids) ** 2 * len(self._codes)
        if cells <= GRID_CELLS_PER_ROW * (len(relations.score) + len(self._keys)):
            return self._smooth_on_grid(relations, tids, codes, alpha, alive)
        seen_keys, seen = _frame_maxima(relations, tids, codes)
        old_keys, old = self._keys, self._values
        at_old, at_seen = _matching_rows(old_keys, seen_keys)
        alive_ids = np.array(sorted(alive), np.int64)
        frame_score = np.zeros(len(old))
        frame_score[at_old] = seen[at_seen]
        # a known relation between two tracks of the frame: its frame score (0 if not returned);
        # else a track missed this frame: the score is kept until it is seen again or dies
        in_frame = _both_in(np.sort(tids), old_keys)
        updated = np.where(in_frame, alpha * frame_score + (1.0 - alpha) * old, old)
        keep_old = _both_in(alive_ids, old_keys) & (updated >= MIN_KEPT_SCORE)
        first = np.ones(len(seen), bool)  # first seen this frame (between live tracks only)
        first[at_seen] = False
        first &= _both_in(alive_ids, seen_keys) & (seen >= MIN_KEPT_SCORE)
        self._keys = np.concatenate([old_keys[keep_old], seen_keys[first]])
        self._values = np.concatenate([updated[keep_old], seen[first]])
        return self._frame_relations(relations, tids, codes)

    def _smooth_on_grid(
        self, relations: Relations, tids: np.ndarray, codes: np.ndarray, alpha: float, alive
    ) -> Relations:
        """:meth:`smooth` for relations that fill much of the frame's grid of (subject region,
        object region, predicate) cells (the geometric predictor's ~all pairs): the frame's best
        scores, the known relations' matches and the output's order come from a flat grid
        (:class:`_Grid`) instead of sorting the rows. The same relations are stored, with the
        same scores, and the output is the same (the sorted rows order it by values only)."""
        grid = _Grid(tids, codes, len(self._codes))
        seen = grid.maxima(relations, codes)
        old_keys, old = self._keys, self._values
        subj, s_found = _positions(tids, old_keys[:, 0])
        obj, o_found = _positions(tids, old_keys[:, 2])
        in_frame = s_found & o_found  # known relations between two tracks of the frame
        rows = np.flatnonzero(in_frame)
        cell = grid.cell(subj[rows], obj[rows], old_keys[rows, 1])
        updated = old.copy()
        updated[rows] = alpha * seen[cell] + (1.0 - alpha) * old[rows]
        in_alive = np.array([t in alive for t in tids.tolist()], bool)
        keep_old = np.zeros(len(old), bool)  # between live tracks (most are in the frame)
        keep_old[rows] = in_alive[subj[rows]] & in_alive[obj[rows]]
        alive_ids = np.array(sorted(alive), np.int64)
        keep_old[~in_frame] = _both_in(alive_ids, old_keys[~in_frame])
        keep_old &= updated >= MIN_KEPT_SCORE
        known = np.zeros(len(seen), bool)
        known[cell] = True
        first = np.flatnonzero((seen >= MIN_KEPT_SCORE) & ~known)  # first seen this frame
        f_subj, f_obj, f_code = grid.unravel(first)
        ok = in_alive[f_subj] & in_alive[f_obj]  # between live tracks only
        first = first[ok]
        new_keys = np.stack([tids[f_subj[ok]], f_code[ok], tids[f_obj[ok]]], axis=1)
        kept_rows = np.flatnonzero(keep_old)  # (row indices: a boolean mask of (K, 3) is slow)
        self._keys = np.concatenate([old_keys[kept_rows], new_keys.reshape(-1, 3)])
        self._values = np.concatenate([updated[kept_rows], seen[first]])
        out = np.zeros(len(seen))  # the stored relations of the frame, on the grid
        kept = keep_old[rows]
        out[cell[kept]] = updated[rows[kept]]
        out[first] = seen[first]
        return grid.relations(out, relations)

    def _frame_relations(self, relations: Relations, tids: np.ndarray, codes) -> Relations:
        """The smoothed relations whose two tracks are in the frame, by region index (best
        first, then by subject, object and predicate index)."""
        pred_index = {c: i for i, c in enumerate(codes.tolist())}  # the last of a repeated name
        lut = np.full(len(self._codes), -1, np.int64)
        lut[list(pred_index)] = list(pred_index.values())
        subj, s_found = _positions(tids, self._keys[:, 0])
        obj, o_found = _positions(tids, self._keys[:, 2])
        pred = lut[self._keys[:, 1]]
        ok = s_found & o_found & (pred >= 0)
        if not ok.any():
            return Relations.empty(relations.predicates, relations.source)
        arr = np.stack([subj[ok], obj[ok], pred[ok], self._values[ok]], axis=1)
        arr = arr.astype(np.float64)
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


def _frame_maxima(relations: Relations, tids: np.ndarray, codes: np.ndarray):
    """``(keys, scores)``: each (subject id, predicate code, object id) of the frame's relations
    that scored above 0, once, with its best score (``(S, 3)`` int64, ``(S,)`` float64)."""
    score = np.asarray(relations.score).astype(np.float64)
    pos = score > 0.0  # NaN is not
    keys = np.stack([tids[relations.subject[pos]], codes[relations.predicate_index[pos]],
                     tids[relations.object[pos]]], axis=1).reshape(-1, 3)  # fmt: skip
    score = score[pos]
    if not len(score):
        return keys, score
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))
    keys, score = keys[order], score[order]
    starts = np.ones(len(score), bool)
    starts[1:] = _differs(keys[1:], keys[:-1])
    begin = np.nonzero(starts)[0]
    return keys[begin], np.maximum.reduceat(score, begin)


class _Grid:
    """A flat grid of one frame's relations: cell ``(subject * N + object) * C + column``
    (region indices; ``C`` predicate codes). The frame's predicates (each code by its last index
    in ``relations.predicates``) take the first columns in index order, so ascending cells are
    ascending (subject, object, predicate index); codes this frame does not name come after."""

    def __init__(self, tids: np.ndarray, codes: np.ndarray, n_codes: int) -> None:
        self.n, self.c = len(tids), n_codes
        pred_index = {code: i for i, code in enumerate(codes.tolist())}  # last of a repeated name
        named = sorted(pred_index, key=pred_index.__getitem__)
        self.pred = np.array([pred_index[code] for code in named], np.int64)  # (P,) by column
        self.code_of = np.array(named + sorted(set(range(n_codes)) - set(named)), np.int64)
        self.column = np.argsort(self.code_of)  # (C,) column of each code

    def cell(self, subj: np.ndarray, obj: np.ndarray, code: np.ndarray) -> np.ndarray:
        return (subj * self.n + obj) * self.c + self.column[code]

    def unravel(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(subject, object, code)`` of ``cells``."""
        pair, col = np.divmod(cells, self.c)
        subj, obj = np.divmod(pair, self.n)
        return subj, obj, self.code_of[col]

    def maxima(self, relations: Relations, codes: np.ndarray) -> np.ndarray:
        """``(N * N * C,)`` float64: each cell's best score of the frame's relations above 0 (0
        where none)."""
        score = np.asarray(relations.score).astype(np.float64)
        pos = score > 0.0  # NaN is not
        code = codes[np.asarray(relations.predicate_index, np.int64)[pos]]
        at = self.cell(np.asarray(relations.subject, np.int64)[pos],
                       np.asarray(relations.object, np.int64)[pos], code)  # fmt: skip
        seen = np.zeros(self.n * self.n * self.c)
        np.maximum.at(seen, at, score[pos])
        return seen

    def relations(self, out: np.ndarray, relations: Relations) -> Relations:
        """The relations of the grid ``out`` (0 = none) whose predicate is one of the frame's,
        best first, then by subject, object and predicate index (as
        :meth:`RelationSmoother._frame_relations`)."""
        p = len(self.pred)
        cells = np.flatnonzero(out.reshape(-1, self.c)[:, :p])  # ascending (subj, obj, pred)
        if not len(cells):
            return Relations.empty(relations.predicates, relations.source)
        pair, col = np.divmod(cells, p)
        subj, obj = np.divmod(pair, self.n)
        values = out.reshape(-1, self.c)[pair, col]
        best = np.argsort(-values, kind="stable")  # ties keep the index order
        return Relations(subj[best], obj[best], self.pred[col[best]],
                         values[best].astype(np.float32), list(relations.predicates),
                         relations.source)  # fmt: skip


def _matching_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(i, j)`` with ``a[i] == b[j]`` (rows of ``(N, 3)`` and ``(M, 3)``, neither with
    a repeated row)."""
    both = np.concatenate([a, b])
    if len(both) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((both[:, 2], both[:, 1], both[:, 0]))
    rows = both[order]
    pair = np.nonzero(~_differs(rows[1:], rows[:-1]))[0]  # one row of a, the next of b
    first, second = order[pair], order[pair + 1]
    return np.minimum(first, second), np.maximum(first, second) - len(a)


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N,)`` True where rows of ``(N, 3)`` ``a`` and ``b`` differ (column by column:
    ``any(axis=1)`` costs more than the comparisons at a few hundred rows)."""
    return (a[:, 0] != b[:, 0]) | (a[:, 1] != b[:, 1]) | (a[:, 2] != b[:, 2])


def _both_in(sorted_ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``(K,)`` True where the subject and object ids of ``keys`` (``(K, 3)``) are both in
    ``sorted_ids`` (ascending; binary searches: ``np.isin`` sorts both arrays every call)."""
    if not len(sorted_ids):
        return np.zeros(len(keys), bool)
    last = len(sorted_ids) - 1
    subj, obj = keys[:, 0], keys[:, 2]
    found = sorted_ids[np.minimum(np.searchsorted(sorted_ids, subj), last)] == subj
    found &= sorted_ids[np.minimum(np.searchsorted(sorted_ids, obj), last)] == obj
    return found


def _positions(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index, found)``: where each of ``wanted`` (any shape) is in ``ids`` (``(N,)``, no
    repeated id)."""
    if not len(ids):
        return np.zeros(wanted.shape, np.int64), np.zeros(wanted.shape, bool)
    lo = int(ids.min())
    span = int(ids.max()) - lo + 1
    if span <= max(LOOKUP_SPAN, 2 * wanted.size):  # ids close together: a lookup table
        table = np.full(span, -1, np.int64)
        table[ids - lo] = np.arange(len(ids))
        at = wanted - lo
        inside = (at >= 0) & (at < span)
        index = table[np.where(inside, at, 0)]
        return np.maximum(index, 0), inside & (index >= 0)
    order = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[order], wanted), len(ids) - 1)
    return order[pos], ids[order][pos] == wanted
