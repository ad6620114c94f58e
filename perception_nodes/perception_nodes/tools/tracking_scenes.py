"""Scenes of :mod:`.tracking_sequences`: the camera path and the objects of each family, with
their appearance (SAM-like tokens, CLIP-like region embeddings). World pixels, x right, y down."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TOKEN_DIM = 256
EMBED_DIM = 64
LABELS = [f"class{i}" for i in range(6)]


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


@dataclass
class Camera:
    """Per-frame ``centre`` ``(F, 2)`` world pixels and ``zoom`` ``(F,)``."""

    centre: np.ndarray
    zoom: np.ndarray


@dataclass
class Thing:
    """An object: ``kind`` rect/ellipse, ``size`` (w, h) world px, ``path`` ``(F, 2)`` world
    centre per frame, ``depth`` (smaller is nearer), ``colour`` RGB, ``label`` index."""

    gt_id: int
    kind: str
    size: tuple[float, float]
    path: np.ndarray
    depth: float
    colour: tuple[int, int, int]
    label: int
    token: np.ndarray = field(default_factory=lambda: np.zeros(TOKEN_DIM))
    embedding: np.ndarray = field(default_factory=lambda: np.zeros(EMBED_DIM))


def _walk(rng, start, speed: float, frames: int, accel: float) -> np.ndarray:
    """``(F, 2)`` positions of a noisy constant-velocity walk (random heading, ``speed`` px/frame,
    Gaussian acceleration of ``accel`` px/frame^2)."""
    heading = rng.uniform(0, 2 * np.pi)
    v = speed * np.array([np.cos(heading), np.sin(heading)])
    pos = np.asarray(start, float).copy()
    out = np.zeros((frames, 2))
    for f in range(frames):
        out[f] = pos
        v = v + rng.normal(0, accel, 2)
        pos = pos + v
    return out


def camera_path(rng, family: str, frames: int) -> Camera:
    centre = np.zeros((frames, 2))
    zoom = np.ones(frames)
    if family in ("camera", "all"):
        speed = rng.uniform(3, 8)
        heading = rng.uniform(0, 2 * np.pi)
        v = speed * np.array([np.cos(heading), np.sin(heading)])
        shake = rng.normal(0, 0.7, (frames, 2))
        centre = np.arange(frames)[:, None] * v[None] + shake
        amp = rng.uniform(0.15, 0.25)
        period = rng.uniform(40, 80)
        zoom = 1.0 + amp * np.sin(2 * np.pi * np.arange(frames) / period + rng.uniform(0, 6.28))
    return Camera(centre, zoom)


def scene_things(rng, family: str, frames: int, size: tuple[int, int], cam: Camera, alike: bool):
    h, w = size
    lo = cam.centre.min(axis=0) - np.array([w, h]) * 0.6
    hi = cam.centre.max(axis=0) + np.array([w, h]) * 0.6
    things: list[Thing] = []

    def add(kind, wh, path, depth, label=None, colour=None):
        things.append(
            Thing(
                len(things) + 1,
                kind,
                wh,
                path,
                depth,
                colour if colour is not None else tuple(int(c) for c in rng.integers(30, 226, 3)),
                int(rng.integers(0, len(LABELS))) if label is None else label,
            )
        )

    n = {"moving": rng.integers(10, 41), "sam_noise": rng.integers(12, 25)}.get(family, 0)
    if family in ("camera", "dropped"):
        n = rng.integers(10, 25)
    if family == "all":
        n = rng.integers(12, 25)
    for _ in range(int(n)):
        wh = (rng.uniform(14, 90), rng.uniform(14, 90))
        start = rng.uniform(lo, hi)
        add(rng.choice(["rect", "ellipse"]), wh, _walk(rng, start, rng.uniform(0.5, 4), frames, 0.25),
            rng.uniform(1, 10))  # fmt: skip
    if family in ("crossing", "all"):
        for _ in range(int(rng.integers(3, 6))):
            wh = (rng.uniform(25, 60),) * 2
            meet = cam.centre[frames // 2] + rng.uniform(-0.35, 0.35, 2) * np.array([w, h])
            speed = rng.uniform(2, 5)
            heading = rng.uniform(0, np.pi)
            colour = tuple(int(c) for c in rng.integers(30, 226, 3))
            label = int(rng.integers(0, len(LABELS)))
            kind = str(rng.choice(["rect", "ellipse"]))
            for sign in (1, -1):
                ang = heading + sign * rng.uniform(0.4, 1.2)
                v = speed * np.array([np.cos(ang), np.sin(ang)])
                t = np.arange(frames)[:, None] - frames // 2
                path = meet[None] + t * v[None] + rng.normal(0, 0.4, (frames, 2)).cumsum(0) * 0.3
                add(kind, wh, path, rng.uniform(1, 10), label, colour)
    if family in ("occlusion", "all"):
        for _ in range(int(rng.integers(3, 7))):  # small far objects, nearly static
            wh = (rng.uniform(20, 50), rng.uniform(20, 50))
            start = cam.centre[frames // 2] + rng.uniform(-0.35, 0.35, 2) * np.array([w, h])
            add("rect", wh, _walk(rng, start, rng.uniform(0, 1), frames, 0.08), rng.uniform(5, 10))
        for k in range(int(rng.integers(1, 3))):  # big near occluders hiding them 10-20 frames
            speed = rng.uniform(3, 5)
            wh = (rng.uniform(50, 60) + speed * rng.uniform(10, 20), rng.uniform(160, 260))
            y = cam.centre[frames // 2][1] + rng.uniform(-0.2, 0.2) * h
            x0 = cam.centre[0][0] - w / 2 - wh[0] / 2 + k * 90
            t = np.arange(frames)[:, None]
            path = np.concatenate([x0 + t * speed, np.full_like(t, y, dtype=float)], axis=1)
            add("rect", wh, path, rng.uniform(0.1, 0.9))
    _give_appearance(rng, things, alike)
    return things


def _give_appearance(rng, things: list[Thing], alike: bool) -> None:
    """Tokens and embeddings per identity. Look-alike objects (same colour, size and label)
    get close tokens (cosine ~0.9); ``alike``: all identities nearly the same (cosine ~0.99)."""
    common_t, common_e = unit(rng.normal(size=TOKEN_DIM)), unit(rng.normal(size=EMBED_DIM))
    by_look: dict[tuple, np.ndarray] = {}
    for t in things:
        key = (t.colour, t.label, t.kind)
        look = by_look.setdefault(key, unit(rng.normal(size=TOKEN_DIM)))
        own = 0.45 * unit(rng.normal(size=TOKEN_DIM))
        label_e = unit(np.random.default_rng(1000 + t.label).normal(size=EMBED_DIM))
        if alike:
            t.token = unit(common_t + 0.1 * unit(look + own))
            t.embedding = unit(common_e + 0.1 * unit(rng.normal(size=EMBED_DIM)))
        else:
            t.token = unit(look + own)
            t.embedding = unit(label_e + 0.6 * unit(rng.normal(size=EMBED_DIM)))
