"""Metadata carried inside exported SAM ONNX files (``ModelProto.metadata_props``).

Written by :mod:`perception_nodes.core.sam.export`, read by the onnxruntime backend and by
``pn-build-engine``. All values are strings (ONNX stores string pairs); lists are JSON.

Keys:
    format: layout version of these keys (``"1"``).
    model: registry name (``"vit_b"``, ``"sam_tiny_test"``, ...).
    component: ``"encoder"`` or ``"decoder"``.
    input_size: side of the square encoder input, pixels.
    embedding_shape: JSON ``[C, h, w]`` of one image embedding.
    pixel_mean / pixel_std: JSON RGB normalisation on 0..255 values.
    checkpoint_sha256: sha256 of the PyTorch checkpoint file the weights came from.
    checkpoint_file: its file name (information only).
    untrained: ``"true"`` when the checkpoint was generated (random weights).
    multimask: decoder outputs: ``"both"`` (M = 4: index 0 the single-mask output, 1..3 the
        multimask outputs, SAM's own order), ``"multimask"`` (M = 3) or ``"single"`` (M = 1).
    opset: ONNX opset of the export.
    export_revision: revision of the exported graphs (``export.EXPORT_REVISION``); cached
        exports of another revision are redone (``onnx_cache``).
    perception_nodes_version, torch_version, export_time (ISO-8601 UTC).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

METADATA_FORMAT = "1"
MULTIMASK_MODES = ("both", "multimask", "single")
DECODER_SLOTS = {"both": 4, "multimask": 3, "single": 1}  # M, the decoder's outputs per prompt
REQUIRED_KEYS = ("model", "component", "input_size", "embedding_shape", "checkpoint_sha256")


class OnnxModelError(ValueError):
    """An ONNX file is missing, unreadable, corrupted or lacks our metadata."""


class ExportMismatchError(ValueError):
    """An encoder and a decoder ONNX that do not belong together (different checkpoints)."""


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (weights stored externally are not read)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"ONNX file {path} not found; export it with pn-export-onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends from protobuf
        raise OnnxModelError(
            f"{path} is not a readable ONNX model (corrupted or truncated?): {exc}"
        ) from exc
    return {p.key: p.value for p in proto.metadata_props}


def check_metadata(meta: dict[str, str], path: str | os.PathLike, component: str) -> None:
    """Raise :class:`OnnxModelError` unless ``meta`` is pn-export-onnx metadata of ``component``."""
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise OnnxModelError(
            f"{path} lacks the perception_nodes metadata {missing}: it was not written by "
            "pn-export-onnx (re-export it with pn-export-onnx)"
        )
    if meta["component"] != component:
        raise OnnxModelError(
            f"{path} is a SAM {meta['component']} export, but a {component} was expected "
            "(encoder and decoder paths swapped?)"
        )


def pair_problems(encoder_meta: dict[str, str], decoder_meta: dict[str, str]) -> list[str]:
    """Why an encoder and a decoder export do not belong together (empty list: they do)."""
    problems = []
    for key in ("model", "checkpoint_sha256", "embedding_shape", "input_size"):
        a, b = encoder_meta.get(key), decoder_meta.get(key)
        if a != b:
            problems.append(f"{key}: encoder {a!r} vs decoder {b!r}")
    return problems


def embedding_shape_of(meta: dict[str, str]) -> tuple[int, int, int]:
    c, h, w = (int(v) for v in json.loads(meta["embedding_shape"]))
    return c, h, w
