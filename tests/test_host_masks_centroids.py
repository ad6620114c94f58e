"""``region_centroids`` (issue 17: per-region work in OpenCV passes over each box window, the
depth median without numpy's degenerate single-position select) gives the centroids of the code
it replaced bit for bit.

The reference below is ``core/output/projection.py`` at 78f7a5c, verbatim (``region_centroids``'
loop, ``_median``, ``_kth_values`` with its threshold of 8192 values), run on realistic generated
frames (``tools/host_scenes.py``) and on what they lack: empty masks, masks on every border,
1-pixel masks, a region whose depth is all NaN, depth quantised to millimetres (few distinct
values), inf/negative/zero depth, float64 depth, loose and fractional boxes, strided masks.
"""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.core.output.projection import (
    BIN_PARTITION_MAX,
    FLOAT32_MAX,
    RADIX_MIN_VALUES,
    SAMPLE_SIZE,
    _bracket,
    _kth_values,
    _median,
    region_centroids,
)
from perception_nodes.core.output.rle import pixel_box, tight_boxes
from perception_nodes.tools.host_scenes import host_scene

# ------------------------------------------------------------------ reference (78f7a5c, verbatim)
REF_RADIX_MIN_VALUES = 8192


def _centroids_reference(masks, depth_m, k, boxes=None):
    n = masks.shape[0]
    out = np.full((n, 3), np.nan, dtype=np.float32)
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    fx, fy, cx, cy = (float(v) for v in (k[0, 0], k[1, 1], k[0, 2], k[1, 2]))
    valid = np.isfinite(depth_m) & (depth_m > 0)
    for i, (x0, y0, x1, y1) in enumerate(_boxes_reference(masks, boxes)):
        sel = masks[i, y0:y1, x0:x1] & valid[y0:y1, x0:x1]
        ones = sel.view(np.uint8)
        per_col = ones.sum(axis=0, dtype=np.int64)
        n_valid = int(per_col.sum())
        if n_valid == 0:
            continue
        z = _median_reference(depth_m[y0:y1, x0:x1][sel])
        u = int(per_col @ np.arange(x0, x1)) / n_valid
        v = int(ones.sum(axis=1, dtype=np.int64) @ np.arange(y0, y1)) / n_valid
        xyz = ((u - cx) * z / fx, (v - cy) * z / fy, z)
        if all(abs(c) <= FLOAT32_MAX for c in xyz):
            out[i] = xyz
    return out


def _median_reference(values):
    n = values.size
    k = n // 2
    if n % 2:
        return float(_kth_values_reference(values, (k,))[0])
    lo, hi = _kth_values_reference(values, (k - 1, k))
    return float((np.float64(lo) + np.float64(hi)) / 2.0)


def _kth_values_reference(values, ks):
    if values.size < REF_RADIX_MIN_VALUES or values.dtype != np.float32:
        part = np.partition(values, ks)
        return [part[k] for k in ks]
    bins = values.view(np.int32) >> 16
    cum = np.cumsum(np.bincount(bins))
    picked = {}
    for k in ks:
        b = int(np.searchsorted(cum, k, side="right"))
        picked.setdefault(b, []).append(k)
    out = {}
    for b, bin_ks in picked.items():
        first = int(cum[b - 1]) if b else 0
        local = [k - first for k in bin_ks]
        part = np.partition(values[bins == b], local)
        out.update({k: part[j] for k, j in zip(bin_ks, local)})
    return [out[k] for k in ks]


def _boxes_reference(masks, boxes):
    h, w = masks.shape[1:]
    if boxes is None:
        return [tuple(b) for b in tight_boxes(masks).tolist()]
    return [pixel_box(b, h, w) for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]


# ------------------------------------------------------------------ frames
def _with_edge_regions(masks: np.ndarray) -> np.ndarray:
    """``masks`` plus an empty mask, a ring on all four borders, 1-pixel masks in two corners
    and inside, and a one-column mask spanning the height."""
    n, h, w = masks.shape
    extra = np.zeros((6, h, w), dtype=bool)
    extra[1, 0, :] = extra[1, -1, :] = extra[1, :, 0] = extra[1, :, -1] = True
    extra[2, 0, 0] = True
    extra[3, -1, -1] = True
    extra[4, h // 2, w // 2] = True
    extra[5, :, w // 3] = True
    return np.concatenate([masks, extra])


def _frames():
    """(masks, depth, K) of realistic frames with the edge cases; the region before the edge
    regions has no valid depth at all."""
    out = []
    for h, w, n, seed in ((96, 128, 24, 1), (61, 77, 40, 2), (240, 320, 8, 3), (480, 640, 30, 4)):
        scene = host_scene(h, w, n, seed=seed)
        masks = _with_edge_regions(scene.segmentation.masks)
        depth = scene.depth_m.copy()
        depth[masks[n - 1]] = np.nan  # all-NaN inside a mask
        depth[h // 2, w // 2] = np.nan  # the middle 1-pixel mask has no valid depth
        out.append((masks, depth, scene.k))
        quantised = (np.round(depth * 1000) / np.float32(1000)).astype(np.float32)
        for surface in masks[:2]:  # one valid depth less: the other parity of the large counts
            quantised.reshape(-1)[np.flatnonzero(surface & np.isfinite(quantised))[:1]] = np.nan
        out.append((masks, quantised, scene.k))  # a millimetre sensor: few distinct values
    scene = host_scene(120, 160, 12, seed=5)
    depth = scene.depth_m.copy()
    depth[5:9, :] = np.inf
    depth[20:24, :40] = -1.0
    depth[30:34, 50:90] = 0.0
    masks = _with_edge_regions(scene.segmentation.masks)
    out.append((masks, depth, scene.k))
    out.append((masks, depth.astype(np.float64), scene.k))  # float64 depth: numpy partition
    return out


def _box_variants(masks: np.ndarray) -> list[np.ndarray | None]:
    """None (tight boxes found), tight float32 boxes, loose fractional boxes past the image."""
    tight = tight_boxes(masks).astype(np.float32)
    loose = tight + np.float32([-2.5, -1.25, 3.75, 2.5])
    return [None, tight, loose]


# ------------------------------------------------------------------ tests
def test_centroids_equal_reference_bit_for_bit():
    for masks, depth, k in _frames():
        for boxes in _box_variants(masks):
            got = region_centroids(masks, depth, k, boxes)
            ref = _centroids_reference(masks, depth, k, boxes)
            assert got.dtype == np.float32 and got.shape == ref.shape
            assert np.array_equal(got, ref, equal_nan=True)
        assert np.isfinite(got).any() and np.isnan(got).any()  # both cases met


def test_frames_reach_both_median_paths_with_odd_and_even_counts():
    """The frames above include regions beyond the histogram threshold (new and old) with odd
    and even numbers of valid depths, so both selections are compared."""
    sizes = []
    for masks, depth, _ in _frames():
        valid = np.isfinite(depth) & (depth > 0)
        sizes += np.count_nonzero(masks & valid, axis=(1, 2)).tolist()
    sizes = np.array(sizes)
    big = sizes[sizes >= RADIX_MIN_VALUES]
    assert big.size >= 4 and set((big % 2).tolist()) == {0, 1}
    assert ((sizes >= REF_RADIX_MIN_VALUES) & (sizes < RADIX_MIN_VALUES)).any()
    assert (sizes == 0).any() and (sizes == 1).any()


def test_strided_and_fortran_masks_give_the_same_centroids():
    scene = host_scene(72, 96, 10, seed=6)
    masks = _with_edge_regions(scene.segmentation.masks)
    ref = _centroids_reference(masks, scene.depth_m, scene.k)
    fortran = np.asfortranarray(masks)
    doubled = np.repeat(masks, 2, axis=0)[::2]  # a view with a stride over the regions
    for variant in (fortran, doubled):
        for boxes in (None, tight_boxes(masks)):
            got = region_centroids(variant, scene.depth_m, scene.k, boxes)
            assert np.array_equal(got, ref, equal_nan=True)


def test_uint8_masks_are_read_as_bool():
    scene = host_scene(48, 64, 6, seed=7)
    masks = scene.segmentation.masks
    ref = _centroids_reference(masks, scene.depth_m, scene.k)
    got = region_centroids(masks.astype(np.uint8) * 255, scene.depth_m, scene.k)
    assert np.array_equal(got, ref, equal_nan=True)


def _repeated_values(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Depth-like value sets where numpy's single-position select degrades (few distinct
    values, most equal), and a spread one."""
    return {
        "two values, one rare": np.where(rng.random(n) < 0.98, 1.5, 2.25).astype(np.float32),
        "rows of a wall": np.repeat(np.linspace(3.5, 6.0, 97, dtype=np.float32), n // 97 + 1)[:n],
        "millimetres": (np.round(rng.normal(2.0, 0.05, n) * 1000) / 1000).astype(np.float32),
        "uniform": rng.uniform(0.3, 8.0, n).astype(np.float32),
    }


@pytest.mark.parametrize("n", [1, 2, 3, 5000, 7081, RADIX_MIN_VALUES - 1, RADIX_MIN_VALUES + 1])
def test_median_and_kth_values_equal_reference(n):
    rng = np.random.default_rng(n)
    for name, values in _repeated_values(rng, n).items():
        assert _median(values) == _median_reference(values), name
        ks = tuple(sorted({0, n // 2, n - 1}))
        want = np.partition(values, ks)[list(ks)]
        assert np.array_equal(np.array(_kth_values(values, ks), np.float32), want), name
        assert _kth_values(values, (n // 2,)) == [want[ks.index(n // 2)]], name


def _large_cases(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Large value sets for the sampled selection: repeated values (taken from the sample's
    repeat, or a bracket whose histogram bin exceeds BIN_PARTITION_MAX), spread values, a
    sample that sees only the largest values (the bracket misses: counting over all values)."""
    cases = _repeated_values(rng, n)
    cases["half and half"] = np.where(rng.random(n) < 0.5, 1.5, 2.25).astype(np.float32)
    cases["flat wall, noisy mm"] = (np.round(rng.normal(3, 0.005, n) * 1000) / 1000).astype(
        np.float32
    )
    cases["one bin, many values"] = (1.0 + rng.integers(0, 9000, n) * np.float32(2**-23)).astype(
        np.float32
    )
    blind = rng.uniform(0.5, 5.0, n).astype(np.float32)
    blind[:: max(1, n // SAMPLE_SIZE)] = 9.0
    cases["sample sees only the top"] = blind
    return cases


@pytest.mark.parametrize("n", [RADIX_MIN_VALUES, 100_003, 480_000])
def test_sampled_selection_equals_partition(n):
    rng = np.random.default_rng(n)
    for name, values in _large_cases(rng, n).items():
        ks = (0, n // 3, n // 2 - 1, n // 2, n - 1)
        want = np.partition(values, ks)[list(ks)]
        assert np.array_equal(np.array(_kth_values(values, ks), np.float32), want), name
        for pair in ((n // 2 - 1, n // 2), (n // 2,)):
            got = _kth_values(values, pair)
            assert np.array_equal(np.array(got, np.float32), np.partition(values, pair)[list(pair)])
        assert _median(values) == _median_reference(values), name


def test_bracket_miss_and_bins_are_reached():
    """The cases above reach the bracket's fallback and the low-bits histogram."""
    n = 100_003
    cases = _large_cases(np.random.default_rng(0), n)
    blind = cases["sample sees only the top"]
    sample = np.sort(blind[:: max(1, n // SAMPLE_SIZE)])
    inside, first = _bracket(blind, [n // 2], sample)
    assert inside is blind and first == 0
    one_bin = cases["one bin, many values"]
    sample = np.sort(one_bin[:: max(1, n // SAMPLE_SIZE)])
    inside, _ = _bracket(one_bin, [n // 2], sample)
    top = inside.view(np.int32) >> 16
    assert np.count_nonzero(top == np.bincount(top).argmax()) > BIN_PARTITION_MAX


def test_boxes_of_another_count_or_not_finite_are_refused():
    scene = host_scene(48, 64, 6, seed=8)
    masks, boxes = scene.segmentation.masks, scene.segmentation.boxes_xyxy.copy()
    with pytest.raises(ValueError, match="5 boxes for 6 masks"):
        region_centroids(masks, scene.depth_m, scene.k, boxes[:5])
    boxes[2, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        region_centroids(masks, scene.depth_m, scene.k, boxes)


def test_negative_values_are_ordered_or_refused_never_misordered():
    rng = np.random.default_rng(9)
    n = 100_001
    mostly_positive = rng.uniform(-1.0, 5.0, n).astype(np.float32)  # negatives below the bracket
    ks = (n // 2 - 1, n // 2)
    want = np.partition(mostly_positive, ks)[list(ks)]
    assert np.array_equal(np.array(_kth_values(mostly_positive, ks), np.float32), want)
    with pytest.raises(ValueError):  # the bracket holds negative values: their histogram bin
        _kth_values(rng.uniform(-5.0, -1.0, n).astype(np.float32), ks)
