"""open_clip models for region labelling: loading, text/crop embeddings and visual tokens.

Models are always built by open_clip's own factory (``open_clip.create_model_and_transforms``
and ``open_clip.get_tokenizer``) from a LOCAL checkpoint file; nothing is downloaded here. Small
test configurations (same ``VisionTransformer``/``TextTransformer`` code, fewer layers, smaller
width) are registered with open_clip's config registry through ``open_clip.add_model_config``.

Conventions: images are ``HxWx3`` uint8 RGB; boxes are XYXY float pixels; masks ``NxHxW`` bool.
All embeddings returned are float32 and L2-normalised.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from perception_nodes.core.classify.clip_crops import (
    crop_window,
    fill_colour_u8,
    normalised_batch,
    pixel_lut,
    reused_crop_buffer,
    square_crops,
)
from perception_nodes.core.classify.clip_crops_batched import batched_crops
from perception_nodes.core.weights import clip as clip_weights
from perception_nodes.core.weights.checkpoint_io import save_atomic
from perception_nodes.core.weights.clip import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_TAG  # noqa: F401 (re-exported)
from perception_nodes.core.weights.files import GENERATED_WEIGHTS, sha256_file

logger = logging.getLogger(__name__)

#: Small test configurations: open_clip's real towers with few layers and a small width.
#: ``vocab_size`` stays 49408 so open_clip's real BPE tokenizer is used unchanged.
TEST_CLIP_CONFIGS: dict[str, dict] = {
    "pn-clip-tiny-test": {
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": 96,
            "layers": 2,
            "width": 64,
            "head_width": 16,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": 64,
            "heads": 4,
            "layers": 2,
        },
    },
    "pn-clip-small-test": {
        "embed_dim": 128,
        "vision_cfg": {
            "image_size": 160,
            "layers": 4,
            "width": 128,
            "head_width": 32,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 128,
            "heads": 4,
            "layers": 4,
        },
    },
}

_register_lock = threading.Lock()
_registered = False


class ClipModelError(ValueError):
    """A CLIP model cannot be built or loaded (unknown name, missing or mismatched file)."""


def register_test_configs() -> None:
    """Register :data:`TEST_CLIP_CONFIGS` with open_clip (idempotent, thread-safe).

    open_clip's registry only reads JSON files, so the dicts are written to a private temp
    folder once and that folder is added with ``open_clip.add_model_config``.
    """
    global _registered
    with _register_lock:
        if _registered:
            return
        folder = Path(tempfile.mkdtemp(prefix="pn_clip_cfg_"))
        for name, cfg in TEST_CLIP_CONFIGS.items():
            (folder / f"{name}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(folder)
        _registered = True


def list_clip_models() -> list[str]:
    """Names accepted by :func:`load_clip_model` (open_clip built-ins + test configs)."""
    register_test_configs()
    return open_clip.list_models()


def fetch_hint(name: str) -> str:
    """How a user fetches official weights for ``name`` (when online)."""
    from perception_nodes.core.weights.clip import clip_registry

    if name in clip_registry():
        return f"fetch it with `pn-fetch-weights clip:{name}` (the default CLIP: `pn-fetch-weights clip`)"
    tags = open_clip.list_pretrained_tags_by_model(name) if name in open_clip.list_models() else []
    return (
        f"{name} has no entry in the weights registry; download one of its open_clip pretrained tags "
        f"({tags or 'none'}) and pass the open_clip_model.safetensors / .bin / .pt file as clip.checkpoint"
    )


def make_generated_clip_checkpoint(name: str, path: str | Path, seed: int = 0) -> Path:
    """Write a checkpoint of ``name`` with seeded random weights (the real architecture).

    The file is ``{"state_dict": ..., "pn_meta": {"generated": True, ...}}``; open_clip's
    ``load_checkpoint`` reads the ``state_dict`` key, :func:`load_clip_model` reads the meta to
    report that labels from these weights mean nothing.
    """
    register_test_configs()
    if name not in open_clip.list_models():
        raise ClipModelError(f"unknown CLIP model {name!r}; known: {', '.join(list_clip_models())}")
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None, device="cpu")
    meta = {"generated": True, "seed": int(seed), "model_name": name}
    # atomic: a start stopped mid-write leaves no truncated file
    return save_atomic({"state_dict": model.state_dict(), "pn_meta": meta}, path)


def _read_meta(path: Path) -> dict:
    if path.suffix not in (".pt", ".pth", ".bin"):
        return {}
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a zip checkpoint (e.g. legacy); open_clip will judge
        return {}
    return dict(ckpt.get("pn_meta", {})) if isinstance(ckpt, dict) else {}


@dataclass
class ClipModel:
    """A loaded open_clip model plus what is needed to feed it.

    Attributes:
        name: open_clip model name (e.g. ``"ViT-B-16"``, ``"pn-clip-tiny-test"``).
        model: the open_clip ``CLIP`` module (eval mode, frozen).
        tokenizer: open_clip tokenizer for ``name``.
        checkpoint: path of the weights file.
        checkpoint_sha256: SHA-256 of that file.
        generated: True when the weights are seeded random (labels mean nothing).
        device: torch device.
    """

    name: str
    model: torch.nn.Module
    tokenizer: object
    checkpoint: Path
    checkpoint_sha256: str
    generated: bool
    device: torch.device
    batched_crops = None  # crops built in batched device operations: None = on a GPU only

    def __post_init__(self) -> None:
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        size = cfg.get("size", self.model.visual.image_size)
        self.image_size: int = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = torch.tensor(
            cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), dtype=torch.float32
        )
        self.std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), dtype=torch.float32)
        self.context_length: int = int(self.tokenizer.context_length)
        self.width: int = int(self.model.visual.transformer.width)
        self.embed_dim: int = int(self.model.text_projection.shape[1])
        self.logit_scale: float = float(self.model.logit_scale.exp().item())
        self._lock = threading.Lock()  # hooks are per-module state: one visual forward at a time

    @property
    def model_id(self) -> str:
        """Identifies architecture AND weights (cache keys use it)."""
        return f"{self.name}@{self.checkpoint_sha256[:16]}"

    @property
    def num_visual_tokens(self) -> int:
        """Tokens T of :meth:`visual_tokens` (class token + grid)."""
        p = self.model.visual.patch_size
        p = p[0] if isinstance(p, (tuple, list)) else p
        return 1 + (self.image_size // int(p)) ** 2

    # ---------------------------------------------------------------- text
    def count_tokens(self, text: str) -> int:
        """BPE tokens of ``text`` including start/end tokens (must be <= ``context_length``)."""
        return len(self.tokenizer.encode(text)) + 2

    @torch.no_grad()
    def encode_text(self, phrases: list[str], batch_size: int = 256) -> np.ndarray:
        """``(V, D)`` float32 normalised text embeddings, one per phrase (no templates added)."""
        out = []
        for i in range(0, len(phrases), batch_size):
            tokens = self.tokenizer(list(phrases[i : i + batch_size])).to(self.device)
            out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu())
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return torch.cat(out).numpy()

    # ---------------------------------------------------------------- images
    def _normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` float in [0, 1] -> model input."""
        m, s = self.mean.to(batch.device)[:, None, None], self.std.to(batch.device)[:, None, None]
        return (batch - m) / s

    def preprocess_full_image(self, image: np.ndarray) -> torch.Tensor:
        """``(1, 3, S, S)`` model input of the whole image, squashed to ``S x S``.

        Squashing (no crop, no pad) keeps token ``(i, j)`` covering image rows ``i*H/g`` and
        columns ``j*W/g`` of a ``g x g`` grid, so every region of the image is visible.
        """
        _check_image(image)
        t = (
            torch.from_numpy(np.ascontiguousarray(image))
            .to(self.device)
            .permute(2, 0, 1)[None]
            .float()
            / 255.0
        )
        t = F.interpolate(
            t,
            size=(self.image_size, self.image_size),
            mode="bicubic",
            antialias=True,
            align_corners=False,
        ).clamp_(0, 1)
        return self._normalize(t)

    @torch.no_grad()
    def visual_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All tokens of the last visual block BEFORE ``ln_post`` and the projection.

        A forward hook on ``model.visual.transformer`` captures its output while the visual
        tower runs unchanged (so the pooled embedding comes from the same pass).

        Args:
            images: ``(B, 3, S, S)`` model input (see :meth:`preprocess_full_image`).
        Returns:
            tokens ``(B, T, width)`` float32 (T = 1 class token + grid tokens) and the
            normalised image embeddings ``(B, D)``.
        """
        captured: list[torch.Tensor] = []
        with self._lock:
            handle = self.model.visual.transformer.register_forward_hook(
                lambda _m, _i, out: captured.append(out)
            )
            try:
                pooled = self.model.encode_image(images)
            finally:
                handle.remove()
        return captured[0].float(), F.normalize(pooled.float(), dim=-1)

    def crop_batch(
        self,
        image: np.ndarray,
        boxes_xyxy: np.ndarray,
        masks: np.ndarray | None = None,
        padding: float = 0.1,
        out: np.ndarray | None = None,
    ) -> torch.Tensor:
        """``(N, 3, S, S)`` model input of one square crop per region (on the CPU written into
        ``out`` when given, a float32 array of that shape: the tensor shares its memory): the
        box grown by ``padding`` (of its longer side) on every side, made square around its
        centre, pixels outside the mask and the image filled with the model's mean colour, then
        preprocessed as open_clip's ``preprocess`` would as a PIL image (:mod:`.clip_crops`).
        On a GPU (or with :attr:`batched_crops` True) all crops are built on the device in a few
        batched operations (:mod:`.clip_crops_batched`: PIL's resize exactly, no host sync); on
        the CPU by default region by region in uint8, normalised by table lookup while in cache
        (faster on one core). Equal uint8 crops give equal floats either way."""
        _check_image(image)
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        h, w = image.shape[:2]
        if masks is not None and (
            masks.ndim != 3 or masks.shape[0] != len(boxes) or masks.shape[1:] != (h, w)
        ):
            raise ClipModelError(
                f"masks must be (N={len(boxes)}, {h}, {w}) bool, got {masks.shape}"
            )
        windows = [crop_window(box, padding, h, w) for box in boxes]
        image = np.ascontiguousarray(image)
        fill = fill_colour_u8(self.mean)
        if torch.device(self.device).type == "cpu" and not self.batched_crops:  # lookup per crop
            lut = pixel_lut(self.mean, self.std)
            crops = square_crops(image, windows, masks, self.image_size, fill, lut, out)
            return torch.from_numpy(crops)
        mean, std = self._pixel_stats_on_device()
        if self.batched_crops is False:  # host crops, ONE copy to the device, normalised there
            crops = square_crops(image, windows, masks, self.image_size, fill)
            return normalised_batch(crops, mean, std, self.device)
        crops = batched_crops(image, windows, masks, self.image_size, fill, self.device)
        crops = crops.div_(255).sub_(mean).div_(std)  # open_clip's ToTensor and Normalize
        return crops if out is None else torch.from_numpy(out).copy_(crops)

    def _pixel_stats_on_device(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(3, 1, 1)`` mean and std on :attr:`device`, copied there once (a copy per call
        would synchronise with a GPU every frame)."""
        cached = getattr(self, "_stats_on_device", None)
        if cached is None or cached[0].device != self.device:
            cached = tuple(t.to(self.device)[:, None, None] for t in (self.mean, self.std))
            self._stats_on_device = cached
        return cached

    @torch.no_grad()
    def encode_image_crops(
        self,
        image: np.ndarray,
        boxes_xyxy: np.ndarray,
        masks: np.ndarray | None = None,
        padding: float = 0.1,
        batch_size: int = 64,
    ) -> np.ndarray:
        """``(N, D)`` float32 normalised CLIP embeddings of masked, padded region crops. On the
        CPU the crops are built ``batch_size`` at a time into this thread's reused buffer
        (:func:`.clip_crops.reused_crop_buffer`), each chunk encoded before the next is built."""
        if torch.device(self.device).type != "cpu":
            batch = self.crop_batch(image, boxes_xyxy, masks, padding)
            chunks = [batch[i : i + batch_size] for i in range(0, len(batch), batch_size)]
        else:
            _check_image(image)  # also when there is no region (no crop_batch call)
            boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
            if masks is not None and (masks.ndim != 3 or masks.shape[0] != len(boxes)):
                raise ClipModelError(f"masks must be (N={len(boxes)}, H, W), got {masks.shape}")
            chunks = (  # built lazily: a chunk's buffer is reused by the next one
                self.crop_batch(image, boxes[i : i + batch_size],
                                None if masks is None else masks[i : i + batch_size], padding,
                                reused_crop_buffer(len(boxes[i : i + batch_size]), self.image_size))
                for i in range(0, len(boxes), batch_size)
            )  # fmt: skip
        out = [F.normalize(self.model.encode_image(b).float(), dim=-1).cpu() for b in chunks]
        return torch.cat(out).numpy() if out else np.zeros((0, self.embed_dim), dtype=np.float32)


def _check_image(image: np.ndarray) -> None:
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
    ):
        got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
        raise ClipModelError(f"image must be an HxWx3 uint8 RGB numpy array, got {got}")


def load_clip_model(
    name: str, checkpoint: str | Path, device: str | torch.device = "cpu"
) -> ClipModel:
    """Build ``name`` with open_clip's factory and load ``checkpoint`` (a local file).

    Raises:
        ClipModelError: unknown name, or the file is missing (the message says how to fetch
            official weights) or does not fit the architecture.
    """
    register_test_configs()
    if name not in open_clip.list_models():
        raise ClipModelError(f"unknown CLIP model {name!r}; known: {', '.join(list_clip_models())}")
    if checkpoint is None or not Path(checkpoint).is_file():
        raise ClipModelError(
            f"CLIP checkpoint file for {name!r} not found: {checkpoint}\n{fetch_hint(name)}"
        )
    path = Path(checkpoint)
    try:
        model = clip_weights.create_clip_with_weights(name, path).to(device)  # weights held once
    except RuntimeError as exc:
        raise ClipModelError(f"cannot load {path} into CLIP model {name!r}: {exc}") from exc
    model.eval().requires_grad_(False)
    meta = _read_meta(path)
    if meta.get("model_name", name) != name:
        raise ClipModelError(f"{path} was generated for {meta['model_name']!r}, not {name!r}")
    generated = bool(meta.get("generated", False))
    if generated:
        logger.warning(
            "CLIP %s uses %s from %s: labels are not meaningful", name, GENERATED_WEIGHTS, path
        )
    return ClipModel(
        name=name,
        model=model,
        tokenizer=open_clip.get_tokenizer(name),
        checkpoint=path,
        checkpoint_sha256=sha256_file(path),
        generated=generated,
        device=torch.device(device),
    )
