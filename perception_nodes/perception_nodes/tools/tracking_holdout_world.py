"""World of the held-out tracking benchmark: real photos as a background plane and as object
textures, a camera moving over that plane, and the render of each frame with its ground truth.

Coordinates: *world* = pixels of the background canvas (x right, y down); *image* = the
640x480 camera frame; *patch* = pixels of an object's cut-out. ``camera_affine(u)`` (2x3) maps
world -> image, ``Thing.affine(u)`` (2x3) maps patch -> world; ``u`` is the world time step
(1/30 s; dropped frames skip steps). Objects are drawn back to front (``z``); the ground truth
of a frame is who owns each pixel after that (``Truth.owner``), so occlusion is exact.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np
import skimage.data

H, W = 480, 640
WORLD_H, WORLD_W = 1000, 1500
# photos bundled with scikit-image (no download): backgrounds and object textures
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "motorcycle")


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB photo from ``skimage.data`` (bundled files only)."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; known: {PHOTOS}")
    im = (
        skimage.data.stereo_motorcycle()[0]
        if name == "motorcycle"
        else getattr(skimage.data, name)()
    )
    return np.ascontiguousarray(im[..., :3])


def background(name: str) -> np.ndarray:
    """The world canvas ``(WORLD_H, WORLD_W, 3)``: the photo resized to cover it."""
    return cv2.resize(photo(name), (WORLD_W, WORLD_H), interpolation=cv2.INTER_CUBIC)


def smooth_outline(rng: np.random.Generator, h: int, w: int, wobble: float = 0.2) -> np.ndarray:
    """``(h, w)`` bool irregular smooth blob filling the patch: an ellipse whose radius is
    modulated by low harmonics (2..5) of the polar angle, scaled to touch the patch border."""
    ks = np.arange(2, 6)
    amp = rng.uniform(0.0, wobble, ks.size) / np.sqrt(ks)
    phase = rng.uniform(0, 2 * np.pi, ks.size)
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx + 0.5 - w / 2) / (w / 2), (yy + 0.5 - h / 2) / (h / 2)
    theta = np.arctan2(v, u)
    rad = 1 + (amp[:, None, None] * np.cos(ks[:, None, None] * theta + phase[:, None, None])).sum(0)
    probe = np.linspace(-np.pi, np.pi, 361)
    peak = 1 + (amp[:, None] * np.cos(ks[:, None] * probe + phase[:, None])).sum(0).max()
    return np.hypot(u, v) <= 0.97 * rad / peak


def part_map(rng: np.random.Generator, alpha: np.ndarray, n: int) -> np.ndarray:
    """``(h, w)`` uint8 split of the blob into ``n`` parts (1..n, 0 outside) by wavy parallel
    cuts across a random direction: the pieces SAM may return instead of the whole."""
    h, w = alpha.shape
    a = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    along = xx * np.cos(a) + yy * np.sin(a)
    across = -xx * np.sin(a) + yy * np.cos(a)
    along += 0.08 * max(h, w) * np.sin(across * 2 * np.pi / max(h, w) + rng.uniform(0, 6.3))
    qs = np.sort(rng.uniform(0.25, 0.75, n - 1)) if n > 2 else [rng.uniform(0.35, 0.65)]
    cuts = np.quantile(along[alpha], qs)
    parts = (np.searchsorted(cuts, along) + 1).astype(np.uint8)
    parts[~alpha] = 0
    return parts


def cutout(rng: np.random.Generator, name: str, h: int, w: int, wobble: float = 0.2) -> tuple:
    """Texture ``(h, w, 3)`` uint8 cut from a random crop of photo ``name`` and its outline
    ``(h, w)`` bool (:func:`smooth_outline`)."""
    im = photo(name)
    ph, pw = im.shape[:2]
    side = rng.uniform(0.25, 0.6) * min(ph, pw)
    ch, cw = int(min(ph, side * np.sqrt(h / w))), int(min(pw, side * np.sqrt(w / h)))
    y0, x0 = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    tex = cv2.resize(im[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    return tex, smooth_outline(rng, h, w, wobble)


@dataclass
class Thing:
    """One ground-truth object. ``pose`` is ``(U, 4)``: world x, y of the patch centre, rotation
    (degrees), scale, per world step. ``stuff`` things are background regions (not drawn: their
    pixels are the background's; only their mask is). ``deform`` > 0: non-rigid wave (px)."""

    gid: int
    texture: np.ndarray
    alpha: np.ndarray
    pose: np.ndarray
    cls: int
    z: float = 0.0
    parts: np.ndarray | None = None
    deform: float = 0.0
    stuff: bool = False

    def affine(self, u: int) -> np.ndarray:
        """2x3 patch -> world at step ``u``."""
        x, y, ang, s = self.pose[u]
        h, w = self.alpha.shape
        c, sn = s * np.cos(np.radians(ang)), s * np.sin(np.radians(ang))
        return np.array([[c, -sn, x - c * w / 2 + sn * h / 2], [sn, c, y - sn * w / 2 - c * h / 2]])

    def patch(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Texture, alpha (uint8 0/255) and parts at step ``u`` (deformed when ``deform`` > 0)."""
        alpha = self.alpha.astype(np.uint8) * 255
        if not self.deform:
            return self.texture, alpha, self.parts
        h, w = self.alpha.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ph = 0.35 * u
        mx = xx + self.deform * np.sin(2 * np.pi * yy / h + ph) * (yy / h)
        my = yy + 0.6 * self.deform * np.sin(2 * np.pi * xx / w + 0.7 * ph)
        tex = cv2.remap(self.texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        alpha = cv2.remap(alpha, mx, my, cv2.INTER_LINEAR, borderValue=0)
        parts = None
        if self.parts is not None:
            parts = cv2.remap(self.parts, mx, my, cv2.INTER_NEAREST, borderValue=0)
        return tex, alpha, parts


@dataclass
class Scene:
    """Everything of one sequence that does not depend on the segmenter: background canvas,
    things, camera ``(U, 2, 3)`` world -> image, exposure gain ``(U,)``, motion blur ``(U, 2)``
    (blur vector in image px; zeros = sharp) and the world steps that are rendered."""

    canvas: np.ndarray
    things: list[Thing]
    camera: np.ndarray
    gain: np.ndarray
    blur: np.ndarray
    steps: np.ndarray
    stamps: np.ndarray
    sam: dict = field(default_factory=dict)


@dataclass
class Truth:
    """One rendered frame: ``image`` ``(H, W, 3)`` uint8; ``owner`` ``(H, W)`` int16 index into
    ``Scene.things`` of the front thing (-1 = bare background); ``part`` ``(H, W)`` uint8 part
    number of the owner (0 = none); ``extent[i]``: pixels of thing i's unoccluded projection
    inside the image; ``crop[i]``: its ``(x0, y0, x1, y1)`` image box."""

    image: np.ndarray
    owner: np.ndarray
    part: np.ndarray
    extent: dict[int, int]
    crop: dict[int, tuple[int, int, int, int]]
    blur: np.ndarray


def camera_affine(
    center: np.ndarray, zoom: float, roll_deg: float, shake: np.ndarray
) -> np.ndarray:
    """2x3 world -> image: zoom and roll about the world point ``center`` seen at the image
    centre, plus the hand-held ``shake`` (image px)."""
    c, s = zoom * np.cos(np.radians(roll_deg)), zoom * np.sin(np.radians(roll_deg))
    rot = np.array([[c, -s], [s, c]])
    t = np.array([W / 2, H / 2]) + shake - rot @ center
    return np.hstack([rot, t[:, None]])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine ``a o b`` (apply ``b`` first)."""
    return np.hstack([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]])


def _crop_of(m: np.ndarray, h: int, w: int) -> tuple[int, int, int, int] | None:
    """Image box (clipped) covering the patch ``(h, w)`` mapped by ``m``; None when outside."""
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def render(scene: Scene, u: int, rng: np.random.Generator) -> Truth:
    """The frame at world step ``u``: background warped by the camera, things composited back to
    front with soft edges, exposure gain, motion blur and sensor noise applied to the image only
    (the ground truth is the sharp geometry)."""
    cam = scene.camera[u]
    image = cv2.warpAffine(
        scene.canvas, cam, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    ).astype(np.float32)
    owner = np.full((H, W), -1, np.int16)
    part = np.zeros((H, W), np.uint8)
    extent, crops = {}, {}
    for i in sorted(range(len(scene.things)), key=lambda k: scene.things[k].z):
        th = scene.things[i]
        tex, alpha, parts = th.patch(u)
        m = _compose(cam, th.affine(u))
        box = _crop_of(m, *alpha.shape)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        mc = m.copy()
        mc[:, 2] -= (x0, y0)
        size = (x1 - x0, y1 - y0)
        a = cv2.warpAffine(alpha, mc, size, flags=cv2.INTER_LINEAR, borderValue=0)
        inside = a >= 128
        if not inside.any():
            continue
        extent[i], crops[i] = int(np.count_nonzero(inside)), box
        owner[y0:y1, x0:x1][inside] = i
        if parts is not None:
            p = cv2.warpAffine(parts, mc, size, flags=cv2.INTER_NEAREST, borderValue=0)
            part[y0:y1, x0:x1][inside] = p[inside]
        else:
            part[y0:y1, x0:x1][inside] = 0
        if not th.stuff:
            t = cv2.warpAffine(tex, mc, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            af = (a.astype(np.float32) / 255)[..., None]
            image[y0:y1, x0:x1] = image[y0:y1, x0:x1] * (1 - af) + t * af
    image *= scene.gain[u]
    blur = scene.blur[u]
    if np.hypot(*blur) >= 2:
        image = cv2.filter2D(image, -1, _line_kernel(blur))
    image += rng.normal(0, 2.0, (H // 4, W // 4, 1)).repeat(4, 0).repeat(4, 1)
    return Truth(np.clip(image, 0, 255).astype(np.uint8), owner, part, extent, crops, blur)


def _line_kernel(vec: np.ndarray) -> np.ndarray:
    """Normalised linear motion-blur kernel along ``vec`` (image px)."""
    n = int(np.ceil(np.hypot(*vec))) | 1
    k = np.zeros((n, n), np.float32)
    c = n // 2
    d = vec / max(1e-6, np.hypot(*vec)) * c
    cv2.line(
        k,
        (int(round(c - d[0])), int(round(c - d[1]))),
        (int(round(c + d[0])), int(round(c + d[1]))),
        1.0,
    )
    return k / k.sum()
