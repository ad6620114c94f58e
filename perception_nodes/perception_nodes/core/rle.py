"""Binary masks <-> COCO run-length encoding (the encoding used in ``perception_msgs/Region``).

The wire format is COCO's *uncompressed* RLE: ``{"size": [H, W], "counts": [r0, r1, ...]}``
with runs over the mask in column-major (Fortran) order, alternating 0-runs and 1-runs and
starting with a 0-run (which may be 0). ``pycocotools.mask.frPyObjects`` reads it directly.
pycocotools does the encoding; this module only converts its compressed string counts to the
integer list the message carries (pycocotools has no public function for that direction).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> tuple[int, int, list[int]]:
    """Encode one ``HxW`` mask (bool or 0/1) as ``(H, W, counts)``; counts sum to ``H*W``."""
    if mask.ndim != 2:
        raise ValueError(f"encode_mask expects an HxW mask, got shape {mask.shape}")
    h, w = mask.shape
    if h == 0 or w == 0:
        return h, w, []
    return h, w, _counts_of(np.asfortranarray(mask.astype(np.uint8)))


def _counts_of(fortran_mask_u8: np.ndarray) -> list[int]:
    """Integer run lengths of an HxW Fortran-ordered uint8 mask (via pycocotools)."""
    rle = mask_utils.encode(fortran_mask_u8[:, :, None])[0]
    # Decompress pycocotools' LEB128-like string into integers (the inverse of rleToString).
    return _decompress_counts(rle["counts"])


def _decompress_counts(s: bytes | str) -> list[int]:
    """Decode pycocotools' compressed counts string (``rleFrString`` in maskApi.c)."""
    if isinstance(s, str):
        s = s.encode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = s[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def decode_mask(height: int, width: int, counts: list[int] | np.ndarray) -> np.ndarray:
    """Decode ``counts`` back to an ``HxW`` bool mask; validates that runs cover the image."""
    counts = [int(c) for c in counts]
    if any(c < 0 for c in counts):
        raise ValueError("RLE counts must be non-negative")
    if sum(counts) != height * width:
        raise ValueError(
            f"RLE counts sum to {sum(counts)}, expected height*width = {height}*{width} = {height * width}"
        )
    if height == 0 or width == 0:
        return np.zeros((height, width), dtype=bool)
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return mask_utils.decode(rle).astype(bool)


def encode_masks(masks: np.ndarray) -> list[list[int]]:
    """Encode ``NxHxW`` masks; returns the counts of each."""
    return [encode_mask(m)[2] for m in masks]
