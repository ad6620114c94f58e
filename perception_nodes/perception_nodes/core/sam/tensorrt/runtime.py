"""What the running system offers for TensorRT: the version, the GPU, the lazy import.

``import tensorrt`` happens only in :func:`import_tensorrt`, when called: every other module of
this package works, and is tested, without TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

TENSORRT_INSTALL_HINT = (
    "TensorRT is not installed (the Python module 'tensorrt' cannot be imported). "
    "On a Jetson it comes with JetPack (apt install nvidia-jetpack, or python3-libnvinfer); "
    "on a desktop CUDA machine: pip install tensorrt (the builder wheels come from "
    "NVIDIA's index, pypi.nvidia.com). Without TensorRT, use the 'onnxruntime' backend "
    "(CPU or CUDA execution provider) or the 'torch' backend instead."
)


class TensorRTNotAvailableError(ImportError):
    """The ``tensorrt`` module cannot be imported; the message says how to get it."""


def import_tensorrt() -> ModuleType:
    """``import tensorrt`` or :class:`TensorRTNotAvailableError` with install instructions."""
    try:
        import tensorrt  # noqa: PLC0415  (lazy on purpose: optional dependency)
    except ImportError as exc:
        raise TensorRTNotAvailableError(TENSORRT_INSTALL_HINT) from exc
    return tensorrt


@dataclass(frozen=True)
class RuntimeInfo:
    """What the running system offers. ``None`` fields mean "not available here"."""

    tensorrt_version: str | None
    gpu_name: str | None
    compute_capability: str | None


def gather_runtime_info(
    trt_module: ModuleType | None | bool = True,
    cuda: Any | None = None,
    device_index: int = 0,
) -> RuntimeInfo:
    """Collect the TensorRT version and the GPU of this machine.

    Args:
        trt_module: the ``tensorrt`` module to ask; ``True`` imports it if possible;
            ``None``/``False`` means "no TensorRT" (tests inject stand-ins here).
        cuda: an object with ``is_available()``, ``get_device_name(i)`` and
            ``get_device_capability(i)`` (default ``torch.cuda``).
        device_index: CUDA device to describe.
    """
    if trt_module is True:
        try:
            trt_module = import_tensorrt()
        except TensorRTNotAvailableError:
            trt_module = None
    trt_version = getattr(trt_module, "__version__", None) if trt_module else None
    if cuda is None:
        import torch

        cuda = torch.cuda
    gpu_name = capability = None
    if cuda.is_available():
        gpu_name = str(cuda.get_device_name(device_index))
        major, minor = cuda.get_device_capability(device_index)
        capability = f"{major}.{minor}"
    return RuntimeInfo(trt_version, gpu_name, capability)
