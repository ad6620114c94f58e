"""ONNX exports of a SAM checkpoint in the weights cache, made on first use.

``backend: onnxruntime`` with empty ``encoder_path``/``decoder_path`` and the TensorRT first run
both go through :func:`ensure_onnx_export`, each in its own folder: onnxruntime uses the gated
decoder (``upscale_gate``: only prompts above ``pred_iou_thresh`` are upscaled; data-dependent
shapes) in ``<cache>/onnx/<model>-onnxruntime/``, TensorRT the portable ungated graph in
``<cache>/onnx/<model>/``. ``{encoder,decoder}.onnx`` there is reused when its metadata names
THIS checkpoint (sha256), the ``"both"`` multimask mode, the folder's gate and the current
:data:`~perception_nodes.core.sam.export.EXPORT_REVISION` (a graph change in a newer package
re-exports once); otherwise the checkpoint is exported there (seconds for vit_t, about a
minute for vit_h, logged). The files are written into a private temporary folder and moved in
place, so a crash or a second process exporting at the same time never leaves a half-written
model where the next run would read it; a staging folder whose process is gone (stopped
mid-export: the node exits on SIGINT without waiting) is removed by the next export.

ROS-free.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from perception_nodes.core.weights.checkpoint_io import (
    WRITER_TAG_PATTERN,
    remove_leftovers_of_dead_processes,
    writer_tag,
)

logger = logging.getLogger(__name__)

ONNX_FILES = ("encoder.onnx", "decoder.onnx")
STAGING_PATTERN = re.compile(rf"^\.export-{WRITER_TAG_PATTERN}-")  # the exporting process


class OnnxExportError(RuntimeError):
    """The checkpoint could not be exported to ONNX (the message says why)."""


def onnx_cache_dir(cache_root: str | os.PathLike, model: str, upscale_gate: bool = False) -> Path:
    """Where the exports of registry model ``model`` live: ``<cache_root>/onnx/<model>``
    (ungated, for TensorRT) or ``<cache_root>/onnx/<model>-onnxruntime`` (gated)."""
    return Path(cache_root) / "onnx" / (f"{model}-onnxruntime" if upscale_gate else model)


def reusable_export(
    onnx_dir: Path, checkpoint_sha256: str, upscale_gate: bool = False
) -> tuple[Path, Path] | None:
    """``(encoder, decoder)`` in ``onnx_dir`` when both were exported from the checkpoint with
    sha256 ``checkpoint_sha256`` by this export revision in ``"both"`` mode, the decoder gated
    as asked; else None."""
    from perception_nodes.core.sam.export import EXPORT_REVISION
    from perception_nodes.core.sam.export_metadata import OnnxModelError, read_onnx_metadata

    paths = tuple(onnx_dir / name for name in ONNX_FILES)
    try:
        metas = [read_onnx_metadata(p) for p in paths]
    except OnnxModelError:  # absent, truncated or not ONNX: export again
        return None
    wanted = {"checkpoint_sha256": checkpoint_sha256, "export_revision": str(EXPORT_REVISION)}
    gate = "true" if upscale_gate else "false"
    if all(all(m.get(k) == v for k, v in wanted.items()) for m in metas) and (
        metas[1].get("multimask") == "both" and metas[1].get("upscale_gate", "false") == gate
    ):
        return paths
    return None


def ensure_onnx_export(
    model: str,
    checkpoint: str | os.PathLike,
    onnx_dir: Path,
    checkpoint_sha256: str | None = None,
    upscale_gate: bool = False,
) -> tuple[Path, Path]:
    """``(encoder.onnx, decoder.onnx)`` of ``checkpoint`` (SAM registry ``model``) in
    ``onnx_dir``: reused (:func:`reusable_export`) or exported now. ``checkpoint_sha256``: the
    checkpoint's sha256 when the caller has it already (hashing vit_h takes seconds);
    ``upscale_gate``: the gated decoder graph (onnxruntime). Raises
    :class:`OnnxExportError` when the export fails (unreadable checkpoint, disk full, ...)."""
    from perception_nodes.core.weights.files import sha256_file

    checkpoint = Path(checkpoint)
    try:
        sha = checkpoint_sha256 or sha256_file(checkpoint)
        found = reusable_export(onnx_dir, sha, upscale_gate)
    except OSError as exc:
        raise OnnxExportError(f"cannot read the SAM checkpoint {checkpoint}: {exc}") from exc
    if found is not None:
        logger.info("reusing the ONNX export of %s in %s", checkpoint.name, onnx_dir)
        return found
    started = time.monotonic()
    logger.warning(
        "exporting SAM %s (%s) to ONNX in %s (first run with this checkpoint only) ...",
        model,
        checkpoint.name,
        onnx_dir,
    )
    try:
        _export_into(model, checkpoint, onnx_dir, upscale_gate)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise OnnxExportError(f"exporting SAM {model} to ONNX in {onnx_dir} failed: {exc}") from exc
    logger.warning("ONNX export done in %.1f s", time.monotonic() - started)
    return tuple(onnx_dir / name for name in ONNX_FILES)


def _export_into(model: str, checkpoint: Path, onnx_dir: Path, upscale_gate: bool) -> None:
    """Export into a temporary sibling folder, then move both files into ``onnx_dir``."""
    from perception_nodes.core.sam.export import export_sam
    from perception_nodes.core.sam.registry import build_sam_model

    onnx_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_leftovers_of_dead_processes(onnx_dir, STAGING_PATTERN)
    if removed:
        logger.info("removed %d unfinished export(s) of stopped processes", len(removed))
    staging = Path(tempfile.mkdtemp(prefix=f".export-{writer_tag()}-", dir=onnx_dir))
    try:
        sam = build_sam_model(model, str(checkpoint), device="cpu")
        export_sam(
            sam,
            model,
            checkpoint,
            staging,
            multimask="both",
            verify=False,
            upscale_gate=upscale_gate,
        )
        for name in ONNX_FILES:
            os.replace(staging / name, onnx_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
