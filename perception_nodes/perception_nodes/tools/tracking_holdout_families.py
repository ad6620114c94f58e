"""Sequence families of the held-out tracking benchmark: what the camera and the objects do.

Object positions are given in image pixels of the first frame and placed on the world plane
under the first camera; the camera then pans, zooms (an approach: everything grows), rolls and
shakes over that plane. Each family returns a :class:`~.tracking_holdout_world.Scene`.

- handheld: hand-held shake (high-frequency, plus jolts with motion blur), a slow pan and roll,
  an exposure step, dropped frames; slow objects, two deforming, two small.
- walkthrough: an approach (zoom 1 -> 2), pan, roll of a few degrees; static objects leave at
  the borders as they grow, movers enter and leave across the image edges.
- clutter_occlusion: many movers, small ones, large occluders with objects passing 1-3 s
  behind them.
- lookalikes: cut-outs of one photo side by side, crossing each other (one hides the other).
- sam_hierarchy: objects with 2-3 parts, SAM switching whole / parts / both; touching pairs
  merged; more misses, jitter, spurious blobs.
- everything: all of the above at once.
"""

from __future__ import annotations

import numpy as np

from perception_nodes.tools.tracking_holdout_sam import SamNoise
from perception_nodes.tools.tracking_holdout_world import (
    PHOTOS,
    WORLD_H,
    WORLD_W,
    H,
    Scene,
    Thing,
    W,
    background,
    camera_affine,
    cutout,
    part_map,
    smooth_outline,
)

CLS = {
    "astronaut": 0,
    "chelsea": 1,
    "coffee": 2,
    "rocket": 3,
    "immunohistochemistry": 4,
    "motorcycle": 5,
}
STUFF_CLS = (6, 7, 8, 12)
C0 = np.array([WORLD_W / 2 - 150, WORLD_H / 2])  # world point under the first frame's centre


class Builder:
    """Collects the things and the camera of one sequence (``U`` world steps)."""

    def __init__(self, rng: np.random.Generator, frames: int, drop: float = 0.0):
        self.rng, self.frames = rng, frames
        self.steps = _steps(rng, frames, drop)
        self.U = max(30, int(self.steps[-1]) + 1)  # world steps simulated (>= the rendered ones)
        self.things: list[Thing] = []
        self.bg = PHOTOS[rng.integers(len(PHOTOS))]

    def world(self, xy_img) -> np.ndarray:
        """First-frame image px -> world px (zoom 1, no roll)."""
        return C0 + np.asarray(xy_img, float) - (W / 2, H / 2)

    def pose(self, xy_img, vel=(0.0, 0.0), wander=0.0, spin=0.0, walk=0.0, scale=1.0) -> np.ndarray:
        """``(U, 4)`` pose: start (first-frame image px), velocity (px/step), sinusoidal wander
        amplitude (px), spin (deg/step), random-walk acceleration std (px/step^2; bounces off
        the first frame's borders)."""
        r, U = self.rng, self.U
        p = np.zeros((U, 2))
        p[0] = self.world(xy_img)
        v = np.array(vel, float)
        lo, hi = self.world((20, 20)), self.world((W - 20, H - 20))
        for u in range(1, U):
            if walk:
                v = np.clip(v + r.normal(0, walk, 2), -3.5, 3.5)
                v = np.where((p[u - 1] < lo) & (v < 0) | (p[u - 1] > hi) & (v > 0), -v, v)
            p[u] = p[u - 1] + v
        t = np.arange(U)
        if wander:
            per, ph = r.uniform(40, 90, 2), r.uniform(0, 6.3, 2)
            p += wander * np.stack(
                [np.sin(2 * np.pi * t / per[0] + ph[0]), np.sin(2 * np.pi * t / per[1] + ph[1])], 1
            )
        ang = r.uniform(-20, 20) + spin * t
        return np.column_stack([p, ang, np.full(U, scale)])

    def route(self, points, wander=0.0) -> np.ndarray:
        """``(U, 4)`` pose along waypoints ``[(fraction of the sequence, (x, y) first-frame image
        px)]``, linear between them, held before the first and after the last."""
        last = float(self.steps[-1])
        fr = np.array([f for f, _ in points]) * last
        xy = np.array([self.world(q) for _, q in points])
        u = np.arange(self.U)
        p = self.pose((W / 2, H / 2), wander=wander)  # C0 + wander
        p[:, 0] += np.interp(u, fr, xy[:, 0]) - C0[0]
        p[:, 1] += np.interp(u, fr, xy[:, 1]) - C0[1]
        return p

    def hider(self, occluder, hidden_frames: float, size=(50, 55)) -> Thing:
        """An object that walks behind ``occluder`` (a Thing, first-frame image px at its pose),
        stays fully hidden for ~``hidden_frames`` frames and comes out on the other side."""
        ox, oy = self.first_image_xy(occluder)
        oh, ow = occluder.alpha.shape
        side = self.rng.choice([-1, 1])
        y = oy + self.rng.uniform(-0.15, 0.15) * oh
        out = ow / 2 + max(size) / 2 + 15
        n = len(self.steps)
        hide = min(0.6, hidden_frames / n)
        t_in = self.rng.uniform(0.08, 0.35 - hide / 2) if hide < 0.5 else 0.05
        pts = [
            (0.0, (ox - side * out * 1.2, y)),
            (t_in, (ox - side * 0.1 * ow, y)),
            (t_in + hide, (ox + side * 0.1 * ow, y)),
            (min(1.0, t_in + hide + 0.2), (ox + side * out * 1.2, y)),
        ]
        return self.obj(self.route(pts, wander=1.5), size, z=occluder.z - 1)

    def peeker(self, size=(60, 60)) -> Thing:
        """An object that leaves the image across a border and comes back ~1 s later (re-entry)."""
        r = self.rng
        edge = r.integers(4)
        y, x = r.uniform(100, H - 100), r.uniform(100, W - 100)
        inside, outside = {
            0: ((60, y), (-90, y)),
            1: ((W - 60, y), (W + 90, y)),
            2: ((x, 60), (x, -90)),
            3: ((x, H - 60), (x, H + 90)),
        }[edge]
        t0 = r.uniform(0.1, 0.3)
        pts = [(0.0, inside), (t0, outside), (t0 + 0.35, outside), (t0 + 0.5, inside)]
        return self.obj(self.route(pts, wander=2), size, z=7)

    def first_image_xy(self, th: Thing) -> np.ndarray:
        """Where ``th`` is at step 0, in first-frame image px (no camera motion)."""
        return th.pose[0, :2] - C0 + (W / 2, H / 2)

    def obj(self, pose, size, name=None, z=None, parts=0, deform=0.0, tex=None) -> Thing:
        """A cut-out object (``size`` (h, w) patch px); ``tex`` reuses a texture (look-alikes)."""
        r = self.rng
        name = name or PHOTOS[r.integers(len(PHOTOS))]
        h, w = size
        if tex is None:
            tex, alpha = cutout(r, name, h, w)
        else:
            tex, alpha = tex, smooth_outline(r, h, w)
        th = Thing(
            len(self.things) + 1,
            tex,
            alpha,
            pose,
            CLS[name],
            r.uniform(1, 5) if z is None else z,
            part_map(r, alpha, parts) if parts else None,
            deform,
        )
        self.things.append(th)
        return th

    def stuff(self, n: int) -> None:
        """``n`` large background regions (a wall, a table top): masks on the plane, static."""
        for _ in range(n):
            h, w = self.rng.integers(150, 300), self.rng.integers(200, 380)
            xy = (self.rng.uniform(60, W - 60), self.rng.uniform(60, H - 60))
            pose = self.pose(xy)
            self.things.append(
                Thing(
                    len(self.things) + 1,
                    np.zeros((1, 1, 3), np.uint8),
                    smooth_outline(self.rng, h, w, 0.3),
                    pose,
                    STUFF_CLS[self.rng.integers(len(STUFF_CLS))],
                    0.0,
                    stuff=True,
                )
            )

    def movers(self, n: int, sizes=(30, 120), walk=0.1, speed=1.5, **kw) -> None:
        r = self.rng
        for _ in range(n):
            s = r.uniform(*sizes)
            xy = (r.uniform(40, W - 40), r.uniform(40, H - 40))
            vel = r.uniform(-speed, speed, 2)
            self.obj(
                self.pose(xy, vel, wander=r.uniform(0, 8), walk=walk),
                (int(s * r.uniform(0.6, 1.4)), int(s)),
                **kw,
            )

    def small(self, n: int) -> None:
        """Objects of 150-400 px."""
        for _ in range(n):
            s = self.rng.uniform(14, 24)
            self.obj(
                self.pose(
                    (self.rng.uniform(30, W - 30), self.rng.uniform(30, H - 30)),
                    self.rng.uniform(-1, 1, 2),
                    walk=0.05,
                ),
                (int(s), int(s * 1.2)),
            )

    def scene(self, camera: np.ndarray, blur: np.ndarray, gain: np.ndarray, sam: SamNoise) -> Scene:
        stamps = 1000.0 + self.steps / 30.0 + self.rng.normal(0, 0.003, self.steps.size)
        stamps = np.maximum.accumulate(stamps + np.arange(stamps.size) * 1e-6)
        return Scene(
            background(self.bg), self.things, camera, gain, blur, self.steps, stamps, {"noise": sam}
        )

    def camera(self, pan=(0.0, 0.0), zoom_to=1.0, roll_to=0.0, shake=0.0, jolts=0) -> tuple:
        """Camera ``(U, 2, 3)`` and blur ``(U, 2)``: pan (world px/step), an exponential zoom to
        ``zoom_to`` at the last step, a roll ramp, hand-held shake (AR(1) px) with ``jolts``
        (8-16 px over 2 steps); frames whose image moves >= 7 px between steps are blurred."""
        r, U = self.rng, self.U
        t = np.arange(U) / max(1, U - 1)
        centre = C0 + np.outer(np.arange(U), pan)
        zoom = zoom_to**t
        roll = roll_to * t + r.normal(0, 0.15 * (shake > 0), U)
        sh = np.zeros((U, 2))
        for u in range(1, U):
            sh[u] = 0.35 * sh[u - 1] + r.normal(0, shake, 2)
        for u0 in r.integers(5, U - 3, jolts):
            jump = r.uniform(8, 16) * _unit_vec(r)
            sh[u0:] += 0.5 * jump
            sh[u0 + 1 :] += 0.5 * jump
        cam = np.stack([camera_affine(centre[u], zoom[u], roll[u], sh[u]) for u in range(U)])
        centre_px = np.array([W / 2, H / 2, 1.0])
        moved = np.zeros((U, 2))
        for u in range(1, U):
            back = np.linalg.solve(cam[u - 1][:, :2], centre_px[:2] - cam[u - 1][:, 2])
            moved[u] = cam[u] @ np.append(back, 1.0) - centre_px[:2]
        blur = np.where(np.hypot(*moved.T)[:, None] >= 7, 0.7 * moved, 0.0)
        return cam, blur

    def exposure(self, changes: int = 1) -> np.ndarray:
        """Gain ``(U,)``: ``changes`` auto-exposure steps (x0.6-0.8 or x1.2-1.4, over 8 steps)."""
        g = np.ones(self.U)
        for u0 in np.sort(self.rng.integers(5, max(6, self.U - 10), changes)):
            target = (
                self.rng.uniform(0.6, 0.8)
                if self.rng.random() < 0.5
                else self.rng.uniform(1.2, 1.4)
            )
            ramp = np.clip((np.arange(self.U) - u0) / 8, 0, 1)
            g = g * (1 - ramp) + target * ramp * g[u0]
        return g


def _unit_vec(r: np.random.Generator) -> np.ndarray:
    a = r.uniform(0, 2 * np.pi)
    return np.array([np.cos(a), np.sin(a)])


def _steps(r: np.random.Generator, frames: int, drop: float) -> np.ndarray:
    """World steps of the rendered frames: 1 apart, 2-4 where 1-3 frames were dropped."""
    gaps = np.where(r.random(frames - 1) < drop, r.integers(2, 5, frames - 1), 1)
    return np.concatenate([[0], np.cumsum(gaps)]).astype(int)


def handheld(b: Builder) -> Scene:
    b.stuff(3)
    b.movers(6, sizes=(40, 140), speed=0.8, walk=0.04)
    b.movers(2, sizes=(50, 110), speed=0.8, walk=0.04, deform=6.0)
    b.small(2)
    cam, blur = b.camera(
        pan=b.rng.uniform(-1, 1, 2), roll_to=b.rng.uniform(-4, 4), shake=2.5, jolts=3
    )
    return b.scene(cam, blur, b.exposure(1), SamNoise())


def walkthrough(b: Builder) -> Scene:
    r = b.rng
    b.stuff(2)
    for _ in range(9):
        s = r.uniform(40, 120)
        b.obj(
            b.pose((r.uniform(-30, W + 30), r.uniform(-20, H + 20)), wander=2),
            (int(s), int(s * r.uniform(0.7, 1.3))),
        )
    for _ in range(3):  # movers crossing the image from one edge to the other
        side = r.choice([-1, 1])
        y = r.uniform(80, H - 80)
        x = W / 2 - side * (W / 2 + 40)
        b.obj(
            b.pose((x, y), (side * r.uniform(5, 8), r.uniform(-0.5, 0.5)), wander=3), (70, 60), z=6
        )
    b.peeker()
    b.small(1)
    cam, blur = b.camera(
        pan=(r.uniform(1, 2.5) * r.choice([-1, 1]), r.uniform(-0.5, 0.5)),
        zoom_to=2.0,
        roll_to=r.uniform(-5, 5),
        shake=1.0,
    )
    return b.scene(cam, blur, b.exposure(1), SamNoise())


def clutter_occlusion(b: Builder) -> Scene:
    r = b.rng
    b.stuff(2)
    b.movers(10, sizes=(25, 100), speed=2.5, walk=0.12)
    b.small(3)
    for k in range(2):  # large occluders, an object hidden behind each for 1-3 s
        ox, oy = (W * (0.3 + 0.4 * k), r.uniform(150, H - 150))
        ow = r.uniform(170, 230)
        occ = b.obj(b.pose((ox, oy), r.uniform(-0.3, 0.3, 2)), (int(ow * 0.8), int(ow)), z=9)
        b.hider(occ, r.uniform(30, 90))
    b.peeker()
    cam, blur = b.camera(pan=r.uniform(-0.7, 0.7, 2), shake=1.0)
    return b.scene(cam, blur, b.exposure(0), SamNoise(miss=0.07))


def lookalikes(b: Builder) -> Scene:
    r = b.rng
    b.stuff(2)
    name = PHOTOS[r.integers(len(PHOTOS))]
    s = int(r.uniform(60, 90))
    tex = b.obj(b.pose((W / 2, H - 60), wander=1), (s, s), name=name).texture
    y = r.uniform(110, H - 130)
    for k in range(4):  # a row of look-alikes side by side; two of them walk across the others
        x = W / 2 - 1.5 * (s + 8) + k * (s + 8)
        vel = (0.0, 0.0) if k in (1, 2) else (r.uniform(1.2, 2.2) * (1 if k == 0 else -1), 0.0)
        b.obj(
            b.pose((x, y), vel, wander=2, walk=0.0, scale=r.uniform(0.9, 1.1)),
            (s, s),
            name=name,
            tex=tex,
            z=float(k % 2) + 2 * (k in (0, 3)),
        )
    for _ in range(2):  # a crossing pair of look-alikes in another row
        side = r.choice([-1, 1])
        b.obj(
            b.pose((W / 2 - side * 150, y + s + 40), (side * 2.0, 0), wander=2),
            (s, s),
            name=name,
            tex=tex,
        )
    b.movers(3, sizes=(40, 90), speed=1.0, walk=0.05)
    cam, blur = b.camera(pan=r.uniform(-1, 1, 2), shake=1.5)
    return b.scene(cam, blur, b.exposure(0), SamNoise(merge=0.03))


def sam_hierarchy(b: Builder) -> Scene:
    r = b.rng
    b.stuff(3)
    b.movers(5, sizes=(60, 160), speed=1.0, walk=0.05, parts=2)
    b.movers(2, sizes=(80, 160), speed=1.0, walk=0.05, parts=3)
    for _ in range(2):  # touching pairs moving together (merge candidates)
        xy, vel = np.array([r.uniform(120, W - 200), r.uniform(80, H - 80)]), r.uniform(-1, 1, 2)
        b.obj(b.pose(xy, vel), (70, 70), parts=2)
        b.obj(b.pose(xy + (66, r.uniform(-10, 10)), vel), (70, 70))
    cam, blur = b.camera(pan=r.uniform(-2, 2, 2), shake=1.0)
    sam = SamNoise(miss=0.1, jitter=2.0, spurious=1.5, hierarchy=0.25, merge=0.08)
    return b.scene(cam, blur, b.exposure(0), sam)


def everything(b: Builder) -> Scene:
    r = b.rng
    b.stuff(3)
    b.movers(5, sizes=(30, 110), speed=2.0, walk=0.1, parts=2)
    b.movers(3, sizes=(40, 100), speed=1.5, walk=0.1)
    b.movers(2, sizes=(50, 100), speed=1.0, walk=0.05, deform=6.0)
    b.small(3)
    name = PHOTOS[r.integers(len(PHOTOS))]
    tex = b.obj(b.pose((W / 2 - 150, 150), (2.0, 0.3)), (70, 70), name=name).texture
    b.obj(b.pose((W / 2 + 150, 170), (-2.0, 0.0)), (70, 70), name=name, tex=tex)
    occ = b.obj(b.pose((r.uniform(220, W - 220), r.uniform(150, H - 150))), (160, 200), z=9)
    b.hider(occ, r.uniform(30, 60))
    b.peeker()
    side = r.choice([-1, 1])
    b.obj(
        b.pose((W / 2 - side * (W / 2 + 50), r.uniform(80, H - 80)), (side * 4.0, 0.0)),
        (70, 60),
        z=6,
    )
    cam, blur = b.camera(
        pan=r.uniform(-1.5, 1.5, 2), zoom_to=1.6, roll_to=r.uniform(-4, 4), shake=2.5, jolts=2
    )
    sam = SamNoise(miss=0.1, jitter=2.0, spurious=1.2, hierarchy=0.2, merge=0.05)
    return b.scene(cam, blur, b.exposure(1), sam)


FAMILIES = {
    "handheld": (handheld, 0.05),
    "walkthrough": (walkthrough, 0.03),
    "clutter_occlusion": (clutter_occlusion, 0.0),
    "lookalikes": (lookalikes, 0.0),
    "sam_hierarchy": (sam_hierarchy, 0.0),
    "everything": (everything, 0.05),
}


def build(family: str, rng: np.random.Generator, frames: int) -> Scene:
    """The scene of ``family`` (see the module docstring) with ``frames`` rendered frames."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    make, drop = FAMILIES[family]
    return make(Builder(rng, frames, drop))
