"""The tracker's batched rewrites (Kalman states, zooms and tokens as arrays, one row per track)
change no output: track ids and ages, voted labels and smoothed relations of the working tree's
tracking stage equal those of the revision before them (``REFERENCE_REV``), frame by frame, on
the cost benchmark's drifting regions and on sequence families that exercise occlusion,
merges of duplicate tracks, camera motion and dropped frames (what
``python -m perception_nodes.tools.tracking_compare --rev REFERENCE_REV`` checks at length).

When the tracker's behaviour is changed on purpose, move ``SEQUENCES_REV`` to that commit (the
drifting regions and the relation smoothing still equal ``REFERENCE_REV``'s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.tracking import TrackingStage, smoothing
from perception_nodes.core.tracking import tracker as tracker_module
from perception_nodes.core.tracking.rules import lost_duplicate
from perception_nodes.core.tracking.smoothing import RelationSmoother
from perception_nodes.core.types import Relations
from perception_nodes.tools.bench_tracking import cost_inputs
from perception_nodes.tools.tracking_compare import _outputs, host_inputs
from perception_nodes.tools.tracking_quality import baseline_stage
from perception_nodes.tools.tracking_sequences import SequenceRenderer

REFERENCE_REV = "517d40a"  # the last tracker with per-track state objects
SEQUENCES_REV = "f960b01"  # the birth bar (core/tracking/births.py): outputs changed on purpose
REPO = Path(__file__).resolve().parents[1]


def _stage_of(rev: str) -> type:
    known = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{rev}^{{commit}}"],
                           capture_output=True)  # fmt: skip
    if known.returncode:
        pytest.skip(f"revision {rev} is not in this clone's history")
    return baseline_stage(rev, REPO)


@pytest.fixture(scope="module")
def reference() -> type:
    return _stage_of(REFERENCE_REV)


@pytest.fixture(scope="module")
def sequences_reference() -> type:
    return _stage_of(SEQUENCES_REV)


def _same(reference: type, frames: list[tuple], config: PipelineConfig) -> list[int]:
    """Frames whose outputs differ."""
    a, b = _outputs(reference, frames, config), _outputs(TrackingStage, frames, config)
    assert len(a) == len(b) == len(frames)
    return [k for k, (x, y) in enumerate(zip(a, b)) if not all(map(np.array_equal, x, y))]


def test_drifting_regions_with_labels_and_relations_give_the_same_outputs(reference):
    inputs = [(s, im, lab, rel, None) for s, im, lab, rel in cost_inputs(32, 480, 640, 10)]
    assert _same(reference, inputs, PipelineConfig(tracking_birth_hits=1)) == []


@pytest.mark.parametrize(
    ("family", "alike"), [("all", False), ("all", True), ("sam_noise", True), ("crossing", True)]
)
def test_sequences_give_the_same_outputs(sequences_reference, family, alike, monkeypatch):
    merges = []  # the duplicate-track merge (rows moved between arrays) must be exercised

    def counted(*args, **kwargs):
        found = lost_duplicate(*args, **kwargs)
        merges.append(found is not None)
        return found

    monkeypatch.setattr(tracker_module, "lost_duplicate", counted)
    seq = SequenceRenderer(family, 0, alike, frames=30).frames_iter()
    frames = [(f.segmentation, f.image, f.labels, None, f.stamp) for f in seq]
    assert _same(sequences_reference, frames, PipelineConfig()) == []
    assert any(merges), "no duplicate track was merged: the case no longer covers merges"


def test_host_scene_with_geometric_relations_gives_the_same_outputs(sequences_reference):
    """pn-bench-host's scene of 50 regions drifting, some missed, with the geometric predictor's
    relations (the relation smoothing's grid path)."""
    assert _same(sequences_reference, host_inputs(50, 6), PipelineConfig()) == []


class _Track:  # what the smoother reads of a track
    def __init__(self, track_id: int) -> None:
        self.track_id = track_id


@pytest.mark.parametrize("spread", [1, 10**6], ids=["ids by table", "ids by search"])
@pytest.mark.parametrize("grid", [0, 10**9], ids=["sorted rows", "grid"])
def test_relation_smoothing_in_arrays_equals_the_dict_per_relation(
    reference, grid, spread, monkeypatch
):
    """Random frames: relations repeated within a frame, scores 0, negative or NaN, a repeated
    predicate name, predicate lists that change, regions in another order, tracks that die;
    both ways of matching a frame's relations (sorted rows, the grid of region pairs) and of
    finding track ids (a lookup table when they are close together, else a binary search)."""
    monkeypatch.setattr(smoothing, "GRID_CELLS_PER_ROW", grid)
    old_smoother = sys.modules[reference.__module__.rsplit(".", 1)[0] + ".smoothing"]
    rng = np.random.default_rng(7)
    before, after = old_smoother.RelationSmoother(), RelationSmoother()
    names = ["on", "near", "left of", "on", "under", "behind"]
    for frame in range(40):
        ids = rng.choice(np.arange(1, 30), size=int(rng.integers(0, 12)), replace=False) * spread
        tracks = [_Track(int(i)) for i in ids]
        alive = set((rng.choice(np.arange(1, 30), size=20, replace=False) * spread).tolist()) | set(
            ids[: len(ids) // 2].tolist()
        )
        predicates = names[: int(rng.integers(1, len(names) + 1))]
        m = int(rng.integers(0, 60)) if len(ids) else 0
        score = rng.uniform(-0.2, 1.0, m).astype(np.float32)
        score[rng.random(m) < 0.05] = np.nan
        rel = Relations(rng.integers(0, max(len(ids), 1), m), rng.integers(0, max(len(ids), 1), m),
                        rng.integers(0, len(predicates), m), score, predicates)  # fmt: skip
        alpha = float(rng.choice([0.3, 0.5, 1.0]))
        a = before.smooth(rel, tracks, alpha, alive)
        b = after.smooth(rel, tracks, alpha, alive)
        for x, y in zip((a.subject, a.object, a.predicate_index, a.score),
                        (b.subject, b.object, b.predicate_index, b.score)):  # fmt: skip
            assert np.array_equal(x, y), frame
        assert a.predicates == b.predicates and after.scores == before.scores, frame


def test_relation_smoothing_on_the_grid_equals_sorted_rows_on_dense_frames(monkeypatch):
    """Frames of 60-90 regions with most pairs related (as the geometric predictor's), tracks
    born and dying: the grid gives the sorted rows' relations and stored scores."""
    rng = np.random.default_rng(3)
    smoothers = {0: RelationSmoother(), 10**9: RelationSmoother()}
    names = [f"p{i}" for i in range(11)]
    for frame in range(12):
        ids = rng.choice(np.arange(1, 200), size=int(rng.integers(60, 90)), replace=False)
        tracks = [_Track(int(i)) for i in ids]
        alive = set(ids[rng.random(len(ids)) < 0.9].tolist()) | set(range(1, 200, 3))
        m = len(ids) ** 2 * 3
        rel = Relations(rng.integers(0, len(ids), m), rng.integers(0, len(ids), m),
                        rng.integers(0, len(names), m),
                        rng.choice([0.0, 0.3, 0.5, 1.0, 0.005], m).astype(np.float32),
                        names)  # fmt: skip
        outs = {}
        for grid, smoother in smoothers.items():
            monkeypatch.setattr(smoothing, "GRID_CELLS_PER_ROW", grid)
            outs[grid] = smoother.smooth(rel, tracks, 0.5, alive)
        a, b = outs.values()
        assert len(a.score) > 1000, frame
        for x, y in zip((a.subject, a.object, a.predicate_index, a.score),
                        (b.subject, b.object, b.predicate_index, b.score)):  # fmt: skip
            assert np.array_equal(x, y), frame
        assert smoothers[0].scores == smoothers[10**9].scores, frame
