"""PSG-style relation metrics: recall@K and mean recall@K, with the chance level.

A predicted triplet (subject region, object region, predicate) hits a GT triplet (subject GT,
object GT, predicate) when the regions are matched to those GT segments and the predicates are
equal (PSG's triplet match with the mask-IoU test replaced by the training-time matching).
Several predicates per pair may be ranked (no graph constraint, as RAM's multi-label output).
R@K: per image, hit GT triplets / GT triplets, averaged over images. mR@K: per predicate, the
recall over the images holding it, averaged over the predicates present in the GT (PSG divides by
all predicates; identical when all occur). Chance: the expected value of both when the K
triplets are drawn uniformly at random from all N (N-1) P candidates (exact hypergeometric).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def _pred_to_gt(gt_to_pred: np.ndarray, n: int) -> list[set[int]]:
    out: list[set[int]] = [set() for _ in range(n)]
    for g, p in enumerate(gt_to_pred):
        if p >= 0:
            out[int(p)].add(g)
    return out


def _p_hit_random(num_candidates: int, num_good: int, k: int) -> float:
    """P(at least one of ``num_good`` candidates among ``k`` drawn from ``num_candidates``)."""
    if num_good <= 0:
        return 0.0
    if k >= num_candidates or num_good > num_candidates - k:
        return 1.0
    log_none = (math.lgamma(num_candidates - num_good + 1) - math.lgamma(num_candidates - num_good - k + 1)
                - math.lgamma(num_candidates + 1) + math.lgamma(num_candidates - k + 1))  # fmt: skip
    return 1.0 - math.exp(log_none)


class RecallAccumulator:
    """Collects per-image hits for several K; :meth:`summary` gives R@K, mR@K and chance."""

    def __init__(self, ks: tuple[int, ...] = (20, 50, 100), num_predicates: int = 56) -> None:
        self.ks = tuple(sorted(ks))
        self.num_predicates = num_predicates
        self.recall: dict[int, list[float]] = {k: [] for k in self.ks}
        self.chance: dict[int, list[float]] = {k: [] for k in self.ks}
        self.pred_recall: dict[int, dict[int, list[float]]] = {
            k: defaultdict(list) for k in self.ks
        }
        self.pred_chance: dict[int, dict[int, list[float]]] = {
            k: defaultdict(list) for k in self.ks
        }

    def add(self, scores: np.ndarray, gt_to_pred: np.ndarray, gt_relations: np.ndarray) -> None:
        """One image: ``scores`` ``(N, N, P)``, matching ``(Ng,)``, GT triplets ``(M0, 3)``."""
        gt_relations = np.asarray(gt_relations, dtype=np.int64).reshape(-1, 3)
        if gt_relations.shape[0] == 0:
            return  # PSG skips images without GT relations
        n, _, num_p = scores.shape
        owners = _pred_to_gt(gt_to_pred, n)
        flat = scores.astype(np.float64).copy()
        idx = np.arange(n)
        flat[idx, idx, :] = -np.inf
        flat = flat.reshape(-1)
        kmax = min(max(self.ks), flat.size)
        top = np.argpartition(-flat, kmax - 1)[:kmax] if kmax > 0 else np.zeros(0, np.int64)
        top = top[np.argsort(-flat[top], kind="stable")]
        top = top[np.isfinite(flat[top])]
        s_idx, rem = np.divmod(top, n * num_p)
        o_idx, p_idx = np.divmod(rem, num_p)
        rank = {}  # (gs, go, p) -> best rank at which it is hit
        for r, (s, o, p) in enumerate(zip(s_idx, o_idx, p_idx)):
            for gs in owners[s]:
                for go in owners[o]:
                    rank.setdefault((gs, go, int(p)), r)
        num_candidates = n * (n - 1) * num_p
        for k in self.ks:
            hits = np.array(
                [rank.get(tuple(int(v) for v in t), kmax) < k for t in gt_relations], dtype=float
            )
            chance = np.array(
                [
                    _p_hit_random(num_candidates, self._num_good(t, gt_to_pred), k)
                    for t in gt_relations
                ]
            )
            self.recall[k].append(float(hits.mean()))
            self.chance[k].append(float(chance.mean()))
            for p in np.unique(gt_relations[:, 2]):
                sel = gt_relations[:, 2] == p
                self.pred_recall[k][int(p)].append(float(hits[sel].mean()))
                self.pred_chance[k][int(p)].append(float(chance[sel].mean()))

    @staticmethod
    def _num_good(t: np.ndarray, gt_to_pred: np.ndarray) -> int:
        """Candidates that hit GT triplet ``t`` (0 if an end is unmatched or both share a mask)."""
        ms, mo = int(gt_to_pred[t[0]]), int(gt_to_pred[t[1]])
        return int(ms >= 0 and mo >= 0 and ms != mo)

    def summary(self) -> dict[str, float]:
        """``R@K``, ``mR@K``, ``chance_R@K``, ``chance_mR@K`` (in [0, 1]) and ``images``."""
        out: dict[str, float] = {"images": float(len(self.recall[self.ks[0]]))}
        for k in self.ks:
            out[f"R@{k}"] = float(np.mean(self.recall[k])) if self.recall[k] else 0.0
            out[f"chance_R@{k}"] = float(np.mean(self.chance[k])) if self.chance[k] else 0.0
            pr = [np.mean(v) for v in self.pred_recall[k].values()]
            pc = [np.mean(v) for v in self.pred_chance[k].values()]
            out[f"mR@{k}"] = float(np.mean(pr)) if pr else 0.0
            out[f"chance_mR@{k}"] = float(np.mean(pc)) if pc else 0.0
        return out
