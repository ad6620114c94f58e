"""Registry of SAM-family checkpoints and the loader that builds them.

Like segment_anything's ``sam_model_registry`` (thin builders over one ``Sam`` class) plus
open_clip's ``pretrained.py`` (download source, checksum and pre-processing kept with each
weight tag). Every entry builds a real ``segment_anything.modeling.Sam``; only the image
encoder differs (ViT-B/L/H, MobileSAM's TinyViT, or a tiny ViT for tests).

sha256 / sizes of the official files: the values published with segment-anything's checkpoints
(``sam_vit_b_01ec64.pth`` etc.) and MobileSAM's ``weights/mobile_sam.pt``, as pinned by several
independent projects; ``pn-fetch-weights`` verifies them on download.
"""

from __future__ import annotations

import logging
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from perception_nodes.core.config import SAM_MODEL_NAMES
from perception_nodes.core.weights.checkpoint_io import assign_weights, read_weights, save_atomic
from perception_nodes.core.weights.files import (
    GENERATED_WEIGHTS,
    CheckpointArchitectureError,
    CheckpointCorruptedError,
    CheckpointNotFoundError,
    ChecksumMismatchError,
    apply_index_override,
    cached_path,
    missing_file_message,
    sha256_file,
)

logger = logging.getLogger(__name__)

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
GENERATED_MARKER_KEY = "__perception_nodes_generated_seed__"
"""Extra state_dict entry written by :func:`make_generated_checkpoint` (popped on load)."""


@dataclass(frozen=True)
class SamModelSpec:
    """One SAM-family checkpoint: where it comes from and how to build/pre-process it.

    Attributes:
        name: registry key.
        builder: returns the (randomly initialised) ``Sam`` architecture, in eval mode.
        url / filename / sha256 / size_bytes: the official weight file (None for test-only).
        license: licence of the weights.
        source: project the weights come from.
        params_m: parameter count, millions (whole model).
        input_size: side of the square encoder input, pixels.
        pixel_mean / pixel_std: RGB normalisation on 0..255 values.
        test_only: untrained architecture for tests/benchmarks; never meaningful output.
    """

    name: str
    builder: Callable[[], Sam] = field(repr=False)
    url: str | None
    filename: str | None
    sha256: str | None
    size_bytes: int | None
    license: str
    source: str
    params_m: float
    description: str = ""
    input_size: int = 1024
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD
    test_only: bool = False


def _build_official(name: str) -> Sam:
    """segment_anything's public builder for ``name`` (``vit_b``/``vit_l``/``vit_h``), without
    a checkpoint (the weights are loaded and checked by :func:`build_sam_model`)."""
    return sam_model_registry[name](checkpoint=None)


def _build_tiny_vit(embed_dim: int, depth: int, heads: int, global_idx: list[int]) -> Sam:
    """A small ViT-SAM for tests, from segment_anything's public modules with the arguments of
    its own builders (1024 input, patch 16, window 14, relative positions) except the encoder's
    width, depth, heads and global-attention blocks."""
    encoder = ImageEncoderViT(
        depth=depth,
        embed_dim=embed_dim,
        img_size=1024,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=heads,
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=global_idx,
        window_size=14,
        out_chans=256,
    )
    prompt, decoder = _sam_prompt_and_decoder()
    sam = Sam(
        encoder, prompt, decoder, pixel_mean=list(SAM_PIXEL_MEAN), pixel_std=list(SAM_PIXEL_STD)
    )
    return sam.eval()


def _sam_prompt_and_decoder() -> tuple[PromptEncoder, MaskDecoder]:
    """SAM's standard 256-d prompt encoder and mask decoder (as segment_anything's builders
    make them)."""
    prompt = PromptEncoder(
        embed_dim=256,
        image_embedding_size=(64, 64),
        input_image_size=(1024, 1024),
        mask_in_chans=16,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return prompt, decoder


def _build_vit_t() -> Sam:
    """MobileSAM: TinyViT-5M image encoder + the unchanged SAM prompt encoder / mask decoder.

    TinyViT comes from ``mobilesam-mirror`` (a verbatim packaging of MobileSAM's
    ``mobile_sam/modeling/tiny_vit_sam.py``; checked against the upstream repository), with the
    same arguments as MobileSAM's ``build_sam_vit_t`` so official ``mobile_sam.pt`` state_dicts
    load. Importing it re-registers TinyViT names in timm's model registry (warning silenced).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mobile_sam.modeling.tiny_vit_sam import TinyViT

    encoder = TinyViT(
        img_size=1024,
        in_chans=3,
        num_classes=1000,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )
    prompt, decoder = _sam_prompt_and_decoder()
    sam = Sam(
        encoder, prompt, decoder, pixel_mean=list(SAM_PIXEL_MEAN), pixel_std=list(SAM_PIXEL_STD)
    )
    return sam.eval()


_FB = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM_SOURCE = "facebookresearch/segment-anything"

SAM_MODELS: dict[str, SamModelSpec] = {
    "vit_b": SamModelSpec(
        name="vit_b",
        builder=partial(_build_official, "vit_b"),
        url=_FB + "sam_vit_b_01ec64.pth",
        filename="sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size_bytes=375042383,
        license="Apache-2.0",
        source=_SAM_SOURCE,
        params_m=93.7,
        description="SAM ViT-B (official)",
    ),
    "vit_l": SamModelSpec(
        name="vit_l",
        builder=partial(_build_official, "vit_l"),
        url=_FB + "sam_vit_l_0b3195.pth",
        filename="sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        size_bytes=1249524607,
        license="Apache-2.0",
        source=_SAM_SOURCE,
        params_m=312.3,
        description="SAM ViT-L (official)",
    ),
    "vit_h": SamModelSpec(
        name="vit_h",
        builder=partial(_build_official, "vit_h"),
        url=_FB + "sam_vit_h_4b8939.pth",
        filename="sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size_bytes=2564550879,
        license="Apache-2.0",
        source=_SAM_SOURCE,
        params_m=641.1,
        description="SAM ViT-H (official)",
    ),
    "vit_t": SamModelSpec(
        name="vit_t",
        builder=_build_vit_t,
        url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        filename="mobile_sam.pt",
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        size_bytes=40728226,
        license="Apache-2.0",
        source="ChaoningZhang/MobileSAM",
        params_m=10.1,
        description="MobileSAM: TinyViT-5M encoder distilled from ViT-H, same SAM decoder",
    ),
    "sam_tiny_test": SamModelSpec(
        name="sam_tiny_test",
        builder=partial(_build_tiny_vit, 64, 2, 2, [1]),
        url=None,
        filename=None,
        sha256=None,
        size_bytes=None,
        license="n/a (untrained)",
        source="perception_nodes tests",
        params_m=5.1,
        test_only=True,
        description="TEST ONLY, untrained: real ViT encoder (64-d, 2 blocks) + real SAM decoder",
    ),
}


if tuple(SAM_MODELS) != SAM_MODEL_NAMES:  # the allowed names are declared once, in core/config.py
    raise RuntimeError(
        f"SAM_MODELS {tuple(SAM_MODELS)} != core.config.SAM_MODEL_NAMES {SAM_MODEL_NAMES}"
    )


def get_spec(name: str) -> SamModelSpec:
    """Registry entry ``name``; ``KeyError`` (also a LookupError) listing valid names."""
    try:
        spec = SAM_MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown SAM model {name!r}; valid names: {', '.join(SAM_MODELS)}"
        ) from None
    return apply_index_override(spec)


def resolve_checkpoint(
    name: str, checkpoint: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path:
    """Path of the weight file for registry model ``name``.

    ``checkpoint`` (a file path) wins when given; otherwise the cached registry file. Raises
    :class:`CheckpointNotFoundError` with fetch instructions when the file is absent.
    """
    spec = get_spec(name)
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointNotFoundError(
                f"checkpoint for model {name!r} not found: {path} (expected a state_dict file "
                f"saved with torch.save)"
                + (f"\n{missing_file_message(spec, path)}" if spec.url else "")
            )
        return path
    if not spec.url:
        raise CheckpointNotFoundError(
            f"model {name!r} is test-only and has no download; pass a checkpoint path "
            f"(e.g. one written by :func:`make_generated_checkpoint`)"
        )
    path = cached_path(spec, cache_dir)
    if not path.is_file():
        raise CheckpointNotFoundError(missing_file_message(spec, path, cache_dir))
    return path


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """Load a state_dict safely; return it and the generated-weights seed (None if real)."""
    try:
        obj = read_weights(path)  # memory-mapped: see build_sam_model
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointCorruptedError(
            f"cannot read {path} as a torch state_dict (truncated or corrupted download, or not a "
            f"weights-only checkpoint): {exc}"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointCorruptedError(f"{path} does not hold a state_dict (dict of tensors)")
    seed = obj.pop(GENERATED_MARKER_KEY, None)
    return obj, (int(seed) if seed is not None else None)


def _check_architecture(model: Sam, state: dict[str, torch.Tensor], name: str, path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:

        def head(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... (+{len(items) - 8})" if len(items) > 8 else "")

        parts = [f"checkpoint {path} does not match the {name!r} architecture"]
        if missing:
            parts.append(f"{len(missing)} missing keys: {head(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {head(unexpected)}")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches: {head(wrong)}")
        parts.append(
            "is it a checkpoint of another model? (valid names: " + ", ".join(SAM_MODELS) + ")"
        )
        raise CheckpointArchitectureError("\n  ".join(parts))


def build_sam_model(
    name: str,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    verify_sha256: bool | None = None,
    cache_dir: str | Path | None = None,
) -> Sam:
    """Build registry model ``name`` and load its weights (``torch.load(weights_only=True)``).

    The weights are held once: the checkpoint is memory-mapped and its tensors become the
    model's (``core.weights.checkpoint_io.assign_weights``; a copying ``load_state_dict`` only
    for files whose tensors differ in dtype or layout), instead of a copy read into memory and
    copied again into the randomly initialised model (vit_h: 2.5 GB twice at the peak).

    Args:
        checkpoint: state_dict file; None -> the cached official file (see
            :func:`resolve_checkpoint`).
        verify_sha256: None -> verify when the file is the registry's official file (same file
            name) and the spec pins a sha256; True -> always (fails for other files); False -> never.

    Returns:
        ``segment_anything.modeling.Sam`` in eval mode on ``device``; attribute
        ``pn_untrained`` is True when the weights were made by :func:`make_generated_checkpoint`.

    Raises:
        CheckpointNotFoundError, ChecksumMismatchError, CheckpointCorruptedError,
        CheckpointArchitectureError (all ``ValueError`` subclasses), KeyError for unknown names.
    """
    spec = get_spec(name)
    path = resolve_checkpoint(name, checkpoint, cache_dir)
    if verify_sha256 is None:
        verify_sha256 = spec.sha256 is not None and path.name == spec.filename
    if verify_sha256:
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise ChecksumMismatchError(
                f"sha256 of {path} is {actual}, expected {spec.sha256} for model {name!r}: the "
                f"file is corrupted or another version; delete it and run `pn-fetch-weights {name}`"
            )
    state, seed = _read_state_dict(path)
    model = spec.builder()
    _check_architecture(model, state, name, path)
    if not assign_weights(model, state):  # the file's tensors become the model's: no copy
        model.load_state_dict(state)
    del state
    model.pn_untrained = seed is not None or spec.test_only  # type: ignore[attr-defined]
    if model.pn_untrained:
        logger.warning(
            "model %r uses %s from %s: output is not meaningful", name, GENERATED_WEIGHTS, path
        )
    return model.to(device).eval()


def make_generated_checkpoint(name: str, path: str | Path, seed: int = 0) -> Path:
    """Save a seeded random init of the real ``name`` architecture as a state_dict.

    For tests, demos and benchmarks where real weights cannot be downloaded. The file carries
    a marker entry so loaders know the weights are untrained.
    """
    spec = get_spec(name)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = spec.builder()
    state = dict(model.state_dict())
    state[GENERATED_MARKER_KEY] = torch.tensor(seed, dtype=torch.int64)
    return save_atomic(state, path)  # a start stopped mid-write leaves no truncated file
