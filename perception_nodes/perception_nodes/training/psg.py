"""Read and write the OpenPSG dataset format (``psg.json`` + panoptic PNGs).

``psg.json``: ``{"data": [...], "thing_classes": [...], "stuff_classes": [...],
"predicate_classes": [...], "test_image_ids": [...]}``. Per image: ``file_name``, ``height``,
``width``, ``image_id``, ``pan_seg_file_name``, ``segments_info`` (``id``, ``category_id`` into
``thing_classes + stuff_classes``, ``isthing``, ``bbox`` XYWH, ``area``, ``iscrowd``),
``annotations`` (``bbox`` XYXY, ``bbox_mode``, ``category_id``), ``relations``
``[[subject_index, object_index, predicate_index], ...]`` (indices into ``segments_info``).
Panoptic PNGs follow the COCO panoptic convention: segment id = R + 256 G + 256^2 B (0 = void).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)


class PsgFormatError(ValueError):
    """A psg.json or panoptic PNG does not follow the OpenPSG format."""


def rgb2id(color: np.ndarray) -> np.ndarray:
    """``HxWx3`` uint8 panoptic PNG -> ``HxW`` int64 segment ids (COCO panoptic convention)."""
    c = np.asarray(color).astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """``HxW`` integer segment ids -> ``HxWx3`` uint8 colours (inverse of :func:`rgb2id`)."""
    ids = np.asarray(ids).astype(np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= 256**3:
        raise ValueError("panoptic segment ids must be in [0, 256^3)")
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


@dataclass
class PsgSegment:
    """One panoptic segment: ``bbox_xywh`` pixels, ``category_id`` into the category list."""

    id: int
    category_id: int
    isthing: bool
    bbox_xywh: tuple[float, float, float, float]
    area: int
    iscrowd: int = 0


@dataclass
class PsgImage:
    """One image of the dataset; ``relations`` is ``(M, 3)`` int64 [subject, object, predicate]."""

    file_name: str
    height: int
    width: int
    pan_seg_file_name: str
    segments: list[PsgSegment]
    relations: np.ndarray
    image_id: str = ""


@dataclass
class PsgDataset:
    """A loaded ``psg.json``; image and PNG paths are resolved against ``image_root``/``seg_root``."""

    images: list[PsgImage]
    thing_classes: list[str]
    stuff_classes: list[str]
    predicate_classes: list[str]
    image_root: Path = Path(".")
    seg_root: Path = Path(".")
    test_image_ids: list[str] = field(default_factory=list)

    @property
    def categories(self) -> list[str]:
        """``thing_classes + stuff_classes`` (what ``category_id`` indexes)."""
        return list(self.thing_classes) + list(self.stuff_classes)

    def split(self, name: str) -> list[PsgImage]:
        """``"train"`` (not in ``test_image_ids``), ``"test"`` (in it) or ``"all"``."""
        test = set(map(str, self.test_image_ids))
        if name == "all":
            return list(self.images)
        if name == "train":
            return [im for im in self.images if im.image_id not in test]
        if name == "test":
            return [im for im in self.images if im.image_id in test]
        raise ValueError(f"unknown split {name!r}; expected 'train', 'test' or 'all'")

    def load_image(self, image: PsgImage) -> np.ndarray:
        """``HxWx3`` uint8 RGB of ``image``."""
        path = self.image_root / image.file_name
        if not path.is_file():
            raise FileNotFoundError(f"image {path} listed in psg.json does not exist")
        return np.asarray(Image.open(path).convert("RGB"))

    def load_masks(self, image: PsgImage) -> np.ndarray:
        """``(Ng, H, W)`` bool GT masks in ``segments_info`` order."""
        path = self.seg_root / image.pan_seg_file_name
        if not path.is_file():
            raise FileNotFoundError(f"panoptic PNG {path} listed in psg.json does not exist")
        ids = rgb2id(np.asarray(Image.open(path).convert("RGB")))
        if ids.shape != (image.height, image.width):
            raise PsgFormatError(
                f"{path}: size {ids.shape} differs from psg.json ({image.height}, {image.width})"
            )
        masks = (
            np.stack([ids == s.id for s in image.segments])
            if image.segments
            else np.zeros((0, *ids.shape), bool)
        )
        empty = [s.id for s, m in zip(image.segments, masks) if not m.any()]
        if empty:
            logger.warning("%s: segments %s have no pixels in the panoptic PNG", path, empty)
        return masks


def _parse_image(d: dict, n_cat: int, n_pred: int) -> PsgImage:
    try:
        segs = [
            PsgSegment(int(s["id"]), int(s["category_id"]), bool(s.get("isthing", True)),
                       tuple(float(v) for v in s["bbox"]), int(s.get("area", 0)), int(s.get("iscrowd", 0)))
            for s in d["segments_info"]
        ]  # fmt: skip
        rel = np.asarray(d.get("relations", []), dtype=np.int64).reshape(-1, 3)
        im = PsgImage(str(d["file_name"]), int(d["height"]), int(d["width"]), str(d["pan_seg_file_name"]),
                      segs, rel, str(d.get("image_id", d["file_name"])))  # fmt: skip
    except KeyError as e:
        raise PsgFormatError(f"psg.json image entry lacks the key {e}") from e
    bad_cat = [s.category_id for s in segs if not 0 <= s.category_id < n_cat]
    if bad_cat:
        raise PsgFormatError(f"{im.file_name}: category ids {bad_cat} outside 0..{n_cat - 1}")
    if rel.size and (rel[:, :2].max() >= len(segs) or rel.min() < 0 or rel[:, 2].max() >= n_pred):
        raise PsgFormatError(
            f"{im.file_name}: relation indices out of range ({len(segs)} segments, {n_pred} predicates)"
        )
    return im


def load_psg(
    json_path: str | Path, image_root: str | Path | None = None, seg_root: str | Path | None = None
) -> PsgDataset:
    """Load ``psg.json``; roots default to the JSON file's folder."""
    json_path = Path(json_path)
    with open(json_path, encoding="utf-8") as f:
        raw = json.load(f)
    for key in ("data", "thing_classes", "stuff_classes", "predicate_classes"):
        if key not in raw:
            raise PsgFormatError(
                f"{json_path} lacks the top-level key {key!r} (not an OpenPSG psg.json?)"
            )
    n_cat = len(raw["thing_classes"]) + len(raw["stuff_classes"])
    images = [_parse_image(d, n_cat, len(raw["predicate_classes"])) for d in raw["data"]]
    root = json_path.parent
    return PsgDataset(
        images=images, thing_classes=list(raw["thing_classes"]), stuff_classes=list(raw["stuff_classes"]),
        predicate_classes=list(raw["predicate_classes"]),
        image_root=Path(image_root) if image_root else root, seg_root=Path(seg_root) if seg_root else root,
        test_image_ids=[str(i) for i in raw.get("test_image_ids", [])],
    )  # fmt: skip


def image_to_json(im: PsgImage) -> dict:
    """The ``data`` entry of one image (``annotations`` derived from ``segments_info``)."""
    segs = [{"id": s.id, "category_id": s.category_id, "isthing": int(s.isthing), "bbox": list(s.bbox_xywh),
             "area": s.area, "iscrowd": s.iscrowd} for s in im.segments]  # fmt: skip
    anns = [{"bbox": [s.bbox_xywh[0], s.bbox_xywh[1], s.bbox_xywh[0] + s.bbox_xywh[2], s.bbox_xywh[1] + s.bbox_xywh[3]],
             "bbox_mode": 0, "category_id": s.category_id} for s in im.segments]  # fmt: skip
    return {"file_name": im.file_name, "height": im.height, "width": im.width, "image_id": im.image_id,
            "pan_seg_file_name": im.pan_seg_file_name, "segments_info": segs, "annotations": anns,
            "relations": [[int(v) for v in r] for r in im.relations]}  # fmt: skip


def save_psg(dataset: PsgDataset, json_path: str | Path) -> None:
    """Write ``dataset`` as ``psg.json`` (images and PNGs are written separately)."""
    raw = {"data": [image_to_json(im) for im in dataset.images], "thing_classes": dataset.thing_classes,
           "stuff_classes": dataset.stuff_classes, "predicate_classes": dataset.predicate_classes,
           "test_image_ids": list(dataset.test_image_ids)}  # fmt: skip
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(raw, f)


def write_panoptic_png(path: str | Path, masks: np.ndarray, segment_ids: list[int]) -> None:
    """Write ``(Ng, H, W)`` non-overlapping masks as a COCO panoptic PNG (later masks win)."""
    ids = np.zeros(masks.shape[1:], dtype=np.int64)
    for m, sid in zip(masks, segment_ids):
        ids[m] = sid
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(id2rgb(ids)).save(path)


def segment_from_mask(
    seg_id: int, category_id: int, mask: np.ndarray, isthing: bool = True
) -> PsgSegment:
    """A :class:`PsgSegment` with the tight XYWH box and area of ``mask``."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError(f"segment {seg_id} has an empty mask")
    x0, y0 = float(xs.min()), float(ys.min())
    return PsgSegment(seg_id, category_id, isthing, (x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0),
                      int(mask.sum()))  # fmt: skip
