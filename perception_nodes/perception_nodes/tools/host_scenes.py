"""Realistic generated frames for host-side benchmarks and tests (no model involved).

SAM with generated weights gives noise masks, which say nothing about the cost of host work on
real scenes (run-length encoding, crops, overlays all depend on the shapes). This module draws
what SAM gives on real photos: smooth object outlines (radial low-frequency harmonics), some
with holes, objects touching each other, parts nested inside larger objects, two large
surfaces (wall and floor), and a depth image with NaN holes and an invalid left border (as
stereo cameras give).

Conventions: image ``HxWx3`` uint8 RGB; masks ``(N, H, W)`` bool; boxes XYXY pixels with an
exclusive max corner; depth ``HxW`` float32 meters (NaN = invalid); intrinsics ``K`` 3x3.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception_nodes.core.types import Segmentation

TOKEN_DIM = 256


@dataclass
class HostScene:
    """One generated frame: the image, its regions, depth and intrinsics."""

    image: np.ndarray
    segmentation: Segmentation
    depth_m: np.ndarray
    k: np.ndarray


def _outline(rng: np.random.Generator, cx: float, cy: float, r: float) -> np.ndarray:
    """``(64, 1, 2)`` int32 polygon of a smooth blob of mean radius ``r`` around (cx, cy)."""
    theta = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    radius = np.ones_like(theta)
    for harmonic in (2, 3, 4):
        radius += rng.uniform(0.0, 0.25 / harmonic * 2) * np.sin(
            harmonic * theta + rng.uniform(0, 2 * np.pi)
        )
    aspect = rng.uniform(0.6, 1.4)
    xs = cx + r * radius * np.cos(theta) * aspect
    ys = cy + r * radius * np.sin(theta) / aspect
    return np.round(np.stack([xs, ys], axis=1)).astype(np.int32)[:, None, :]


def _blob(shape: tuple[int, int], poly: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [poly], 1)
    return mask.astype(bool)


def _surfaces(h: int, w: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Wall (above a wavy horizon) and floor (below it): two large touching regions."""
    xs = np.arange(w)
    horizon = 0.45 * h + 0.03 * h * np.sin(xs / w * 2 * np.pi * rng.uniform(0.5, 2.0))
    rows = np.arange(h)[:, None]
    floor = rows >= horizon[None, :]
    return [~floor, floor]


def _object_masks(h: int, w: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` object masks: a third touch a previous object, a third are parts nested in one,
    the rest stand alone; every fourth has a hole."""
    masks: list[np.ndarray] = []
    centres: list[tuple[float, float, float]] = []
    side = min(h, w)
    for i in range(n):
        r = side * float(np.exp(rng.uniform(np.log(0.02), np.log(0.14))))
        kind = i % 3 if centres else 2
        if kind == 0:  # touching the previous object, to its right
            pcx, pcy, pr = centres[-1]
            cx, cy = pcx + pr + r * 0.9, pcy + rng.uniform(-0.3, 0.3) * pr
        elif kind == 1:  # a part inside a larger object
            pcx, pcy, pr = centres[int(rng.integers(len(centres)))]
            r = min(r, 0.4 * pr)
            cx, cy = pcx + rng.uniform(-0.3, 0.3) * pr, pcy + rng.uniform(-0.3, 0.3) * pr
        else:
            cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.1, 0.95) * h
        r = max(r, 3.0)
        m = _blob((h, w), _outline(rng, cx, cy, r))
        if i % 4 == 3 and r > 8:
            m &= ~_blob((h, w), _outline(rng, cx, cy, 0.35 * r))
        if not m.any():  # drawn outside the image: put it in the middle instead
            m = _blob((h, w), _outline(rng, w / 2, h / 2, r))
        masks.append(m)
        centres.append((cx, cy, r))
    return masks


def _image(h: int, w: int, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shaded background, each region filled with its own colour, sensor-like noise."""
    base = np.linspace(60, 190, h, dtype=np.float32)[:, None, None] * np.ones((1, w, 3), np.float32)
    for m in masks:
        base[m] = 0.3 * base[m] + 0.7 * rng.uniform(20, 235, 3).astype(np.float32)
    base += rng.normal(0, 6, base.shape).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


def _depth(h: int, w: int, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Floor plane getting nearer downwards, objects in front of it, NaN holes and border."""
    depth = np.linspace(6.0, 1.2, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    for m in masks[2:]:
        depth[m] = np.float32(rng.uniform(0.6, 4.0))
    depth[:, : max(1, w // 40)] = np.nan  # invalid stereo border
    for _ in range(12):  # dropouts (specular surfaces, out of range)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.01, 0.05) * min(h, w)
        depth[_blob((h, w), _outline(rng, cx, cy, r))] = np.nan
    return depth


def segmentation_of(masks: np.ndarray, rng: np.random.Generator) -> Segmentation:
    """A :class:`Segmentation` of ``(N, H, W)`` masks with exact boxes and areas and
    SAM-like scores, tokens and prompt points."""
    n, h, w = masks.shape
    boxes = np.zeros((n, 4), np.float32)
    for i, m in enumerate(masks):
        x, y, bw, bh = cv2.boundingRect(m.view(np.uint8))
        boxes[i] = (x, y, x + bw, y + bh)
    return Segmentation(
        masks=masks,
        boxes_xyxy=boxes,
        areas=masks.reshape(n, -1).sum(1).astype(np.int64),
        predicted_iou=rng.uniform(0.86, 1.0, n).astype(np.float32),
        stability_score=rng.uniform(0.92, 1.0, n).astype(np.float32),
        tokens=rng.normal(0, 1, (n, TOKEN_DIM)).astype(np.float32),
        point_coords=np.stack(
            [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1
        ),
        image_size=(h, w),
    )


def host_scene(height: int, width: int, regions: int, seed: int = 0) -> HostScene:
    """A generated frame of ``regions`` regions (>= 2: wall and floor come first)."""
    rng = np.random.default_rng(seed)
    surfaces = _surfaces(height, width, rng)[: max(regions, 0)]
    objects = _object_masks(height, width, max(regions - len(surfaces), 0), rng)
    masks = np.stack(surfaces + objects) if regions > 0 else np.zeros((0, height, width), bool)
    f = 0.9 * width
    k = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)
    return HostScene(
        image=_image(height, width, masks, rng),
        segmentation=segmentation_of(masks, rng),
        depth_m=_depth(height, width, masks, rng),
        k=k,
    )
