"""COCO-format detection annotations for training: an ``instances.json`` with ``images`` (id,
file_name), ``annotations`` (image_id, category_id, bbox XYWH pixels, optional iscrowd) and
``categories`` (id, name): the format of COCO, LVIS, Objects365 and V3Det.

Boxes come out as ``(n, 4)`` float32 XYXY pixels, labels as ``(n,)`` int64 contiguous class
indices (categories sorted by id); images are read as ``HxWx3`` uint8 RGB.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The COCO-format dataset is malformed (the message names the file and field)."""


@dataclass
class CocoData:
    """Parsed annotations: per image its file and boxes (XYXY) with contiguous class indices."""

    images: list[dict]  # {"id", "file_name", "boxes": (n,4) float32 XYXY, "labels": (n,) int64}
    category_names: list[str]


def load_coco(path: str | Path, min_box_size: float = 2.0) -> CocoData:
    """Read a COCO-format instances file; crowd and degenerate boxes are skipped (logged)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read COCO annotations {path}: {exc}") from exc
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: expected a list under '{key}' (COCO instances format)")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    names = [str(c["name"]).replace("_", " ") for c in cats]
    per_image: dict[int, list] = {im["id"]: [] for im in data["images"]}
    skipped = 0
    for a in data["annotations"]:
        x, y, w, h = (float(v) for v in a["bbox"])
        if a.get("iscrowd", 0) or w < min_box_size or h < min_box_size:
            skipped += 1
            continue
        if a["category_id"] not in cat_index or a["image_id"] not in per_image:
            raise DatasetError(
                f"{path}: annotation {a.get('id')} refers to an unknown image or category"
            )
        per_image[a["image_id"]].append((x, y, x + w, y + h, cat_index[a["category_id"]]))
    images = []
    for im in data["images"]:
        rows = per_image[im["id"]]
        if not rows:
            continue
        arr = np.asarray(rows, dtype=np.float64)
        images.append(
            {
                "id": im["id"],
                "file_name": im["file_name"],
                "boxes": arr[:, :4].astype(np.float32),
                "labels": arr[:, 4].astype(np.int64),
            }
        )
    if skipped:
        logger.info("%s: skipped %d crowd/degenerate boxes", path, skipped)
    if not images:
        raise DatasetError(f"{path}: no image has a usable box")
    return CocoData(images, names)


def split_images(
    images: list[dict], val_fraction: float, seed: int
) -> tuple[list[dict], list[dict]]:
    """Deterministic held-out split by image."""
    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(round(len(images) * val_fraction))) if val_fraction > 0 else 0
    if n_val >= len(images):
        raise DatasetError(
            f"val_fraction {val_fraction} leaves no training image ({len(images)} images)"
        )
    val = {i for i in order[:n_val]}
    return [im for i, im in enumerate(images) if i not in val], [images[i] for i in sorted(val)]


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.array(
                im.convert("RGB")
            )  # writable: torch.from_numpy warns on read-only arrays
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc
