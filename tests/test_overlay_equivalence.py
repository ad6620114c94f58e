"""The overlay's fill, read from the regions' RLE runs through one look-up table per set of
covering regions (core/output/draw.py ``blend_regions``), gives bit for bit what blending each
region's decoded mask over a float32 copy of the image, region after region, gave (the code it
replaced, kept below as the reference), on realistic generated frames (tools/host_scenes.py),
more than 64 and 128 regions (several bit-mask words), masks on every border and crossing
columns, noise masks, and other alphas."""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.core.output import draw
from perception_nodes.core.output.draw import (
    blend_regions,
    colour_keys,
    cover_states,
    draw_overlay,
    region_colours,
)
from perception_nodes.core.output.rle import decode_mask, encode_masks
from perception_nodes.core.output.scene_graph import build_scene_graph
from perception_nodes.tools.host_scenes import host_scene


def _reference_fill(image, masks, colours, alpha=0.45):
    """The previous overlay fill: each region's full mask blended in region order."""
    out = image.astype(np.float32)
    for i, m in enumerate(masks):
        out[m] = (1 - alpha) * out[m] + alpha * colours[i]
    return out.astype(np.uint8)


def _edge_masks(h: int = 9, w: int = 7) -> np.ndarray:
    """Empty, full, borders, corners, runs crossing columns, the last pixel, nested parts."""
    masks = np.zeros((10, h, w), dtype=bool)
    masks[1] = True
    masks[2, 0, :] = masks[2, -1, :] = True
    masks[3, :, 0] = masks[3, :, -1] = True
    masks[4, 0, 0] = masks[4, -1, -1] = True
    masks[5, :, 2:5] = True
    masks[6, 4:, 1] = masks[6, :3, 2] = True
    masks[7, -1, -1] = True
    masks[8, 2:6, 2:5] = True
    masks[9, 3:4, 3:4] = True
    return masks


def _colours(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3), dtype=np.uint8)


def _cases():
    """(image, masks) pairs: generated scenes, edge masks, noise masks."""
    rng = np.random.default_rng(3)
    out = []
    for h, w, n, seed in ((96, 128, 24, 1), (61, 77, 40, 2), (72, 96, 100, 4), (48, 64, 140, 5)):
        scene = host_scene(h, w, n, seed=seed)
        out.append((scene.image, scene.segmentation.masks))
    edges = _edge_masks()
    out.append((rng.integers(0, 256, (9, 7, 3), dtype=np.uint8), edges))
    noise = rng.random((70, 12, 10)) < 0.4
    out.append((rng.integers(0, 256, (12, 10, 3), dtype=np.uint8), noise))
    out.append((rng.integers(0, 256, (1, 1, 3), dtype=np.uint8), np.ones((2, 1, 1), bool)))
    return out


@pytest.mark.parametrize("alpha", [0.45, 0.3, 1.0, 0.0, np.float64(0.45), np.float32(0.6)])
def test_fill_equals_per_region_blend(alpha):
    for image, masks in _cases():
        colours = _colours(len(masks))
        got = blend_regions(image, encode_masks(masks), colours, alpha)
        assert got.dtype == np.uint8 and got.shape == image.shape
        assert np.array_equal(got, _reference_fill(image, masks, colours, alpha))


def test_cover_states_name_exactly_the_covering_regions():
    for image, masks in _cases():
        h, w = image.shape[:2]
        state, members = cover_states(h, w, encode_masks(masks))
        assert state.shape == (h, w) and members.shape[1] == len(masks)
        assert np.array_equal(members[state].transpose(2, 0, 1), masks)
        assert len(np.unique(members, axis=0)) == len(members)  # each set once


def test_hash_collisions_fall_back_to_exact_rows(monkeypatch):
    """Sets of more than 64 regions are keyed by a hash of their words; were two sets to
    share a key, the rows are compared and told apart exactly."""
    scene = host_scene(72, 96, 100, seed=4)
    masks, colours = scene.segmentation.masks, _colours(100)
    monkeypatch.setattr(draw, "_row_keys", lambda words: np.zeros(len(words), np.uint64))
    got = blend_regions(scene.image, encode_masks(masks), colours, 0.45)
    assert np.array_equal(got, _reference_fill(scene.image, masks, colours))


def test_overlay_from_counts_and_from_masks_equal_the_reference_drawing():
    """Whole overlays: the reference fill, then captions and arrows drawn by the same code."""
    for h, w, n, seed in ((96, 128, 24, 1), (72, 96, 100, 4)):
        scene = host_scene(h, w, n, seed=seed)
        seg = scene.segmentation
        graph = build_scene_graph(seg, None, None, np.arange(1, n + 1, dtype=np.uint32))
        graph.subject, graph.object = np.array([0, 2]), np.array([1, 0])
        graph.predicate_index, graph.relation_scores = np.array([0, 0]), np.array([0.9, 0.5])
        graph.predicates = ["next to"]
        fill = _reference_fill(scene.image, seg.masks, region_colours(colour_keys(graph)))
        ref = draw_overlay(fill, graph, alpha=0.0, banner="x")
        assert np.array_equal(draw_overlay(scene.image, graph, banner="x"), ref)
        assert np.array_equal(draw_overlay(scene.image, graph, seg.masks, banner="x"), ref)


def test_bad_counts_and_images_are_refused():
    image = np.zeros((4, 5, 3), np.uint8)
    good = encode_masks(np.ones((1, 4, 5), bool))
    assert np.array_equal(decode_mask(4, 5, good[0]), np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="sum to 19"):
        blend_regions(image, [good[0], [0, 19]], _colours(2), 0.45)
    with pytest.raises(ValueError, match="non-negative"):
        blend_regions(image, [[25, -5]], _colours(1), 0.45)
    with pytest.raises(ValueError, match="sum to 0"):
        blend_regions(image, [[]], _colours(1), 0.45)
    scene = host_scene(40, 30, 3)
    graph = build_scene_graph(scene.segmentation, None, None, np.arange(1, 4, dtype=np.uint32))
    with pytest.raises(ValueError, match="uint8"):
        draw_overlay(scene.image.astype(np.float32), graph)
    assert np.array_equal(blend_regions(image, [], _colours(0), 0.45), image)


def test_gather_path_for_many_sets_equals_the_remap_path(monkeypatch):
    """Tables of more than remap's int16 rows use numpy's gather: same pixels."""
    cases = _cases()
    remapped = [blend_regions(im, encode_masks(m), _colours(len(m)), 0.45) for im, m in cases]
    monkeypatch.setattr(draw, "_REMAP_MAX_ROWS", 0)
    for (image, masks), via_remap in zip(cases, remapped):
        colours = _colours(len(masks))
        got = blend_regions(image, encode_masks(masks), colours, 0.45)
        assert np.array_equal(got, via_remap)
        assert np.array_equal(got, _reference_fill(image, masks, colours))
