"""Shared fixtures for the vocabulary / classifier / RegionSpot tests (generated weights only)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from perception_nodes.core.classify.clip_model import (
    ClipModel,
    load_clip_model,
    make_generated_clip_checkpoint,
)
from perception_nodes.core.types import Segmentation

TINY_CLIP = "pn-clip-tiny-test"
TINY_SAM = "sam_tiny_test"

#: class name -> (bundled photo, crop XYXY around its main object)
SOURCES = {
    "cat": ("chelsea", (110, 20, 330, 300)),
    "coffee cup": ("coffee", (180, 20, 480, 300)),
    "astronaut": ("astronaut", (130, 0, 400, 300)),
    "rocket": ("rocket", (200, 0, 420, 427)),
}


@lru_cache(maxsize=None)
def _source(name: str) -> np.ndarray:
    photo, (x0, y0, x1, y1) = SOURCES[name]
    return getattr(skimage.data, photo)()[y0:y1, x0:x1]


def tiny_clip(tmp_dir: Path, seed: int = 0) -> ClipModel:
    """The tiny test CLIP with generated weights, saved and loaded through the real loader."""
    path = Path(tmp_dir) / f"clip_tiny_{seed}.pt"
    if not path.is_file():
        make_generated_clip_checkpoint(TINY_CLIP, path, seed)
    return load_clip_model(TINY_CLIP, path)


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour field, ``size x size x 3`` uint8."""
    small = rng.integers(60, 200, size=(4, 4, 3), dtype=np.uint8)
    return np.array(Image.fromarray(small).resize((size, size), Image.BILINEAR))


def paste_objects(
    size: int, n: int, rng: np.random.Generator, min_frac: float = 0.25, max_frac: float = 0.5
) -> tuple[np.ndarray, list[tuple]]:
    """An image with ``n`` non-overlapping photo patches; returns it and (x, y, w, h, class_name)."""
    img = background(size, rng)
    names = list(SOURCES)
    placed: list[tuple] = []
    for _ in range(50 * n):
        if len(placed) == n:
            break
        s = int(rng.integers(int(size * min_frac), int(size * max_frac)))
        x, y = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
        if any(
            x < px + pw and px < x + s and y < py + ph and py < y + s
            for px, py, pw, ph, _ in placed
        ):
            continue
        name = names[int(rng.integers(len(names)))]
        src = _source(name)
        # random sub-crop of the source (80-100% of it) so patches of a class differ
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.8, 1.0)), int(w * rng.uniform(0.8, 1.0))
        oy, ox = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        patch = Image.fromarray(np.ascontiguousarray(src[oy : oy + ch, ox : ox + cw])).resize(
            (s, s), Image.BILINEAR
        )
        img[y : y + s, x : x + s] = np.asarray(patch)
        placed.append((x, y, s, s, name))
    return img, placed


def make_coco_dataset(
    root: Path,
    n_images: int = 40,
    size: int = 128,
    objects: int = 3,
    seed: int = 0,
    min_frac: float = 0.25,
    max_frac: float = 0.5,
) -> tuple[Path, Path]:
    """Write ``root/images/*.png`` + ``root/instances.json`` (COCO format); returns (images dir, json)."""
    rng = np.random.default_rng(seed)
    images_dir = Path(root) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(SOURCES)]
    cat_id = {c["name"]: c["id"] for c in cats}
    images, anns = [], []
    for i in range(n_images):
        img, placed = paste_objects(size, objects, rng, min_frac, max_frac)
        fname = f"img_{i:04d}.png"
        Image.fromarray(img).save(images_dir / fname)
        images.append({"id": i + 1, "file_name": fname, "height": size, "width": size})
        for x, y, w, h, name in placed:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat_id[name],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    path = Path(root) / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return images_dir, path


def box_segmentation(
    image: np.ndarray, boxes: np.ndarray, tokens: np.ndarray | None = None
) -> Segmentation:
    """A Segmentation whose masks fill the given XYXY boxes (for classifier tests)."""
    h, w = image.shape[:2]
    n = len(boxes)
    masks = np.zeros((n, h, w), dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes).astype(int)):
        masks[i, y0:y1, x0:x1] = True
    if tokens is None:
        tokens = np.random.default_rng(0).normal(size=(n, 256)).astype(np.float32)
    return Segmentation(
        masks=masks,
        boxes_xyxy=np.asarray(boxes, np.float32),
        areas=masks.sum((1, 2)).astype(np.int64),
        predicted_iou=np.ones(n, np.float32),
        stability_score=np.ones(n, np.float32),
        tokens=tokens,
        point_coords=np.full((n, 2), np.nan, np.float32),
        image_size=(h, w),
    )


#: Classes for the head-learning test: name -> (RGB colour, pattern). The class IS the colour:
#: with FROZEN RANDOM encoders only low-level content survives, and colour survives best. A
#: random ViT patch embedding is a random linear map of a patch's pixels, which keeps its mean
#: colour; a ridge probe on CLIP-tiny tokens pooled inside the boxes separates these six colours
#: perfectly, whereas mixed fine textures (stripes/dots/checks whose phase changes every patch)
#: drop it to ~60%. Random SAM mask tokens carry the box position (a probe recovers the grid
#: cell perfectly) but not the content (a probe on them alone is near chance).
TEXTURE_CLASSES: dict[str, tuple[tuple[int, int, int], str]] = {
    "red box": ((210, 40, 40), "plain"),
    "green ball": ((40, 190, 60), "plain"),
    "blue tile": ((40, 70, 220), "plain"),
    "yellow card": ((230, 210, 40), "plain"),
    "magenta cup": ((200, 50, 200), "plain"),
    "cyan bottle": ((50, 200, 210), "plain"),
}


def texture_patch(
    size: int, colour: tuple[int, int, int], pattern: str, rng: np.random.Generator
) -> np.ndarray:
    """``size x size x 3`` uint8 patch of ``colour`` (jittered) with ``pattern`` in a darker shade."""
    c = np.clip(np.asarray(colour, np.float32) + rng.normal(0, 12, 3), 0, 255)
    period = int(rng.integers(6, 11))
    yy, xx = np.mgrid[0:size, 0:size]
    if pattern == "stripes":
        on = ((xx + yy) // (period // 2)) % 2 == 0
    elif pattern == "dots":
        on = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 3) ** 2
    elif pattern == "checker":
        on = ((xx // period) + (yy // period)) % 2 == 0
    else:
        on = np.zeros((size, size), bool)
    patch = np.where(on[..., None], c * 0.45, c)
    patch = patch + rng.normal(0, 6, patch.shape)
    return np.clip(patch, 0, 255).astype(np.uint8)


def make_texture_coco_dataset(
    root: Path,
    n_images: int = 32,
    size: int = 128,
    grid: int = 2,
    seed: int = 0,
    fill: float = 0.9,
    one_class_per_image: bool = False,
) -> tuple[Path, Path]:
    """COCO-format dataset of textured squares on a grey noisy background (see TEXTURE_CLASSES).

    The image is cut into ``grid x grid`` cells; each cell holds (with probability ``fill``)
    one square of a random class, 60-85% of the cell's side, at a random offset inside it.
    With ``one_class_per_image`` every square of an image has the image's class (so the
    image's content alone decides the label); otherwise classes vary within an image and
    labelling a box needs the CLIP tokens AT that box.
    Writes ``root/images/*.png`` and ``root/instances.json``; returns (images dir, json path).
    """
    rng = np.random.default_rng(seed)
    images_dir = Path(root) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    names = list(TEXTURE_CLASSES)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    cell = size // grid
    images, anns = [], []
    for i in range(n_images):
        img = np.clip(rng.normal(128, 10, (size, size, 3)), 0, 255).astype(np.uint8)
        image_class = int(rng.integers(len(names)))
        for gy in range(grid):
            for gx in range(grid):
                if rng.random() > fill:
                    continue
                s = int(rng.integers(int(cell * 0.6), int(cell * 0.85) + 1))
                x = gx * cell + int(rng.integers(0, cell - s + 1))
                y = gy * cell + int(rng.integers(0, cell - s + 1))
                c = image_class if one_class_per_image else int(rng.integers(len(names)))
                colour, pattern = TEXTURE_CLASSES[names[c]]
                img[y : y + s, x : x + s] = texture_patch(s, colour, pattern, rng)
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": c + 1,
                        "bbox": [x, y, s, s],
                        "area": s * s,
                        "iscrowd": 0,
                    }
                )
        fname = f"tex_{i:04d}.png"
        Image.fromarray(img).save(images_dir / fname)
        images.append({"id": i + 1, "file_name": fname, "height": size, "width": size})
    path = Path(root) / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return images_dir, path
