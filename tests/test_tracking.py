"""Region tracking (ROS-free core): identities on generated sequences with ground truth, the
life cycle of tracks, nested parts, label votes and relation smoothing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tracking_fixtures import TOKEN_DIM, _segmentation, make_sequence, mot_summary

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.output.draw import colour_keys, draw_overlay, region_colours
from perception_nodes.core.output.scene_graph import build_scene_graph, from_json, to_json
from perception_nodes.core.tracking import RegionTracker, TrackerSettings, TrackingStage
from perception_nodes.core.tracking.smoothing import vote_label
from perception_nodes.core.types import RegionLabels, Relations

SIZE = (120, 160)


def _track(frames, settings=TrackerSettings()):
    tracker = RegionTracker()
    out = []
    for frame in frames:
        tracks = tracker.update(frame.segmentation, settings)
        out.append(np.array([t.track_id if t.confirmed else 0 for t in tracks], dtype=np.uint64))
    return out


@pytest.mark.parametrize("scenario", ["movers", "occlusion", "nested"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_sequences_keep_identities(scenario, seed):
    """Moving, occluding, leaving/re-entering, nested parts, 20% frames dropped, misses, clutter."""
    frames = make_sequence(scenario, seed)
    ids = _track(frames)
    summary = mot_summary(frames, ids)
    assert summary["idf1"] >= 0.9, summary
    assert 100 * summary["num_switches"] / summary["num_objects"] < 1.0, summary
    # every ground-truth object carries one track id over the whole sequence (re-entry included)
    per_object: dict[int, set[int]] = {}
    for frame, tids in zip(frames, ids):
        for gt, tid in zip(frame.gt_ids, tids):
            if gt >= 0 and tid > 0:
                per_object.setdefault(gt, set()).add(int(tid))
    assert all(len(v) == 1 for v in per_object.values()), per_object
    # and clutter (one-frame blobs) never gets an id: it is never confirmed
    assert all(
        tid == 0
        for frame, tids in zip(frames, ids)
        for gt, tid in zip(frame.gt_ids, tids)
        if gt < 0
    )


def _box_mask(x0, y0, x1, y1):
    m = np.zeros(SIZE, bool)
    m[y0:y1, x0:x1] = True
    return m


def _unit(seed):
    v = np.random.default_rng(seed).standard_normal(TOKEN_DIM)
    return v / np.linalg.norm(v)


def test_nested_part_never_takes_the_track_of_its_whole_even_with_a_similar_token():
    person, shirt = (
        _box_mask(20, 20, 80, 100),
        _box_mask(35, 40, 60, 65),
    )  # shirt = 13% of the person
    tok = _unit(0)
    tracker, settings = RegionTracker(), TrackerSettings()
    for _ in range(3):
        whole = tracker.update(_segmentation([person], [tok], SIZE), settings)[0].track_id
    # the whole is missed; only the part is segmented, with the same-looking token
    part = tracker.update(_segmentation([shirt], [tok], SIZE), settings)[0]
    assert part.track_id != whole
    # both segmented again: each keeps its own
    tracks = tracker.update(_segmentation([shirt, person], [tok, tok], SIZE), settings)
    assert tracks[1].track_id == whole and tracks[0].track_id == part.track_id
    # and the whole missing again does not hand its id to the (now tracked) part
    assert (
        tracker.update(_segmentation([shirt], [tok], SIZE), settings)[0].track_id == part.track_id
    )


def test_tokens_that_look_alike_everywhere_never_match_without_overlap():
    """Untrained SAM weights give every region nearly the same token: a jump must not swap ids."""
    base = _unit(20)
    tok_a = _unit_of(base + 0.05 * _unit(21))
    tok_b = _unit_of(base + 0.05 * _unit(22))
    a, b = _box_mask(10, 10, 30, 30), _box_mask(60, 10, 80, 30)
    tracker, settings = RegionTracker(), TrackerSettings(birth_hits=1)
    ids = [
        t.track_id for t in tracker.update(_segmentation([a, b], [tok_a, tok_b], SIZE), settings)
    ]
    # both jump (no overlap with their old masks); each new token is a bit closer to the OTHER track's
    a2, b2 = (
        _box_mask(32, 10, 52, 30),
        _box_mask(82, 10, 102, 30),
    )  # a2 is within reach of both tracks
    swapped = [_unit_of(0.6 * tok_b + 0.4 * tok_a), _unit_of(0.6 * tok_a + 0.4 * tok_b)]
    got = [t.track_id for t in tracker.update(_segmentation([a2, b2], swapped, SIZE), settings)]
    assert got[0] != ids[1] and got[1] != ids[0], (ids, got)


def _unit_of(v):
    return v / np.linalg.norm(v)


def test_birth_after_n_hits_death_after_m_misses_and_ids_never_reused():
    m, tok = _box_mask(10, 10, 40, 40), _unit(1)
    settings = TrackerSettings(birth_hits=3, death_misses=2)
    states = []
    tracker = RegionTracker()
    for _ in range(3):
        t = tracker.update(_segmentation([m], [tok], SIZE), settings)[0]
        states.append((t.track_id, t.confirmed, t.age))
    assert (
        [s[1] for s in states] == [False, False, True]
        and states[2][2] == 3
        and len({s[0] for s in states}) == 1
    )
    first_id = states[0][0]
    empty = _segmentation([], [], SIZE)
    tracker.update(empty, settings)  # 1 miss: still alive
    assert [t.track_id for t in tracker.tracks] == [first_id]
    again = tracker.update(_segmentation([m], [tok], SIZE), settings)[0]
    assert again.track_id == first_id and again.age == 4 and again.misses == 0
    tracker.update(empty, settings)
    tracker.update(empty, settings)  # 2 misses: dead
    assert tracker.tracks == []
    reborn = tracker.update(_segmentation([m], [tok], SIZE), settings)[0]
    assert reborn.track_id > first_id  # never reused


def test_streams_are_tracked_apart_and_share_one_id_space():
    stage = TrackingStage()
    config = PipelineConfig(tracking_birth_hits=1)
    seg = _segmentation([_box_mask(10, 10, 40, 40)], [_unit(2)], SIZE)
    a = [stage.apply("/left", seg, None, None, config).track_ids[0] for _ in range(3)]
    b = [stage.apply("/right", seg, None, None, config).track_ids[0] for _ in range(3)]
    assert len(set(a)) == 1 and len(set(b)) == 1 and a[0] != b[0] and min(a[0], b[0]) >= 1


def test_settings_are_read_from_the_config_of_each_frame():
    stage = TrackingStage()
    seg = _segmentation([_box_mask(10, 10, 40, 40)], [_unit(3)], SIZE)
    config = PipelineConfig(tracking_birth_hits=5)
    assert stage.apply("", seg, None, None, config).track_ids[0] == 0  # tentative
    config = replace(config, tracking_birth_hits=2)  # changed live
    first = stage.apply("", seg, None, None, config)
    assert first.track_ids[0] >= 1 and first.track_ages[0] == 2
    off = stage.apply("", seg, None, None, replace(config, tracking_enabled=False))
    assert off.track_ids[0] == 0 and off.relation_smoothing is None
    on = [stage.apply("", seg, None, None, config).track_ids[0] for _ in range(2)]
    assert on[0] == 0 and on[1] > first.track_ids[0]  # new track, new id


def test_label_vote_is_score_weighted_over_the_window_and_per_vocabulary_version():
    history = [(1, 0, 0.6), (1, 2, 0.3), (1, 0, 0.5), (1, 2, 0.35), (1, 2, 0.3)]
    assert vote_label(history, 1, 10) == (0, pytest.approx(1.1 / 5))  # 1.1 > 0.95
    assert vote_label(history, 1, 2) == (2, pytest.approx(0.65 / 2))
    assert vote_label(history + [(2, 1, 0.4)], 2, 10) == (1, pytest.approx(0.4))
    assert vote_label([], 1, 10) == (-1, 0.0)


def _labels(index, score, version=1):
    return RegionLabels(
        np.array(index, np.int64),
        np.array(score, np.float32),
        np.array(index, np.int64)[:, None],
        np.array(score, np.float32)[:, None],
        ["cup", "mug", "bowl"],
        version,
    )


def test_flickering_labels_become_steady_on_a_track():
    stage, config = TrackingStage(), PipelineConfig(tracking_birth_hits=1, tracking_label_window=10)
    seg = _segmentation([_box_mask(10, 10, 40, 40)], [_unit(4)], SIZE)
    raw = [0, 1, 0, 0, 1, 0, 1, 0]  # the classifier flips between cup and mug
    out = [
        int(
            stage.apply(
                "", seg, _labels([i], [0.5 if i == 0 else 0.45]), None, config
            ).labels.label_index[0]
        )
        for i in raw
    ]
    assert out == [0] * len(raw)


def _relations(pairs, predicates=("on", "near")):
    arr = np.array(pairs, dtype=np.float64).reshape(-1, 4)
    return Relations(
        arr[:, 0].astype(np.int64),
        arr[:, 1].astype(np.int64),
        arr[:, 2].astype(np.int64),
        arr[:, 3].astype(np.float32),
        list(predicates),
        "geometric",
    )


def test_relation_scores_are_an_ema_per_track_pair_and_survive_region_reordering():
    a, b = _box_mask(10, 10, 40, 40), _box_mask(60, 60, 100, 100)
    ta, tb = _unit(5), _unit(6)
    stage, config = (
        TrackingStage(),
        PipelineConfig(tracking_birth_hits=1, tracking_relation_smoothing=0.5),
    )
    seg_ab, seg_ba = _segmentation([a, b], [ta, tb], SIZE), _segmentation([b, a], [tb, ta], SIZE)
    r1 = stage.apply("", seg_ab, None, _relations([(0, 1, 0, 0.8)]), config).relations
    assert r1.score.tolist() == pytest.approx([0.8])
    # same objects, other region order; the predictor says 0.4 now -> 0.5 * 0.4 + 0.5 * 0.8
    f2 = stage.apply("", seg_ba, None, _relations([(1, 0, 0, 0.4)]), config)
    assert (f2.relations.subject.tolist(), f2.relations.object.tolist()) == ([1], [0])
    assert f2.relations.score.tolist() == pytest.approx([0.6]) and f2.relation_smoothing == 0.5
    # not predicted this frame: decays instead of vanishing
    r3 = stage.apply("", seg_ab, None, _relations([]), config).relations
    assert r3.score.tolist() == pytest.approx([0.3])
    # raw scores with smoothing 1
    r4 = stage.apply(
        "",
        seg_ab,
        None,
        _relations([(0, 1, 1, 0.7)]),
        replace(config, tracking_relation_smoothing=1.0),
    )
    assert r4.relations.score.tolist() == pytest.approx([0.7])


def test_scene_graph_carries_track_ids_and_smoothing_through_json():
    seg = _segmentation(
        [_box_mask(10, 10, 40, 40), _box_mask(60, 60, 100, 100)], [_unit(7), _unit(8)], SIZE
    )
    graph = build_scene_graph(seg, None, None, np.array([1, 2]))
    assert graph.track_ids.tolist() == [0, 0] and not graph.relations_smoothed
    graph.track_ids, graph.track_ages = np.array([2**40, 7], np.uint64), np.array([3, 1], np.uint32)
    graph.relation_smoothing = 0.5
    back = from_json(to_json(graph))
    assert back.track_ids.tolist() == [2**40, 7] and back.track_ages.tolist() == [3, 1]
    assert back.relations_smoothed and back.relation_smoothing == 0.5


def test_non_finite_tokens_do_not_break_the_assignment():
    m = _box_mask(10, 10, 40, 40)
    tracker, settings = RegionTracker(), TrackerSettings(birth_hits=1)
    first = tracker.update(_segmentation([m], [_unit(9)], SIZE), settings)[0].track_id
    bad = np.full(
        TOKEN_DIM, np.inf
    )  # NaN rows already have a NaN norm; inf rows would give inf/inf
    assert (
        tracker.update(_segmentation([m], [bad], SIZE), settings)[0].track_id == first
    )  # matched by IoU
    assert tracker.update(_segmentation([m], [_unit(9)], SIZE), settings)[0].track_id == first


def test_overlay_colours_follow_the_track_not_the_frame_region_id():
    a, b = _box_mask(10, 10, 40, 40), _box_mask(60, 60, 100, 100)
    seg = _segmentation([a, b], [_unit(10), _unit(11)], SIZE)
    image = np.full(SIZE + (3,), 128, np.uint8)
    first = build_scene_graph(seg, None, None, np.array([1, 2]))
    first.track_ids = np.array([7, 9], np.uint64)
    later = build_scene_graph(
        seg.select(np.array([1, 0])), None, None, np.array([1, 2])
    )  # region ids swapped
    later.track_ids = np.array([9, 7], np.uint64)
    ov1, ov2 = draw_overlay(image, first), draw_overlay(image, later)
    inside = (25, 25)  # a pixel of the object tracked as 7 in both frames
    assert np.array_equal(ov1[inside], ov2[inside])
    assert np.array_equal(
        region_colours(colour_keys(first))[0], region_colours(colour_keys(later))[1]
    )
    untracked = build_scene_graph(
        seg, None, None, np.array([7, 9])
    )  # untracked ids never borrow a track colour
    assert not np.array_equal(
        region_colours(colour_keys(untracked)), region_colours(colour_keys(first))
    )


def test_tokens_of_another_size_keep_the_tracks_by_overlap_and_empty_frames_are_misses():
    """Another SAM (tokens of another size) mid-stream: the tracks go on by overlap (their
    running tokens restart), no error; an empty frame, whatever its token size, is a miss."""
    m, settings = _box_mask(10, 10, 40, 40), TrackerSettings(birth_hits=1)
    far = _box_mask(100, 60, 130, 90)
    tracker = RegionTracker()
    first = tracker.update(_segmentation([m, far], [_unit(1), _unit(3)], SIZE), settings)
    empty = replace(_segmentation([], [], SIZE), tokens=np.zeros((0, 3), np.float32))
    tracker.update(empty, settings)
    assert [t.track_id for t in tracker.tracks] == [t.track_id for t in first]
    wide = [np.concatenate([_unit(k), _unit(k + 10)]) / np.sqrt(2) for k in (1, 3)]
    for _ in range(2):  # twice the token size, then again
        again = tracker.update(_segmentation([m, far], wide, SIZE), settings)
        assert [t.track_id for t in again] == [t.track_id for t in first]
    assert tracker.tokens.shape == (2, 2 * TOKEN_DIM)
