"""Per-region 3D centroids from depth + camera intrinsics, and the instance label image.

Camera convention (REP 103 optical frame): x right, y down, z forward, meters; pixel (u, v)
with u to the right and v down; intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
"""

from __future__ import annotations

import numpy as np


class DepthError(ValueError):
    """Depth or intrinsics that do not fit the image."""


def region_centroids(masks: np.ndarray, depth_m: np.ndarray | None, k: np.ndarray | None) -> np.ndarray:
    """``(N, 3)`` float32 centroids (meters, camera frame) of ``(N, H, W)`` masks.

    The depth of a region is the median of its valid depth pixels (NaN = invalid); x and y
    back-project the mean pixel of those valid pixels. NaN where depth or ``k`` is missing or no
    pixel of the region has valid depth.
    """
    n = masks.shape[0]
    out = np.full((n, 3), np.nan, dtype=np.float32)
    if depth_m is None or k is None or n == 0:
        return out
    if depth_m.shape != masks.shape[1:]:
        raise DepthError(f"depth is {depth_m.shape[1]}x{depth_m.shape[0]}, image is {masks.shape[2]}x{masks.shape[1]}")
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    if fx <= 0 or fy <= 0:
        raise DepthError(f"camera intrinsics have non-positive focal lengths fx={fx}, fy={fy}")
    valid = np.isfinite(depth_m) & (depth_m > 0)
    for i in range(n):
        sel = masks[i] & valid
        if not sel.any():
            continue
        vs, us = np.nonzero(sel)
        z = float(np.median(depth_m[sel]))
        out[i] = ((us.mean() - cx) * z / fx, (vs.mean() - cy) * z / fy, z)
    return out


def label_image(masks: np.ndarray, region_ids: np.ndarray) -> np.ndarray:
    """``HxW`` uint16 instance image: 0 = background, else the region id.

    Where masks overlap, the smaller region wins (it is drawn last), so small objects on top of
    large surfaces stay visible. Ids must fit 16 bits.
    """
    n, h, w = masks.shape
    img = np.zeros((h, w), dtype=np.uint16)
    if n == 0:
        return img
    if int(np.max(region_ids)) > np.iinfo(np.uint16).max:
        raise ValueError("region ids above 65535 do not fit a 16UC1 label image")
    areas = masks.reshape(n, -1).sum(axis=1)
    for i in np.argsort(-areas, kind="stable"):
        img[masks[i]] = region_ids[i]
    return img
