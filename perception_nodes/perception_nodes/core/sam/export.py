"""Export SAM's image encoder and prompt encoder + mask decoder to ONNX.

Like ``segment_anything/scripts/export_onnx_model.py``: separate tracing wrapper modules,
dynamic axes, opset 17, then a smoke run of the exported files on onnxruntime against PyTorch.
Differences from the official script, and why:

- The decoder wrapper runs the restructured, exact decoder
  :class:`perception_nodes.core.sam.modules.PromptDecoder` (SAM's real prompt encoder + mask
  decoder weights, branch-free point embedding as in ``SamOnnxModel``; the image tokens are
  projected once per call instead of once per prompt) and also returns the decoder's output
  mask tokens; it returns low-res logits (no upscaling, no mask input), because mask
  post-processing is shared code of the mask generator.
- Inputs ``image_embeddings (1, C, h, w)``, ``point_coords (P, K, 2)``, ``point_labels (P, K)``
  with dynamic ``P`` and ``K``; outputs ``low_res_logits (P, M, 4h, 4w)``,
  ``iou_predictions (P, M)``, ``mask_tokens (P, M, C)``.
- ``upscale_gate=True`` (the onnxruntime backend's cached export) adds an ``iou_threshold``
  input and a ``logit_rows`` output: the output upscaling (about half of the decoder's work)
  runs only for the prompts with a mask above the threshold, like the torch backend. Its shapes
  depend on the data, so the default graph (``pn-export-onnx``, TensorRT) stays ungated.
- ``multimask="both"`` (default) returns all 4 mask slots of one decoder pass (SAM's order:
  index 0 single, 1..3 multimask), so one ONNX serves both modes. The saved graph is
  onnxruntime's *basic* optimisation (constant folding, common-subexpression elimination; plain
  ONNX ops: MatMul, Einsum, Softmax, LayerNormalization, ...).
- The encoder uses the legacy TorchScript exporter (``dynamo=False``): SAM's ViT pads for
  window attention and sizes its relative-position tables with python ints, which the tracer
  turns into constants; that is correct because the input side is fixed (only the batch axis
  is dynamic). The tracer's warnings about it are expected and silenced. MobileSAM's TinyViT
  (``vit_t``) reads the batch size with ``len(x)`` in ``PatchMerging``, which the tracer records
  as a constant (the graph then failed at batch 2 in onnxruntime: "Input channels C is not equal
  to kernel channels * group"); the export traces it through :func:`traceable_batch`, which reads
  it from ``x.shape`` (a traced size), and :func:`verify_export` runs the encoder at batch 2.

Metadata (see :mod:`perception_nodes.core.sam.export_metadata`) goes into ``metadata_props``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import Sam

import perception_nodes
from perception_nodes.core.sam.decoder import mask_slots
from perception_nodes.core.sam.export_metadata import (
    DECODER_SLOTS,
    METADATA_FORMAT,
    MULTIMASK_MODES,
)
from perception_nodes.core.sam.export_tracing import traceable_batch
from perception_nodes.core.sam.modules import PromptDecoder
from perception_nodes.core.weights.files import sha256_file

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# Bumped whenever the exported graphs change (cached exports of an older revision are redone).
# 2: no Expand copies of image-sized tensors, output upscaling as 2-D GEMMs with their biases.
# 3: mask planes first before the pixel shuffle, the image-to-token softmax spelled out, and
#    the optional upscaling gate (``iou_threshold`` input, ``logit_rows`` output).
# 4: the encoder's batch axis really dynamic for TinyViT (vit_t: was fixed at 1 by ``len(x)``).
EXPORT_REVISION = 4
ENCODER_INPUTS = ["images"]
ENCODER_OUTPUTS = ["image_embeddings"]
DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels"]
DECODER_OUTPUTS = ["low_res_logits", "iou_predictions", "mask_tokens"]
# The gated decoder (``upscale_gate=True``): only prompts with a mask whose IoU prediction is
# above its slot's ``iou_threshold`` ((M,) float, one per output slot; NaN: keeps every prompt,
# +inf: the slot keeps none) are upscaled; ``low_res_logits`` is then ``(R, M, 4h, 4w)`` and
# ``logit_rows`` ``(R,)`` int64 says which prompts they are.
# Data-dependent shapes: for onnxruntime on a CPU; TensorRT builds from the ungated graph.
GATED_DECODER_INPUTS = [*DECODER_INPUTS, "iou_threshold"]
GATED_DECODER_OUTPUTS = [*DECODER_OUTPUTS, "logit_rows"]


class SamEncoderOnnx(torch.nn.Module):
    """Tracing wrapper: pre-processed images ``(B, 3, S, S)`` -> embeddings ``(B, C, h, w)``."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images)


class SamDecoderOnnx(torch.nn.Module):
    """Tracing wrapper around :class:`PromptDecoder` (see the module docstring for shapes)."""

    def __init__(self, model: Sam, multimask: str = "both", upscale_gate: bool = False) -> None:
        super().__init__()
        if multimask not in MULTIMASK_MODES:
            raise ValueError(f"multimask must be one of {MULTIMASK_MODES}, got {multimask!r}")
        # one chunk: the tracer would freeze a python loop over the (dynamic) prompt count
        self.decoder = PromptDecoder.from_sam(model, upscale_chunk=None)
        self.multimask = multimask
        self.upscale_gate = upscale_gate
        self.slots = slice(None) if multimask == "both" else mask_slots(multimask == "multimask")

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        iou_threshold: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Outputs named :data:`DECODER_OUTPUTS` (:data:`GATED_DECODER_OUTPUTS` when gated)."""
        if not self.upscale_gate:
            out = self.decoder(image_embeddings, point_coords, point_labels, self.slots)
            return out.low_res_logits, out.iou_predictions, out.mask_tokens
        if iou_threshold is None:
            raise ValueError("the gated decoder needs iou_threshold ((M,) float, NaN: all)")
        out = self.decoder(image_embeddings, point_coords, point_labels, self.slots, iou_threshold)
        return out.low_res_logits, out.iou_predictions, out.mask_tokens, out.logit_rows


def model_geometry(model: Sam) -> tuple[int, tuple[int, int, int]]:
    """``(input_size, (C, h, w))`` of a segment_anything ``Sam``."""
    input_size = int(model.image_encoder.img_size)
    h, w = model.prompt_encoder.image_embedding_size
    return input_size, (int(model.prompt_encoder.embed_dim), int(h), int(w))


def build_metadata(
    model: Sam,
    model_name: str,
    component: str,
    checkpoint_sha256: str,
    checkpoint_file: str = "",
    multimask: str = "",
    opset: int = DEFAULT_OPSET,
    untrained: bool = False,
    upscale_gate: bool = False,
) -> dict[str, str]:
    """The ``metadata_props`` of one export (keys documented in ``export_metadata``)."""
    input_size, embedding_shape = model_geometry(model)
    return {
        "format": METADATA_FORMAT,
        "model": model_name,
        "component": component,
        "input_size": str(input_size),
        "embedding_shape": json.dumps(list(embedding_shape)),
        "pixel_mean": json.dumps([round(float(v), 4) for v in model.pixel_mean.flatten().tolist()]),
        "pixel_std": json.dumps([round(float(v), 4) for v in model.pixel_std.flatten().tolist()]),
        "checkpoint_sha256": checkpoint_sha256,
        "checkpoint_file": checkpoint_file,
        "untrained": "true" if untrained else "false",
        "multimask": multimask,
        "upscale_gate": "true" if upscale_gate else "false",
        "opset": str(opset),
        "export_revision": str(EXPORT_REVISION),
        "perception_nodes_version": perception_nodes.__version__,
        "torch_version": torch.__version__,
        "export_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_metadata(path: str | Path, props: dict[str, str]) -> None:
    """Replace the ``metadata_props`` of the ONNX file at ``path``."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))


def _trace_export(
    module: torch.nn.Module,
    args: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    dynamic_axes: dict,
    opset: int,
) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # Expected TracerWarnings: python ints from tensor sizes (fixed input side) are
        # recorded as constants; see the module docstring.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        # the exporter's note that strided Slice ops are not constant-folded (they run as
        # Slice): expected, and it filled the node's log three times per export
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def export_encoder(
    model: Sam,
    path: str | Path,
    metadata: dict[str, str],
    opset: int = DEFAULT_OPSET,
    example_batch: int = 1,
) -> Path:
    """Export the image encoder (dynamic batch) to ``path`` with ``metadata``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    input_size, _ = model_geometry(model)
    device = next(model.parameters()).device
    images = torch.randn(example_batch, 3, input_size, input_size, device=device)
    with traceable_batch(SamEncoderOnnx(model)) as encoder:
        _trace_export(
            encoder,
            (images,),
            path,
            ENCODER_INPUTS,
            ENCODER_OUTPUTS,
            {"images": {0: "batch"}, "image_embeddings": {0: "batch"}},
            opset,
        )
    write_metadata(path, metadata)
    return path


def export_decoder(
    model: Sam,
    path: str | Path,
    metadata: dict[str, str],
    multimask: str = "both",
    opset: int = DEFAULT_OPSET,
    upscale_gate: bool = False,
) -> Path:
    """Export prompt encoder + mask decoder (dynamic P, K) to ``path``, graph-optimised;
    ``upscale_gate``: the gated graph (:data:`GATED_DECODER_INPUTS`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, (c, h, w) = model_geometry(model)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    embedding = torch.randn(1, c, h, w, generator=gen).to(device)
    coords = (torch.rand(3, 2, 2, generator=gen) * model.image_encoder.img_size).to(device)
    labels = torch.tensor([[1.0, -1.0], [2.0, 3.0], [1.0, 0.0]], device=device)
    dyn = {
        "point_coords": {0: "num_prompts", 1: "num_points"},
        "point_labels": {0: "num_prompts", 1: "num_points"},
        "low_res_logits": {0: "num_upscaled" if upscale_gate else "num_prompts"},
        "iou_predictions": {0: "num_prompts"},
        "mask_tokens": {0: "num_prompts"},
    }
    args = (embedding, coords, labels)
    names = (DECODER_INPUTS, DECODER_OUTPUTS)
    if upscale_gate:
        args += (torch.full((DECODER_SLOTS[multimask],), float("nan"), device=device),)
        names = (GATED_DECODER_INPUTS, GATED_DECODER_OUTPUTS)
        dyn["logit_rows"] = {0: "num_upscaled"}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "decoder_raw.onnx"
        _trace_export(SamDecoderOnnx(model, multimask, upscale_gate), args, raw, *names, dyn, opset)
        _optimise_basic(raw, path)
    write_metadata(path, metadata)
    return path


def _optimise_basic(src: Path, dst: Path) -> None:
    """Save onnxruntime's *basic* (provider-independent) optimisation of ``src`` to ``dst``.

    Basic level = constant folding, redundant-node and common-subexpression elimination;
    the result contains only standard ONNX ops (portable to other runtimes and TensorRT).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


@dataclass
class ExportResult:
    """Files written by :func:`export_sam` and the smoke-run differences (max abs)."""

    encoder_path: Path
    decoder_path: Path
    metadata: dict[str, str]
    max_abs_diff: dict[str, float] = field(default_factory=dict)


def export_sam(
    model: Sam,
    model_name: str,
    checkpoint: str | Path,
    out_dir: str | Path,
    multimask: str = "both",
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    upscale_gate: bool = False,
) -> ExportResult:
    """Export encoder and decoder of ``model`` (loaded from ``checkpoint``) into ``out_dir``.

    Writes ``out_dir/encoder.onnx`` and ``out_dir/decoder.onnx``. With ``verify`` runs both on
    onnxruntime (CPU) against PyTorch on seeded random input and records the max abs
    differences in the result. ``upscale_gate``: the decoder is the gated graph (for
    onnxruntime; see :data:`GATED_DECODER_INPUTS`).
    """
    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir)
    common = dict(
        model=model,
        model_name=model_name,
        checkpoint_sha256=sha256_file(checkpoint),
        checkpoint_file=checkpoint.name,
        opset=opset,
        untrained=bool(getattr(model, "pn_untrained", False)),
    )
    enc_meta = build_metadata(component="encoder", **common)
    dec_meta = build_metadata(
        component="decoder", multimask=multimask, upscale_gate=upscale_gate, **common
    )
    started = time.monotonic()
    enc_path = export_encoder(model, out_dir / "encoder.onnx", enc_meta, opset)
    logger.info("exported encoder to %s in %.1f s", enc_path, time.monotonic() - started)
    dec_path = export_decoder(
        model, out_dir / "decoder.onnx", dec_meta, multimask, opset, upscale_gate
    )
    logger.info("exported decoder to %s", dec_path)
    result = ExportResult(enc_path, dec_path, enc_meta)
    if verify:
        result.max_abs_diff = verify_export(model, enc_path, dec_path, multimask, upscale_gate)
    return result


@torch.no_grad()
def verify_export(
    model: Sam,
    encoder_path: Path,
    decoder_path: Path,
    multimask: str = "both",
    upscale_gate: bool = False,
    num_prompts: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Smoke run: onnxruntime (CPU) vs PyTorch on seeded random input; max abs differences
    (a gated decoder with ``iou_threshold`` NaN: every prompt upscaled). The encoder runs a
    batch of 2 (its batch axis is dynamic: the node encodes cameras together)."""
    import onnxruntime as ort

    cpu = model.to("cpu") if next(model.parameters()).device.type != "cpu" else model
    input_size, (c, h, w) = model_geometry(cpu)
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, input_size, input_size, generator=gen)
    enc = ort.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
    emb_onnx = enc.run(None, {"images": images.numpy()})[0]
    emb_torch = cpu.image_encoder(images)
    encoder_diff = float(np.abs(emb_onnx - emb_torch.numpy()).max())
    emb_torch = emb_torch[:1]  # the decoder takes one image's embedding
    coords = torch.rand(num_prompts, 2, 2, generator=gen) * input_size
    labels = torch.tensor([[1.0, -1.0], [2.0, 3.0]]).repeat((num_prompts + 1) // 2, 1)[:num_prompts]
    dec = ort.InferenceSession(str(decoder_path), providers=["CPUExecutionProvider"])
    feeds = {
        "image_embeddings": emb_torch.numpy(),
        "point_coords": coords.numpy(),
        "point_labels": labels.numpy(),
    }
    if upscale_gate:
        feeds["iou_threshold"] = np.full((DECODER_SLOTS[multimask],), np.nan, dtype=np.float32)
    outs = dec.run(DECODER_OUTPUTS, feeds)
    refs = SamDecoderOnnx(cpu, multimask)(emb_torch, coords, labels)
    diffs = {"image_embeddings": encoder_diff}
    for name, out, ref in zip(DECODER_OUTPUTS, outs, refs):
        diffs[name] = float(np.abs(out - ref.numpy()).max())
    return diffs
