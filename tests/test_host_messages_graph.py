"""Scene-graph building at the speed of issue 17: the batched RLE encoder and the best-first
relation filter give exactly what the per-mask encoder (pycocotools' counts) and the filter over
every relation give."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from perception_nodes.core.output import scene_graph
from perception_nodes.core.output.rle import _decompress_counts, encode_mask, encode_masks
from perception_nodes.core.output.scene_graph import filter_relations
from perception_nodes.core.relations.geometric import GeometricRelationPredictor
from perception_nodes.core.relations.predicates import GEOMETRIC_PREDICATES
from perception_nodes.core.types import Relations
from perception_nodes.tools.host_scenes import host_scene


def _coco(mask: np.ndarray) -> list[int]:
    """pycocotools' integer counts of one ``HxW`` mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))[:, :, None])[0]
    return _decompress_counts(rle["counts"])


def _edge_stack() -> np.ndarray:
    """9x7 masks: empty, full, rows/columns on every border, corners, runs crossing columns,
    the last pixel alone, a full column in the middle."""
    h, w = 9, 7
    masks = np.zeros((10, h, w), dtype=bool)
    masks[1] = True
    masks[2, 0, :] = masks[2, -1, :] = True
    masks[3, :, 0] = masks[3, :, -1] = True
    masks[4, 0, 0] = masks[4, -1, -1] = True
    masks[5, :, 2:5] = True
    masks[6, 4:, 1] = masks[6, :3, 2] = True
    masks[7, -1, -1] = True
    masks[8, :, 3] = True
    masks[9, 0, :] = True
    return masks


def _stacks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [s.segmentation.masks for s in (host_scene(96, 128, 24, seed=1),
                                          host_scene(61, 77, 40, seed=2))]  # fmt: skip
    out.append(_edge_stack())
    out += [rng.random((5, h, w)) < rng.uniform(0, 1, (5, 1, 1))
            for h, w in ((1, 1), (1, 6), (6, 1), (5, 8), (32, 3))]  # fmt: skip
    return out


@pytest.mark.parametrize("boxes", ["none", "tight", "loose", "outside"])
def test_batched_encoder_equals_pycocotools_and_the_one_mask_encoder(boxes):
    rng = np.random.default_rng(1)
    for masks in _stacks():
        n, h, w = masks.shape
        ref = [_coco(m) for m in masks]
        if boxes == "none":
            got = encode_masks(masks)
        else:
            box = np.zeros((n, 4), np.float32)
            for i, m in enumerate(masks):
                ys, xs = np.nonzero(m)
                if xs.size:
                    box[i] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            if boxes == "loose":  # fractional, covering
                box += np.float32([-1.5, -0.3, 0.2, 1.7]) * rng.random((n, 1)).astype(np.float32)
            if boxes == "outside":  # beyond the image on every side
                box += np.float32([-3, -2, 4, 5])
            got = encode_masks(masks, box)
            assert got == [encode_mask(m, b)[2] for m, b in zip(masks, box)]
        assert got == ref, (masks.shape, boxes)


def test_batched_encoder_edge_shapes_and_errors():
    assert encode_masks(np.zeros((0, 4, 5), bool)) == []
    assert encode_masks(np.zeros((2, 0, 5), bool)) == [[], []]
    assert encode_masks(np.zeros((3, 4, 5), bool), np.zeros((3, 4))) == [[20]] * 3
    ones = np.ones((2, 4, 5), np.uint8)  # 0/1 bytes are read as bool
    assert encode_masks(ones) == [[0, 20]] * 2
    with pytest.raises(ValueError, match="NxHxW"):
        encode_masks(np.zeros((4, 5), bool))


def _relations(rng, n: int, m: int, levels: int | None) -> Relations:
    """``m`` relations among ``n`` regions with duplicates, reversed pairs, self-pairs and NaN;
    ``levels``: scores drawn from that many values (many ties), None: continuous."""
    s, o = rng.integers(0, n, m), rng.integers(0, n, m)
    p = rng.integers(0, len(GEOMETRIC_PREDICATES), m)
    sc = rng.random(m) if levels is None else rng.integers(0, levels, m) / levels
    sc = np.where(rng.random(m) < 0.02, np.nan, sc).astype(np.float32)
    dup = rng.integers(0, m, m // 3)
    s, o = np.concatenate([s, o[dup]]), np.concatenate([o, s[dup]])
    p, sc = np.concatenate([p, p[dup]]), np.concatenate([sc, sc[dup]])
    return Relations(s.astype(np.int64), o.astype(np.int64), p.astype(np.int64), sc,
                     list(GEOMETRIC_PREDICATES), "geometric")  # fmt: skip


def _every_relation(monkeypatch, rel, *args, **kwargs):
    """:func:`filter_relations` over every relation (the code before the best-first filter)."""
    with monkeypatch.context() as m:
        m.setattr(scene_graph, "_BEST_FIRST", 0)
        return filter_relations(rel, *args, **kwargs)


@pytest.mark.parametrize("seed", range(4))
def test_best_first_filter_equals_filtering_every_relation(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    tries = []
    real = scene_graph._filter_kept

    def counted(*a, **k):
        tries.append(a[0].size)
        return real(*a, **k)

    monkeypatch.setattr(scene_graph, "_filter_kept", counted)
    grew = 0
    for n, m in ((3, 50), (12, 800), (40, 5000), (100, 20000)):
        for levels in (None, 3, 20):
            rel = _relations(rng, n, m, levels)
            for args in ((50, 5, 0.3), (10, 1, 0.0), (7, 0, 0.1), (1, 1, 0.5), (200, 2, 0.2)):
                for merge in (True, False):
                    tries.clear()
                    got = filter_relations(rel, *args, merge_symmetric=merge)
                    grew += len(tries) > 1  # the first best-first try had too few
                    ref = _every_relation(monkeypatch, rel, *args, merge_symmetric=merge)
                    for g, r in zip(got, ref):
                        assert g.dtype == r.dtype and np.array_equal(g, r), (n, m, levels, args)
    assert grew  # the tries that take 4 times as many were exercised


def test_best_first_filter_on_the_geometric_predictor():
    scene = host_scene(240, 320, 60, seed=4)
    rel = GeometricRelationPredictor(min_score=0.05).predict(
        scene.segmentation, None, scene.depth_m
    )
    assert len(rel) > 5000
    full = pytest.MonkeyPatch()
    for args in ((50, 5, 0.3), (20, 1, 0.1), (100, 10, 0.1)):
        got = filter_relations(rel, *args)
        with full.context() as m:
            m.setattr(scene_graph, "_BEST_FIRST", 0)
            ref = filter_relations(rel, *args)
        assert all(np.array_equal(g, r) for g, r in zip(got, ref))
        assert got[0].size == args[0]


def test_symmetric_predicates_given_as_an_iterator():
    # "0 next to 1" and "1 next to 0" tie and merge into the first; 100 other relations, so the
    # best-first try runs, and falls short (3 subjects, one relation each): filtered twice
    preds = list(GEOMETRIC_PREDICATES)
    rng = np.random.default_rng(7)
    s, o = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    p = np.full(100, preds.index("on"))
    rel = Relations(np.r_[0, 1, s], np.r_[1, 0, o], np.r_[[preds.index("next to")] * 2, p],
                    np.r_[0.9, 0.9, np.full(100, 0.5)].astype(np.float32), preds)  # fmt: skip
    want = filter_relations(rel, 10, 1, 0.0, symmetric_predicates=("next to",))
    assert want[0].tolist() == [0, 1, 2] and want[3][1] == np.float32(0.5)  # 1's pair merged
    got = filter_relations(rel, 10, 1, 0.0, symmetric_predicates=iter(("next to",)))
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


@pytest.mark.parametrize("seed", range(3))
def test_tie_cut_filter_equals_filtering_every_relation(monkeypatch, seed):
    """Many relations tied at the best-first score (saturated scores): the try with the tied
    ones cut by subject gives what filtering every relation gives, whether it is taken or
    found short; both outcomes occur, and on the geometric predictor's relations it is
    taken."""
    rng = np.random.default_rng(100 + seed)
    tries, real = [], scene_graph._tie_cuts

    def spy(*a, **k):
        tries.append([])
        for sel, cut in real(*a, **k):
            tries[-1].append(cut)
            yield sel, cut

    monkeypatch.setattr(scene_graph, "_tie_cuts", spy)
    outcomes = set()
    for n, m in ((12, 3000), (40, 20000), (100, 30000)):
        for levels in (1, 2, 5):
            rel = _relations(rng, n, m, levels)
            for args in ((50, 5, 0.3), (10, 1, 0.0), (7, 0, 0.1), (20, 3, 0.5), (200, 2, 0.2)):
                for merge in (True, False):
                    tries.clear()
                    got = filter_relations(rel, *args, merge_symmetric=merge)
                    outcomes |= {(t[0] is not None, len(t)) for t in tries}
                    ref = _every_relation(monkeypatch, rel, *args, merge_symmetric=merge)
                    for g, r in zip(got, ref):
                        assert g.dtype == r.dtype and np.array_equal(g, r), (n, m, levels, args)
    assert (True, 1) in outcomes and (True, 2) in outcomes  # a cut taken, a cut found short
    scene = host_scene(480, 640, 100, seed=seed)
    rel = GeometricRelationPredictor().predict(scene.segmentation, None, scene.depth_m)
    tries.clear()
    got = filter_relations(rel, 50, 5, 0.3)
    assert tries[0] == [tries[0][0]] and tries[0][0] is not None  # the cut was the answer
    ref = _every_relation(monkeypatch, rel, 50, 5, 0.3)
    assert all(np.array_equal(g, r) for g, r in zip(got, ref))


def test_tie_cut_refuses_winners_past_the_cut():
    """Merged symmetric pairs keep the orientation given first, so a pair whose smaller region
    is within the cut can win with a subject past it, ahead of subjects the cut left out:
    such a result is not taken. Here the cut (region 9) holds ten "b next to a" pairs won as
    (20 + a, a), and subjects 10-14 (left out) come first in the answer."""
    nxt, left = GEOMETRIC_PREDICATES.index("next to"), GEOMETRIC_PREDICATES.index("left of")
    rows = [(20 + a, a, nxt) for a in range(10)] + [(a, 20 + a, nxt) for a in range(10)]
    rows += [(s, 30 + j, left) for s in range(10, 15) for j in range(5)]
    s, o, p = (np.array(c, np.int64) for c in zip(*rows))
    rel = Relations(s, o, p, np.ones(len(rows), np.float32), list(GEOMETRIC_PREDICATES),
                    "geometric")  # fmt: skip
    got = filter_relations(rel, top_k=5, top_k_per_subject=1, score_threshold=0.5)
    assert got[0].tolist() == [10, 11, 12, 13, 14]
    cuts = list(scene_graph._tie_cuts(s, o, p, rel.score, np.arange(len(rows)), np.float32(1),
                                      20, (rel.predicates, 5, 1, True, ("next to",))))  # fmt: skip
    assert [c for _, c in cuts] == [9, None]  # the cut is tried (and refused above)
