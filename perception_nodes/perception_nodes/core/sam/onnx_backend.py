"""The ``onnxruntime`` SAM backend: runs the ONNX files written by ``pn-export-onnx``.

CPU execution provider everywhere; the CUDA execution provider when ``device`` starts with
``"cuda"`` and onnxruntime-gpu provides it (otherwise a clear error). On CUDA the tensors
stay on the GPU: inputs and outputs are bound to torch-allocated CUDA buffers (I/O binding),
no host round trip. The input size and embedding shape come from the files' metadata, and an
encoder and a decoder exported from different checkpoints are refused.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from perception_nodes.core.sam.backend import DecoderOutput, SamBackend
from perception_nodes.core.sam.export_metadata import (
    DECODER_SLOTS,
    ExportMismatchError,
    OnnxModelError,
    check_metadata,
    embedding_shape_of,
    pair_problems,
)
from perception_nodes.core.weights.files import GENERATED_WEIGHTS

logger = logging.getLogger(__name__)

_EXPORT_HINT = "export them with `pn-export-onnx --model <name> --out-dir <dir>` (models/EXPORT.md)"


def _import_ort():
    import onnxruntime as ort

    return ort


#: Intra-op threads of sessions opened without ``intra_op_threads`` (None: onnxruntime's own
#: default, one per core). pn-process-bag's worker processes set their thread count here before
#: loading, so two one-thread workers on two cores do not run four compute threads.
DEFAULT_INTRA_OP_THREADS: int | None = None


def session_options(ort, intra_op_threads: int | None = None):
    """The ``SessionOptions`` of every session this package opens (backend and benchmarks).

    Intra-op threads do not spin-wait after a run (``session.intra_op.allow_spinning=0``): the
    encoder's and the decoder's sessions have a thread pool each, and on a small CPU a pool
    spinning after its run takes the cores from the next one (and from the node's service
    threads). Measured on a 2-core CPU (two sessions alternating, as in the decoder benchmark):
    the restructured decoder's batch 1.62 s -> 1.56 s, the official graph's 3.12 s -> 3.18 s.

    No CPU memory arena (``enable_cpu_mem_arena``): the arena keeps the high-water mark of every
    decoder batch's buffers for the life of the session. The pipeline with the defaults (vit_t on
    onnxruntime, CLIP ViT-B-16) on the demo photos peaked at 6.26 GB RSS with it and 3.42 GB
    without (2.19 GB after loading; shared 2-core VM).
    """
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    if intra_op_threads is None:
        intra_op_threads = DEFAULT_INTRA_OP_THREADS
    if intra_op_threads is not None:
        options.intra_op_num_threads = int(intra_op_threads)
    return options


def select_providers(device: str | torch.device, available: list[str]) -> list[str]:
    """onnxruntime execution providers for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Raises:
        RuntimeError: CUDA asked for but the CUDA provider is not available.
        ValueError: unknown device type.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                f"device {str(device)!r} asked for, but onnxruntime offers only {available}: "
                "install onnxruntime-gpu (matching your CUDA), or use device='cpu', or the "
                "'torch'/'tensorrt' backend"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {str(device)!r}")


class OnnxRuntimeSamBackend(SamBackend):
    """SAM on onnxruntime.

    Args:
        encoder_path: ``encoder.onnx`` from ``pn-export-onnx``.
        decoder_path: ``decoder.onnx`` from the same export (same checkpoint).
        device: ``"cpu"`` or ``"cuda[:N]"``.

    Attributes:
        metadata: the encoder's metadata (model, checkpoint sha256, pixel mean/std, ...).
        decoder_mode: ``"both"``, ``"multimask"`` or ``"single"`` (see ``export_metadata``).
        untrained: the export came from generated (random) weights.
        encodes_batches: False once a batch of images failed in the encoder (logged once):
            :meth:`encode` then runs the images one by one.
    """

    name = "onnxruntime"

    def __init__(
        self,
        encoder_path: str | os.PathLike,
        decoder_path: str | os.PathLike,
        device: str | torch.device = "cpu",
        intra_op_threads: int | None = None,
    ) -> None:
        ort = _import_ort()
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", 0)
        providers = select_providers(self.device, ort.get_available_providers())
        options = session_options(ort, intra_op_threads)
        provider_options = self._provider_options(providers)
        self._encoder = _open_session(
            ort, encoder_path, options, providers, provider_options, "encoder"
        )
        self._decoder = _open_session(
            ort, decoder_path, options, providers, provider_options, "decoder"
        )
        enc_meta = self._encoder.get_modelmeta().custom_metadata_map
        dec_meta = self._decoder.get_modelmeta().custom_metadata_map
        check_metadata(enc_meta, encoder_path, "encoder")
        check_metadata(dec_meta, decoder_path, "decoder")
        problems = pair_problems(enc_meta, dec_meta)
        if problems:
            raise ExportMismatchError(
                f"encoder {encoder_path} and decoder {decoder_path} come from different exports:"
                "\n  - "
                + "\n  - ".join(problems)
                + f"\nUse the encoder.onnx and decoder.onnx of one export; {_EXPORT_HINT}"
            )
        self.metadata = dict(enc_meta)
        self.input_size = int(enc_meta["input_size"])
        self.embedding_shape = embedding_shape_of(enc_meta)
        self.decoder_mode = dec_meta.get("multimask", "both")
        # exports before revision 3, and pn-export-onnx without --upscale-gate: ungated
        self.upscale_gate = dec_meta.get("upscale_gate") == "true"
        self.untrained = enc_meta.get("untrained") == "true"
        # False after a batch failed (an export whose batch axis is not really dynamic, e.g.
        # vit_t before export revision 4): batches are then encoded one image at a time
        self.encodes_batches = True
        if self.untrained:
            logger.warning(
                "ONNX export %s was made from %s: output is not meaningful",
                encoder_path,
                GENERATED_WEIGHTS,
            )

    def _provider_options(self, providers: list[str]) -> list[dict]:
        if providers[0] == "CUDAExecutionProvider":
            return [{"device_id": int(self.device.index or 0)}, {}]
        return [{}]

    # ------------------------------------------------------------------ SamBackend

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor (B, 3, {s}, {s}), got {type(images)}")
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s) or images.shape[0] == 0:
            raise ValueError(
                f"images must have shape (B>=1, 3, {s}, {s}), got {tuple(images.shape)}"
            )
        images = images.to(self.device, torch.float32).contiguous()
        if images.shape[0] > 1 and self.encodes_batches:
            try:
                return self._encode_batch(images)
            except Exception as exc:  # noqa: BLE001 (onnxruntime's own types, not RuntimeError)
                self.encodes_batches = False
                logger.warning(
                    "the ONNX encoder %s cannot run a batch of %d (%s: %s); encoding images one "
                    "by one from now on (re-export it with this version: pn-export-onnx)",
                    self.metadata.get("model", "?"),
                    images.shape[0],
                    type(exc).__name__,
                    str(exc).splitlines()[0][:300],
                )
        return torch.cat([self._encode_batch(image[None]) for image in images])

    def _encode_batch(self, images: torch.Tensor) -> torch.Tensor:
        out_shape = (images.shape[0], *self.embedding_shape)
        (embedding,) = self._run(self._encoder, {"images": images}, {"image_embeddings": out_shape})
        return embedding

    @torch.no_grad()
    def decode(
        self,
        embedding: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        multimask_output: bool = True,
        iou_threshold: float | None = None,
    ) -> DecoderOutput:
        """See :meth:`SamBackend.decode`. A gated decoder graph (``upscale_gate``) upscales only
        the prompts above ``iou_threshold`` on a CPU (``logit_rows`` says which); an ungated one,
        or a CUDA device (its outputs are bound with their shapes known in advance), returns the
        logits of every prompt."""
        _check_decode_inputs(embedding, point_coords, point_labels, self.embedding_shape)
        select = self._mask_selection(multimask_output)
        p = point_coords.shape[0]
        c, h, w = self.embedding_shape
        m_all = DECODER_SLOTS[self.decoder_mode]
        inputs = {
            "image_embeddings": embedding.to(self.device, torch.float32).contiguous(),
            "point_coords": point_coords.to(self.device, torch.float32).contiguous(),
            "point_labels": point_labels.to(self.device, torch.float32).contiguous(),
        }
        shapes = {
            "low_res_logits": (p, m_all, 4 * h, 4 * w),
            "iou_predictions": (p, m_all),
            "mask_tokens": (p, m_all, c),
        }
        if not self.upscale_gate:
            logits, iou, tokens = self._run(self._decoder, inputs, shapes)
            return DecoderOutput(logits[:, select], iou[:, select], tokens[:, select])
        gated = iou_threshold is not None and self.device.type == "cpu"
        threshold = iou_threshold if gated else None
        inputs["iou_threshold"] = _slot_thresholds(m_all, select, threshold).to(self.device)
        shapes["logit_rows"] = (p,)
        if gated:  # data-dependent R: only the CPU path, which lets onnxruntime allocate
            shapes["low_res_logits"] = shapes["logit_rows"] = None
        logits, iou, tokens, rows = self._run(self._decoder, inputs, shapes)
        rows = rows if gated else None
        return DecoderOutput(logits[:, select], iou[:, select], tokens[:, select], rows)

    # ------------------------------------------------------------------ helpers

    def _mask_selection(self, multimask_output: bool) -> slice:
        """Which of the decoder's outputs answer ``multimask_output`` (see ``export_metadata``)."""
        if self.decoder_mode == "both":
            return slice(1, None) if multimask_output else slice(0, 1)
        if (self.decoder_mode == "multimask") != bool(multimask_output):
            raise ValueError(
                f"this decoder was exported with only the {self.decoder_mode} output, but "
                f"multimask_output={multimask_output} was asked; re-export with "
                "`pn-export-onnx --both` (the default)"
            )
        return slice(None)

    def _run(
        self,
        session,
        inputs: dict[str, torch.Tensor],
        output_shapes: dict[str, tuple[int, ...] | None],
    ) -> list[torch.Tensor]:
        if self.device.type == "cpu":
            feeds = {k: v.numpy() for k, v in inputs.items()}
            outs = session.run(list(output_shapes), feeds)
            return [torch.from_numpy(np.ascontiguousarray(o)) for o in outs]
        return self._run_cuda(session, inputs, output_shapes)

    def _run_cuda(
        self,
        session,
        inputs: dict[str, torch.Tensor],
        output_shapes: dict[str, tuple[int, ...] | None],
    ) -> list[torch.Tensor]:
        """I/O binding to torch CUDA buffers: no copies through host memory."""
        binding = session.io_binding()
        index = int(self.device.index or 0)
        for name, tensor in inputs.items():
            binding.bind_input(
                name, "cuda", index, np.float32, tuple(tensor.shape), tensor.data_ptr()
            )
        outputs = []
        for name, shape in output_shapes.items():
            out = torch.empty(shape, dtype=torch.float32, device=self.device)
            binding.bind_output(name, "cuda", index, np.float32, tuple(shape), out.data_ptr())
            outputs.append(out)
        torch.cuda.current_stream(self.device).synchronize()  # inputs ready before ORT's stream
        session.run_with_iobinding(binding)
        return outputs


def _slot_thresholds(slots: int, asked: slice, threshold: float | None) -> torch.Tensor:
    """The gated graph's ``iou_threshold`` ``(slots,)``: all NaN without a threshold (the graph
    keeps a prompt unless each IoU is <= its slot's threshold, never true for NaN: every prompt);
    else ``threshold`` in the ``asked`` slots and +inf in the others (they keep no prompt)."""
    if threshold is None:
        return torch.full((slots,), math.nan)
    thresholds = torch.full((slots,), math.inf)
    thresholds[asked] = float(threshold)
    return thresholds


def _open_session(ort, path, options, providers, provider_options, component: str):
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"ONNX {component} file {path} not found; {_EXPORT_HINT}")
    try:
        return ort.InferenceSession(
            str(path), options, providers=providers, provider_options=provider_options
        )
    except Exception as exc:  # onnxruntime raises its own InvalidProtobuf/Fail types
        raise OnnxModelError(
            f"onnxruntime cannot load the {component} {path} (corrupted, truncated or not an "
            f"ONNX model?): {exc}\nRe-export it; {_EXPORT_HINT}"
        ) from exc


def _check_decode_inputs(
    embedding: torch.Tensor,
    point_coords: torch.Tensor,
    point_labels: torch.Tensor,
    embedding_shape: tuple[int, int, int],
) -> None:
    for name, t in (
        ("embedding", embedding),
        ("point_coords", point_coords),
        ("point_labels", point_labels),
    ):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t)}")
    if tuple(embedding.shape) != (1, *embedding_shape):
        raise ValueError(
            f"embedding must have shape (1, {', '.join(map(str, embedding_shape))}),"
            f" got {tuple(embedding.shape)}"
        )
    if (
        point_coords.ndim != 3
        or point_coords.shape[-1] != 2
        or point_coords.shape[0] == 0
        or point_coords.shape[1] == 0
    ):
        raise ValueError(
            f"point_coords must have shape (P>=1, K>=1, 2), got {tuple(point_coords.shape)}"
        )
    if tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
        raise ValueError(
            f"point_labels must have shape (P, K) = {tuple(point_coords.shape[:2])},"
            f" got {tuple(point_labels.shape)}"
        )
