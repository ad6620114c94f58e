"""Identity quality of the tracking stage on :mod:`.tracking_sequences`, scored with py-motmetrics.

Each tracker under test sees every frame exactly as the pipeline hands it over
(``TrackingStage.apply``: regions, labels with region embeddings, the image and the stamp);
its hypotheses are the regions with a track id > 0. A hypothesis may match a ground-truth
object when their mask IoU >= 0.5 (distance 1 - IoU), as in the MOT challenge's mask variant;
HOTA (TrackEval, :mod:`.tracking_hota`) takes the same mask IoUs over its own thresholds.
Every sequence also scores the ``oracle``: the best any tracker can do on these regions (the
segmenter's misses, merges and masks jittered below IoU 0.5 cost it, nothing else), and
``oracle_2nd``: the same, but an object's id shows from its second sighting on, the best any
tracker can do that confirms a track before it gives it an id (as it must, to keep one-frame
blobs without ids).

The "before" tracker is the stage of an older git revision, loaded from ``git show`` into
modules of its own (:func:`baseline_stage`), so both run on the very same frames.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.tracking import TrackingStage
from perception_nodes.core.tracking.association import box_iou
from perception_nodes.tools.tracking_hota import HotaAccumulator
from perception_nodes.tools.tracking_sequences import SequenceFrame, SequenceRenderer

MATCH_IOU = 0.5
ORACLE = "oracle"  # the ceiling: every region that shows an object at IoU >= 0.5 carries its id
# the ceiling of a tracker that confirms a track (gives its id) at the object's second sighting,
# the least confirmation that can keep one-frame blobs without ids: the oracle without each
# object's first frame
ORACLE_CONFIRMED = "oracle_2nd"
ORACLES = (ORACLE, ORACLE_CONFIRMED)
TRACKING_DIR = "perception_nodes/perception_nodes/core/tracking"


def baseline_stage(rev: str, repo: Path) -> type:
    """``TrackingStage`` class of git revision ``rev``: every ``core/tracking/*.py`` of that commit
    written to a temporary folder and imported as the package ``pn_baseline_<rev>``."""
    pkg = f"pn_baseline_{rev}"
    if pkg in sys.modules:
        return sys.modules[f"{pkg}.stage"].TrackingStage
    listing = subprocess.run(["git", "-C", str(repo), "ls-tree", "--full-tree", "--name-only", rev, f"{TRACKING_DIR}/"],
                             check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="pn_baseline_")) / pkg
    folder.mkdir()
    for path in (p for p in listing if p.endswith(".py")):
        src = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        src = src.replace("perception_nodes.core.tracking", pkg)
        (folder / Path(path).name).write_text(src)
    sys.path.insert(0, str(folder.parent))
    try:
        return importlib.import_module(f"{pkg}.stage").TrackingStage
    finally:
        sys.path.remove(str(folder.parent))


@dataclass
class Candidate:
    """A tracker under test: ``name`` and a ``TrackingStage`` class (new or baseline)."""

    name: str
    stage_class: type


def _apply(stage, frame: SequenceFrame, config: PipelineConfig) -> np.ndarray:
    """Track ids of the frame's regions; passes the image and stamp where the stage takes them."""
    params = inspect.signature(stage.apply).parameters
    extra = {}
    if "image" in params:
        extra["image"] = frame.image
    if "stamp" in params:
        extra["stamp"] = frame.stamp
    return stage.apply("bench", frame.segmentation, frame.labels, None, config, **extra).track_ids


def region_gt_iou(frame: SequenceFrame) -> tuple[list[int], np.ndarray]:
    """Ground-truth ids and the ``(G, N)`` mask IoU of each object with each region."""
    gt_ids = sorted(frame.gt_masks)
    seg = frame.segmentation
    iou = np.zeros((len(gt_ids), len(seg)))
    if not gt_ids or not len(seg):
        return gt_ids, iou
    gt_boxes = np.array([_box(frame.gt_masks[g]) for g in gt_ids], np.float64)
    near = box_iou(gt_boxes, seg.boxes_xyxy.astype(np.float64)) > 0
    for a, b in zip(*np.nonzero(near)):
        gm, hm = frame.gt_masks[gt_ids[a]], seg.masks[b]
        inter = np.count_nonzero(gm & hm)
        iou[a, b] = inter / max(1, np.count_nonzero(gm) + int(seg.areas[b]) - inter)
    return gt_ids, iou


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def run_sequence(family: str, seed: int, alike: bool, candidates: list[Candidate],
                 config: PipelineConfig, frames: int) -> dict[str, dict]:  # fmt: skip
    """Scores of each candidate and of the two oracles on one sequence: py-motmetrics summary,
    HOTA / DetA / AssA (``hota``, ``deta``, ``assa``), ``max_live_ratio`` (live tracks /
    regions, worst frame) and ``cpu_ms`` (median per frame)."""
    renderer = SequenceRenderer(family, seed, alike, frames=frames)
    stages = {c.name: c.stage_class() for c in candidates}
    names = [c.name for c in candidates] + list(ORACLES)
    accs = {name: mm.MOTAccumulator(auto_id=True) for name in names}
    hotas = {name: HotaAccumulator() for name in names}
    live_ratio = {c.name: 0.0 for c in candidates}
    cpu = {c.name: [] for c in candidates}
    sightings: dict[int, int] = {}  # object -> frames a region showed it so far
    for frame in renderer.frames_iter():
        gt_ids, iou = region_gt_iou(frame)
        for name, (hyp_ids, cols) in _oracles(gt_ids, iou, sightings).items():
            score_frame(accs[name], hotas[name], gt_ids, hyp_ids, iou[:, cols])
        for c in candidates:
            c0 = time.process_time()
            tids = _apply(stages[c.name], frame, config)
            cpu[c.name].append((time.process_time() - c0) * 1e3)
            hyp = np.nonzero(tids > 0)[0]
            score_frame(accs[c.name], hotas[c.name], gt_ids, tids[hyp].tolist(), iou[:, hyp])
            live = len(stages[c.name]._trackers["bench"].tracks)
            live_ratio[c.name] = max(live_ratio[c.name], live / max(1, len(frame.segmentation)))
    out = {}
    metrics = ["idf1", "mota", "num_switches", "num_fragmentations", "num_objects"]
    mh = mm.metrics.create()
    for name in names:
        s = mh.compute(accs[name], metrics=metrics, name="seq")
        row = {k: float(s[k].iloc[0]) for k in metrics}
        row["switches_per_100"] = 100 * row["num_switches"] / max(1.0, row["num_objects"])
        row["max_live_ratio"] = live_ratio.get(name, 0.0)
        row["cpu_ms"] = float(np.median(cpu[name])) if cpu.get(name) else 0.0
        out[name] = {**row, **hotas[name].compute()}
    return out


def score_frame(acc, hota: HotaAccumulator | None, gt_ids, hyp_ids, sim: np.ndarray) -> None:
    """One frame into the py-motmetrics accumulator ``acc`` (a match at IoU >= 0.5) and ``hota``
    (if given): ``sim`` ``(G, H)`` mask IoU of objects and hypotheses."""
    acc.update(gt_ids, hyp_ids, np.where(sim >= MATCH_IOU, 1.0 - sim, np.nan))
    if hota is not None:
        hota.update(gt_ids, hyp_ids, sim)


def _oracles(gt_ids: list[int], iou: np.ndarray, sightings: dict[int, int]) -> dict[str, tuple]:
    """``{oracle name: (ids, region indices)}`` of this frame; counts the objects' sightings."""
    hyp, cols = _oracle(gt_ids, iou)
    second = np.nonzero(seen_before(hyp, sightings))[0]
    return {ORACLE: (hyp, cols), ORACLE_CONFIRMED: ([hyp[k] for k in second], cols[second])}


def seen_before(object_ids, sightings: dict[int, int]) -> np.ndarray:
    """Counts this frame's sighting of each object of ``object_ids`` (0: no object) in
    ``sightings`` and returns, per entry, whether the object was seen in an earlier frame too
    (what ``oracle_2nd`` shows an id for)."""
    out = np.zeros(len(object_ids), bool)
    for k, g in enumerate(object_ids):
        if g > 0:
            sightings[g] = sightings.get(g, 0) + 1
            out[k] = sightings[g] >= 2
    return out


def _oracle(gt_ids: list[int], iou: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Hypotheses of the best any tracker can do on these regions: each region that overlaps a
    ground-truth object at IoU >= 0.5 (one to one, the largest IoUs) carries that object's id.
    Returns those ids and the regions' indices (columns of ``iou``), in the same order."""
    ok = iou >= MATCH_IOU
    if not ok.any():
        return [], np.zeros(0, np.int64)
    rows, cols = linear_sum_assignment(np.where(ok, -iou, 1.0))
    keep = ok[rows, cols]
    return [gt_ids[r] for r in rows[keep]], cols[keep]


def new_candidate() -> Candidate:
    return Candidate("new", TrackingStage)


LOSS_KINDS = ("ok", "segmenter_miss", "late_birth", "id_dropped", "new_id", "id_transfer",
              "switch_back", "false_id")  # fmt: skip


def loss_counts(family: str, seed: int, alike: bool, config: PipelineConfig, frames: int,
                stage_class: type = TrackingStage) -> dict[str, int]:  # fmt: skip
    """Where identity is lost, per ground-truth detection (object x frame) of one sequence.

    Each object's region is the oracle's (IoU >= 0.5, one to one). Kinds: ``ok`` (the region
    carries the object's current id), ``segmenter_miss`` (no region shows it), ``late_birth``
    (region without id, the object never had one yet), ``id_dropped`` (region without id, the
    object had one), ``new_id`` (an id never seen before, the object had another: a second track),
    ``id_transfer`` (an id another object held before), ``switch_back`` (an older id of its own);
    ``false_id`` counts regions with an id that show no object (blobs, splits, merges)."""
    renderer = SequenceRenderer(family, seed, alike, frames=frames)
    stage = stage_class()
    counts = dict.fromkeys(LOSS_KINDS, 0)
    current: dict[int, int] = {}  # object -> its id now
    owner: dict[int, int] = {}  # id -> the object it was first seen on
    history: dict[int, set] = {}  # object -> ids it held
    for frame in renderer.frames_iter():
        gt_ids, iou = region_gt_iou(frame)
        tids = _apply(stage, frame, config)
        ok = iou >= MATCH_IOU
        rows, cols = linear_sum_assignment(np.where(ok, -iou, 1.0)) if ok.any() else ([], [])
        region_of = {gt_ids[r]: c for r, c in zip(rows, cols) if ok[r, c]}
        shown = set(region_of.values())
        counts["false_id"] += sum(1 for i in np.nonzero(tids > 0)[0] if i not in shown)
        for g in gt_ids:
            counts[_loss_kind(g, region_of, tids, current, owner, history)] += 1
    return counts


def _loss_kind(g, region_of, tids, current, owner, history) -> str:
    """One detection's kind (see :func:`loss_counts`); updates the bookkeeping."""
    if g not in region_of:
        return "segmenter_miss"
    tid = int(tids[region_of[g]])
    if tid <= 0:
        return "id_dropped" if g in current else "late_birth"
    owner.setdefault(tid, g)
    had = history.setdefault(g, set())
    prev, seen_before = current.get(g), tid in had
    current[g] = tid
    had.add(tid)
    if owner[tid] != g:
        return "id_transfer"
    if prev is None or prev == tid:
        return "ok"
    return "switch_back" if seen_before else "new_id"
