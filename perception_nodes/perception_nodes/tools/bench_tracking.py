"""pn-bench-tracking: identity quality and cost of the tracking stage.

Quality (``--families``, default all; ``--seeds``; ``--frames``): camera-like synthetic
sequences (:mod:`.tracking_sequences`: moving crowds, crossings of look-alike objects,
occlusions behind a passing object, camera pan and zoom, SAM-like noise, dropped frames, all
together), each with distinct and with all-alike tokens (untrained weights), fed to the
stage exactly as the pipeline does (regions, labels with CLIP region embeddings, the image,
the stamp) and scored with py-motmetrics (IDF1, MOTA, ID switches, fragmentations) at mask
IoU >= 0.5 and with TrackEval's HOTA (DetA, AssA; mask IoU thresholds 0.05-0.95), beside the
``oracle`` (the ceiling: every region that shows an object carries its id) and ``oracle_2nd``
(the same from each object's second sighting on: the ceiling of any tracker that confirms a
track before it gives it an id). ``--baseline REV`` scores the tracking stage of git revision
REV on the same frames (before/after table).

Cost (``--sizes``): per frame for N regions, side by side in one process: the tracker alone
(association + track life cycle) and the whole stage the pipeline runs (camera-motion estimate
on the image + tracker + label vote + relation smoothing of 5 relations per region, the same
pairs every frame with new scores). Inputs: N random rectangular/elliptic masks on an H x W
textured image, all drifting a few pixels per frame with the image (a camera pan), random 256-d
tokens; every frame after the first is matched against N live tracks (the worst case). CPU
time is the process's (OpenCV may use threads; the cost is what one core pays).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
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
from perception_nodes.tools.tracking_hota import warn_if_missing
from perception_nodes.tools.tracking_quality import (
    ORACLE,
    ORACLES,
    Candidate,
    baseline_stage,
    new_candidate,
    run_sequence,
)
from perception_nodes.tools.tracking_sequences import FAMILIES, world_texture


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
    """Wall and process CPU milliseconds per frame (the first frame only opens tracks).

    The stage runs on the calling thread (OpenCV's optical flow may add its own threads: the
    process CPU time counts them), so CPU time is its cost without the time slices other
    processes take on a shared machine; the wall time is what a frame waits."""
    wall, cpu = [], []
    for args in frames:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(*args)
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return wall[1:], cpu[1:]


def cost_inputs(n: int, h: int, w: int, frames: int) -> list[tuple]:
    """``(seg, image, labels, relations)`` of each frame of the cost rows (see the docstring)."""
    rng = np.random.default_rng(n)
    base = synthetic_segmentation(n, h, w, seed=n)
    texture = np.repeat(world_texture(rng, (h, w))[:, :, None], 3, axis=2)
    velocity = (int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
    segs = [drifted(base, f, velocity, rng) for f in range(frames)]
    images = [
        np.roll(texture, (velocity[0] * f, velocity[1] * f), axis=(0, 1)) for f in range(frames)
    ]
    pairs = relation_pairs(n, 5, rng)
    return [(s, im, *frame_inputs(s, pairs, rng)) for s, im in zip(segs, images)]


def run(sizes: list[int], h: int, w: int, frames: int) -> list[dict]:
    config = PipelineConfig(tracking_birth_hits=1)
    rows = []
    for n in sizes:
        inputs = cost_inputs(n, h, w, frames)
        tracker, stage = RegionTracker(), TrackingStage()
        settings = settings_of(config)
        timed = {
            "tracker": _timed(lambda s, _im, _l, _r: tracker.update(s, settings), inputs),
            "stage": _timed(
                lambda s, im, lab, rel: stage.apply(
                    "bench", s, lab, rel, config, image=im, stamp=None
                ),
                inputs,
            ),
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


def quality(
    families: list[str], seeds: int, frames: int, candidates: list[Candidate]
) -> list[dict]:
    """One row per (family, tokens, seed, tracker) with the py-motmetrics scores."""
    rows = []
    for family in families:
        for alike in (False, True):
            for seed in range(seeds):
                scores = run_sequence(family, seed, alike, candidates, PipelineConfig(), frames)
                for name, sc in scores.items():
                    rows.append({"family": family, "tokens": "alike" if alike else "distinct",
                                 "seed": seed, "tracker": name, **sc})  # fmt: skip
                print(f"  {family:<10} {'alike' if alike else 'distinct':<9} seed {seed}: " + "  ".join(
                    f"{k} IDF1 {v['idf1']:.3f}" for k, v in scores.items()), flush=True)  # fmt: skip
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Means over seeds per (family, tokens, tracker), then per (tokens, tracker) over families
    (``family`` = "average" and "worst" (the worst family's mean))."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["tokens"], r["tracker"]), []).append(r)
    keys = ("idf1", "hota", "deta", "assa", "mota", "switches_per_100", "num_fragmentations",
            "max_live_ratio", "cpu_ms")  # fmt: skip
    out = []
    for (family, tokens, tracker), rs in groups.items():
        mean = {k: float(np.mean([r[k] for r in rs])) for k in keys}
        out.append({"family": family, "tokens": tokens, "tracker": tracker, **mean,
                    "max_live_ratio": max(r["max_live_ratio"] for r in rs)})  # fmt: skip
    for tokens in ("distinct", "alike"):
        for tracker in sorted({r["tracker"] for r in out}):
            fam = [r for r in out if r["tokens"] == tokens and r["tracker"] == tracker]
            if not fam:
                continue
            avg = {k: float(np.mean([r[k] for r in fam])) for k in keys}
            out.append({"family": "average", "tokens": tokens, "tracker": tracker, **avg})
            worst = min(fam, key=lambda r: r["idf1"])
            out.append({**worst, "family": f"worst ({worst['family']})"})
    return out


def print_quality(summary: list[dict]) -> None:
    trackers = sorted({r["tracker"] for r in summary},
                      key=lambda t: (t in ORACLES, t == ORACLE, t != "before"))  # fmt: skip
    print("\nidentity quality (mean over seeds; IDF1 / HOTA / MOTA / ID switches per 100 GT "
          "detections / fragmentations / max live tracks per region)")  # fmt: skip
    for tokens in ("distinct", "alike"):
        print(f"tokens: {tokens}")
        print(f"{'family':<22}" + "".join(f"{t:>52}" for t in trackers))
        fams = [
            r["family"] for r in summary if r["tokens"] == tokens and r["tracker"] == trackers[-2]
        ]
        for fam in fams:
            cells = []
            for t in trackers:
                r = next((x for x in summary if x["family"].split(" ")[0] == fam.split(" ")[0]
                          and x["tokens"] == tokens and x["tracker"] == t), None)  # fmt: skip
                cells.append("-" if r is None else f"{r['idf1']:.3f} / {r['hota']:.3f} / "
                             f"{r['mota']:.3f} / "
                             f"{r['switches_per_100']:.2f} / {r['num_fragmentations']:.1f} / "
                             f"{r['max_live_ratio']:.2f}")  # fmt: skip
            print(f"{fam:<22}" + "".join(f"{c:>52}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pn-bench-tracking", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument(
        "--sizes", type=int, nargs="*", default=[16, 64, 128, 256], help="regions per frame (cost)"
    )
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument(
        "--frames", type=int, default=40, help="frames per size (the first is not timed)"
    )
    p.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES,
                   help="sequence families scored for identity (none: cost only)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=3, help="sequences per family and token kind")
    p.add_argument("--sequence-frames", type=int, default=60)
    p.add_argument("--baseline", default=None,
                   help="git revision whose tracking stage is scored too ('before')")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("outputs/bench/tracking.json"))
    args = p.parse_args(argv)
    meta = {"image": [args.height, args.width], "hardware": hardware_info("cpu")}
    result: dict = {"meta": meta}
    if args.sizes:
        rows = run(args.sizes, args.height, args.width, args.frames)
        print_cost(rows, args)
        result["rows"] = rows
    if args.families:
        warn_if_missing()
        candidates = [new_candidate()]
        if args.baseline:
            repo = Path(__file__).resolve().parents[2]
            rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", args.baseline],
                                 check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
            candidates.insert(0, Candidate("before", baseline_stage(rev, repo)))
            meta["baseline"] = rev
        candidates[-1].name = "after" if args.baseline else "tracker"
        print(f"identity quality: {len(args.families)} families x 2 token kinds x {args.seeds} seeds, "
              f"{args.sequence_frames} frames of 640x480 each")  # fmt: skip
        rows = quality(args.families, args.seeds, args.sequence_frames, candidates)
        summary = summarise(rows)
        print_quality(summary)
        result["quality"], result["quality_summary"] = rows, summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


def print_cost(rows: list[dict], args) -> None:
    print(
        f"tracking cost per frame, {args.height}x{args.width}, {args.frames - 1} timed frames "
        "(ms: wall median / wall p90 / CPU median; targets: <= 5 ms CPU at 64 regions, <= 25 at 256; "
        "the stage includes the camera-motion estimate)"
    )
    print(f"{'regions':>8} {'tracks':>7} {'tracker ms':>26} {'whole stage ms':>26}")
    for r in rows:
        cells = " ".join(
            f"{r[k + '_ms']:>8.2f} /{r[k + '_p90_ms']:>7.2f} /{r[k + '_cpu_ms']:>7.2f}"
            for k in ("tracker", "stage")
        )
        print(f"{r['regions']:>8} {r['live_tracks']:>7} {cells}")


if __name__ == "__main__":
    sys.exit(main())
