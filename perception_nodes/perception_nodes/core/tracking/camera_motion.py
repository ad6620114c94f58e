"""Frame-to-frame camera motion from the image (global motion compensation, as in BoT-SORT).

OpenCV sparse optical flow on a downscaled grey frame (160 px long side: ~1.5 ms of CPU per
frame at 640x480, a quarter of it the conversion; 100 corners): corners of the previous frame
(``cv2.goodFeaturesToTrack``) followed into this one (pyramidal Lucas-Kanade,
``cv2.calcOpticalFlowPyrLK``), then a similarity transform (rotation, uniform scale,
translation) fitted with RANSAC (``cv2.estimateAffinePartial2D``), so the points on moving
objects are outliers. Returned in full-resolution pixels: ``p_this = A[:, :2] @ p_prev + A[:, 2]``
(x right, y down). When too few points agree (a blank wall, a cut), the identity is returned:
no compensation is better than a wrong one.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

WORK_LONG_SIDE = 160  # pixels: the grey frame's long side (640x480 -> 160x120)
MAX_CORNERS = 100
MIN_INLIERS = 12
RANSAC_PX = 0.5  # inlier distance on the downscaled frame (2 px at 640x480)
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def grey_small(image: np.ndarray, long_side: int = WORK_LONG_SIDE) -> tuple[np.ndarray, float]:
    """``(grey, factor)``: the ``HxWx3`` uint8 RGB (or ``HxW`` grey) image as uint8 grey with its
    long side at most ``long_side`` (``factor`` = small / full pixels, <= 1)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    factor = min(1.0, long_side / max(grey.shape[:2]))
    if factor < 1.0:
        size = (max(1, round(grey.shape[1] * factor)), max(1, round(grey.shape[0] * factor)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(grey, np.uint8), factor


class CameraMotion:
    """Estimates the motion between consecutive frames of ONE camera (keeps the previous one).

    ``last_ms``: CPU milliseconds of the last :meth:`estimate` (this thread);
    ``last_inliers``: points that agreed with it (0 when it fell back to the identity).
    """

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._prev_points: np.ndarray | None = None
        self._factor = 1.0
        self.last_ms = 0.0
        self.last_inliers = 0

    def reset(self) -> None:
        self._prev, self._prev_points = None, None

    def estimate(self, image: np.ndarray | None) -> np.ndarray:
        """2x3 float64 transform from the previous frame given here to ``image`` (identity for
        the first frame, a frame of another size, or ``image`` None, which also forgets the
        previous frame)."""
        c0 = time.thread_time()
        try:
            return self._estimate(image)
        finally:
            self.last_ms = (time.thread_time() - c0) * 1e3

    def _estimate(self, image: np.ndarray | None) -> np.ndarray:
        self.last_inliers = 0
        if image is None:
            self.reset()
            return IDENTITY.copy()
        grey, factor = grey_small(image)
        prev, prev_points = self._prev, self._prev_points
        self._prev, self._factor = grey, factor
        self._prev_points = cv2.goodFeaturesToTrack(
            grey, MAX_CORNERS, qualityLevel=0.01, minDistance=8, blockSize=5
        )
        if prev is None or prev.shape != grey.shape or prev_points is None:
            return IDENTITY.copy()
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            prev, grey, prev_points, None, winSize=(9, 9), maxLevel=2
        )
        ok = status.reshape(-1).astype(bool)
        if ok.sum() < MIN_INLIERS:
            return IDENTITY.copy()
        small, inliers = cv2.estimateAffinePartial2D(
            prev_points[ok], moved[ok], method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX
        )
        if small is None or inliers is None or int(inliers.sum()) < MIN_INLIERS:
            return IDENTITY.copy()
        self.last_inliers = int(inliers.sum())
        full = small.astype(np.float64)
        full[:, 2] /= factor  # same rotation and scale; the shift in full-resolution pixels
        return full
