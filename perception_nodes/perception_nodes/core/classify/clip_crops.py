"""CLIP region crops (used by ``ClipModel.crop_batch``): the square window of each region, the
masked uint8 crop resized as open_clip's own preprocessing resizes it, then normalised.

open_clip's ``preprocess`` resizes a PIL image (bicubic, PIL's antialiasing filter), then
``ToTensor`` (``/ 255``) and ``Normalize``. Here each crop is built in uint8 like the PIL image
would be and resized with torch's uint8 antialiased bicubic (the same fixed-point filter as PIL's,
within 2 grey levels, several times faster and without a PIL image per crop). ``ToTensor`` and
``Normalize`` are open_clip's own float32 operations, either as a 256-entry table per channel
applied to each crop on the CPU (:func:`pixel_lut`) or once over the uint8 batch on a GPU
(:func:`normalised_batch`): equal uint8 crops give equal floats either way.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def crop_window(
    box: np.ndarray, padding: float, h: int, w: int
) -> tuple[int, int, int, int, int, int, int]:
    """Square window of a region crop (see :meth:`ClipModel.crop_batch`): its top-left corner
    ``sx0, sy0`` and side ``s`` (pixels, may reach outside the image) and the part inside the
    ``h x w`` image, ``ix0, iy0, ix1, iy1`` (exclusive max)."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1.0) * (1.0 + 2.0 * padding)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    sx0, sy0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(int(round(side)), 1)
    return sx0, sy0, s, max(sx0, 0), max(sy0, 0), min(sx0 + s, w), min(sy0 + s, h)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``; to a GPU through pinned memory without waiting
    (a plain copy from pageable memory synchronises the host with the device)."""
    t = torch.from_numpy(array)
    if torch.device(device).type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def fill_colour_u8(mean: torch.Tensor) -> np.ndarray:
    """``(3,)`` uint8 RGB of the model's mean colour (``mean``: ``(3,)`` in [0, 1]), the fill of
    pixels outside the mask or the image (about zero after normalisation)."""
    return np.clip(np.round(mean.detach().cpu().numpy().reshape(3) * 255.0), 0, 255).astype(
        np.uint8
    )


def _canvas(
    image: np.ndarray, mask: np.ndarray | None, window: tuple, fill: np.ndarray
) -> np.ndarray:
    """``(s, s, 3)`` uint8 square crop of ``window`` (:func:`crop_window`): the image's pixels
    inside ``mask`` (``HxW`` bool, None = all), ``fill`` elsewhere and outside the image."""
    sx0, sy0, s, ix0, iy0, ix1, iy1 = window
    canvas = np.empty((s, s, 3), dtype=np.uint8)
    canvas[0] = fill  # one row, then row copies: ~50x faster than broadcasting (3,) everywhere
    canvas[1:] = canvas[0]
    if ix1 <= ix0 or iy1 <= iy0:
        return canvas
    sub = canvas[iy0 - sy0 : iy1 - sy0, ix0 - sx0 : ix1 - sx0]
    patch = image[iy0:iy1, ix0:ix1]
    if mask is None:
        sub[...] = patch
        return canvas
    keep = mask[iy0:iy1, ix0:ix1].view(np.uint8)
    # OpenCV's masked copy: one SIMD pass (numpy's copyto(where=) is about twice as slow)
    got = cv2.copyTo(patch, keep, sub)
    if not np.shares_memory(got, canvas):  # OpenCV gave a new array instead of writing in place
        sub[...] = got
    return canvas


def pixel_lut(mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """``(3, 256)`` float32: open_clip's ``ToTensor`` and ``Normalize`` of every uint8 value of
    each channel (``mean``/``std``: ``(3,)``), computed with the same float32 operations, so a
    lookup gives the value the batched operations give."""
    values = torch.arange(256, dtype=torch.uint8)[None, :].expand(3, 256).float().div(255)
    return values.sub(mean.reshape(3, 1).cpu()).div(std.reshape(3, 1).cpu()).numpy()


_THREAD_BUFFERS = threading.local()


def reused_crop_buffer(n: int, size: int) -> np.ndarray:
    """``(n, 3, size, size)`` float32 array in this thread's reused buffer (grown when too
    small), for crops that are consumed before this thread asks again (one chunk of
    ``ClipModel.encode_image_crops`` on the CPU). A fresh array per frame costs its page faults
    every time (the kernel zeroes 0.6 MB per crop at 224: about a third of a crop's time)."""
    need = n * 3 * size * size
    buf = getattr(_THREAD_BUFFERS, "crops", None)
    if buf is None or buf.size < need:
        buf = _THREAD_BUFFERS.crops = np.empty(need, np.float32)
    return buf[:need].reshape(n, 3, size, size)


def square_crops(
    image: np.ndarray,
    windows: list[tuple],
    masks: np.ndarray | None,
    size: int,
    fill: np.ndarray,
    lut: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(N, 3, size, size)`` crops: each window's :func:`_canvas` resized to ``size`` with
    torch's uint8 antialiased bicubic (PIL's filter: open_clip's ``Resize``); uint8, or float32
    through ``lut`` (:func:`pixel_lut`) when given, each crop while it is in cache (one pass
    instead of four over the batch: it is 0.6 MB per region at 224).

    ``image``: ``HxWx3`` uint8 RGB; ``masks``: ``(N, H, W)`` bool or None. One resize call per
    crop (crops of different sides cannot share one call), on the host, one thread's work.
    ``out``: C-contiguous array of the result's shape and dtype to write into (returned).
    """
    shape, dtype = (len(windows), 3, size, size), np.uint8 if lut is None else np.float32
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {shape} {np.dtype(dtype)} array")
    if masks is not None:
        masks = masks.astype(bool, copy=False)
    for i, window in enumerate(windows):
        canvas = _canvas(image, None if masks is None else masks[i], window, fill)
        src = torch.from_numpy(canvas).permute(2, 0, 1)[None]  # channels-last (1, 3, s, s)
        res = F.interpolate(src, size=(size, size), mode="bicubic", antialias=True)[0].numpy()
        if lut is None:
            out[i] = res
            continue
        for c in range(3):
            got = cv2.LUT(res[c], lut[c], dst=out[i, c])
            if not np.shares_memory(got, out):  # OpenCV gave a new array
                out[i, c] = got
    return out


def normalised_batch(
    crops_u8: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """``(N, 3, S, S)`` float32 model input on ``device`` of ``(N, 3, S, S)`` uint8 crops:
    ONE copy to the device, then open_clip's ``ToTensor`` (``/ 255``) and ``Normalize``
    (``- mean``, ``/ std``; ``mean``/``std`` ``(3, 1, 1)`` on ``device``) over the batch."""
    out = torch.empty(crops_u8.shape, dtype=torch.float32, device=device)
    if out.shape[0]:
        out.copy_(to_device(crops_u8, device))
        out.div_(255).sub_(mean).div_(std)
    return out
