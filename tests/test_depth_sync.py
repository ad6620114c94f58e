"""Stamp matching of depth images to frames (core, no ROS): nearest within the slop, a late one
waited for, a stream that moved past not waited for, a stop ends the wait."""

from __future__ import annotations

import threading
import time

from perception_nodes.core.stream.depth_sync import StampMatcher
from perception_nodes.core.stream.stamps import NS_PER_SEC

MS = NS_PER_SEC // 1000


def test_the_nearest_stamp_within_the_slop_is_given():
    m = StampMatcher(capacity=4)
    for i, stamp in enumerate((1000 * MS, 1033 * MS, 1066 * MS)):
        m.put("/cam", stamp, f"depth {i}")
    assert m.match("/cam", 1040 * MS, 0.05, 0.0).item == "depth 1"
    assert m.match("/cam", 1066 * MS, 0.0, 0.0).item == "depth 2"  # exact stamps, slop 0
    assert m.match("/other", 1040 * MS, 0.05, 0.0).item is None  # per stream


def test_only_the_last_capacity_items_are_kept():
    m = StampMatcher(capacity=2)
    for i in range(5):
        m.put("/cam", i * NS_PER_SEC, i)
    assert m.match("/cam", 0, 0.5, 0.0).item is None
    assert m.match("/cam", 3 * NS_PER_SEC, 0.5, 0.0).item == 3


def test_a_depth_image_that_arrives_after_its_frame_is_waited_for():
    m = StampMatcher()
    m.put("/cam", 0, "old")
    later = threading.Timer(0.15, lambda: m.put("/cam", 5 * NS_PER_SEC, "own"))
    later.start()
    t0 = time.monotonic()
    found = m.match("/cam", 5 * NS_PER_SEC, 0.05, 5.0)
    assert found.item == "own" and time.monotonic() - t0 < 4.0
    later.join()


def test_no_match_after_the_wait_says_how_far_the_nearest_one_was():
    m = StampMatcher()
    m.put("/cam", 4 * NS_PER_SEC, "stalled depth camera")
    t0 = time.monotonic()
    found = m.match("/cam", 5 * NS_PER_SEC, 0.05, 0.1)
    assert found.item is None and time.monotonic() - t0 >= 0.1
    assert found.kind == "too far"
    assert found.reason == (
        "no depth image within 0.05 s of the frame's stamp (nearest is 1.000 s before it)"
    )
    none = StampMatcher().match("/cam", 0, 0.05, 0.0)
    assert (
        none.item is None
        and none.kind == "none yet"
        and "no depth image received yet" in none.reason
    )


def test_no_wait_once_the_stream_has_moved_past_the_frame():
    m = StampMatcher()
    m.put("/cam", 7 * NS_PER_SEC, "newer")
    t0 = time.monotonic()
    found = m.match("/cam", 5 * NS_PER_SEC, 0.05, 5.0)
    assert found.item is None and time.monotonic() - t0 < 1.0
    assert "2.000 s after it" in found.reason


def test_should_stop_ends_the_wait():
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    found = StampMatcher().match("/cam", 0, 0.05, 30.0, stop.is_set)
    assert found.item is None and time.monotonic() - t0 < 2.0
