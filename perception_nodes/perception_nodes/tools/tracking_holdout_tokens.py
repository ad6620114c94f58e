"""Region tokens, CLIP-like embeddings and labels of the held-out benchmark, from the pixels.

A region's descriptor is what its rendered pixels look like: a 4x4x4 colour histogram
(square-rooted), mean and spread of RGB, a gradient-orientation histogram weighted by
magnitude, mean gradient, log area. Tokens ``(N, 256)`` and embeddings ``(N, 512)`` are FIXED
random projections of the centred descriptor (the same "network" for every sequence), plus a
small position term (SAM tokens are position-aware) and per-frame noise; so two cut-outs of the
same photo really look alike, and one object's token drifts with blur, exposure and occlusion.
The *untrained* variant makes every token and embedding nearly the same vector (cosine ~0.999),
as generated weights do, and labels an arbitrary but appearance-driven function.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from perception_nodes.core.types import RegionLabels, Segmentation
from perception_nodes.tools.tracking_holdout_sam import SimRegion
from perception_nodes.tools.tracking_holdout_world import PHOTOS, H, W, photo

VOCAB = [
    "person",
    "cat",
    "cup",
    "rocket",
    "cell",
    "motorcycle",
    "wall",
    "floor",
    "plant",
    "bottle",
    "chair",
    "table",
    "window",
    "box",
]
TOKEN_DIM, EMBED_DIM, DESC_DIM = 256, 512, 80
_PROJ_SEED = 20261202  # the fixed "network"


@functools.lru_cache(maxsize=1)
def _projections() -> dict[str, np.ndarray]:
    r = np.random.default_rng(_PROJ_SEED)
    return {
        "tok": r.standard_normal((DESC_DIM, TOKEN_DIM)).astype(np.float32) / np.sqrt(DESC_DIM),
        "emb": r.standard_normal((DESC_DIM, EMBED_DIM)).astype(np.float32) / np.sqrt(DESC_DIM),
        "pos": r.standard_normal((4, TOKEN_DIM)).astype(np.float32) / 2,
        "lab": r.standard_normal((DESC_DIM, len(VOCAB))).astype(np.float32),
        "flat_tok": _unit(r.standard_normal(TOKEN_DIM).astype(np.float32)),
        "flat_emb": _unit(r.standard_normal(EMBED_DIM).astype(np.float32)),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(1e-9, np.linalg.norm(x, axis=-1, keepdims=True))


class FrameFeatures:
    """Per-frame maps every region's descriptor reads: colour bin ``(H, W)`` and gradient
    orientation bin / magnitude of the grey image."""

    def __init__(self, image: np.ndarray):
        self.image = image
        q = (image // 64).astype(np.int32)
        self.colour = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        mag, ang = cv2.cartToPolar(
            cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        )
        self.mag = mag
        self.orient = ((ang % np.pi) / np.pi * 8).astype(np.int32) % 8

    def descriptor(self, box: tuple[int, int, int, int], crop: np.ndarray) -> np.ndarray:
        """``(DESC_DIM,)`` float32 descriptor of the region ``crop`` (bool) at image ``box``."""
        x0, y0, x1, y1 = box
        col = self.colour[y0:y1, x0:x1][crop]
        pix = self.image[y0:y1, x0:x1][crop].astype(np.float32) / 255
        mag, ori = self.mag[y0:y1, x0:x1][crop], self.orient[y0:y1, x0:x1][crop]
        hist = np.sqrt(np.bincount(col, minlength=64) / max(1, col.size))
        oh = np.bincount(ori, weights=mag, minlength=8)
        oh = np.sqrt(oh / max(1e-6, oh.sum()))
        extra = [mag.mean() / 100, np.log(max(1, col.size)) / 10]
        return np.concatenate([hist, pix.mean(0), pix.std(0), oh, extra]).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _mean_descriptor() -> np.ndarray:
    """Centre of the descriptors: the mean descriptor of the whole photos."""
    out = []
    for name in PHOTOS:
        im = cv2.resize(photo(name), (W, H))
        out.append(FrameFeatures(im).descriptor((0, 0, W, H), np.ones((H, W), bool)))
    return np.mean(out, 0)


def segmentation(
    regions: list[SimRegion], desc: np.ndarray, rng: np.random.Generator, alike: bool
) -> Segmentation:
    """The frame's :class:`Segmentation` (full masks, tight boxes, SAM-like tokens)."""
    n = len(regions)
    if n == 0:
        return Segmentation.empty((H, W), TOKEN_DIM)
    masks = np.stack([r.full_mask() for r in regions])
    boxes = np.array([r.box for r in regions], np.float32)
    areas = np.array([np.count_nonzero(r.crop) for r in regions], np.int64)
    points = np.zeros((n, 2), np.float32)
    for k, r in enumerate(regions):
        ys, xs = np.nonzero(r.crop)
        j = rng.integers(ys.size)
        points[k] = (r.box[0] + xs[j], r.box[1] + ys[j])
    return Segmentation(
        masks=masks,
        boxes_xyxy=boxes,
        areas=areas,
        predicted_iou=np.array([r.score for r in regions], np.float32),
        stability_score=np.array([r.stability for r in regions], np.float32),
        tokens=tokens(desc, boxes, rng, alike),
        point_coords=points,
        image_size=(H, W),
    )


def tokens(
    desc: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, alike: bool
) -> np.ndarray:
    """``(N, 256)`` float32 tokens of descriptors ``(N, DESC_DIM)`` at boxes ``(N, 4)``."""
    p = _projections()
    t = (desc - _mean_descriptor()) @ p["tok"] * 8
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / (2 * W), (boxes[:, 1] + boxes[:, 3]) / (2 * H)
    pos = np.stack(
        [np.sin(np.pi * cx), np.cos(np.pi * cx), np.sin(np.pi * cy), np.cos(np.pi * cy)], 1
    )
    t = t + 0.3 * pos @ p["pos"]
    t = t + rng.normal(0, 0.25, t.shape) * np.sqrt((t**2).mean(1, keepdims=True))
    if alike:
        t = 8 * (p["flat_tok"] + 0.04 * _unit(t) + rng.normal(0, 0.002, t.shape))
    return t.astype(np.float32)


def labels(
    regions: list[SimRegion], things: list, desc: np.ndarray, rng: np.random.Generator, alike: bool
) -> RegionLabels:
    """Classifier output: the object's class with flips (8 % another class, 5 % unknown), parts
    and blobs mostly wrong; untrained: argmax of a fixed random projection of the appearance,
    noisy, ``meaningful=False``. Embeddings ``(N, 512)`` unit vectors in both."""
    p = _projections()
    n, v = len(regions), len(VOCAB)
    e = (desc - _mean_descriptor()) @ p["emb"] * 8
    e = _unit(e + rng.normal(0, 0.3, e.shape) * np.sqrt((e**2).mean(1, keepdims=True) + 1e-12))
    if alike:
        logits = (desc - _mean_descriptor()) @ p["lab"]
        logits = logits + rng.normal(0, 0.5, logits.shape) * (logits.std() + 1e-6)
        idx = logits.argmax(1) if n else np.zeros(0, np.int64)
        e = _unit(p["flat_emb"] + 0.04 * e + rng.normal(0, 0.002, e.shape))
    else:
        idx = np.empty(n, np.int64)
        for k, r in enumerate(regions):
            right = things[r.thing].cls if r.thing >= 0 else -2
            keep = {"whole": 0.87, "merge": 0.7, "part": 0.5}.get(r.kind, 0.0)
            u = rng.random()
            idx[k] = right if u < keep else (-1 if u > 0.95 else rng.integers(v))
    score = rng.uniform(0.25, 0.9, n).astype(np.float32)
    others = rng.integers(0, v, (n, 2))
    top = np.concatenate([np.maximum(idx, 0)[:, None], others], 1).astype(np.int64)
    top_s = np.stack([score, score * 0.7, score * 0.5], 1).astype(np.float32)
    return RegionLabels(
        idx.astype(np.int64),
        score,
        top,
        top_s,
        list(VOCAB),
        1,
        embeddings=e.astype(np.float32),
        meaningful=not alike,
    )
