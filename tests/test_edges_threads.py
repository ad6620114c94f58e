"""Threaded stress tests of state shared between the perception node's threads (issue 21,
items 7 and 8): the diagnostics timer against the worker, and concurrent vocabulary checks.

Each test runs the two sides against each other for a bounded time with a tiny GIL switch
interval (so a thread is interrupted inside a loop as often as possible) and fails on the
first wrong result or exception. Before the fixes both failed: the timer's iteration of the
worker's deque raised "deque mutated during iteration", and a check with one template set used
the token overhead of another.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

import pytest
from classify_fixtures import tiny_clip

from perception_nodes.core.stream.frame_slots import LatestFrameSlots
from perception_nodes.core.vocabulary.runtime import Vocabulary, VocabularyError

STRESS_S = 3.0  # each side runs this long (the failures before the fixes came within 0.2 s)


@contextlib.contextmanager
def tiny_switch_interval():
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def run_against_each_other(*loops) -> list[BaseException]:
    """Run each ``loop(stop_event)`` on its own thread for :data:`STRESS_S` s (or until one
    raises); the exceptions raised."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(loop):
        try:
            loop(stop)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=guarded, args=(loop,), daemon=True) for loop in loops]
    with tiny_switch_interval():
        for t in threads:
            t.start()
        stop.wait(STRESS_S)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a stress thread hung"
    return errors


def test_diagnostics_timer_reads_while_the_worker_records():
    """The node's two sides: the worker records frames, failures and new cameras; the
    diagnostics timer builds the status from snapshots (as PerceptionNode does)."""
    from perception_nodes.ros.node_diagnostics import FrameStats, pipeline_status

    stats, slots = FrameStats(), LatestFrameSlots()
    built = []

    def worker(stop):
        i = 0
        while not stop.is_set():
            cam = f"/cam{i % 50}"  # new cameras now and then: the slot dict grows
            slots.put(cam, i)
            slots.count(cam, "processed")
            stats.record_frame(time.monotonic(), {f"stage{i % 7}": 0.001, "sam": 0.002}, cam)
            if i % 3 == 0:
                stats.record_failure(cam, "boom")
            stats.record_encoder_batch(i % 3)
            i += 1

    def timer(stop):
        while not stop.is_set():
            status = pipeline_status(
                "n", "hw", None, stats.snapshot(), slots.stats_snapshot(), "active"
            )
            built.append(len(status.values))

    errors = run_against_each_other(worker, timer)
    assert not errors, f"{len(errors)} errors, first: {errors[0]!r}"
    assert len(built) > 10


def test_rate_hz_fits_a_cpu_frame_time():
    """A frame every 7 s (vit_t on a small CPU) reads about 0.14 Hz, not 0 or 0.2; a stopped
    stream's rate falls."""
    from perception_nodes.ros.node_diagnostics import rate_from_finish_times

    ends = [100.0 + 7.0 * i for i in range(6)]
    assert rate_from_finish_times(ends, ends[-1] + 1.0) == pytest.approx(1 / 7)
    assert rate_from_finish_times(ends, ends[-1] + 6.9) == pytest.approx(1 / 7)
    stalled = rate_from_finish_times(ends, ends[-1] + 60.0)
    assert 0 < stalled < 0.07
    assert rate_from_finish_times(ends[:1], ends[0] + 1) == 0.0
    fast = [10 + 0.1 * i for i in range(10)]
    assert rate_from_finish_times(fast, fast[-1] + 0.05) == pytest.approx(10.0)


class YieldingStores(Vocabulary):
    """A Vocabulary whose attribute stores let other threads run (``time.sleep(0)``)."""

    def __setattr__(self, name, value):
        time.sleep(0)
        super().__setattr__(name, value)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def test_token_limit_checks_with_different_templates_at_once(clip):
    """Two template sets checked concurrently: a phrase too long with the long template is
    refused every time, and accepted every time with the short one (the memo of the template
    overhead was two attributes written without a lock: one set's key paired with the other's
    value). The interpreter switches threads only at some instructions, so the vocabulary used
    here yields the GIL at each attribute store (:class:`YieldingStores`): the window a store
    sequence leaves open becomes one the test meets within milliseconds."""
    vocab = YieldingStores(clip, templates=("{}",))
    short = ("{}",)
    long_ = ("a photo of " + " ".join(["very"] * (clip.context_length // 2)) + " {}",)
    overhead = clip.count_tokens(long_[0].replace("{}", ""))
    room = clip.context_length - overhead  # phrase tokens that fit with the long template
    phrase = " ".join(["red"] * (room + 3))  # too long with it, fits with the short one
    assert clip.count_tokens(phrase) < clip.context_length
    with pytest.raises(VocabularyError):
        vocab.check([phrase], list(long_))
    vocab.check([phrase], list(short))
    wrong = []

    def checker(templates, must_refuse):
        def loop(stop):
            while not stop.is_set():
                try:
                    vocab.check([phrase], list(templates))
                    refused = False
                except VocabularyError:
                    refused = True
                if refused != must_refuse:
                    wrong.append(templates)
                    stop.set()

        return loop

    errors = run_against_each_other(
        checker(long_, True), checker(short, False), checker(long_, True), checker(short, False)
    )
    assert not errors, errors[0]
    assert not wrong, f"{len(wrong)} wrong token-limit verdicts (templates {wrong[0]})"
