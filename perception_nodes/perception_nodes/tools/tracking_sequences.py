"""Camera-like synthetic sequences with ground-truth identities, for pn-bench-tracking.

Each frame is what the pipeline would hand the tracking stage: a rendered ``HxWx3`` uint8 RGB
image (textured world seen through a moving, zooming camera, objects painted over it), the
"segmenter's" regions of it (:class:`~perception_nodes.core.types.Segmentation`), their labels
with region embeddings (:class:`~perception_nodes.core.types.RegionLabels`), the frame's stamp,
and the ground truth: the visible mask of every object (image pixels, x right, y down).

The regions are made as a real SAM makes them, not as a tracker would like them: boundaries
jitter (a 1-2 px shift, erosion or dilation), objects are missed, clutter blobs appear for 1-3
frames, a mask splits into two pieces for a few frames, two touching objects come out as one
region, occluded objects come out as their visible piece, scores of spurious pieces overlap
those of real objects, tokens of look-alike objects (crossing pairs) are close, and with
``alike=True`` every token and embedding is nearly the same (untrained weights).

Families (see :data:`FAMILIES`): ``moving``, ``crossing``, ``occlusion``, ``camera``,
``sam_noise``, ``dropped``, ``all``. World and object motion are in world pixels; the camera
maps world to image by ``p_img = zoom * (p_world - centre) + (W/2, H/2)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from perception_nodes.core.types import RegionLabels, Segmentation
from perception_nodes.tools.tracking_scenes import (
    EMBED_DIM,
    LABELS,
    TOKEN_DIM,
    Thing,
    camera_path,
    scene_things,
)
from perception_nodes.tools.tracking_scenes import unit as _unit

FAMILIES = ("moving", "crossing", "occlusion", "camera", "sam_noise", "dropped", "all")
MIN_VISIBLE = 40  # pixels: a smaller visible piece is neither ground truth nor segmented
FPS = 30.0


@dataclass
class Noise:
    """What the segmenter gets wrong, per frame and object (probabilities)."""

    jitter_px: int = 1
    miss: float = 0.03
    clutter_per_frame: float = 0.3
    split: float = 0.0
    merge: float = 0.0
    drop: float = 0.0  # chance that a run of 1-3 frames is dropped, per frame
    label_flip: float = 0.15


@dataclass
class SequenceFrame:
    """One frame that reaches the tracker. ``gt_masks``: identity -> visible ``HxW`` bool mask;
    ``region_gt``: per region, the identity it was made from (-1 clutter, split piece or merge)."""

    index: int
    stamp: float
    image: np.ndarray
    segmentation: Segmentation
    labels: RegionLabels
    gt_masks: dict[int, np.ndarray]
    region_gt: list[int]


def _family_noise(family: str) -> Noise:
    if family == "sam_noise":
        return Noise(jitter_px=2, miss=0.1, clutter_per_frame=2.0, split=0.04, merge=0.3)
    if family == "dropped":
        return Noise(drop=0.12)
    if family == "all":
        return Noise(jitter_px=2, miss=0.1, clutter_per_frame=2.0, split=0.04, merge=0.3,
                     drop=0.12)  # fmt: skip
    return Noise()


def world_texture(rng, shape: tuple[int, int]) -> np.ndarray:
    """Grey-level multi-scale noise texture (uint8 ``shape``), like a cluttered scene."""
    acc = np.zeros(shape, np.float32)
    for k, scale in enumerate((2, 6, 18)):
        noise = rng.normal(0, 1, shape).astype(np.float32)
        acc += cv2.GaussianBlur(noise, (0, 0), scale) * (scale**0.8) * (1.5 if k == 0 else 1)
    acc = (acc - acc.mean()) / (acc.std() + 1e-6)
    return np.clip(128 + 45 * acc, 0, 255).astype(np.uint8)


class SequenceRenderer:
    """Renders frames of one sequence: ``frames()`` yields :class:`SequenceFrame` lazily (a
    frame's full-size masks are big; nothing is kept across frames)."""

    def __init__(self, family: str, seed: int, alike: bool, frames: int = 60,
                 size: tuple[int, int] = (480, 640)) -> None:  # fmt: skip
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")
        self.family, self.size, self.frames = family, size, frames
        self.rng = np.random.default_rng([seed, FAMILIES.index(family), int(alike)])
        self.cam = camera_path(self.rng, family, frames)
        self.things = scene_things(self.rng, family, frames, size, self.cam, alike)
        self.noise = _family_noise(family)
        self.alike = alike
        self._clutter: list[list] = []  # [frames left, mask, score, token, embedding, label]
        h, w = size
        span = np.ptp(self.cam.centre, axis=0)
        self.world_origin = self.cam.centre.min(axis=0) - np.array([w, h]) * 1.0
        world_wh = (span + np.array([w, h]) * 2.0).astype(int)
        self.world = world_texture(self.rng, (int(world_wh[1]), int(world_wh[0])))

    def frames_iter(self) -> Iterator[SequenceFrame]:
        dropped_until = -1
        for f in range(self.frames):
            if f > 0 and f > dropped_until and self.rng.random() < self.noise.drop:
                dropped_until = f + int(self.rng.integers(0, 3))
            if f <= dropped_until:
                continue
            yield self._frame(f)

    def _affine(self, f: int) -> np.ndarray:
        """2x3 world -> image matrix of frame ``f``."""
        h, w = self.size
        z, c = self.cam.zoom[f], self.cam.centre[f]
        return np.array([[z, 0, w / 2 - z * c[0]], [0, z, h / 2 - z * c[1]]])

    def _frame(self, f: int) -> SequenceFrame:
        h, w = self.size
        m = self._affine(f)
        world_to_tex = m.copy()
        world_to_tex[:, 2] += m[:, :2] @ self.world_origin  # texture pixel (0,0) = world origin
        grey = cv2.warpAffine(self.world, world_to_tex, (w, h), borderMode=cv2.BORDER_REFLECT)
        image = np.repeat(grey[:, :, None], 3, axis=2)
        ids = np.zeros((h, w), np.uint8)
        for t in sorted(self.things, key=lambda t: -t.depth):  # far first, near painted over
            self._paint(ids, image, t, m, f)
        present = np.unique(ids)
        gt = {}
        for gid in present[present > 0].tolist():
            mask = ids == gid
            if mask.sum() >= MIN_VISIBLE:
                gt[gid] = mask
        seg, labels, region_gt = self._detections(gt, f)
        return SequenceFrame(f, f / FPS, image, seg, labels, gt, region_gt)

    def _paint(self, ids, image, t: Thing, m: np.ndarray, f: int) -> None:
        z = m[0, 0]
        cx, cy = m[:, :2] @ t.path[f] + m[:, 2]
        hw, hh = t.size[0] * z / 2, t.size[1] * z / 2
        if cx + hw < 0 or cy + hh < 0 or cx - hw >= ids.shape[1] or cy - hh >= ids.shape[0]:
            return
        canvas = np.zeros(ids.shape, np.uint8)
        if t.kind == "rect":
            p0 = (int(round(cx - hw)), int(round(cy - hh)))
            p1 = (int(round(cx + hw)) - 1, int(round(cy + hh)) - 1)
            cv2.rectangle(canvas, p0, p1, 1, thickness=-1)
        else:
            cv2.ellipse(canvas, (int(round(cx)), int(round(cy))),
                        (max(1, int(round(hw))), max(1, int(round(hh)))), 0, 0, 360, 1, -1)  # fmt: skip
        inside = canvas.astype(bool)
        ids[inside] = t.gt_id
        shade = (np.arange(inside.sum()) % 7 * 6).astype(np.int16)[:, None]  # a little texture
        image[inside] = np.clip(np.array(t.colour, np.int16)[None] + shade, 0, 255).astype(np.uint8)

    def _detections(self, gt: dict[int, np.ndarray], f: int):
        rng, noise = self.rng, self.noise
        masks, scores, tokens, embeds, labels, region_gt = [], [], [], [], [], []
        by_id = {t.gt_id: t for t in self.things}
        used = set()
        order = list(gt)
        rng.shuffle(order)
        for gid in order:
            if gid in used or (f > 0 and rng.random() < noise.miss):
                continue
            t, mask = by_id[gid], gt[gid]
            full_area = t.size[0] * t.size[1] * self._affine(f)[0, 0] ** 2
            hidden = 1.0 - min(1.0, mask.sum() / max(full_area, 1.0))
            partner = self._merge_partner(gid, gt, used) if rng.random() < noise.merge else None
            if partner is not None:  # two touching objects segmented as one region
                used.update((gid, partner))
                both = mask | gt[partner]
                masks.append(self._jitter(both))
                scores.append(rng.normal(0.87, 0.04))
                tokens.append(_unit(t.token + by_id[partner].token))
                embeds.append(_unit(t.embedding + by_id[partner].embedding))
                labels.append(t.label)
                region_gt.append(-1)
                continue
            used.add(gid)
            if rng.random() < noise.split and mask.sum() > 200:  # one object, two pieces
                for piece in _split(mask, rng):
                    masks.append(self._jitter(piece))
                    scores.append(rng.normal(0.86, 0.05))
                    tokens.append(self._noisy(t.token, 0.8, TOKEN_DIM))
                    embeds.append(self._noisy(t.embedding, 0.8, EMBED_DIM))
                    labels.append(t.label)
                    region_gt.append(-1)
                continue
            masks.append(self._jitter(mask))
            scores.append(rng.normal(0.93, 0.03) * (1 - 0.3 * hidden))
            tokens.append(self._noisy(t.token, 0.35 + 0.6 * hidden, TOKEN_DIM))
            embeds.append(self._noisy(t.embedding, 0.3 + 0.6 * hidden, EMBED_DIM))
            labels.append(t.label)
            region_gt.append(gid)
        for _ in range(rng.poisson(noise.clutter_per_frame)):  # new blobs live 1-3 frames
            self._clutter.append([int(rng.integers(1, 4)), self._blob(), rng.normal(0.84, 0.06),
                                  self._clutter_token(), _unit(rng.normal(size=EMBED_DIM)),
                                  int(rng.integers(0, len(LABELS)))])  # fmt: skip
        for blob in self._clutter:
            blob[0] -= 1
            masks.append(self._jitter(blob[1]))
            scores.append(blob[2] + rng.normal(0, 0.02))
            tokens.append(self._noisy(blob[3], 0.35, TOKEN_DIM))
            embeds.append(blob[4])
            labels.append(blob[5])
            region_gt.append(-1)
        self._clutter = [b for b in self._clutter if b[0] > 0]
        keep = [i for i, mk in enumerate(masks) if mk.sum() >= MIN_VISIBLE // 2]
        seg, region_labels = self._pack(keep, masks, scores, tokens, embeds, labels)
        return seg, region_labels, [region_gt[i] for i in keep]

    def _pack(self, keep, masks, scores, tokens, embeds, labels):
        seg = segmentation_of([masks[i] for i in keep], [scores[i] for i in keep],
                              [tokens[i] for i in keep], self.size, self.rng)  # fmt: skip
        n = len(keep)
        idx = np.array([labels[i] for i in keep], np.int64)
        flip = self.rng.random(n) < self.noise.label_flip
        idx[flip] = self.rng.integers(0, len(LABELS), int(flip.sum()))
        score = self.rng.uniform(0.3, 0.8, n).astype(np.float32)
        emb = np.array([embeds[i] for i in keep], np.float32).reshape(n, EMBED_DIM)
        region_labels = RegionLabels(idx, score, idx[:, None], score[:, None], list(LABELS), 1,
                                     embeddings=emb)  # fmt: skip
        return seg, region_labels

    def _merge_partner(self, gid: int, gt: dict[int, np.ndarray], used: set) -> int | None:
        mask = cv2.dilate(gt[gid].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        for other, om in gt.items():
            if other != gid and other not in used and (mask & om).any():
                return other
        return None

    def _jitter(self, mask: np.ndarray) -> np.ndarray:
        """Boundary noise: shift by up to ``jitter_px``, then erode or dilate 1 px (or not)."""
        j = self.noise.jitter_px
        dx, dy = (int(v) for v in self.rng.integers(-j, j + 1, 2))
        out = np.zeros_like(mask)
        h, w = mask.shape
        out[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] = mask[
            max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)
        ]
        op = self.rng.integers(0, 3)
        if op and out.sum() > 150:
            kernel = np.ones((3, 3), np.uint8)
            fn = cv2.erode if op == 1 else cv2.dilate
            out = fn(out.astype(np.uint8), kernel).astype(bool)
        return out

    def _clutter_token(self) -> np.ndarray:
        if self.alike:
            return self._noisy(self.things[0].token, 0.3, TOKEN_DIM)
        return _unit(self.rng.normal(size=TOKEN_DIM))

    def _noisy(self, v: np.ndarray, scale: float, dim: int) -> np.ndarray:
        if self.alike:
            scale *= 0.1
        return _unit(v + scale * _unit(self.rng.normal(size=dim)) * self.rng.uniform(0.5, 1.0))

    def _blob(self) -> np.ndarray:
        h, w = self.size
        mask = np.zeros(self.size, np.uint8)
        r = int(self.rng.integers(5, 25))
        c = (int(self.rng.integers(0, w)), int(self.rng.integers(0, h)))
        axes = (r, int(self.rng.integers(max(3, r // 2), 2 * r)))
        cv2.ellipse(mask, c, axes, float(self.rng.uniform(0, 180)), 0, 360, 1, -1)
        return mask.astype(bool)


def _split(mask: np.ndarray, rng) -> list[np.ndarray]:
    """Two pieces of ``mask`` cut by a random line through its centre."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    ang = rng.uniform(0, np.pi)
    side = (xs - cx) * np.cos(ang) + (ys - cy) * np.sin(ang) > rng.normal(0, 3)
    a, b = np.zeros_like(mask), np.zeros_like(mask)
    a[ys[side], xs[side]] = True
    b[ys[~side], xs[~side]] = True
    return [p for p in (a, b) if p.any()]


def segmentation_of(masks, scores, tokens, size: tuple[int, int], rng) -> Segmentation:
    """A :class:`Segmentation` of full-image bool ``masks`` with SAM-like scores: predicted IoU
    ``scores`` (clipped to [0, 1]) and stability scores near 0.96."""
    n = len(masks)
    if n == 0:
        return Segmentation.empty(size, TOKEN_DIM)
    m = np.stack(masks)
    boxes = np.zeros((n, 4), np.float32)
    for i, mk in enumerate(m):
        x, y, bw, bh = cv2.boundingRect(mk.astype(np.uint8))
        boxes[i] = (x, y, x + bw, y + bh)
    return Segmentation(
        masks=m,
        boxes_xyxy=boxes,
        areas=m.reshape(n, -1).sum(axis=1).astype(np.int64),
        predicted_iou=np.clip(np.array(scores, np.float32), 0, 1),
        stability_score=np.clip(rng.normal(0.96, 0.02, n), 0, 1).astype(np.float32),
        tokens=np.array(tokens, np.float32).reshape(n, TOKEN_DIM),
        point_coords=np.full((n, 2), np.nan, np.float32),
        image_size=size,
    )
