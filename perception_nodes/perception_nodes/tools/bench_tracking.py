"""pn-bench-tracking: cost of the tracking stage per frame for 16 / 64 / 128 regions.

Side by side in one process: the tracker alone (association + track life cycle) and the whole
stage the pipeline runs (tracker + label vote + relation smoothing of 5 relations per region,
the same pairs every frame with new scores).
Inputs are synthetic: N random rectangular/elliptic masks on an H x W image that drift a few
pixels per frame, with random 256-d tokens; every frame after the first is matched against N
live tracks (the worst case: nothing dies, nothing is born).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.tracking import RegionTracker, TrackingStage
from perception_nodes.core.tracking.stage import settings_of
from perception_nodes.core.types import RegionLabels, Relations, Segmentation
from perception_nodes.tools.bench_common import hardware_info
from perception_nodes.tools.bench_relations import synthetic_segmentation


def drifted(
    seg: Segmentation, frame: int, velocity: tuple[int, int], rng: np.random.Generator
) -> Segmentation:
    """``seg`` moved by ``frame * velocity`` (``(dy, dx)`` pixels per frame), tokens with noise."""
    dy, dx = velocity[0] * frame, velocity[1] * frame
    masks = np.roll(seg.masks, (dy, dx), axis=(1, 2))
    boxes = seg.boxes_xyxy + np.array([dx, dy, dx, dy], np.float32)
    tokens = seg.tokens + rng.normal(scale=0.05, size=seg.tokens.shape).astype(np.float32)
    return replace(seg, masks=masks, boxes_xyxy=boxes, tokens=tokens)


def frame_inputs(
    seg: Segmentation, pairs: np.ndarray, rng: np.random.Generator
) -> tuple[RegionLabels, Relations]:
    """Random labels (20 entries) and the relations ``pairs`` (``(M, 3)`` subject, object,
    predicate) with this frame's random scores."""
    n = len(seg)
    idx = rng.integers(0, 20, size=n)
    score = rng.uniform(0.1, 0.9, size=n).astype(np.float32)
    labels = RegionLabels(idx, score, idx[:, None], score[:, None], [f"l{i}" for i in range(20)], 1)
    rel = Relations(
        pairs[:, 0],
        pairs[:, 1],
        pairs[:, 2],
        rng.uniform(0, 1, size=len(pairs)).astype(np.float32),
        [f"p{i}" for i in range(8)],
        "geometric",
    )
    return labels, rel


def relation_pairs(n: int, per_region: int, rng: np.random.Generator) -> np.ndarray:
    """``(n * per_region, 3)`` int64 (subject, object, predicate): the scene's relations, the same
    every frame (only their scores change), as between objects that stay put."""
    subj = np.repeat(np.arange(n), per_region)
    obj = (subj + rng.integers(1, max(2, n), size=subj.size)) % n
    return np.stack([subj, obj, rng.integers(0, 8, size=subj.size)], axis=1).astype(np.int64)


def _timed(fn, frames: list) -> tuple[list[float], list[float]]:
    """Wall and this thread's CPU milliseconds per frame (the first frame only opens tracks).

    The stage is single-threaded, so its CPU time is its cost without the time slices other
    processes take on a shared machine; the wall time is what a frame waits."""
    wall, cpu = [], []
    for args in frames:
        t0, c0 = time.perf_counter(), time.thread_time()
        fn(*args)
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
    return wall[1:], cpu[1:]


def run(sizes: list[int], h: int, w: int, frames: int) -> list[dict]:
    config = PipelineConfig(tracking_birth_hits=1)
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        base = synthetic_segmentation(n, h, w, seed=n)
        velocity = (int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
        segs = [drifted(base, f, velocity, rng) for f in range(frames)]
        pairs = relation_pairs(n, 5, rng)
        inputs = [(s, *frame_inputs(s, pairs, rng)) for s in segs]
        tracker, stage = RegionTracker(), TrackingStage()
        settings = settings_of(config)
        timed = {
            "tracker": _timed(lambda s, _l, _r: tracker.update(s, settings), inputs),
            "stage": _timed(lambda s, lab, rel: stage.apply("bench", s, lab, rel, config), inputs),
        }
        row = {
            "regions": n,
            "frames": frames - 1,
            "live_tracks": len(stage._trackers["bench"].tracks),
        }
        for name, (wall, cpu) in timed.items():
            row[f"{name}_ms"] = statistics.median(wall)
            row[f"{name}_p90_ms"] = float(np.percentile(wall, 90))
            row[f"{name}_cpu_ms"] = statistics.median(cpu)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pn-bench-tracking", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 128], help="regions per frame")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument(
        "--frames", type=int, default=40, help="frames per size (the first is not timed)"
    )
    p.add_argument("--out", type=Path, default=Path("outputs/bench/tracking.json"))
    args = p.parse_args(argv)
    rows = run(args.sizes, args.height, args.width, args.frames)
    print(
        f"tracking cost per frame, {args.height}x{args.width}, {args.frames - 1} timed frames "
        "(ms: wall median / wall p90 / CPU median; target <= 5 ms for 64 regions)"
    )
    print(f"{'regions':>8} {'tracks':>7} {'tracker ms':>26} {'whole stage ms':>26}")
    for r in rows:
        cells = " ".join(
            f"{r[k + '_ms']:>8.2f} /{r[k + '_p90_ms']:>7.2f} /{r[k + '_cpu_ms']:>7.2f}"
            for k in ("tracker", "stage")
        )
        print(f"{r['regions']:>8} {r['live_tracks']:>7} {cells}")
    meta = {"image": [args.height, args.width], "hardware": hardware_info("cpu")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
