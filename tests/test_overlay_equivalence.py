"""The overlay's fill, read from the regions' RLE runs through one look-up table per set of
covering regions (core/output/draw.py ``blend_regions``), is within 1 per channel of blending
each region's decoded mask over a float32 copy of the image, region after region (the code it
replaced, kept below as the reference; the overlay is a picture for people, its rounding may
differ), and exactly the image where no mask covers a pixel; on realistic generated frames
(tools/host_scenes.py), more than 64 and 128 regions (several bit-mask words), masks on every
border and crossing columns, noise masks, and other alphas. Arrows, captions and banner drawn
over the fill are the previous drawing's exactly."""

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


def _assert_fill_close(got, ref, masks):
    """``got`` within 1 of the reference fill ``ref`` per channel, equal where no mask covers."""
    assert got.dtype == np.uint8 and got.shape == ref.shape
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    assert int(diff.max(initial=0)) <= 1
    uncovered = ~np.any(masks, axis=0)
    assert np.array_equal(got[uncovered], ref[uncovered])


def _fill_close(got, ref, masks) -> bool:
    try:
        _assert_fill_close(got, ref, masks)
    except AssertionError:
        return False
    return True


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
        _assert_fill_close(got, _reference_fill(image, masks, colours, alpha), masks)


def test_the_closeness_check_catches_real_regressions():
    """A wrong colour, a missing region or a mask shifted by one pixel is not "within 1"."""
    scene = host_scene(96, 128, 24, seed=1)
    image, masks = scene.image, scene.segmentation.masks
    colours = _colours(len(masks))
    ref = _reference_fill(image, masks, colours)
    assert _fill_close(blend_regions(image, encode_masks(masks), colours, 0.45), ref, masks)
    wrong = colours.copy()
    wrong[5] = 255 - wrong[5]
    assert not _fill_close(blend_regions(image, encode_masks(masks), wrong, 0.45), ref, masks)
    assert not _fill_close(blend_regions(image, encode_masks(masks[1:]), colours[1:], 0.45),
                           ref, masks)  # fmt: skip
    shifted = np.roll(masks, 1, axis=2)
    assert not _fill_close(blend_regions(image, encode_masks(shifted), colours, 0.45), ref, masks)


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
    _assert_fill_close(got, _reference_fill(scene.image, masks, colours), masks)
    monkeypatch.undo()
    assert np.array_equal(got, blend_regions(scene.image, encode_masks(masks), colours, 0.45))


def _reference_overlay(image, graph, masks, alpha=0.45, max_relations=20, banner=None, fill=None):
    """The previous ``draw_overlay``: the reference fill (or ``fill``), then arrows, captions
    and banner."""
    import cv2

    from perception_nodes.core.output.draw import region_text

    def centre(box):
        return int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)

    colours = region_colours(colour_keys(graph))
    out = _reference_fill(image, masks, colours, alpha) if fill is None else fill.copy()
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(image.shape[:2]) / 900)
    for s, o, p, sc in zip(graph.subject[:max_relations], graph.object[:max_relations],
                           graph.predicate_index[:max_relations],
                           graph.relation_scores[:max_relations]):  # fmt: skip
        a, b = centre(graph.boxes_xyxy[s]), centre(graph.boxes_xyxy[o])
        cv2.arrowedLine(out, a, b, (255, 255, 255), 2, cv2.LINE_AA, tipLength=0.05)
        mid = ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)
        cv2.putText(out, f"{graph.predicates[p]} {sc:.2f}", mid, font, scale * 0.8,
                    (255, 255, 0), 1, cv2.LINE_AA)  # fmt: skip
    for i in range(graph.num_regions):
        x0, y0 = int(graph.boxes_xyxy[i][0]), int(graph.boxes_xyxy[i][1])
        text = region_text(graph, i)
        (tw, th), _ = cv2.getTextSize(text, font, scale, 1)
        y = max(th + 2, y0)
        cv2.rectangle(out, (x0, y - th - 2), (x0 + tw, y + 2),
                      tuple(int(c) for c in colours[i]), -1)  # fmt: skip
        cv2.putText(out, text, (x0, y), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return _reference_banner(out, banner, scale) if banner else out


@pytest.mark.parametrize("max_relations", [20, 3, 0])
def test_overlay_from_counts_and_from_masks_equal_the_previous_drawing(max_relations):
    """Whole overlays (fill, arrows, captions of tracked and untracked regions, banner)."""
    for h, w, n, seed in ((96, 128, 24, 1), (72, 96, 100, 4), (480, 640, 50, 50)):
        scene = host_scene(h, w, n, seed=seed)
        seg = scene.segmentation
        graph = build_scene_graph(seg, None, None, np.arange(1, n + 1, dtype=np.uint32))
        rng = np.random.default_rng(seed)
        graph.subject, graph.object = rng.integers(0, n, 2 * n), rng.integers(0, n, 2 * n)
        graph.predicate_index = rng.integers(0, 2, 2 * n)
        graph.relation_scores = np.sort(rng.random(2 * n).astype(np.float32))[::-1]
        graph.predicates = ["next to", "on"]
        graph.track_ids = np.where(rng.random(n) < 0.5, rng.integers(1, 99, n), 0)
        graph.track_ids = graph.track_ids.astype(np.uint64)
        colours = region_colours(colour_keys(graph))
        fill = blend_regions(scene.image, encode_masks(seg.masks), colours, 0.45)
        _assert_fill_close(fill, _reference_fill(scene.image, seg.masks, colours), seg.masks)
        for banner in (None, "GENERATED WEIGHTS: masks/labels not meaningful"):
            args = (scene.image, graph, seg.masks, 0.45, max_relations, banner)
            ref = _reference_overlay(*args)
            exact = _reference_overlay(*args, fill=fill)  # the drawing exactly, over this fill
            got = draw_overlay(scene.image, graph, max_relations=max_relations, banner=banner)
            assert np.array_equal(got, exact)
            assert int(np.abs(got.astype(np.int16) - ref).max()) <= 1
            got = draw_overlay(scene.image, graph, seg.masks, 0.45, max_relations, banner)
            assert np.array_equal(got, exact)


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
        _assert_fill_close(got, _reference_fill(image, masks, colours), masks)


def _reference_banner(out, banner, scale):
    """The previous banner: a black rectangle and the text drawn on the overlay itself."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, th), base = cv2.getTextSize(banner, font, scale, 2)
    cv2.rectangle(out, (0, out.shape[0] - th - base - 10), (out.shape[1], out.shape[0]),
                  (0, 0, 0), -1)  # fmt: skip
    cv2.putText(out, banner, (5, out.shape[0] - base - 4), font, scale, (255, 64, 64), 2,
                cv2.LINE_AA)  # fmt: skip
    return out


@pytest.mark.parametrize("h, w", [(480, 640), (720, 1280), (31, 200), (12, 40), (1, 1), (300, 7)])
def test_banner_from_the_cached_strip_equals_drawing_it(h, w):
    """The banner strip, drawn once per size, gives the pixels drawing it on each frame gave,
    also where it covers the whole image or is wider than it."""
    scene = host_scene(max(h, 8), max(w, 8), 4, seed=7)
    image = np.ascontiguousarray(scene.image[:h, :w])
    graph = build_scene_graph(scene.segmentation, None, None, np.arange(1, 5, dtype=np.uint32))
    graph.image_size = (h, w)
    graph.mask_counts = encode_masks(scene.segmentation.masks[:, :h, :w])
    graph.boxes_xyxy = np.minimum(graph.boxes_xyxy, [w, h, w, h]).astype(np.float32)
    scale = max(0.4, min(h, w) / 900)
    for banner in ("GENERATED WEIGHTS: masks/labels not meaningful", "x"):
        for _ in range(2):  # drawn, then from the cache
            got = draw_overlay(image, graph, banner=banner)
            ref = _reference_banner(draw_overlay(image, graph), banner, scale)
            assert np.array_equal(got, ref)


def test_views_of_images_are_drawn_like_copies():
    """A BGR->RGB view (negative strides) or a crop of a wider image draws like its copy."""
    scene = host_scene(64, 80, 12, seed=3)
    graph = build_scene_graph(scene.segmentation, None, None, np.arange(1, 13, dtype=np.uint32))
    wide = np.zeros((64, 100, 3), np.uint8)
    wide[:, 10:90] = scene.image[:, :, ::-1]
    for view in (scene.image[:, :, ::-1], wide[:, 10:90], scene.image[::-1][::-1]):
        expected = draw_overlay(np.ascontiguousarray(view), graph, banner="x")
        assert np.array_equal(draw_overlay(view, graph, banner="x"), expected)


def test_counts_as_message_arrays_equal_counts_as_lists():
    """The visualization node's graphs hold uint32 count arrays (from the message); the graph
    built in-process holds lists of ints: the same fill, and the same refusals."""
    for image, masks in _cases():
        counts, colours = encode_masks(masks), _colours(len(masks))
        arrays = [np.array(c, dtype=np.uint32) for c in counts]
        got = blend_regions(image, arrays, colours, 0.45)
        assert np.array_equal(got, blend_regions(image, counts, colours, 0.45))
    with pytest.raises(ValueError, match="sum to 19"):
        blend_regions(
            np.zeros((4, 5, 3), np.uint8), [np.array([0, 19], np.uint32)], _colours(1), 0.45
        )
