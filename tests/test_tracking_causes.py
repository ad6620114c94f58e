"""The tracker's failures of issue 18, one test per cause (each failed on the tracker before it):
duplicate tracks of one object, camera pan, an occluded object seen as its corner, a small
object, a short spurious blob, a dropped frame. All through ``TrackingStage.apply``, as the
pipeline calls it. Also the camera-motion estimate and the frame clock on their own."""

from __future__ import annotations

import numpy as np
import pytest
from tracking_fixtures import _segmentation, _unit
from tracking_fixtures import alike_token as _alike
from tracking_fixtures import random_token as _token

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.tracking import TrackingStage

SIZE = (240, 320)  # H, W
CONFIG = PipelineConfig()  # birth_hits 2, as shipped


def _rect(x0, y0, x1, y1, size=SIZE):
    m = np.zeros(size, bool)
    m[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return m


def _ids(stage, masks, tokens, size=SIZE, scores=None, **kwargs):
    seg = _segmentation(masks, tokens, size)
    if scores is not None:
        seg.predicted_iou = np.array(scores, np.float32)
    return [int(t) for t in stage.apply("cam", seg, None, None, CONFIG, **kwargs).track_ids]


def test_a_region_that_jumps_keeps_one_track_instead_of_a_new_one_per_frame():
    """Issue cause 1: a failed match opened a new track at once while the old one lived on;
    later token matches never singled one of the two out: ids 1 -> 2 -> 3 in a few frames."""
    stage, tok = TrackingStage(), _token(1)
    noisy = _unit(tok + 1.5 * _token(2))  # one frame's token far off (cosine ~0.55)
    xs = [20, 21, 22, 23, 60, 62, 100, 102, 140, 142]
    toks = [tok] * 4 + [noisy] + [tok] * 5
    ids = [_ids(stage, [_rect(x, 40, x + 30, 70)], [t])[0] for x, t in zip(xs, toks)]
    first = ids[1]
    assert first > 0
    assert {i for i in ids[1:] if i} == {first}, ids
    assert all(ids[5:]), ids  # never left without an id after the jump


def _textured(size, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 4 + 8, size[1] // 4 + 8)).astype(np.float32)
    return np.kron(small, np.ones((4, 4), np.float32))  # 4 px blocks: corners to follow


def _pan_frame(world, pan_x, objects):
    """An RGB view of ``world`` panned right by ``pan_x`` px, and the objects' masks there."""
    h, w = SIZE
    view = world[16 : 16 + h, 16 + pan_x : 16 + pan_x + w]
    image = np.repeat(view[:, :, None], 3, axis=2).astype(np.uint8)
    masks = []
    for x, y in objects:
        m = _rect(x - pan_x, y, x - pan_x + 14, y + 14)
        image[m] = (255, 40, 40)
        masks.append(m)
    return image, masks


def test_camera_pan_keeps_every_id_of_closely_spaced_look_alike_objects():
    """Issue cause 2 (camera motion): a pan of 20 px/frame moves 14 px objects 28 px apart so
    that each lands nearer its neighbour's last place than its own; with look-alike tokens only
    the camera-motion compensation tells them apart."""
    world = np.zeros((SIZE[0] + 32, SIZE[1] + 32 + 200), np.float32)
    world[:] = _textured(world.shape)[: world.shape[0], : world.shape[1]]
    objects = [(160 + 28 * k, 100) for k in range(6)]  # static in the world
    stage = TrackingStage()
    per_frame = []
    for f in range(6):
        image, masks = _pan_frame(world, 20 * f, objects)
        ids = _ids(stage, masks, [_alike(k) for k in range(6)], image=image, stamp=f / 30)
        per_frame.append(ids)
    assert all(i > 0 for i in per_frame[1]), per_frame
    for ids in per_frame[2:]:
        assert ids == per_frame[1], per_frame


def test_camera_motion_estimate_recovers_a_shift_and_a_zoom():
    import cv2

    from perception_nodes.core.tracking.camera_motion import CameraMotion

    world = _textured((400, 520)).astype(np.uint8)
    h, w = SIZE
    a = np.repeat(world[40 : 40 + h, 60 : 60 + w, None], 3, axis=2)
    b = np.repeat(world[43 : 43 + h, 52 : 52 + w, None], 3, axis=2)  # content moved (+8, -3) px
    motion = CameraMotion()
    assert np.allclose(motion.estimate(a), np.eye(2, 3))  # first frame: nothing to compare
    shift = motion.estimate(b)
    assert shift[:, 2] == pytest.approx([8.0, -3.0], abs=0.6) and motion.last_inliers > 20
    assert shift[:, :2] == pytest.approx(np.eye(2), abs=0.02)
    zoom = 1.1  # about the image centre
    m = np.array([[zoom, 0, (1 - zoom) * w / 2], [0, zoom, (1 - zoom) * h / 2]])
    c = cv2.warpAffine(b, m, (w, h), flags=cv2.INTER_LINEAR)
    est = motion.estimate(c)
    assert np.sqrt(abs(np.linalg.det(est[:, :2]))) == pytest.approx(zoom, abs=0.02)
    assert np.allclose(motion.estimate(None), np.eye(2, 3))  # no image: no compensation
    blank = np.full((h, w, 3), 128, np.uint8)
    assert np.allclose(motion.estimate(blank), np.eye(2, 3))  # nothing to follow


def test_an_object_seen_only_as_its_corner_behind_occluders_keeps_its_id():
    """Issue cause 3: a 60x60 object hidden but for its 20x20 corner counted as a "part" of its
    own previous mask (ids 1 -> 2 -> 1)."""
    stage = TrackingStage()
    obj, tok = _rect(40, 40, 100, 100), _token(10)
    away_b, away_c = _rect(200, 10, 300, 150), _rect(200, 160, 260, 230)
    near_b, near_c = _rect(60, 0, 160, 140), _rect(0, 60, 60, 140)  # hide all but (40..60)^2
    corner = _rect(40, 40, 60, 60)
    tb, tc = _token(11), _token(12)
    full = [_ids(stage, [obj, away_b, away_c], [tok, tb, tc]) for _ in range(3)]
    hidden_tok = _unit(tok + 1.2 * _token(13))  # a corner's token is not the whole's
    hidden = [_ids(stage, [corner, near_b, near_c], [hidden_tok, tb, tc]) for _ in range(3)]
    back = [_ids(stage, [obj, away_b, away_c], [tok, tb, tc]) for _ in range(2)]
    obj_id = full[1][0]
    assert obj_id > 0 and full[2][0] == obj_id
    assert [h[0] for h in hidden] == [obj_id] * 3, hidden
    assert [b[0] for b in back] == [obj_id] * 2, back


def test_a_small_object_moving_at_true_iou_above_the_gate_keeps_its_id():
    """Issue cause 4: on the coarse grid (every 7th pixel at 640x480) an 8x8 object shifted by
    2 px (true IoU 0.6) at times shared no cell with its last mask; its tokens vary too much to
    carry the match (cosine < 0.8)."""
    size = (480, 640)
    stage = TrackingStage()
    base = _token(20)
    ids = []
    for f in range(12):
        x = 199 + 2 * f
        tok = _unit(base + 0.9 * _token(100 + f))
        ids.append(_ids(stage, [_rect(x, 301, x + 8, 309, size)], [tok], size)[0])
    assert ids[1] > 0 and set(ids[1:]) == {ids[1]}, ids


def test_a_low_scored_blob_seen_in_two_frames_gets_no_id_but_a_real_object_does():
    """Issue cause 6 (and 5: births not late): a spurious blob of two frames (SAM score 0.75)
    never gets an id; a confident object appearing with it gets one at its second frame."""
    stage = TrackingStage()
    obj, blob = _rect(20, 20, 60, 60), _rect(150, 100, 165, 112)
    to, tb = _token(30), _token(31)
    f1 = _ids(stage, [obj, blob], [to, tb], scores=[0.95, 0.75])
    f2 = _ids(stage, [obj, blob], [to, tb], scores=[0.95, 0.75])
    f3 = _ids(stage, [obj], [to], scores=[0.95])
    assert f1 == [0, 0] and f2[0] > 0 and f2[1] == 0 and f3 == [f2[0]]


def test_an_object_scored_low_in_every_frame_gets_its_id_late_but_not_never():
    """Issue cause 5 on the sequences' partly hidden objects: an object SAM scores below the
    confident score (0.7) in every frame (0.65 here, predicted IoU x stability) got no id at all
    (such regions opened no track); now it opens one and is confirmed after ``birth_hits`` + 2
    frames, as any low-scoring track. A region below 0.5 still never opens one."""
    stage = TrackingStage()
    low, junk = 0.65 / 0.95, 0.45 / 0.95  # predicted IoU; the fixture's stability is 0.95
    ids = []
    for f in range(6):
        obj, blob = _rect(20 + 2 * f, 20, 60 + 2 * f, 60), _rect(150, 100, 175, 125)
        ids.append(_ids(stage, [obj, blob], [_token(40), _token(41)], scores=[low, junk]))
    assert [i[0] > 0 for i in ids] == [False, False, False, True, True, True], ids
    assert len({i[0] for i in ids[3:]}) == 1
    assert all(i[1] == 0 for i in ids)


def test_dropped_frames_count_in_the_motion_prediction():
    """Issue cause 2 (dropped frames): three frames dropped between two processed ones (a stamp
    gap of four frames). Two look-alike 16 px objects 24 px apart in a row move 4 px per frame:
    after the gap each has moved 16 px, as far from its own last place as from its neighbour's
    predicted one."""
    stage = TrackingStage()
    stamps = [0, 1, 2, 3, 4, 5, 6, 10, 11, 12]  # frames 7, 8 and 9 dropped
    per_frame = []
    for f in stamps:
        x = 20 + 4 * f
        masks = [_rect(x, 40, x + 16, 56), _rect(x + 24, 40, x + 40, 56)]
        per_frame.append(_ids(stage, masks, [_alike(1), _alike(2)], stamp=f / 30.0))
    assert all(i > 0 for i in per_frame[1]), per_frame
    assert all(ids == per_frame[1] for ids in per_frame[2:]), per_frame


def test_frame_clock_counts_frames_from_stamps():
    from perception_nodes.core.tracking.clock import FrameClock

    clock = FrameClock()
    got = [clock.elapsed(s / 30) for s in (0, 1, 2, 3, 5, 6, 9)]
    assert got == [1, 1, 1, 1, 2, 1, 3]
    assert clock.elapsed(None) == 1 and FrameClock().elapsed(0.0) == 1
    assert clock.elapsed(0.1) == 1  # a stamp going back: one frame


def test_tracks_of_objects_unseen_for_a_few_frames_survive_a_drop_in_the_region_count():
    """The live-track cap follows the most regions of the last second, not the frame's alone:
    ten objects, then five frames where SAM returns two of them (a per-frame cap of 1.5 x 2
    dropped the eight others' tracks, and they came back with new ids), then all ten again.
    After a long stretch of two regions the cap shrinks again: tracks stay bounded."""
    stage = TrackingStage()
    rects = [_rect(10 + 30 * i, 40, 30 + 30 * i, 80) for i in range(10)]
    tokens = [_token(100 + i) for i in range(10)]
    for _ in range(3):
        before = _ids(stage, rects, tokens)
    assert all(before) and len(set(before)) == 10, before
    for _ in range(5):
        _ids(stage, rects[:2], tokens[:2])
    assert _ids(stage, rects, tokens) == before
    for _ in range(40):
        _ids(stage, rects[:2], tokens[:2])
    assert len(stage._trackers["cam"].tracks) <= 4
