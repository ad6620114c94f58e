"""Region geometry read inside the masks' boxes (issue 17) gives exactly what the full-mask
code gave: pairwise sub-grid intersections, exact rows of small masks, median depths, and so
the geometric relations, bit for bit. The previous implementation is kept here as reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception_nodes.core.relations.base import OVERLAP_GRID, check_depth, region_geometry
from perception_nodes.core.relations.geometric import GeometricRelationPredictor
from perception_nodes.tools.host_scenes import host_scene


def _geometry_reference(seg, depth, max_side=OVERLAP_GRID):
    """``region_geometry``'s (inter, depth) before: full masks, ``np.median`` per mask."""
    depth = check_depth(depth, seg.image_size)
    masks = seg.masks.astype(bool)
    n, h, w = masks.shape
    areas = np.maximum(seg.areas.astype(np.float64), 1.0)
    boxes = seg.boxes_xyxy.astype(np.float64).reshape(n, 4)
    stride = max(1, math.ceil(max(seg.image_size) / max_side))
    grid = masks[:, ::stride, ::stride]
    sub = torch.from_numpy(grid.reshape(n, -1).astype(np.float32))
    inter = (sub @ sub.T).numpy().astype(np.float64) * float(stride * stride)
    small = np.nonzero(np.diag(inter) < 16 * stride * stride)[0] if stride > 1 else []
    for i in small:
        x0, y0, x1, y1 = np.clip(np.round(boxes[i]).astype(int), 0, [w, h, w, h])
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        crop = masks[:, y0:y1, x0:x1]
        inter[i, :] = inter[:, i] = (crop & crop[i]).reshape(n, -1).sum(1)
    inter = np.minimum(inter, np.minimum(areas[:, None], areas[None, :]))
    np.fill_diagonal(inter, areas)
    med = np.full(n, np.nan)
    if depth is not None:
        sub_depth = depth[::stride, ::stride]
        valid = np.isfinite(sub_depth) & (sub_depth > 0)
        for i, m in enumerate(masks):
            sel = m[::stride, ::stride] & valid
            if not sel.any():
                full = m & np.isfinite(depth) & (depth > 0)
                if full.any():
                    med[i] = float(np.median(depth[full]))
                continue
            med[i] = float(np.median(sub_depth[sel]))
    return inter, med


def _scenes():
    """Host scenes at strides 1, 2, 4 and 8, with small masks, NaN depth and a mask whose
    sampled pixels all lack depth (full-resolution fallback)."""
    out = []
    for h, w, n, seed in (
        (96, 128, 24, 1),
        (240, 320, 40, 2),
        (480, 640, 50, 3),
        (720, 1280, 60, 4),
    ):
        scene = host_scene(h, w, n, seed=seed)
        depth = scene.depth_m.copy()
        depth[scene.segmentation.masks[-1]] = np.nan
        tiny = scene.segmentation.masks[np.argmin(scene.segmentation.areas)]
        depth[::8, ::8][tiny[::8, ::8]] = np.nan  # a small mask with depth off the grid only
        out.append((scene, depth))
    return out


@pytest.mark.parametrize("with_depth", [True, False])
def test_region_geometry_equals_full_mask_reference(with_depth):
    for scene, depth in _scenes():
        seg = scene.segmentation
        d = depth if with_depth else None
        geom = region_geometry(seg, d)
        inter, med = _geometry_reference(seg, d)
        assert np.array_equal(geom.inter, inter)
        assert np.array_equal(geom.depth, med, equal_nan=True)
        if with_depth:
            assert np.isfinite(med).any() and np.isnan(med).any()


def test_boxes_that_miss_part_of_a_mask_fall_back_to_the_full_mask():
    scene, depth = _scenes()[2]
    seg = scene.segmentation
    seg.boxes_xyxy = seg.boxes_xyxy.copy()
    seg.boxes_xyxy[::3] = [0, 0, 2, 2]  # boxes that no longer hold their masks
    geom = region_geometry(seg, depth)
    inter, med = _geometry_reference(seg, depth)
    assert np.array_equal(geom.inter, inter)
    assert np.array_equal(geom.depth, med, equal_nan=True)


def test_geometric_relations_equal_those_of_the_reference_geometry(monkeypatch):
    from perception_nodes.core.relations import geometric

    scene, depth = _scenes()[2]
    seg = scene.segmentation
    got = GeometricRelationPredictor().predict(seg, None, depth)
    real = geometric.region_geometry

    def reference(segmentation, d):
        geom = real(segmentation, d)
        geom.inter, geom.depth = _geometry_reference(segmentation, d)
        return geom

    monkeypatch.setattr(geometric, "region_geometry", reference)
    ref = GeometricRelationPredictor().predict(seg, None, depth)
    assert len(got) > 100
    for name in ("subject", "object", "predicate_index", "score"):
        assert np.array_equal(getattr(got, name), getattr(ref, name)), name


def test_held_boxes_are_the_pixel_boxes_and_odd_boxes_keep_the_geometry():
    """``_held_boxes`` (one array operation) gives ``rle.pixel_box`` of each box (as before),
    except a box starting past the image, which starts at its edge (empty either way), and
    the geometry of fractional, negative and out-of-image boxes equals the full-mask one;
    non-finite boxes are refused."""
    from perception_nodes.core.output.rle import pixel_box
    from perception_nodes.core.relations.base import RelationInputError, _held_boxes

    scene, depth = _scenes()[1]
    seg = scene.segmentation
    h, w = seg.image_size
    rng = np.random.default_rng(5)
    n = len(seg)
    seg.boxes_xyxy = (seg.boxes_xyxy + rng.uniform(-2.5, 2.5, (n, 4))).astype(np.float32)
    seg.boxes_xyxy[0] = [-50, -20, w + 30, h + 7]  # beyond the image on every side
    seg.boxes_xyxy[1] = [w + 5, h + 9, w + 40, h + 60]  # wholly past the image
    seg.boxes_xyxy[2] = [10.5, 12.25, 3.0, 4.0]  # inverted
    seg.masks[1] = False
    seg.areas[1] = 0
    held = _held_boxes(seg)
    for i, box in enumerate(seg.boxes_xyxy.astype(np.float64)):
        ref = pixel_box(box, h, w)
        # the previous code kept the box when its pixels held the whole mask
        ref_held = np.count_nonzero(seg.masks[i, ref[1] : ref[3], ref[0] : ref[2]]) == seg.areas[i]
        assert (held[i] is not None) == ref_held, i
        if held[i] is not None and i != 1:
            assert held[i] == ref, i
    assert held[1] == (w, h, w, h) and pixel_box(seg.boxes_xyxy[1], h, w)[0] == w + 5
    assert any(b is None for b in held) and sum(b is not None for b in held) >= 4
    geom = region_geometry(seg, depth)
    inter, med = _geometry_reference(seg, depth)
    assert np.array_equal(geom.inter, inter)
    assert np.array_equal(geom.depth, med, equal_nan=True)
    for bad in (np.nan, np.inf):
        seg.boxes_xyxy[3, 2] = bad
        with pytest.raises(RelationInputError, match="finite"):
            region_geometry(seg, depth)


def _previous_scores(pred, geom):
    """``GeometricRelationPredictor.scores`` before issue 17's pass (verbatim but for names)."""
    from perception_nodes.core.relations.geometric import _clip01, _PairTerms

    n = len(geom)
    t = _PairTerms(geom)
    inter = geom.inter
    frac_s = inter / geom.areas[:, None]
    smaller = geom.areas[:, None] < geom.areas[None, :]
    out = np.zeros((n, n, len(pred.predicates)), dtype=np.float64)
    part_of = _clip01((frac_s - 0.7) / 0.25) * smaller
    contained = np.maximum(part_of, part_of.T)
    out[:, :, 0] = _clip01(t.dcx / t.half_w) * (1 - contained)
    out[:, :, 1] = _clip01(-t.dcx / t.half_w) * (1 - contained)
    out[:, :, 2] = _clip01(t.dcy / t.half_h) * (1 - contained)
    out[:, :, 3] = _clip01(-t.dcy / t.half_h) * (1 - contained)
    out[:, :, 4] = pred._on(t, frac_s) * (1 - contained)
    out[:, :, 5] = part_of
    out[:, :, 6] = (t.box_in_obj * _clip01((0.5 - frac_s) / 0.4) * smaller
                    * _clip01((t.box_in_obj - 0.8) / 0.15))  # fmt: skip
    iou_min = inter / np.minimum(geom.areas[:, None], geom.areas[None, :])
    out[:, :, 7] = _clip01(iou_min / 0.3) * (1 - contained) * (iou_min > 0.02)
    gap = np.hypot(t.gap_x, t.gap_y) / np.minimum(t.half_w, t.half_h)
    side_by_side = np.maximum(t.y_overlap, t.x_overlap)
    out[:, :, 8] = (np.exp(-gap / 0.5) * side_by_side * _clip01(1 - iou_min / 0.3)
                    * (1 - contained))  # fmt: skip
    out[:, :, 9], out[:, :, 10] = pred._depth_order(geom)
    idx = np.arange(n)
    out[idx, idx, :] = 0.0
    return out.astype(np.float32)


def test_geometric_scores_equal_the_previous_code():
    pred = GeometricRelationPredictor()
    for scene, depth in _scenes():
        for d in (depth, None):
            geom = region_geometry(scene.segmentation, d)
            got, ref = pred.scores(geom), _previous_scores(pred, geom)
            assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes()
            assert (ref[..., 5] > 0).any() and (ref[..., :4] == 1).any()  # containment, saturation


@pytest.mark.parametrize("max_words", [0, 50, None])
def test_grid_intersections_by_gather_and_by_loop_equal_the_reference(monkeypatch, max_words):
    """Sub-grid intersections from one gather of every meeting pair's words, from the loop per
    mask (more entries than ``PAIR_WORDS_MAX``) and mixed scenes (boxes that no longer hold
    their masks: counted over all rows) all equal the full-mask matrix product."""
    from perception_nodes.core.relations import base

    if max_words is not None:
        monkeypatch.setattr(base, "PAIR_WORDS_MAX", max_words)
    for k, (scene, depth) in enumerate(_scenes()):
        seg = scene.segmentation
        if k % 2:
            seg.boxes_xyxy = seg.boxes_xyxy.copy()
            seg.boxes_xyxy[::4] = [0, 0, 2, 2]
        geom = region_geometry(seg, depth)
        inter, med = _geometry_reference(seg, depth)
        assert np.array_equal(geom.inter, inter), k
        assert np.array_equal(geom.depth, med, equal_nan=True), k
