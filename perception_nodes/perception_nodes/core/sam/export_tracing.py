"""Tracing encoders with a real batch axis: MobileSAM's TinyViT reads its batch size with
``len(x)``, which the ONNX tracer freezes at the example's batch (onnxruntime then fails at batch
2). :func:`traceable_batch` swaps in a forward that reads it from ``x.shape`` while tracing."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch


def _patch_merging_forward(self, x: torch.Tensor) -> torch.Tensor:
    """TinyViT's ``PatchMerging.forward`` (mobile_sam/modeling/tiny_vit_sam.py) with the batch
    size read from ``x.shape`` instead of ``len(x)``: same arithmetic, but the tracer records a
    size op instead of the example batch as a constant. ``x``: ``(B, H*W, C)`` or
    ``(B, C, H, W)``; returns ``(B, H'*W', C_out)``."""
    if x.ndim == 3:
        h, w = self.input_resolution
        x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)  # (B, C, H, W)
    x = self.act(self.conv1(x))
    x = self.act(self.conv2(x))
    x = self.conv3(x)
    return x.flatten(2).transpose(1, 2)


@contextlib.contextmanager
def traceable_batch(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """While tracing ``module``, its TinyViT ``PatchMerging`` layers (if any) use
    :func:`_patch_merging_forward`; restored afterwards. Other encoders are left as they are
    (SAM's ViT reads every size from ``x.shape``)."""
    patched = []
    for layer in module.modules():
        if type(layer).__name__ == "PatchMerging" and hasattr(layer, "input_resolution"):
            layer.forward = types.MethodType(_patch_merging_forward, layer)
            patched.append(layer)
    try:
        yield module
    finally:
        for layer in patched:
            del layer.forward  # the class's forward again
