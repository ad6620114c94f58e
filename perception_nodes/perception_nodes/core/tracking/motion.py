"""Constant-velocity Kalman filter of track boxes, batched over tracks (SORT/ByteTrack's model).

State per track: a box ``(cx, cy, w, h)`` in image pixels (centre x right, y down; width,
height) and its velocity in pixels per frame. The four coordinates are filtered independently
(each a position/velocity pair with its own 2x2 covariance), which is exactly the usual 8-d
filter when the process and measurement noises are diagonal, as in SORT and ByteTrack; written
out per coordinate so that every step is a few numpy operations over all tracks at once (no
per-track matrix products: 64 tracks cost the same as one). Noise scales with the box size
(ByteTrack's weights: 1/20 of the size for positions, 1/160 for velocities).

Camera motion (a 2x3 similarity/affine from the previous frame to this one, see
:mod:`.camera_motion`) is applied to every state before the prediction, as BoT-SORT does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITION_NOISE = 1.0 / 20  # std of a box coordinate, per unit of box size
VELOCITY_NOISE = 1.0 / 160  # std of its change per frame, per unit of box size
SIZE_VELOCITY_DAMPING = (
    0.5  # box width/height velocity kept per frame (SAM masks grow/shrink noisily)
)
INITIAL_VELOCITY_STD = 10.0 / 160


@dataclass
class BoxStates:
    """``T`` filtered boxes. ``x``: ``(T, 4)`` position ``(cx, cy, w, h)``; ``v``: ``(T, 4)``
    velocity per frame; ``p_xx``, ``p_xv``, ``p_vv``: ``(T, 4)`` covariance entries per coordinate."""

    x: np.ndarray
    v: np.ndarray
    p_xx: np.ndarray
    p_xv: np.ndarray
    p_vv: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def select(self, idx) -> "BoxStates":
        return BoxStates(self.x[idx], self.v[idx], self.p_xx[idx], self.p_xv[idx], self.p_vv[idx])

    def put(self, idx, other: "BoxStates") -> None:
        """Rows ``idx`` set to the rows of ``other`` (in place)."""
        for k in _FIELDS:
            getattr(self, k)[idx] = getattr(other, k)

    @staticmethod
    def stack(states: list["BoxStates"]) -> "BoxStates":
        if not states:
            return empty_states()
        if len(states) == 2 and not len(states[1]):
            return states[0]
        cat = np.concatenate
        return BoxStates(*(cat([getattr(s, k) for s in states]) for k in _FIELDS))


_FIELDS = ("x", "v", "p_xx", "p_xv", "p_vv")


def empty_states() -> BoxStates:
    z = np.zeros((0, 4))
    return BoxStates(z, z.copy(), z.copy(), z.copy(), z.copy())


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` XYXY pixels -> ``(N, 4)`` centre x, centre y, width, height."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0],
                     b[:, 3] - b[:, 1]], axis=1)  # fmt: skip


def cxcywh_to_xyxy(x: np.ndarray) -> np.ndarray:
    half = x[:, 2:] / 2
    return np.concatenate([x[:, :2] - half, x[:, :2] + half], axis=1)


def _size(x: np.ndarray) -> np.ndarray:
    """``(T, 1)`` noise scale: the box's geometric mean side, at least 8 px."""
    return np.sqrt(np.maximum(x[:, 2:3], 8.0) * np.maximum(x[:, 3:4], 8.0))


def init_states(boxes_xyxy: np.ndarray) -> BoxStates:
    """New tracks at the measured boxes, velocity 0 with a wide uncertainty."""
    x = xyxy_to_cxcywh(boxes_xyxy)
    s = _size(x)
    ones = np.ones_like(x)
    return BoxStates(x, np.zeros_like(x), (2 * POSITION_NOISE * s) ** 2 * ones,
                     np.zeros_like(x), (INITIAL_VELOCITY_STD * s) ** 2 * ones)  # fmt: skip


def warp(states: BoxStates, affine: np.ndarray) -> BoxStates:
    """States seen through the camera motion ``affine`` (2x3, previous image -> this image):
    centres mapped, velocities and sizes turned/scaled by its linear part (covariances by its
    scale squared; the small rotation's mixing of x and y uncertainty is left out)."""
    a = np.asarray(affine, np.float64)
    lin, t = a[:, :2], a[:, 2]
    scale = float(np.sqrt(abs(np.linalg.det(lin))))
    x, v = states.x.copy(), states.v.copy()
    x[:, :2] = x[:, :2] @ lin.T + t
    x[:, 2:] *= scale
    v[:, :2] = v[:, :2] @ lin.T
    v[:, 2:] *= scale
    s2 = scale * scale
    return BoxStates(x, v, states.p_xx * s2, states.p_xv * s2, states.p_vv * s2)


def predict(states: BoxStates, dt: np.ndarray | float) -> BoxStates:
    """States ``dt`` frames later (``dt``: scalar or ``(T,)``; frames the node dropped count)."""
    dt = np.broadcast_to(np.asarray(dt, np.float64), (len(states),))[:, None]
    s = _size(states.x)
    q_x, q_v = (POSITION_NOISE * s) ** 2, (VELOCITY_NOISE * s) ** 2
    v = states.v.copy()
    v[:, 2:] *= SIZE_VELOCITY_DAMPING**dt
    x = states.x + dt * v
    x[:, 2:] = np.maximum(x[:, 2:], 1.0)
    p_xx = states.p_xx + 2 * dt * states.p_xv + dt * dt * states.p_vv + q_x * dt
    p_xv = states.p_xv + dt * states.p_vv
    p_vv = states.p_vv + q_v * dt
    return BoxStates(x, v, p_xx, p_xv, p_vv)


def correct(states: BoxStates, boxes_xyxy: np.ndarray) -> BoxStates:
    """States after measuring ``boxes_xyxy`` (``(T, 4)``, one per state)."""
    z = xyxy_to_cxcywh(boxes_xyxy)
    r = (POSITION_NOISE * _size(z)) ** 2
    innov_var = states.p_xx + r
    k_x, k_v = states.p_xx / innov_var, states.p_xv / innov_var
    resid = z - states.x
    return BoxStates(
        states.x + k_x * resid,
        states.v + k_v * resid,
        (1 - k_x) * states.p_xx,
        (1 - k_x) * states.p_xv,
        states.p_vv - k_v * states.p_xv,
    )


def position_std(states: BoxStates) -> np.ndarray:
    """``(T,)`` standard deviation of the predicted centre, pixels (x and y pooled)."""
    return np.sqrt(np.maximum(states.p_xx[:, 0] + states.p_xx[:, 1], 0.0) / 2)
