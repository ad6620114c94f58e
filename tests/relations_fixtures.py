"""Synthetic OpenPSG-format datasets for the relation tests (written to a tmp folder).

Rendered indoor scenes (wall, floor, table, person, cup, lamp, book; textured with noise) whose
relations follow from geometry and category: the cup is either on the table, held by the person
or on the floor; the lamp either hangs over the table or stands on it; the person stands on the
floor and is beside the table when close to it. Real ``psg.json`` + panoptic PNGs + JPEG images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from perception_nodes.core.relations.predicates import PSG_PREDICATES
from perception_nodes.training.psg import (
    PsgDataset,
    PsgImage,
    save_psg,
    segment_from_mask,
    write_panoptic_png,
)

THINGS = ["person", "cup", "book", "lamp", "table"]
STUFF = ["wall", "floor"]
CATEGORIES = THINGS + STUFF
COLORS = {"wall": (200, 200, 180), "floor": (120, 90, 60), "table": (150, 100, 40), "person": (40, 80, 200),
          "cup": (220, 30, 30), "lamp": (240, 220, 40), "book": (30, 160, 60)}  # fmt: skip
P = {p: i for i, p in enumerate(PSG_PREDICATES)}


def _rect(h: int, w: int, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[
        max(int(round(y0)), 0) : min(int(round(y1)), h),
        max(int(round(x0)), 0) : min(int(round(x1)), w),
    ] = True
    return m


def render_scene(
    rng: np.random.Generator, h: int = 96, w: int = 128
) -> tuple[np.ndarray, list[str], list[np.ndarray], list[tuple[str, str, str]]]:
    """One scene: image ``HxWx3`` uint8, category names, (overlapping) draw masks in draw
    order, relations as (subject name, predicate, object name)."""
    objs: dict[str, np.ndarray] = {}
    rels: list[tuple[str, str, str]] = []
    objs["wall"] = np.ones((h, w), bool)
    objs["floor"] = _rect(h, w, 0, 0.75 * h, w, h)
    tx0 = rng.uniform(0.05, 0.45) * w
    tx1 = tx0 + rng.uniform(0.35, 0.5) * w
    ty = rng.uniform(0.45, 0.6) * h
    objs["table"] = _rect(h, w, tx0, ty, tx1, 0.85 * h)
    rels.append(("table", "on", "floor"))
    pw = 0.1 * w
    if rng.random() < 0.5:  # person left of the table
        px1 = tx0 - rng.uniform(0.0, 0.15) * w
        px0 = px1 - pw
    else:
        px0 = tx1 + rng.uniform(0.0, 0.15) * w
        px1 = px0 + pw
    if px0 < 0 or px1 > w:  # no room: put the person on the other side, far away
        px0, px1 = (w - pw - 2, w - 2) if px0 < 0 else (2, 2 + pw)
    objs["person"] = _rect(h, w, px0, 0.25 * h, px1, 0.9 * h)
    rels.append(("person", "standing on", "floor"))
    if min(abs(px0 - tx1), abs(tx0 - px1)) < 0.08 * w:
        rels.append(("person", "beside", "table"))
    lamp_mode = rng.integers(0, 2)
    lcx = rng.uniform(tx0 + 0.1 * w, tx1 - 0.1 * w)
    if lamp_mode == 0:
        objs["lamp"] = _rect(h, w, lcx - 0.06 * w, 0.05 * h, lcx + 0.06 * w, 0.18 * h)
        rels.append(("lamp", "over", "table"))
    else:
        objs["lamp"] = _rect(h, w, lcx - 0.03 * w, ty - 0.25 * h, lcx + 0.03 * w, ty)
        rels.append(("lamp", "on", "table"))
    if rng.random() < 0.5:
        bx = tx0 + 0.02 * w if lcx > (tx0 + tx1) / 2 else tx1 - 0.14 * w
        objs["book"] = _rect(h, w, bx, ty - 0.05 * h, bx + 0.12 * w, ty)
        rels.append(("book", "on", "table"))
    cup_mode = rng.integers(0, 3)
    cw, ch = 0.06 * w, 0.09 * h
    if cup_mode == 0:
        cx = rng.uniform(tx0 + 0.05 * w, tx1 - 0.05 * w)
        objs["cup"] = _rect(h, w, cx - cw / 2, ty - ch, cx + cw / 2, ty)
        rels.append(("cup", "on", "table"))
    elif cup_mode == 1:
        side = px1 - cw * 0.4 if px0 < (tx0 + tx1) / 2 else px0 - cw * 0.6
        objs["cup"] = _rect(h, w, side, 0.5 * h, side + cw, 0.5 * h + ch)
        rels.append(("person", "holding", "cup"))
    else:
        cx = rng.uniform(0.05, 0.95) * w
        objs["cup"] = _rect(h, w, cx - cw / 2, 0.92 * h - ch, cx + cw / 2, 0.92 * h)
        rels.append(("cup", "on", "floor"))
    names = list(objs)
    image = np.zeros((h, w, 3), dtype=np.float32)
    for name in names:
        tex = np.array(COLORS[name], np.float32) + rng.normal(0, 12, size=(h, w, 1)).astype(
            np.float32
        )
        image[objs[name]] = tex[objs[name]]
    return np.clip(image, 0, 255).astype(np.uint8), names, [objs[n] for n in names], rels


def write_synthetic_psg(
    root: Path,
    num_train: int = 40,
    num_test: int = 16,
    seed: int = 0,
    size: tuple[int, int] = (96, 128),
) -> Path:
    """Write ``root/psg.json``, ``root/images/*.jpg`` and ``root/panoptic/*.png``; returns the JSON path."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images: list[PsgImage] = []
    test_ids = []
    for k in range(num_train + num_test):
        rgb, names, masks, rels = render_scene(rng, *size)
        ids = np.zeros(size, dtype=np.int64)
        seg_ids = [10 * (i + 1) + 1000 * k for i in range(len(names))]
        for m, sid in zip(
            masks, seg_ids
        ):  # later objects cover earlier ones (panoptic: no overlap)
            ids[m] = sid
        final = [ids == sid for sid in seg_ids]
        segs = [
            segment_from_mask(sid, CATEGORIES.index(n), m, n in THINGS)
            for sid, n, m in zip(seg_ids, names, final)
        ]
        rel = np.array([[names.index(s), names.index(o), P[p]] for s, p, o in rels], dtype=np.int64)
        image_id = f"{k:05d}"
        Image.fromarray(rgb).save(root / "images" / f"{image_id}.jpg", quality=95)
        write_panoptic_png(root / "panoptic" / f"{image_id}.png", np.stack(final), seg_ids)
        images.append(
            PsgImage(
                f"images/{image_id}.jpg",
                size[0],
                size[1],
                f"panoptic/{image_id}.png",
                segs,
                rel,
                image_id,
            )
        )
        if k >= num_train:
            test_ids.append(image_id)
    ds = PsgDataset(images, THINGS, STUFF, list(PSG_PREDICATES), root, root, test_ids)
    path = root / "psg.json"
    save_psg(ds, path)
    return path


class ImperfectSegmenter:
    """A stand-in for SAM's segment-everything on the synthetic data (generated SAM weights give
    no usable masks): the GT masks of the image, each shifted by up to ``max_shift`` pixels, the
    book left out in half the images (unmatched GT), a shifted duplicate of the table and two
    random distractor rectangles, in shuffled order. Exercises IoU matching and re-targeting.

    Tokens are real SAM mask tokens computed once per GT box (``tokens_by_image``: image id ->
    ``(Ng, T)``, e.g. from a gt-boxes feature cache): a shifted region gets the token of its GT
    box, a distractor the token of a random GT region of the image (SAM's spurious masks are
    near-copies of real ones). Call as ``segment(image, gt_boxes_xyxy)`` (the ``SegmentFn``
    signature); the GT boxes identify the image in ``dataset``.
    """

    def __init__(
        self,
        dataset: PsgDataset,
        tokens_by_image: dict[str, np.ndarray],
        seed: int = 0,
        max_shift: int = 2,
    ) -> None:
        from perception_nodes.training.relation_samples import gt_boxes_xyxy

        self.dataset, self.tokens_by_image, self.max_shift = dataset, tokens_by_image, max_shift
        self.rng = np.random.default_rng(seed)
        self._by_boxes = {gt_boxes_xyxy(im).tobytes(): im for im in dataset.images}

    def _shift(self, mask: np.ndarray, limit: int) -> np.ndarray:
        dy, dx = (int(v) for v in self.rng.integers(-limit, limit + 1, size=2))
        out = np.zeros_like(mask)
        h, w = mask.shape
        src = mask[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
        out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = src
        return out if out.any() else mask

    def __call__(self, image: np.ndarray, gt_boxes: np.ndarray):
        from perception_nodes.core.types import Segmentation

        psg_image = self._by_boxes[np.asarray(gt_boxes, np.float32).tobytes()]
        gt, gt_tokens = self.dataset.load_masks(psg_image), self.tokens_by_image[psg_image.image_id]
        names = [CATEGORIES[s.category_id] for s in psg_image.segments]
        h, w = gt.shape[1:]
        regions = [(self._shift(m, self.max_shift), g) for g, (m, n) in enumerate(zip(gt, names))
                   if not (n == "book" and self.rng.random() < 0.5)]  # fmt: skip
        table = names.index("table")
        regions.append((self._shift(gt[table], self.max_shift + 2), table))
        for _ in range(2):
            x0, y0 = self.rng.uniform(0, 0.8 * w), self.rng.uniform(0, 0.8 * h)
            box = _rect(
                h, w, x0, y0, x0 + self.rng.uniform(4, 0.2 * w), y0 + self.rng.uniform(4, 0.2 * h)
            )
            regions.append((box, int(self.rng.integers(len(gt)))))
        regions = [regions[i] for i in self.rng.permutation(len(regions))]
        masks = np.stack([m for m, _ in regions])
        tokens = np.stack([gt_tokens[g] for _, g in regions]).astype(np.float32)
        nz = [np.nonzero(m) for m in masks]
        boxes = np.array(
            [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in nz], dtype=np.float32
        )
        n = len(masks)
        return Segmentation(masks, boxes, masks.reshape(n, -1).sum(1).astype(np.int64), np.ones(n, np.float32),
                            np.ones(n, np.float32), tokens, np.full((n, 2), np.nan, np.float32), (h, w))  # fmt: skip
