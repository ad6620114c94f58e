"""A segment-everything stand-in that makes the mistakes a real SAM makes, on a rendered frame.

From the exact ownership of each pixel (:class:`~.tracking_holdout_world.Truth`) it returns
regions with: boundary jitter (smooth low-frequency noise on the outline, random erosion or
dilation), masks smeared or eroded along the blur of a motion-blurred frame, misses (more
likely when an object is small or partly hidden, and in bursts), spurious short-lived blobs
that stay put in the world, two touching objects returned as one region for a few frames, the
hierarchy ambiguity (an object with parts returned whole, as its 2-3 parts, or both, switching
between frames) and quality scores that drop when an object is partly hidden or blurred; like
the pipeline's segment-everything, it keeps only regions whose predicted IoU and stability
pass ``amg_pred_iou_thresh`` / ``amg_stability_score_thresh`` (so all scores are >= 0.86 and
a badly hidden object's region is often filtered out).

Each region records where it came from (``kind``: whole, part, merge, spurious; ``gid`` of the
object, -1 for spurious blobs): the scorer ignores ``part`` regions (neither a hit nor a false
positive) and the labels use the object's class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from perception_nodes.core.config import PipelineConfig
from perception_nodes.tools.tracking_holdout_world import H, Truth, W, _line_kernel, smooth_outline

MIN_AREA = 25  # px: smaller pieces are never returned (SAM's small-region removal)
# the pipeline's segment-everything keeps masks with predicted IoU and stability at least these
AMG_KEEP = (PipelineConfig().amg_pred_iou_thresh, PipelineConfig().amg_stability_score_thresh)


@dataclass
class SamNoise:
    """How noisy the segmenter is in a family.

    miss: base chance an object is missed in a frame; jitter: std of the outline noise (px);
    spurious: new spurious blobs per frame (Poisson mean); hierarchy: per-frame chance an object
    with parts switches between whole / parts / both (0: always whole); merge: per-frame chance
    two touching objects start being returned as one region (for 2-7 frames)."""

    miss: float = 0.05
    jitter: float = 1.2
    spurious: float = 0.4
    hierarchy: float = 0.0
    merge: float = 0.0


@dataclass
class SimRegion:
    """One region: ``box`` ``(x0, y0, x1, y1)`` (exclusive) and ``crop`` bool mask inside it."""

    box: tuple[int, int, int, int]
    crop: np.ndarray
    score: float
    stability: float
    kind: str
    gid: int
    thing: int  # index into Scene.things, -1 for spurious blobs

    def full_mask(self) -> np.ndarray:
        m = np.zeros((H, W), bool)
        x0, y0, x1, y1 = self.box
        m[y0:y1, x0:x1] = self.crop
        return m


class SamSim:
    """Per-sequence segmenter state (hierarchy modes, miss bursts, merges, live blobs)."""

    def __init__(self, things: list, noise: SamNoise, rng: np.random.Generator):
        self.things, self.noise, self.rng = things, noise, rng
        self.mode: dict[int, str] = {}
        self.missed: set[int] = set()
        self.merges: dict[tuple[int, int], int] = {}
        self.blobs: list[list] = []  # [world xy (2,), alpha patch, ttl]

    def frame(self, truth: Truth, camera: np.ndarray) -> list[SimRegion]:
        """Regions of one frame (order shuffled, as SAM's order means nothing)."""
        vis = {}
        for i, (x0, y0, x1, y1) in truth.crop.items():
            m = truth.owner[y0:y1, x0:x1] == i
            n = int(np.count_nonzero(m))
            if n >= MIN_AREA:
                vis[i] = (m, n / max(1, truth.extent[i]), n)
        blurred = bool(np.hypot(*truth.blur) >= 2)
        out: list[SimRegion] = []
        merged = self._merged(truth, vis)
        for i, j in merged:
            mi, mj = self._full(truth, i, vis[i][0]), self._full(truth, j, vis[j][0])
            big = i if vis[i][2] >= vis[j][2] else j
            vf = min(vis[i][1], vis[j][1])
            out += self._emit(truth, mi | mj, vf, "merge", big, blurred)
        taken = {k for p in merged for k in p}
        missed = set()
        for i, (m, vf, n) in vis.items():
            if i in taken:
                continue
            th = self.things[i]
            p_miss = self.noise.miss * (0.5 if th.stuff else 1.0) + 0.2 * (1 - vf)
            p_miss += 0.15 if n < 150 else 0.0
            if i in self.missed:
                p_miss = max(p_miss, 0.5)
            if self.rng.random() < p_miss:
                missed.add(i)
                continue
            mode = self._mode(i) if th.parts is not None else "whole"
            if mode in ("whole", "both"):
                out += self._emit(truth, self._full(truth, i, m), vf, "whole", i, blurred)
            if mode in ("parts", "both"):
                x0, y0, x1, y1 = truth.crop[i]
                pm = truth.part[y0:y1, x0:x1]
                for k in range(1, int(th.parts.max()) + 1):
                    piece = m & (pm == k)
                    if np.count_nonzero(piece) >= MIN_AREA:
                        out += self._emit(
                            truth, self._full(truth, i, piece), vf, "part", i, blurred
                        )
        self.missed = missed
        out += self._spurious(camera)
        order = self.rng.permutation(len(out))
        return [out[k] for k in order]

    def _full(self, truth: Truth, i: int, crop_mask: np.ndarray) -> np.ndarray:
        m = np.zeros((H, W), bool)
        x0, y0, x1, y1 = truth.crop[i]
        m[y0:y1, x0:x1] = crop_mask
        return m

    def _mode(self, i: int) -> str:
        """Markov whole / parts / both state of a thing with parts."""
        modes = ("whole", "parts", "both")
        if self.noise.hierarchy <= 0:
            return "whole"
        if i not in self.mode:
            self.mode[i] = modes[self.rng.choice(3, p=[0.5, 0.3, 0.2])]
        elif self.rng.random() < self.noise.hierarchy:
            self.mode[i] = self.rng.choice([m for m in modes if m != self.mode[i]])
        return self.mode[i]

    def _merged(self, truth: Truth, vis: dict) -> list[tuple[int, int]]:
        """Pairs returned as one region this frame: running merges, plus new ones started with
        chance ``noise.merge`` among touching (<= 3 px apart) visible objects."""
        live = []
        for pair, ttl in list(self.merges.items()):
            if ttl <= 0 or pair[0] not in vis or pair[1] not in vis:
                del self.merges[pair]
                continue
            self.merges[pair] = ttl - 1
            live.append(pair)
        if self.noise.merge <= 0:
            return live
        busy = {k for p in live for k in p}
        cand = [i for i in vis if not self.things[i].stuff and i not in busy]
        for a, i in enumerate(cand):
            for j in cand[a + 1 :]:
                if i in busy or j in busy or not _touching(truth, i, j, vis):
                    continue
                if self.rng.random() < self.noise.merge:
                    pair = (min(i, j), max(i, j))
                    self.merges[pair] = int(self.rng.integers(1, 7))
                    live.append(pair)
                    busy |= set(pair)
        return live

    def _emit(
        self, truth: Truth, mask: np.ndarray, vf: float, kind: str, i: int, blurred: bool
    ) -> list[SimRegion]:
        """The region as SAM returns it (jittered outline, smeared when blurred, scores)."""
        ys, xs = np.nonzero(mask)
        if ys.size < MIN_AREA:
            return []
        pad = 3 + int(3 * self.noise.jitter + np.hypot(*truth.blur))
        x0, y0 = max(0, xs.min() - pad), max(0, ys.min() - pad)
        x1, y1 = min(W, xs.max() + 1 + pad), min(H, ys.max() + 1 + pad)
        crop = _jitter(
            mask[y0:y1, x0:x1], self.noise.jitter, self.rng, truth.blur if blurred else None
        )
        ys, xs = np.nonzero(crop)
        if ys.size < MIN_AREA:
            return []
        box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
        crop = crop[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        drop = 0.12 * (1 - vf) + 0.04 * (kind == "part") + 0.03 * (kind == "merge") + 0.05 * blurred
        score = float(min(1.0, 0.97 - drop + self.rng.normal(0, 0.025)))
        stab = float(min(1.0, 0.975 - drop / 2 + self.rng.normal(0, 0.02)))
        if score < AMG_KEEP[0] or stab < AMG_KEEP[1]:
            return []  # filtered out by the segmenter's own quality thresholds
        gid = self.things[i].gid if i >= 0 else -1
        return [SimRegion(box, crop, score, stab, kind, gid, i)]

    def _spurious(self, camera: np.ndarray) -> list[SimRegion]:
        """Short-lived blobs (1-3 frames) fixed in the world: shadows, glints, texture bits."""
        inv = cv2.invertAffineTransform(camera)
        for _ in range(self.rng.poisson(self.noise.spurious)):
            r = float(np.exp(self.rng.uniform(np.log(5), np.log(30))))
            h, w = max(4, int(2 * r * self.rng.uniform(0.6, 1.4))), max(4, int(2 * r))
            xy = np.array([self.rng.uniform(10, W - 10), self.rng.uniform(10, H - 10), 1.0])
            ttl = int(self.rng.choice([1, 1, 1, 2, 2, 3]))
            self.blobs.append([inv @ xy, smooth_outline(self.rng, h, w, 0.3), ttl])
        out = []
        for blob in self.blobs:
            (wx, wy), alpha, _ = blob
            cx, cy = camera @ np.array([wx, wy, 1.0])
            h, w = alpha.shape
            x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
            bx0, by0, bx1, by1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
            if bx1 - bx0 < 2 or by1 - by0 < 2:
                continue
            m = np.zeros((H, W), bool)
            m[by0:by1, bx0:bx1] = alpha[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
            out += self._emit_spurious(m)
            blob[2] -= 1
        self.blobs = [b for b in self.blobs if b[2] > 0]
        return out

    def _emit_spurious(self, m: np.ndarray) -> list[SimRegion]:
        ys, xs = np.nonzero(m)
        if ys.size < MIN_AREA:
            return []
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        crop = m[box[1] : box[3], box[0] : box[2]]
        score = float(self.rng.uniform(AMG_KEEP[0], 0.96))
        stab = float(self.rng.uniform(AMG_KEEP[1], 0.985))
        return [SimRegion(box, crop, score, stab, "spurious", -1, -1)]


def noise_overrides(items: list[str]) -> dict[str, float]:
    """``["miss=0", ...]`` (``--sam`` of tracking_holdout) -> ``{"miss": 0.0}``; raises ValueError
    naming the fields for an unknown field or a bad number."""
    names = {f.name for f in dataclasses.fields(SamNoise)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            if key not in names:
                raise ValueError
            out[key] = float(value)
        except ValueError:
            raise ValueError(
                f"--sam {item!r}: expected FIELD=NUMBER with FIELD in {sorted(names)}"
            ) from None
    return out


def _touching(truth: Truth, i: int, j: int, vis: dict) -> bool:
    """Visible masks of things i and j come within 3 px of each other."""
    ai, aj = truth.crop[i], truth.crop[j]
    x0, y0 = max(ai[0], aj[0]) - 3, max(ai[1], aj[1]) - 3
    x1, y1 = min(ai[2], aj[2]) + 3, min(ai[3], aj[3]) + 3
    if x1 <= x0 or y1 <= y0:
        return False
    x0, y0 = max(0, x0), max(0, y0)
    win = truth.owner[y0:y1, x0:x1]
    near_i = cv2.dilate((win == i).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    return bool((near_i & (win == j)).any())


def _jitter(
    m: np.ndarray, amp: float, rng: np.random.Generator, blur: np.ndarray | None
) -> np.ndarray:
    """SAM-like outline of the bool mask ``m``: the boundary moved by smooth noise (cells of ~8
    px, std ``amp`` px) plus one random offset of up to 1 px (erosion or dilation), by
    thresholding the signed distance to the outline; with a ``blur`` vector the mask is also
    smeared (dilated) or thinned (eroded) along it."""
    u8 = m.astype(np.uint8)
    sd = cv2.distanceTransform(u8, cv2.DIST_L2, 3) - cv2.distanceTransform(1 - u8, cv2.DIST_L2, 3)
    h, w = m.shape
    shift = rng.uniform(-1.0, 1.0)
    if amp > 0:
        noise = rng.standard_normal((h // 8 + 2, w // 8 + 2)).astype(np.float32)
        shift = shift + amp * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    out = sd + shift > 0
    if blur is not None:
        f = cv2.filter2D(out.astype(np.float32), -1, _line_kernel(blur))
        out = f > (0.3 if rng.random() < 0.5 else 0.7)
    return out
