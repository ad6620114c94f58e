"""Pick a SAM backend by name: ``torch``, ``onnxruntime`` or ``tensorrt`` (``auto``: see
:func:`resolve_backend_kind`)."""

from __future__ import annotations

from pathlib import Path

from perception_nodes.core.config import SAM_BACKENDS
from perception_nodes.core.sam.backend import SamBackend

BACKEND_KINDS = tuple(b for b in SAM_BACKENDS if b != "auto")  # declared once in core/config.py


def resolve_backend_kind(kind: str, device: str) -> str:
    """The backend that ``kind`` means on ``device``: ``auto`` is ``onnxruntime`` on a CPU when
    onnxruntime is installed (SAM runs faster there than on torch eager, by measurement:
    ``pn-bench-sam``, README) and ``torch`` otherwise (CUDA: onnxruntime's CUDA provider needs
    onnxruntime-gpu, TensorRT needs engines); other names are returned unchanged."""
    if kind != "auto":
        return kind
    import importlib.util

    import torch

    on_cpu = torch.device(device).type == "cpu"
    return "onnxruntime" if on_cpu and importlib.util.find_spec("onnxruntime") else "torch"


def create_backend(
    kind: str,
    *,
    model: str = "vit_b",
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    compile: bool = False,
    encoder_path: str | Path | None = None,
    decoder_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> SamBackend:
    """Create a backend.

    ``torch`` builds registry model ``model`` from ``checkpoint`` (or the cached official
    weights); ``onnxruntime`` loads the exported encoder and decoder files (``encoder_path``,
    ``decoder_path``); ``tensorrt`` loads those engines, or with both paths None picks the
    engines of ``model`` + ``precision`` for this GPU from the engine cache under
    ``cache_dir`` (default ``$PERCEPTION_NODES_CACHE``), and checks them against ``model``,
    ``precision`` and ``device``. (Building missing engines is
    :func:`perception_nodes.core.sam.tensorrt.first_run.ensure_engines`, which ``Pipeline.load``
    calls first.) Backend modules are imported lazily so a missing optional runtime only
    matters when that backend is chosen.
    """
    if kind == "torch":
        from perception_nodes.core.sam.registry import build_sam_model
        from perception_nodes.core.sam.torch_backend import TorchSamBackend

        sam = build_sam_model(model, checkpoint, device=device)
        return TorchSamBackend(sam, device=device, precision=precision, compile=compile)
    if kind in ("onnxruntime", "tensorrt"):
        if kind == "onnxruntime":
            from perception_nodes.core.sam.onnx_backend import OnnxRuntimeSamBackend

            return OnnxRuntimeSamBackend(encoder_path, decoder_path, device=device)
        from perception_nodes.core.sam.tensorrt.backend import TensorRTSamBackend
        from perception_nodes.core.sam.tensorrt.cache import engine_cache_dir

        return TensorRTSamBackend(
            encoder_path,
            decoder_path,
            model=model,
            precision=precision,
            cache_dir=engine_cache_dir(cache_dir) if cache_dir else None,
            device=device,
        )
    raise ValueError(f"unknown SAM backend {kind!r}; choose one of {', '.join(BACKEND_KINDS)}")
