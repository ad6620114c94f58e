"""The birth bar (core/tracking/births.py): the mean score a new track needs to get its id after
``birth_hits`` hits rises to what the stream's confirmed objects score (their lower quartile),
never below ``sure_score``. On a stream whose objects score 0.95, a spurious blob scoring 0.88
for two frames got an id (0.88 > ``sure_score`` 0.85); now it does not, while a new object
scoring like the others still gets its id at its second frame. Through ``TrackingStage.apply``."""

from __future__ import annotations

import numpy as np
import pytest
from tracking_fixtures import _segmentation
from tracking_fixtures import random_token as _token

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.tracking import TrackingStage
from perception_nodes.core.tracking.births import BAR_MIN_SCORES, BirthBar
from perception_nodes.core.tracking.track import Track, TrackerSettings

SIZE = (240, 320)  # H, W
STABILITY = 0.95  # the fixture's stability score: a region's score is predicted IoU x this
OBJECTS = [(10 + 50 * (k % 6), 10 + 60 * (k // 6)) for k in range(12)]  # 12 static 30 px boxes


def _rect(x0, y0, size=30):
    m = np.zeros(SIZE, bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def _frame(stage, regions, meaningful=True):
    """``regions``: (mask, token, score); returns the track ids."""
    masks, tokens, scores = zip(*regions)
    seg = _segmentation(list(masks), list(tokens), SIZE)
    seg.predicted_iou = (np.array(scores) / STABILITY).astype(np.float32)
    out = stage.apply("cam", seg, None, None, PipelineConfig(), scores_meaningful=meaningful)
    return [int(i) for i in out.track_ids]


def _stream_of_objects(score, frames=6, meaningful=True):
    """A stage that has tracked the 12 objects, each scored ``score``, for ``frames`` frames."""
    stage = TrackingStage()
    for _ in range(frames):
        ids = _frame(stage, [(_rect(x, y), _token(k), score) for k, (x, y) in enumerate(OBJECTS)],
                     meaningful)  # fmt: skip
    assert all(ids)
    return stage


def _then(stage, extra, frames=2, meaningful=True):
    """The same objects plus ``extra`` (mask, token, score) regions for ``frames`` frames; the
    extra regions' ids per frame."""
    objects = [(_rect(x, y), _token(k), 0.95) for k, (x, y) in enumerate(OBJECTS)]
    return [_frame(stage, objects + extra, meaningful)[len(objects) :] for _ in range(frames)]


def test_a_blob_scoring_below_this_streams_objects_gets_no_id_in_two_frames():
    stage = _stream_of_objects(0.95)
    blob = (_rect(200, 200, 12), _token(90), 0.88)
    assert _then(stage, [blob]) == [[0], [0]]  # before: [[0], [id]] (0.88 >= sure_score 0.85)


def test_a_new_object_scoring_like_the_others_gets_its_id_at_its_second_frame():
    stage = _stream_of_objects(0.95)
    newcomer = (_rect(200, 200, 30), _token(91), 0.95)
    first, second = _then(stage, [newcomer])
    assert first == [0] and second[0] > 0


def test_on_a_stream_scored_low_the_bar_stays_at_sure_score():
    """Objects at 0.86 (a segmenter that scores everything lower): the bar stays at 0.85, so a
    new region scoring 0.86 gets its id at its second frame, as before."""
    stage = _stream_of_objects(0.86)
    assert _then(stage, [(_rect(200, 200, 12), _token(92), 0.86)])[1][0] > 0


def test_with_scores_that_mean_nothing_the_bar_plays_no_part():
    """Untrained SAM weights: every region counts as confident (scores_meaningful False)."""
    stage = _stream_of_objects(0.95, meaningful=False)
    blob = (_rect(200, 200, 12), _token(93), 0.60)
    assert _then(stage, [blob], meaningful=False)[1][0] > 0


def test_the_bar_is_the_lower_quartile_of_confirmed_tracks_scores_never_below_the_floor():
    bar = BirthBar()
    confirmed = [Track(1, None, confirmed=True), Track(2, None, confirmed=False)]
    rng = np.random.default_rng(0)
    levels = []
    for _ in range(BAR_MIN_SCORES + 5):
        scores = np.array([rng.uniform(0.9, 1.0), 0.5])  # the tentative track's 0.5: not counted
        levels.append(bar.step(0.85, scores, {0: 0, 1: 1}, confirmed))
    assert levels[BAR_MIN_SCORES - 1] == 0.85  # too few scores known yet
    assert levels[-1] == pytest.approx(0.925, abs=0.02)  # lower quartile of U(0.9, 1.0)
    assert bar.level(0.95) == 0.95  # never below the floor
    assert TrackerSettings().sure_score == 0.85
