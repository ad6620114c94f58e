"""Geometry and device copies of CLIP region crops (used by ``ClipModel.crop_batch``): the square
window of each region and the masks' parts inside them, moved to the device in one copy."""

from __future__ import annotations

import numpy as np
import torch


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


def mask_parts(masks: np.ndarray, windows: list, device: torch.device) -> list[torch.Tensor]:
    """The part of each mask inside its crop window, on ``device``, moved in ONE copy."""
    parts = [masks[i, iy0:iy1, ix0:ix1] for i, (_, _, _, ix0, iy0, ix1, iy1) in enumerate(windows)]
    flat = to_device(np.concatenate([p.reshape(-1) for p in parts]), device)
    out, start = [], 0
    for p in parts:
        out.append(flat[start : start + p.size].view(p.shape))
        start += p.size
    return out
