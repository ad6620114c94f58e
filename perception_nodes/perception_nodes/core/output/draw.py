"""Overlay drawing for people: masks in colour, labels, relation arrows (OpenCV).

Input image HxWx3 uint8 RGB; output the same. Pixel coordinates (x right, y down).
"""

from __future__ import annotations

import functools
import itertools

import cv2
import numpy as np

from perception_nodes.core.output.rle import encode_masks
from perception_nodes.core.output.scene_graph import SceneGraph

#: remap's coordinates go through int16 inside OpenCV: tables of more sets use numpy's gather
_REMAP_MAX_ROWS = 32767


def region_colours(ids: np.ndarray) -> np.ndarray:
    """``(N, 3)`` uint8 RGB colours, stable per region id (golden-ratio hue walk); ``(0, 3)`` for none."""
    ids = np.asarray(ids, dtype=np.float64).reshape(-1)
    if ids.size == 0:  # cv2.cvtColor refuses empty images
        return np.zeros((0, 3), dtype=np.uint8)
    hues = ((ids * 0.618033988749895) % 1.0 * 179).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 200), np.full_like(hues, 255)], axis=1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def colour_keys(graph: SceneGraph) -> np.ndarray:
    """``(N,)`` int64 key to colour each region by: its track id when tracked (so an object keeps
    its colour across frames), else its frame region id (moved past 2**32 so it never takes the
    colour key of a track)."""
    tracked = graph.track_ids.astype(np.int64)
    return np.where(tracked > 0, tracked, graph.region_ids.astype(np.int64) + (1 << 32))


def region_text(graph: SceneGraph, i: int) -> str:
    """Overlay caption of region ``i``: ``#track label score`` when tracked, else ``id:label score``."""
    tid = int(graph.track_ids[i])
    who = f"#{tid} " if tid else f"{graph.region_ids[i]}:"
    return f"{who}{graph.labels[i]} {graph.label_scores[i]:.2f}"


def region_texts(graph: SceneGraph) -> list[str]:
    """:func:`region_text` of every region, from one ``tolist()`` per array (the same texts:
    a float32 score formats as the Python float it converts to)."""
    return [
        f"#{tid} {label} {score:.2f}" if tid else f"{rid}:{label} {score:.2f}"
        for tid, rid, label, score in zip(
            graph.track_ids.tolist(), graph.region_ids.tolist(), graph.labels,
            graph.label_scores.tolist(),
        )
    ]  # fmt: skip


def _run_events(height: int, width: int, counts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every region's 1-runs as events in the column-major flattened image: ``(pos, region,
    starts)``, ``pos`` the pixel index ``x * H + y`` where a 1-run starts (``starts`` True) or
    ends (exclusive), ``region`` its region index. Events at ``H * W`` (a run reaching the last
    pixel) are left out. Validates the counts as :func:`~.rle.decode_mask` does."""
    n, hw = len(counts), height * width
    lens = np.fromiter((len(c) for c in counts), np.int64, n)
    if all(type(c) is list for c in counts):  # the graph's counts: one pass over all the ints
        flat = np.fromiter(itertools.chain.from_iterable(counts), np.int64, int(lens.sum()))
    elif all(isinstance(c, np.ndarray) and c.ndim == 1 for c in counts):  # a message's arrays
        flat = np.concatenate(counts, dtype=np.int64, casting="unsafe")
    else:
        flat = np.concatenate([np.asarray(c, dtype=np.int64).reshape(-1) for c in counts] or [[]])
    if flat.size and flat.min() < 0:
        raise ValueError("RLE counts must be non-negative")
    first = np.cumsum(lens) - lens
    sums = np.zeros(n, np.int64)
    if flat.size:
        sums[lens > 0] = np.add.reduceat(flat, first[lens > 0])
    bad = np.flatnonzero(sums != hw)
    if bad.size:
        raise ValueError(
            f"RLE counts of region {int(bad[0])} sum to {int(sums[bad[0]])}, expected "
            f"height*width = {height}*{width} = {hw}"
        )
    region = np.repeat(np.arange(n), lens)
    pos = np.cumsum(flat) - region * hw  # every earlier region's counts sum to H * W
    starts = (np.arange(flat.size) - first[region]) % 2 == 0  # a 0-run ends: a 1-run starts
    keep = pos < hw
    return pos[keep], region[keep], starts[keep]


def _row_keys(words: np.ndarray) -> np.ndarray:
    """``(S,)`` uint64 key of each row of ``(S, K)`` uint64 ``words``: the first word XOR each
    further word times its own odd constant (mod 2**64; the golden-ratio constant times 1, 3,
    5, ...). Two rows may share a key: :func:`_unique_rows` checks."""
    key = words[:, 0].copy()
    for k in range(1, words.shape[1]):
        key ^= words[:, k] * np.uint64((0x9E3779B97F4A7C15 * (2 * k - 1)) % 2**64)
    return key


def _unique_rows(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``(S, K)`` uint64 ``words`` and each row's index among them.

    One uint64 key per row (the row itself, or for K > 1 a multiplicative hash of its words),
    checked against the rows: ``np.unique(axis=0)`` (several times slower) only if two
    different rows ever share a key. K = 1: one sort of the keys. K > 1: the keys grouped by
    :func:`_hash_order` (the rows' order among the sets then follows the hash, not the key)."""
    key = _row_keys(words)
    order = _hash_order(key) if words.shape[1] > 1 else None
    if order is None:
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    else:
        sorted_key = key[order]
        new = np.ones(key.size, bool)
        new[1:] = sorted_key[1:] != sorted_key[:-1]
        first, inverse = order[new], np.empty(key.size, np.int64)
        inverse[order] = np.cumsum(new) - 1
    rows, inverse = words[first], inverse.reshape(-1)
    if words.shape[1] > 1 and not np.array_equal(rows[inverse], words):  # a hash collision
        rows, inverse = np.unique(words, axis=0, return_inverse=True)
    return rows, inverse.reshape(-1)


def _hash_order(key: np.ndarray) -> np.ndarray | None:
    """An order of ``(S,)`` uint64 ``key`` in which equal keys are adjacent, or None.

    A stable sort by 32 bits of a multiplicative hash of the keys, as two passes over 16-bit
    halves: numpy sorts 16-bit keys by radix, in linear time, about twice as fast as its
    comparison sort of the 64-bit keys (which do not fit a radix sort) at ~20k keys of a few
    hundred values. None when two different keys share those 32 bits (they could interleave;
    then the keys are sorted)."""
    if key.size < 2:
        return None
    hashed = (key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    order = np.argsort(hashed.astype(np.uint16), kind="stable")  # low 16 bits
    order = order[np.argsort((hashed[order] >> np.uint64(16)).astype(np.uint16), kind="stable")]
    h, k = hashed[order], key[order]
    if np.any((h[1:] == h[:-1]) & (k[1:] != k[:-1])):
        return None
    return order


def _cover_segments(
    height: int, width: int, counts: list
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image in column-major order as segments of pixels covered by the same regions.

    Returns ``(state, lengths, members)``: ``(K,)`` int64 index of each segment's set of
    covering regions and ``(K,)`` its length in pixels (summing to ``H * W``), ``members``
    ``(S, N)`` bool, row ``s`` the regions of set ``s``. Sweeps the runs in column-major order
    (sets as bit masks, 64 regions per uint64 word: adding a region's bit where a run starts
    and subtracting it where the run ends), so the cost follows the number of runs, not the
    number of pixels.
    """
    n = len(counts)
    n_words = max(1, -(-n // 64))
    pos, region, starts = _run_events(height, width, counts)
    order = np.argsort(pos, kind="stable")
    pos, region, starts = pos[order], region[order], starts[order]
    bit = np.left_shift(np.uint64(1), (region & 63).astype(np.uint64))
    delta = np.zeros((pos.size, n_words), np.uint64)
    # a run's end subtracts its bit (two's complement: uint64 sums wrap, as they must here)
    delta[np.arange(pos.size), region >> 6] = np.where(starts, bit, ~bit + np.uint64(1))
    running = np.cumsum(delta, axis=0)
    last = np.ones(pos.size, bool)  # the state after the last event at each position
    last[:-1] = pos[1:] != pos[:-1]
    edges = np.concatenate(([0], pos[last], [height * width]))
    words = np.concatenate((np.zeros((1, n_words), np.uint64), running[last]))
    sets, state = _unique_rows(words)
    as_bytes = sets.astype("<u8").view(np.uint8).reshape(sets.shape[0], 8 * n_words)
    members = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :n].astype(bool)
    return state, np.diff(edges), members


def _paint(state: np.ndarray, lengths: np.ndarray, height: int, width: int, dtype) -> np.ndarray:
    """``(H, W)`` image of ``dtype``: each column-major segment's ``state``."""
    image = np.repeat(state.astype(dtype), lengths).reshape(width, height)
    return cv2.transpose(image)  # column-major runs: (W, H) -> (H, W), contiguous


def cover_states(height: int, width: int, counts: list) -> tuple[np.ndarray, np.ndarray]:
    """Which regions cover each pixel, from the regions' RLE counts without decoding a mask.

    Returns ``(state, members)``: ``state`` ``(H, W)`` int32 index of the pixel's set of
    covering regions, ``members`` ``(S, N)`` bool, row ``s`` the regions of set ``s``
    (:func:`_cover_segments`).
    """
    state, lengths, members = _cover_segments(height, width, counts)
    return _paint(state, lengths, height, width, np.int32), members


def blend_tables(members: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    """``(S, 3, 256)`` uint8: the overlay value of channel ``c`` of a pixel of value ``v``
    covered by set ``s`` of regions, each blended in region order (``x <- (1 - alpha) * x +
    alpha * colour``), in closed form: ``floor(m_s * v + b_s[c])`` with ``m_s = (1 - alpha)**k``
    for the set's ``k`` regions and ``b_s`` their colours weighted ``alpha * (1 - alpha)**j``,
    ``j`` the number of the set's regions blended after each.

    The overlay is a picture for people: within 1 per channel of the region-by-region float32
    blend it replaced (its rounding differs), exactly ``v`` where no region covers the pixel
    (tests/test_overlay_equivalence.py).
    """
    keep = 1.0 - float(alpha)
    k = members.sum(axis=1)  # (S,) regions per set
    after = k[:, None] - np.cumsum(members, axis=1)  # (S, N) the set's regions blended after each
    # keep ** j for j = 0..N once, looked up (the same float64 powers as raising every entry)
    powers = keep ** np.arange(members.shape[1] + 1, dtype=np.float64)
    weights = np.where(members, (float(alpha) * powers)[after], 0.0)
    offset = (weights @ colours.astype(np.float64)).astype(np.float32)  # (S, 3)
    scale = powers[k].astype(np.float32)  # (S,)
    values = np.arange(256, dtype=np.float32)
    tables = scale[:, None, None] * values + offset[:, :, None]  # (S, 3, 256), in [0, 255]
    return np.clip(tables, 0, 255, out=tables).astype(np.uint8)


def blend_regions(image: np.ndarray, counts: list, colours: np.ndarray, alpha: float) -> np.ndarray:
    """``image`` (HxWx3 uint8) with each region of RLE ``counts`` blended in its colour, in
    region order; the same pixels as blending each region's mask over a float32 copy one
    region after the other (tests/test_overlay_equivalence.py), at one table look-up per
    channel value: the pixel's set of regions (:func:`cover_states`) picks a 256-value table
    (:func:`blend_tables`)."""
    h, w = image.shape[:2]
    if not len(counts) or h * w == 0:
        return image.copy()
    state, lengths, members = _cover_segments(h, w, counts)
    tables = blend_tables(members, colours, alpha)  # (S, 3, 256)
    channels = cv2.split(image)  # OpenCV copies views it cannot read in place
    if tables.shape[0] < _REMAP_MAX_ROWS:
        # the look-up as OpenCV's nearest-neighbour remap of each channel's (S, 256) table
        # image at (x = pixel value, y = set): exact integer coordinates, several times
        # faster than numpy's gather
        rows = _paint(state, lengths, h, w, np.float32)
        return cv2.merge(
            [
                cv2.remap(np.ascontiguousarray(tables[:, c]), channels[c].astype(np.float32),
                          rows, cv2.INTER_NEAREST)
                for c in range(3)
            ]
        )  # fmt: skip
    base = _paint(state, lengths, h, w, np.int32) * 256
    flat = [np.ascontiguousarray(tables[:, c]).reshape(-1) for c in range(3)]
    return cv2.merge(
        [np.take(flat[c], cv2.add(base, channels[c], dtype=cv2.CV_32S)) for c in range(3)]
    )


@functools.lru_cache(maxsize=8)
def _banner_strip(height: int, width: int, banner: str, scale: float) -> tuple[int, np.ndarray]:
    """The banner's rows ``[top, height)`` of an overlay (read-only ``(height - top, width, 3)``
    uint8): a black strip with the text on it, drawn over everything else, so the same for
    every frame of a size (drawn once; the text stays 6 pixels below the strip's top)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, th), base = cv2.getTextSize(banner, font, scale, 2)
    top = max(0, height - th - base - 10)
    strip = np.zeros((height - top, width, 3), np.uint8)
    origin = (5, height - base - 4 - top)
    cv2.putText(strip, banner, origin, font, scale, (255, 64, 64), 2, cv2.LINE_AA)
    strip.flags.writeable = False
    return top, strip


def _draw_relations(out, graph: SceneGraph, max_relations: int, font, scale: float) -> None:
    """The top ``max_relations`` relations: an arrow between the box centres (integer pixels,
    truncated) and the predicate with its score at the middle."""
    boxes = graph.boxes_xyxy
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    centres = centres.astype(np.int64).tolist()  # truncated, as int() of each
    for s, o, p, sc in zip(
        graph.subject[:max_relations].tolist(),
        graph.object[:max_relations].tolist(),
        graph.predicate_index[:max_relations].tolist(),
        graph.relation_scores[:max_relations],
    ):
        a, b = tuple(centres[s]), tuple(centres[o])
        cv2.arrowedLine(out, a, b, (255, 255, 255), 2, cv2.LINE_AA, tipLength=0.05)
        mid = ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)
        text = f"{graph.predicates[p]} {sc:.2f}"
        cv2.putText(out, text, mid, font, scale * 0.8, (255, 255, 0), 1, cv2.LINE_AA)


def _draw_labels(out, graph: SceneGraph, colours: np.ndarray, font, scale: float) -> None:
    """Each region's caption (:func:`region_text`) in black on a box of its colour, at its
    box's top-left corner (moved down to stay inside the image)."""
    corners = graph.boxes_xyxy[:, :2].astype(np.int64).tolist()  # truncated, as int() of each
    for text, (x0, y0), colour in zip(region_texts(graph), corners, colours.tolist()):
        (tw, th), _ = cv2.getTextSize(text, font, scale, 1)
        y = max(th + 2, y0)
        cv2.rectangle(out, (x0, y - th - 2), (x0 + tw, y + 2), tuple(colour), -1)
        cv2.putText(out, text, (x0, y), font, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_overlay(
    image: np.ndarray,
    graph: SceneGraph,
    masks: np.ndarray | None = None,
    alpha: float = 0.45,
    max_relations: int = 20,
    banner: str | None = None,
) -> np.ndarray:
    """Masks blended over ``image``, each region's label, and the top relations as arrows.

    Regions are coloured by track id when tracked (see :func:`colour_keys`).

    ``image`` HxWx3 uint8. The masks are not decoded: the fill is read from the graph's RLE
    runs (:func:`blend_regions`); ``masks`` (N, H, W) bool, when given, are encoded and used
    instead of the graph's counts (same pixels when they are the graph's masks).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"draw_overlay expects an HxWx3 uint8 image, got {image.shape} {image.dtype}"
        )
    colours = region_colours(colour_keys(graph))
    counts = graph.mask_counts if masks is None else encode_masks(masks)
    out = blend_regions(image, counts, colours, alpha)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(image.shape[:2]) / 900)
    _draw_relations(out, graph, max_relations, font, scale)
    _draw_labels(out, graph, colours, font, scale)
    if banner:  # on a black strip across the bottom, so it reads on any image
        top, strip = _banner_strip(out.shape[0], out.shape[1], banner, scale)
        out[top:] = strip
    return out
