"""Held-out tracking benchmark: identity quality on sequences rendered from real photos.

usage: python -m perception_nodes.tools.tracking_holdout [--seeds N] [--families F ...]
           [--variants distinct untrained] [--frames N] [--current REV] [--baseline REV]
           [--sam FIELD=VALUE ...] [--out outputs/bench/tracking_holdout.json]
  e.g. the working tree's tracker against the one before the rebuild, 3 seeds (~2.5 min CPU):
       python -m perception_nodes.tools.tracking_holdout --baseline 8c04807
  which of the segmenter's mistakes costs most, e.g. without merges and spurious blobs:
       python -m perception_nodes.tools.tracking_holdout --families sam_hierarchy
           --sam merge=0 spurious=0

Built independently of the tracker and of its own benchmark (tools/tracking_sequences.py):
640x480 frames, 60-90 per sequence at ~30 Hz with stamp jitter and dropped frames, rendered
from scikit-image's bundled photos (background plane and cut-out objects, see
:mod:`.tracking_holdout_world` and :mod:`.tracking_holdout_families`), segmented by a SAM
stand-in that makes SAM's mistakes (:mod:`.tracking_holdout_sam`), with tokens, embeddings and
labels computed from the rendered pixels (:mod:`.tracking_holdout_tokens`), in two variants:
``distinct`` (trained-like tokens) and ``untrained`` (all tokens nearly equal).

Each tracker sees every frame as the pipeline hands it over (``TrackingStage.apply``: regions,
labels with embeddings, the image, the stamp; ``scores_meaningful`` False with the untrained
tokens, as the pipeline says when SAM runs generated weights). Its hypotheses are
the regions with a track id > 0, except regions SAM returned as a *part* of an object (the
hierarchy ambiguity: neither a hit nor a false positive). A hypothesis matches a ground-truth
object (its visible mask, >= 25 px) at mask IoU >= 0.5; py-motmetrics gives IDF1, MOTA, ID
switches and fragmentations; TrackEval HOTA / DetA / AssA over the same mask IoUs
(:mod:`.tracking_hota`). ``oracle`` is the best any tracker can do on these regions (each
region given the id of the object it overlaps at IoU >= 0.5, one to one): the ceiling;
``oracle_2nd`` the same from each object's second sighting on (the ceiling of a tracker that
confirms a track before it gives it an id). Column
``ret``: IDF1 counting only the objects SAM returned in each frame (the oracle's is 1.0).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.tracking import TrackingStage
from perception_nodes.tools import tracking_holdout_tokens as tok
from perception_nodes.tools.bench_common import hardware_info
from perception_nodes.tools.tracking_holdout_families import FAMILIES, build
from perception_nodes.tools.tracking_holdout_report import (
    ERROR_COLUMNS,
    VARIANTS,
    print_table,
    summarise,
)
from perception_nodes.tools.tracking_holdout_sam import SamNoise, SamSim, SimRegion, noise_overrides
from perception_nodes.tools.tracking_holdout_world import render
from perception_nodes.tools.tracking_hota import HotaAccumulator, warn_if_missing
from perception_nodes.tools.tracking_quality import (
    MATCH_IOU,
    ORACLE_CONFIRMED,
    baseline_stage,
    region_gt_iou,
    score_frame,
    seen_before,
)

METRICS = [
    "idf1",
    "mota",
    "num_switches",
    "num_fragmentations",
    "num_objects",
    "num_false_positives",
    "num_misses",
]
MIN_GT_AREA = 25


@dataclass
class HoldoutFrame:
    """One frame as every tracker gets it, plus the truth to score against: ``gt_masks`` gid ->
    ``(H, W)`` bool visible mask, ``ignore`` ``(N,)`` bool (part regions), ``seg``/``labels`` per
    token variant (same masks, different tokens, embeddings and labels)."""

    image: np.ndarray
    stamp: float
    gt_masks: dict[int, np.ndarray]
    ignore: np.ndarray
    regions: list[SimRegion]
    seg: dict[str, object]
    labels: dict[str, object]

    @property
    def segmentation(self):  # what tracking_quality.region_gt_iou reads
        return self.seg[VARIANTS[0]]


def sequence(
    family: str,
    seed: int,
    frames: int | None = None,
    perfect_sam: bool = False,
    sam_noise: dict | None = None,
):
    """Frames of one sequence (a generator of :class:`HoldoutFrame`); deterministic per
    ``(family, seed)``. ``frames`` None: 60-90 drawn from the seed. ``perfect_sam``: regions are
    the exact visible masks (the harness control). ``sam_noise``: fields of the family's
    :class:`SamNoise` to override (to find which mistake costs a tracker most)."""
    ss = np.random.SeedSequence([zlib.crc32(family.encode()), seed])
    r_scene, r_render, r_sam, r_d, r_u = (np.random.default_rng(s) for s in ss.spawn(5))
    n = int(r_scene.integers(60, 91)) if frames is None else frames
    scene = build(family, r_scene, n)
    sam = SamSim(scene.things, dataclasses.replace(scene.sam["noise"], **(sam_noise or {})), r_sam)
    for k, u in enumerate(scene.steps):
        truth = render(scene, int(u), r_render)
        gt = {}
        for i, (x0, y0, x1, y1) in truth.crop.items():
            m = np.zeros(truth.owner.shape, bool)
            m[y0:y1, x0:x1] = truth.owner[y0:y1, x0:x1] == i
            if np.count_nonzero(m) >= MIN_GT_AREA:
                gt[scene.things[i].gid] = m
        regions = _perfect(truth, scene) if perfect_sam else sam.frame(truth, scene.camera[u])
        feats = tok.FrameFeatures(truth.image)
        desc = np.array([feats.descriptor(r.box, r.crop) for r in regions], np.float32).reshape(
            -1, tok.DESC_DIM
        )
        base = tok.segmentation(regions, desc, r_d, alike=False)
        seg, labels = {}, {}
        for variant, rng in zip(VARIANTS, (r_d, r_u)):
            alike = variant == "untrained"
            seg[variant] = (
                base
                if not alike
                else dataclasses.replace(base, tokens=tok.tokens(desc, base.boxes_xyxy, rng, True))
            )
            labels[variant] = tok.labels(regions, scene.things, desc, rng, alike)
        ignore = np.array([r.kind == "part" for r in regions], bool)
        yield HoldoutFrame(truth.image, float(scene.stamps[k]), gt, ignore, regions, seg, labels)


def _perfect(truth, scene) -> list[SimRegion]:
    """The visible masks themselves as regions (score 1)."""
    out = []
    for i, (x0, y0, x1, y1) in truth.crop.items():
        crop = truth.owner[y0:y1, x0:x1] == i
        if np.count_nonzero(crop) >= MIN_GT_AREA:
            out.append(SimRegion((x0, y0, x1, y1), crop, 1.0, 1.0, "whole", scene.things[i].gid, i))
    return out


class TrackerUnderTest:
    """A ``TrackingStage`` class driven as the pipeline drives it (fresh stage per sequence)."""

    def __init__(self, name: str, stage_class: type, config: PipelineConfig | None = None):
        self.name, self.stage_class = name, stage_class
        self.config = config or PipelineConfig()
        params = inspect.signature(stage_class.apply).parameters
        self.extra = {k for k in ("image", "stamp", "scores_meaningful") if k in params}

    def ids(self, stage, frame: HoldoutFrame, variant: str) -> np.ndarray:
        """``(N,)`` track ids the stage gives the frame's regions (0 = none)."""
        trained = variant == "distinct"
        extra = {"image": frame.image, "stamp": frame.stamp, "scores_meaningful": trained}
        extra = {k: v for k, v in extra.items() if k in self.extra}
        seg, labels = frame.seg[variant], frame.labels[variant]
        return np.asarray(
            stage.apply("holdout", seg, labels, None, self.config, **extra).track_ids, np.int64
        )


def oracle_ids(gt_ids: list[int], iou: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """The ceiling: each non-ignored region takes the ground-truth id it is assigned to one to one
    (maximum total IoU) at IoU >= 0.5; others get 0."""
    ids = np.zeros(iou.shape[1], np.int64)
    if iou.size == 0:
        return ids
    score = np.where((iou >= MATCH_IOU) & ~ignore[None, :], iou, 0.0)
    rows, cols = linear_sum_assignment(-score)
    for a, b in zip(rows, cols):
        if score[a, b] > 0:
            ids[b] = gt_ids[a]
    return ids


def _update(
    acc: mm.MOTAccumulator,
    gt_ids: list[int],
    iou: np.ndarray,
    ids: np.ndarray,
    ignore: np.ndarray,
    rows: np.ndarray | None = None,
    hota: HotaAccumulator | None = None,
) -> None:
    """One frame into ``acc`` (and ``hota``): hypotheses = regions with an id > 0 that are not
    ignored; ``rows``: the ground-truth objects that count (default all)."""
    hyp = np.nonzero((ids > 0) & ~ignore)[0]
    rows = np.arange(len(gt_ids)) if rows is None else rows
    score_frame(acc, hota, [gt_ids[g] for g in rows], [int(ids[i]) for i in hyp],
                iou[np.ix_(rows, hyp)])  # fmt: skip


def run_sequence(
    family: str,
    seed: int,
    trackers: list[TrackerUnderTest],
    frames: int | None = None,
    variants=VARIANTS,
    perfect_sam: bool = False,
    sam_noise: dict | None = None,
) -> dict:
    """Scores of one sequence: ``{"oracle": row, "<tracker>/<variant>": row}``; a row holds the
    py-motmetrics numbers over every visible object, ``idf1_returned`` (IDF1 over the objects SAM
    returned in that frame at IoU >= 0.5: what the tracker could have got right; the oracle
    scores 1.0 there), ``hota`` / ``deta`` / ``assa``, ``switches_per_100``, ``cpu_ms`` (median
    per frame) and two error counts: ``no_id_pct`` (% of the regions the oracle matched to an
    object that got no track id: late or missing ids) and ``blob_id_pct`` (% of spurious blobs
    that got a track id)."""
    runs = {f"{t.name}/{v}": (t, t.stage_class(), v) for t in trackers for v in variants}
    oracles = ["oracle", ORACLE_CONFIRMED]
    accs = {key: mm.MOTAccumulator(auto_id=True) for key in [*oracles, *runs]}
    accs_ret = {key: mm.MOTAccumulator(auto_id=True) for key in accs}
    hotas = {key: HotaAccumulator() for key in accs}
    cpu: dict[str, list[float]] = {key: [] for key in runs}
    errors = {key: np.zeros(4, np.int64) for key in accs}  # matched, no id, blobs, blob ids
    n = 0
    sightings: dict[int, int] = {}  # object -> frames the oracle gave it a region so far
    for frame in sequence(family, seed, frames, perfect_sam, sam_noise):
        n += 1
        gt_ids, iou = region_gt_iou(frame)
        returned = np.nonzero((iou[:, ~frame.ignore] >= MATCH_IOU).any(1))[0]
        oracle = oracle_ids(gt_ids, iou, frame.ignore)
        second = np.where(seen_before(oracle.tolist(), sightings), oracle, 0)
        given = {"oracle": oracle, ORACLE_CONFIRMED: second}
        matched = oracle > 0
        blobs = np.array([r.kind == "spurious" for r in frame.regions], bool)
        # the trackers take turns going first: the one right after the oracle and the scoring
        # ran on cold caches (+0.4 ms a frame for the same code)
        turn = n % len(runs)
        for key in [*oracles, *list(runs)[turn:], *list(runs)[:turn]]:
            c0 = time.process_time()
            if key in given:
                ids = given[key]
            else:
                t, stage, v = runs[key]
                ids = t.ids(stage, frame, v)
                cpu[key].append((time.process_time() - c0) * 1e3)
            _update(accs[key], gt_ids, iou, ids, frame.ignore, hota=hotas[key])
            _update(accs_ret[key], gt_ids, iou, ids, frame.ignore, returned)
            errors[key] += (
                matched.sum(),
                (matched & (ids == 0)).sum(),
                blobs.sum(),
                (blobs & (ids > 0)).sum(),
            )
    mh = mm.metrics.create()
    out = {"family": family, "seed": seed, "frames": n}
    for key, acc in accs.items():
        s = mh.compute(acc, metrics=METRICS, name="seq")
        row = {k: float(s[k].iloc[0]) for k in METRICS}
        row["idf1_returned"] = float(
            mh.compute(accs_ret[key], metrics=["idf1"], name="seq")["idf1"].iloc[0]
        )
        row["switches_per_100"] = 100 * row["num_switches"] / max(1.0, row["num_objects"])
        row.update(hotas[key].compute())
        e = errors[key]
        row.update(matched=int(e[0]), no_id=int(e[1]), blobs=int(e[2]), blob_ids=int(e[3]))
        row["no_id_pct"] = 100 * e[1] / max(1, e[0])
        row["blob_id_pct"] = 100 * e[3] / max(1, e[2])
        if key in cpu:
            row["cpu_ms"] = float(np.median(cpu[key]))
        out[key] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m perception_nodes.tools.tracking_holdout",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--seeds", type=int, default=3, help="sequences per family (seeds 0..N-1)")
    p.add_argument(
        "--families",
        nargs="+",
        default=list(FAMILIES),
        choices=list(FAMILIES),
        metavar="FAMILY",
        help=f"any of: {' '.join(FAMILIES)}",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        metavar="TOKENS",
        help="distinct and/or untrained (all tokens nearly equal)",
    )
    p.add_argument(
        "--frames", type=int, default=None, help="frames per sequence (default: 60-90 by seed)"
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="git revision whose core/tracking/ runs beside the current one",
    )
    p.add_argument(
        "--repo",
        type=Path,
        default=Path(__file__).resolve().parents[3],
        help="git repository of --baseline",
    )
    p.add_argument(
        "--current",
        default=None,
        help="git revision to score as the current tracker instead of the working tree's",
    )
    p.add_argument(
        "--sam",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="override the segmenter's noise in every family, e.g. --sam miss=0 merge=0 "
        f"(fields: {', '.join(f.name for f in dataclasses.fields(SamNoise))})",
    )
    p.add_argument("--out", type=Path, default=Path("outputs/bench/tracking_holdout.json"))
    args = p.parse_args(argv)
    warn_if_missing()
    if args.seeds < 1 or (args.frames is not None and args.frames < 2):
        p.error("--seeds must be >= 1 and --frames >= 2")
    try:
        sam_noise = noise_overrides(args.sam)
    except ValueError as e:
        p.error(str(e))
    current = TrackingStage if args.current is None else baseline_stage(args.current, args.repo)
    trackers = [TrackerUnderTest("current" if args.current is None else args.current, current)]
    if args.baseline:
        trackers.append(TrackerUnderTest(args.baseline, baseline_stage(args.baseline, args.repo)))
    rows, t_all = [], time.perf_counter()
    jobs = [(f, s) for f in args.families for s in range(args.seeds)]
    for k, (fam, seed) in enumerate(jobs, 1):
        t0 = time.perf_counter()
        row = run_sequence(
            fam, seed, trackers, args.frames, tuple(args.variants), sam_noise=sam_noise
        )
        rows.append(row)
        scores = "  ".join(
            f"{key} {row[key]['idf1']:.3f}" for key in row if isinstance(row[key], dict)
        )
        print(
            f"[{k}/{len(jobs)}] {fam} seed {seed}: {row['frames']} frames, "
            f"{time.perf_counter() - t0:.1f} s; IDF1 {scores}",
            file=sys.stderr,
            flush=True,
        )
    keys = ["oracle", ORACLE_CONFIRMED] + [f"{t.name}/{v}" for t in trackers for v in args.variants]
    summary = summarise(rows, keys)
    names = [t.name for t in trackers]
    print_table(summary, names)
    print(
        "\nwhere ids go missing: % of regions matched to an object (oracle) left without an id;"
        " % of spurious blobs given an id"
    )
    print_table(summary, names, ERROR_COLUMNS)
    cost = ", ".join(f"{k} {summary['mean'][k]['cpu_ms']:.1f}" for k in keys[2:])
    print(f"tracker CPU ms per frame (median per sequence, mean over families): {cost}")
    meta = {
        "benchmark": "tracking_holdout",
        "seeds": args.seeds,
        "families": args.families,
        "variants": args.variants,
        "frames": args.frames,
        "baseline": args.baseline,
        "sam": sam_noise,
        "match_iou": MATCH_IOU,
        "loadavg": os.getloadavg(),
        "wall_s": time.perf_counter() - t_all,
        "hardware": hardware_info("cpu"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**meta, "summary": summary, "sequences": rows}, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
