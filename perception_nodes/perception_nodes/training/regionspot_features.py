"""The frozen encoders' outputs the RegionSpot head trains on, computed once per image and
cached on disk: SAM mask tokens ``(n, 256)`` of the ground-truth boxes used as box prompts
(XYXY pixels) and CLIP's last-block visual tokens ``(T, W)`` of the whole image.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from perception_nodes.core.classify.clip_model import ClipModel
from perception_nodes.training.coco_dataset import read_rgb

#: (image HxWx3 uint8 RGB, boxes (n, 4) XYXY pixels) -> (n, 256) SAM mask tokens
BoxTokenFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def sam_box_token_fn(
    sam_model: str, sam_checkpoint: str | Path, device: str = "cpu"
) -> tuple[BoxTokenFn, bool]:
    """Mask tokens of box prompts from the SAM engineer's ``MaskGenerator.predict_boxes``.

    Returns the function and whether the SAM weights are untrained.
    """
    from perception_nodes.core.sam.amg import MaskGenerator
    from perception_nodes.core.sam.backends import create_backend

    backend = create_backend("torch", model=sam_model, checkpoint=sam_checkpoint, device=device)
    gen = MaskGenerator(backend)

    def fn(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return np.asarray(gen.predict_boxes(image, boxes).tokens, dtype=np.float32)

    return fn, bool(getattr(backend, "untrained", False))


class FeatureCache:
    """Frozen-encoder outputs per image on disk: ``{cache_dir}/{key}/{image_id}_{boxes_hash}.pt``.

    ``key`` hashes the SAM and CLIP names and checkpoint hashes, so other weights never reuse it.
    """

    def __init__(
        self, cache_dir: str | Path, sam_model: str, sam_sha: str, clip: ClipModel
    ) -> None:
        ident = json.dumps([sam_model, sam_sha, clip.name, clip.checkpoint_sha256, clip.image_size])
        self.dir = Path(cache_dir) / hashlib.sha256(ident.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "encoders.json").write_text(ident)

    def path(self, rec: dict) -> Path:
        h = hashlib.sha1(rec["boxes"].tobytes()).hexdigest()[:10]
        return self.dir / f"{rec['id']}_{h}.pt"

    def build(
        self,
        records: list[dict],
        images_dir: Path,
        box_tokens: BoxTokenFn,
        clip: ClipModel,
        progress: bool = True,
    ) -> list[dict]:
        """Features ``{"tokens": (n,256), "visual": (T,W), "labels": (n,)}`` per record (computed once)."""
        out = []
        for rec in tqdm(records, desc="encoding images (cached)", disable=not progress, unit="img"):
            p = self.path(rec)
            if not p.is_file():
                image = read_rgb(images_dir / rec["file_name"])
                tokens = box_tokens(image, rec["boxes"])
                visual, _ = clip.visual_tokens(clip.preprocess_full_image(image))
                feats = {
                    "tokens": torch.from_numpy(tokens).half(),
                    "visual": visual[0].cpu().half(),
                    "labels": torch.from_numpy(rec["labels"]),
                }
                torch.save(feats, p.with_suffix(".tmp"))
                p.with_suffix(".tmp").replace(p)
            out.append(torch.load(p, map_location="cpu", weights_only=True))
        return out
