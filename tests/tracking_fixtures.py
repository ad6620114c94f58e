"""Generated region sequences with ground-truth identities, for the tracker tests and benchmark.

A scene is a few moving shapes on an ``H x W`` image (x right, y down). Per frame the
"segmenter" returns the visible part of each object (nearer objects occlude farther ones),
with 1-pixel mask jitter, occasional misses, one-frame clutter blobs and a noisy SAM-like token
per object (a fixed random unit vector per identity plus Gaussian noise). Scenarios:

- ``movers``: shapes crossing the image; one leaves on the right and comes back;
- ``occlusion``: a large shape passes in front of a small static one (hidden for a few frames);
- ``nested``: a "person" with a "shirt" inside it that appears later (the region splits into
  nested parts); the person's mask is missed in some frames, the shirt's in others;
- frames dropped: a random subset of frames never reaches the tracker (larger jumps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception_nodes.core.types import Segmentation

TOKEN_DIM = 256


@dataclass
class Shape:
    """An object: ``kind`` "rect"/"ellipse", size ``(h, w)``, position per frame ``(x, y)`` top-left.

    ``depth``: smaller is nearer (drawn on top). ``parent``: index of the shape it lies inside
    (nested part), or -1. ``visible_from``/``visible_to``: frames in which it exists.
    """

    gt_id: int
    kind: str
    size: tuple[int, int]
    path: np.ndarray  # (F, 2) float x, y of the top-left corner
    depth: float
    parent: int = -1
    visible_from: int = 0
    visible_to: int = 10**9


@dataclass
class Frame:
    """Detections of one frame and their ground truth: ``gt_ids[i]`` is the identity of region i
    (-1 for clutter); ``gt_masks`` maps identity -> visible ``HxW`` mask."""

    index: int
    segmentation: Segmentation
    gt_ids: list[int]
    gt_masks: dict[int, np.ndarray]


def _draw(shape: Shape, xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    m = np.zeros(size, dtype=bool)
    x0, y0 = xy
    sh, sw = shape.size
    if shape.kind == "rect":
        xs = slice(max(0, int(round(x0))), max(0, int(round(x0 + sw))))
        ys = slice(max(0, int(round(y0))), max(0, int(round(y0 + sh))))
        m[ys, xs] = True
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        m = ((xx - (x0 + sw / 2)) / (sw / 2)) ** 2 + ((yy - (y0 + sh / 2)) / (sh / 2)) ** 2 <= 1.0
    return m


def _jitter(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mask shifted by up to one pixel in x and y (no wrap-around)."""
    dy, dx = (int(v) for v in rng.integers(-1, 2, size=2))
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] = mask[
        max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)
    ]
    return out


def _segmentation(
    masks: list[np.ndarray], tokens: list[np.ndarray], size: tuple[int, int]
) -> Segmentation:
    if not masks:
        return Segmentation.empty(size, TOKEN_DIM)
    m = np.stack(masks)
    boxes = []
    for mask in m:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    n = len(masks)
    return Segmentation(
        masks=m,
        boxes_xyxy=np.array(boxes, np.float32),
        areas=m.sum(axis=(1, 2)).astype(np.int64),
        predicted_iou=np.full(n, 0.9, np.float32),
        stability_score=np.full(n, 0.95, np.float32),
        tokens=np.stack(tokens).astype(np.float32),
        point_coords=np.full((n, 2), np.nan, np.float32),
        image_size=size,
    )


def _linear(start, velocity, frames: int) -> np.ndarray:
    return (
        np.asarray(start, float)[None]
        + np.arange(frames)[:, None] * np.asarray(velocity, float)[None]
    )


def scenario_shapes(name: str, frames: int, size: tuple[int, int]) -> list[Shape]:
    h, w = size
    if name == "movers":
        back = np.concatenate(
            [
                _linear((90, 70), (4, 0), frames // 2),
                _linear((90 + 4 * (frames // 2), 70), (-4, 0), frames - frames // 2),
            ]
        )
        return [
            Shape(1, "rect", (24, 30), _linear((5, 10), (2.5, 0.5), frames), 1.0),
            Shape(2, "ellipse", (28, 22), back, 2.0),  # leaves right, comes back
            Shape(3, "rect", (18, 18), _linear((w - 30, h - 25), (-2, -0.5), frames), 3.0),
        ]
    if name == "occlusion":
        return [
            Shape(1, "rect", (20, 20), _linear((70, 50), (0, 0), frames), 5.0),  # static, far
            Shape(
                2, "rect", (40, 44), _linear((w + 10, 40), (-4, 0), frames), 1.0
            ),  # passes in front
            Shape(3, "ellipse", (26, 34), _linear((10, 5), (1.5, 1.0), frames), 3.0),
        ]
    if name == "nested":
        return [
            Shape(1, "ellipse", (60, 40), _linear((20, 30), (2, 0.3), frames), 2.0),  # person
            Shape(
                2,
                "rect",
                (18, 16),
                _linear((32, 50), (2, 0.3), frames),
                1.0,
                parent=0,
                visible_from=8,
            ),  # shirt
            Shape(3, "rect", (22, 26), _linear((w - 40, 10), (-1.5, 1.0), frames), 3.0),
        ]
    raise ValueError(name)


def make_sequence(
    name: str,
    seed: int,
    frames: int = 60,
    size: tuple[int, int] = (120, 160),
    drop: float = 0.2,
    miss: float = 0.05,
    clutter: float = 0.3,
    token_noise: float = 0.4,
) -> list[Frame]:
    """Frames of scenario ``name`` that reach the tracker (dropped frames removed)."""
    rng = np.random.default_rng(seed)
    shapes = scenario_shapes(name, frames, size)
    base = {s.gt_id: _unit(rng.standard_normal(TOKEN_DIM)) for s in shapes}
    out = []
    for f in range(frames):
        if f > 0 and rng.random() < drop:
            continue
        full = {
            s.gt_id: _draw(s, s.path[f], size)
            for s in shapes
            if s.visible_from <= f <= s.visible_to
        }
        visible = _visible(shapes, full)
        masks, tokens, ids = [], [], []
        for s in shapes:
            m = visible.get(s.gt_id)
            if m is None or m.sum() < 20 or _missed(name, s, f, rng, miss):
                continue
            masks.append(_jitter(m, rng))
            tokens.append(
                base[s.gt_id] + rng.standard_normal(TOKEN_DIM) * token_noise / np.sqrt(TOKEN_DIM)
            )
            ids.append(s.gt_id)
        if rng.random() < clutter:  # a one-frame false positive blob
            y, x = rng.integers(0, size[0] - 10), rng.integers(0, size[1] - 10)
            blob = np.zeros(size, bool)
            blob[y : y + 8, x : x + 8] = True
            masks.append(blob)
            tokens.append(_unit(rng.standard_normal(TOKEN_DIM)))
            ids.append(-1)
        gt = {k: v for k, v in visible.items() if v.sum() >= 20}
        out.append(Frame(f, _segmentation(masks, tokens, size), ids, gt))
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def random_token(seed: int) -> np.ndarray:
    """``(TOKEN_DIM,)`` unit SAM token of one object (distinct objects: nearly orthogonal)."""
    return _unit(np.random.default_rng(seed).standard_normal(TOKEN_DIM))


def alike_token(seed: int) -> np.ndarray:
    """Tokens of untrained weights: all nearly the same (cosine ~0.99 between objects)."""
    return _unit(random_token(999) + 0.1 * random_token(seed))


def _visible(shapes: list[Shape], full: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Visible part of each shape: minus nearer shapes that are not its nested parts or parent."""
    out = {}
    for s in shapes:
        if s.gt_id not in full:
            continue
        m = full[s.gt_id].copy()
        for other in shapes:
            nested = other.parent == shapes.index(s) or s.parent == shapes.index(other)
            if other.gt_id in full and other.depth < s.depth and not nested:
                m &= ~full[other.gt_id]
        out[s.gt_id] = m
    return out


def _missed(name: str, s: Shape, f: int, rng: np.random.Generator, miss: float) -> bool:
    if (
        name == "nested" and s.gt_id == 1 and f % 7 == 3
    ):  # the whole drops out: only its part remains
        return True
    if name == "nested" and s.gt_id == 2 and f % 9 == 5:  # the part drops out
        return True
    return f > 1 and rng.random() < miss


def mot_summary(frames: list[Frame], track_ids_per_frame: list[np.ndarray]) -> dict:
    """MOTA, IDF1, id switches (py-motmetrics) of tracker output against the ground truth.

    Hypotheses are the regions with a track id > 0; a hypothesis may match a ground-truth
    object when their mask IoU >= 0.5 (distance = 1 - IoU).
    """
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for frame, tids in zip(frames, track_ids_per_frame):
        gt_ids = sorted(frame.gt_masks)
        hyp = [i for i, t in enumerate(tids) if t > 0]
        dist = np.full((len(gt_ids), len(hyp)), np.nan)
        for a, g in enumerate(gt_ids):
            gm = frame.gt_masks[g]
            for b, i in enumerate(hyp):
                hm = frame.segmentation.masks[i]
                iou = (gm & hm).sum() / max(1, (gm | hm).sum())
                if iou >= 0.5:
                    dist[a, b] = 1.0 - iou
        acc.update(gt_ids, [int(tids[i]) for i in hyp], dist)
    mh = mm.metrics.create()
    s = mh.compute(
        acc, metrics=["mota", "idf1", "num_switches", "num_objects", "num_frames"], name="seq"
    )
    return {k: float(s[k].iloc[0]) for k in s.columns}
