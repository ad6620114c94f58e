"""Same output as another revision? Track ids and ages (and voted labels, smoothed relations) of the tracking stage of git revision
``--rev`` and of the working tree, frame by frame, on the same inputs: the cost benchmark's
drifting regions (``--sizes``), pn-bench-host's scenes at 50 and 100 regions with the geometric
relations, and every sequence family (``--seeds``, distinct and all-alike
tokens). For optimisations that must not change behaviour.

    python -m perception_nodes.tools.tracking_compare --rev HEAD~1
    python -m perception_nodes.tools.tracking_compare --rev HEAD~1 --cost --sizes 16 64 128 256 --frames 40 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.relations.geometric import GeometricRelationPredictor
from perception_nodes.core.tracking import TrackingStage
from perception_nodes.tools.bench_tracking import cost_inputs, drifted, frame_inputs
from perception_nodes.tools.host_scenes import host_scene
from perception_nodes.tools.tracking_quality import baseline_stage
from perception_nodes.tools.tracking_sequences import FAMILIES, SequenceRenderer


def _outputs(stage_class: type, frames: list[tuple], config: PipelineConfig) -> list:
    """``(track_ids, track_ages[, voted labels, scores][, smoothed relations])`` per frame; ``frames``: ``(seg, image, labels, relations, stamp)``."""
    stage = stage_class()
    out = []
    for seg, image, labels, relations, stamp in frames:
        tf = stage.apply("cmp", seg, labels, relations, config, image=image, stamp=stamp)
        got = [tf.track_ids.copy(), tf.track_ages.copy()]
        if tf.labels is not None:
            got += [tf.labels.label_index, tf.labels.label_score]
        if tf.relations is not None:
            rel = tf.relations
            got += [rel.subject, rel.object, rel.predicate_index, rel.score]
        out.append(tuple(got))
    return out


def cost_side_by_side(before: type, sizes: list[int], frames: int, repeats: int = 1) -> list[dict]:
    """Median CPU ms per frame of the whole stage (camera motion included) of both: thread CPU
    time (``time.thread_time``: this thread alone, what one core pays when OpenCV runs on one
    thread) and process CPU time. The two stages are fed the same frame one after the other,
    taking turns at going first (a shared machine's load and the caches hit both alike);
    ``repeats`` passes over the frames, fresh stages each."""
    config = PipelineConfig(tracking_birth_hits=1)
    print(f"load average {os.getloadavg()[0]:.1f}; ms per frame, median (thread CPU / process CPU)")
    print(f"{'regions':>8} {'before ms':>16} {'after ms':>16} {'after/before':>13}")
    rows = []
    for n in sizes:
        inputs = cost_inputs(n, 480, 640, frames)
        cpu: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for _ in range(repeats):
            stages = {"before": before(), "after": TrackingStage()}
            for f, (seg, image, labels, relations) in enumerate(inputs):
                order = ("before", "after") if f % 2 else ("after", "before")
                for name in order:
                    t0, c0 = time.thread_time(), time.process_time()
                    stages[name].apply(
                        "cost", seg, labels, relations, config, image=image, stamp=None
                    )
                    if f:  # the first frame only opens tracks
                        cpu[name].append(
                            ((time.thread_time() - t0) * 1e3, (time.process_time() - c0) * 1e3)
                        )
        med = {k: np.median(np.array(v), axis=0) for k, v in cpu.items()}
        rows.append({"regions": n, **{f"{k}_thread_ms": float(m[0]) for k, m in med.items()},
                     **{f"{k}_process_ms": float(m[1]) for k, m in med.items()}})  # fmt: skip
        cells = "".join(f"{m[0]:>9.2f} /{m[1]:>5.2f}" for m in med.values())
        print(f"{n:>8} {cells} {med['after'][0] / med['before'][0]:>13.2f}")
    print(f"load average {os.getloadavg()[0]:.1f}")
    return rows


def host_inputs(n: int, frames: int) -> list[tuple]:
    """``(seg, None, labels, relations, None)`` per frame: pn-bench-host's 640x480 scene of ``n``
    regions drifting, a tenth of them missed at random each frame (tracks lost, found again and
    born), with the geometric predictor's relations (most region pairs related: the smoothing's
    grid path) and random labels."""
    scene = host_scene(480, 640, n)
    rng = np.random.default_rng(n)
    predictor = GeometricRelationPredictor()
    out = []
    for f in range(frames):
        seg = drifted(scene.segmentation, f, (1, 2), rng)
        seg = seg.select(np.flatnonzero(rng.random(len(seg)) >= 0.1))
        labels, _ = frame_inputs(seg, np.zeros((0, 3), np.int64), rng)
        out.append((seg, None, labels, predictor.predict(seg, labels, scene.depth_m), None))
    return out


def cases(sizes: list[int], seeds: int, frames: int):
    """``(name, config, frames)`` of every compared input."""
    for n in (50, 100):
        yield f"host {n}", PipelineConfig(), host_inputs(n, min(frames, 12))
    for n in sizes:
        inputs = cost_inputs(n, 480, 640, frames)
        yield (
            f"cost {n}",
            PipelineConfig(tracking_birth_hits=1),
            [(s, im, lab, rel, None) for s, im, lab, rel in inputs],
        )
    for family in FAMILIES:
        for alike in (False, True):
            for seed in range(seeds):
                seq = SequenceRenderer(family, seed, alike, frames=frames).frames_iter()
                got = [(f.segmentation, f.image, f.labels, None, f.stamp) for f in seq]
                yield f"{family} {'alike' if alike else 'distinct'} {seed}", PipelineConfig(), got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tracking_compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--rev", required=True, help="git revision to compare with")
    p.add_argument("--sizes", type=int, nargs="*", default=[16, 64, 256])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--cost", action="store_true", help="only time both on the cost rows")
    p.add_argument("--repeats", type=int, default=1, help="passes over the cost frames")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/tracking_compare_cost.json"))
    args = p.parse_args(argv)
    repo = Path(__file__).resolve().parents[2]
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", args.rev],
                         check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    before = baseline_stage(rev, repo)
    if args.cost:
        rows = cost_side_by_side(before, args.sizes, args.frames, args.repeats)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"baseline": rev, "rows": rows}, indent=2))
        print(f"wrote {args.out}")
        return 0
    differ = 0
    for name, config, frames in cases(args.sizes, args.seeds, args.frames):
        a, b = _outputs(before, frames, config), _outputs(TrackingStage, frames, config)
        bad = [k for k, (x, y) in enumerate(zip(a, b)) if not all(map(np.array_equal, x, y))]
        differ += bool(bad)
        print(
            f"{name:<24} {len(frames):>3} frames: "
            + (f"DIFFER from frame {bad[0]}" if bad else "same")
        )
    print(f"{differ} of the inputs differ from {rev}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
