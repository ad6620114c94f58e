"""pn-bench-relations: cost of relation prediction for 10 / 50 / 200 regions (pairs grow as N^2).

Side by side in one process: the shared region geometry (mask overlaps, pair features), the
geometric predictor, and the learned RAM-style head (default dims, 56 PSG predicates; weights are
a seeded random init: timing only, the relations it outputs are NOT meaningful).
Inputs are synthetic: N random rectangular/elliptic masks on an H x W image, random 256-d tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from perception_nodes.core.relations.base import pair_features, region_geometry
from perception_nodes.core.relations.geometric import GeometricRelationPredictor
from perception_nodes.core.relations.head import (
    LearnedRelationPredictor,
    RelationHead,
    RelationHeadConfig,
)
from perception_nodes.core.types import Segmentation
from perception_nodes.tools.bench_common import hardware_info


def synthetic_segmentation(n: int, h: int, w: int, seed: int = 0) -> Segmentation:
    """``n`` random rectangles and ellipses (half each) with random tokens."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        bw, bh = rng.uniform(0.03, 0.4) * w, rng.uniform(0.03, 0.4) * h
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        if i % 2:
            masks[i] = ((xx - x0 - bw / 2) / (bw / 2)) ** 2 + (
                (yy - y0 - bh / 2) / (bh / 2)
            ) ** 2 <= 1
        else:
            masks[i, int(y0) : int(y0 + bh) + 1, int(x0) : int(x0 + bw) + 1] = True
    boxes = np.zeros((n, 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return Segmentation(masks, boxes, masks.reshape(n, -1).sum(1).astype(np.int64), np.ones(n, np.float32),
                        np.ones(n, np.float32), rng.normal(size=(n, 256)).astype(np.float32),
                        np.full((n, 2), np.nan, np.float32), (h, w))  # fmt: skip


def _time(fn, repeats: int, sync: bool) -> tuple[float, float]:
    """``(median, min)`` milliseconds of ``repeats`` runs after one warm-up (min: the least
    disturbed run, the better estimate on a shared CPU)."""
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1e3, min(out) * 1e3


def run(sizes: list[int], h: int, w: int, repeats: int, device: str, depth: bool) -> list[dict]:
    torch.manual_seed(0)
    geo = GeometricRelationPredictor()
    head = RelationHead(
        RelationHeadConfig(categories=[f"c{i}" for i in range(133)], sam_model="bench")
    )
    learned = LearnedRelationPredictor(head, device=device)
    sync = torch.device(device).type == "cuda"
    rows = []
    for n in sizes:
        seg = synthetic_segmentation(n, h, w)
        d = (
            np.random.default_rng(1).uniform(0.5, 5, size=(h, w)).astype(np.float32)
            if depth
            else None
        )
        geom = region_geometry(seg, d)
        tokens = torch.from_numpy(seg.tokens)[None].to(device)
        cats = torch.zeros(1, n, dtype=torch.long, device=device)
        pairs = torch.from_numpy(pair_features(geom))[None].to(device)

        def head_only() -> None:
            with torch.no_grad():
                head(tokens, cats, pairs)

        row = {
            "regions": n,
            "pairs": n * (n - 1),
            "geometric_relations": len(geo.predict(seg, None, d)),
        }
        cases = {"geometry": lambda: pair_features(region_geometry(seg, d)),
                 "geometric": lambda: geo.predict(seg, None, d), "learned_head_only": head_only,
                 "learned": lambda: learned.predict(seg, None, d)}  # fmt: skip
        for name, fn in cases.items():
            row[f"{name}_ms"], row[f"{name}_min_ms"] = _time(
                fn, repeats, sync and name.startswith("learned")
            )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pn-bench-relations", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200], help="numbers of regions")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case (median reported)")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="learned head device",
    )
    p.add_argument(
        "--depth", action="store_true", help="also pass a depth map (adds median depths)"
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/relations.json"))
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = run(args.sizes, args.height, args.width, args.repeats, args.device, args.depth)
    print(f"relation cost, {args.height}x{args.width}, device={args.device}, depth={args.depth} "
          f"(ms, median / min of {args.repeats}; learned head = random init, timing only)")  # fmt: skip
    names = {
        "geometry": "geometry",
        "geometric": "geometric",
        "learned_head_only": "head",
        "learned": "learned",
    }
    print(f"{'regions':>8} {'pairs':>7} " + " ".join(f"{v + ' ms':>17}" for v in names.values()))
    for r in rows:
        cells = " ".join(f"{r[k + '_ms']:>8.2f} /{r[k + '_min_ms']:>7.2f}" for k in names)
        print(f"{r['regions']:>8} {r['pairs']:>7} {cells}")
    meta = {
        "image": [args.height, args.width],
        "depth": args.depth,
        "hardware": hardware_info(args.device),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
