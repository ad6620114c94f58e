"""Relations sorted by score with radix-sorted 16-bit keys (``relations/base.py``): the same
order as the stable comparison sort they replaced, ties, zeros, ``-0.0`` and all limits
included, and the same relations from ``relations_from_scores`` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.core.relations.base import descending_order, relations_from_scores
from perception_nodes.core.types import Relations


def _previous(scores, predicates, source, min_score, max_per_subject=0, top_k=0):
    """``relations_from_scores`` before (stable argsort of the negated scores)."""
    n = scores.shape[0]
    s, o, p = np.nonzero(scores >= min_score)
    keep = s != o
    s, o, p = s[keep], o[keep], p[keep]
    sc = scores[s, o, p].astype(np.float32)
    order = np.argsort(-sc, kind="stable")
    s, o, p, sc = s[order], o[order], p[order], sc[order]
    if max_per_subject > 0 and s.size:
        rank = np.zeros_like(s)
        counts = np.zeros(n, dtype=np.int64)
        for k, subj in enumerate(s):
            rank[k] = counts[subj]
            counts[subj] += 1
        sel = rank < max_per_subject
        s, o, p, sc = s[sel], o[sel], p[sel], sc[sel]
    if top_k > 0:
        s, o, p, sc = s[:top_k], o[:top_k], p[:top_k], sc[:top_k]
    return Relations(s.astype(np.int64), o.astype(np.int64), p.astype(np.int64), sc,
                     list(predicates), source)  # fmt: skip


def _values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Scores with many exact ties, zeros of both signs, tiny and extreme values."""
    v = rng.random(n).astype(np.float32)
    special = np.float32([0.0, -0.0, 1.0, 0.5, 1e-45, 1e-38, 0.3, 0.30000001, 3e38])
    pick = rng.random(n) < 0.4
    v[pick] = rng.choice(special, int(pick.sum()))
    return v


@pytest.mark.parametrize("seed", range(4))
def test_descending_order_equals_stable_argsort(seed):
    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 17, 5000, 70_000):
        v = _values(rng, n)
        assert np.array_equal(descending_order(v), np.argsort(-v, kind="stable")), n
    with_nan = _values(rng, 300)
    with_nan[::7] = np.nan
    with_nan[::11] = -0.25  # negative: falls back to the comparison sort
    assert np.array_equal(descending_order(with_nan), np.argsort(-with_nan, kind="stable"))
    as_f64 = _values(rng, 300).astype(np.float64)
    assert np.array_equal(descending_order(as_f64), np.argsort(-as_f64, kind="stable"))


@pytest.mark.parametrize("seed", range(3))
def test_relations_from_scores_equal_previous_code(seed):
    rng = np.random.default_rng(seed)
    n, preds = 40, [f"p{i}" for i in range(11)]
    scores = np.round(rng.random((n, n, len(preds))), 2).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.05] = -0.0
    for min_score in (0.0, 0.3, 0.99):
        for max_per_subject, top_k in ((0, 0), (3, 0), (0, 50), (2, 7)):
            got = relations_from_scores(scores, preds, "geometric", min_score, max_per_subject,
                                        top_k)  # fmt: skip
            want = _previous(scores, preds, "geometric", min_score, max_per_subject, top_k)
            for name in ("subject", "object", "predicate_index", "score"):
                assert np.array_equal(getattr(got, name), getattr(want, name)), name
