"""pn-process-bag's ``--malloc``: glibc malloc tuned for throughput in the model processes.

- ``throughput`` (``mallopt`` in the running process, or glibc's environment variables for a
  process started from here) keeps freed large blocks for the next allocation: no new pages,
  where glibc's defaults map and fault in fresh ones every time.
- Worker processes get the mode they are given (page faults per frame of a worker) and the
  outputs do not depend on it: message for message, the same journal and files.

Processes "as users start them" run with glibc's defaults: the suite's own malloc settings
(conftest.MALLOC_TUNING) are taken out of their environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from bag_fixtures import params_file, write_recording
from conftest import default_malloc
from test_process_bag import OUTPUT_TOPICS, journal, rclpy_messages, read_bag
from test_process_bag_workers import _plain

from perception_nodes.bags.malloc import (
    MallocError,
    check_mode,
    environment,
    minor_faults,
    peak_rss_mb,
    reset_peak_rss,
    tune,
)
from perception_nodes.tools.process_bag import build_parser

#: allocates and frees 64 MiB blocks in a fresh process; prints the page faults of the last 8
PROBE = textwrap.dedent(
    """
    import sys
    import numpy as np
    from perception_nodes.bags.malloc import minor_faults, tune
    tune(sys.argv[1])
    for _ in range(2):
        block = np.ones(64 << 20, np.uint8); del block
    before = minor_faults()
    for _ in range(8):
        block = np.ones(64 << 20, np.uint8); del block
    print(minor_faults() - before)
    """
)


def _probe_faults(mode: str, env_mode: str = "default") -> int:
    with default_malloc(), environment(env_mode):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                             text=True, check=True, timeout=120)  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1])


def test_modes_are_checked():
    assert check_mode("default") == "default" and check_mode("throughput") == "throughput"
    with pytest.raises(MallocError, match="default, throughput"):
        check_mode("fast")
    with pytest.raises(MallocError):
        tune("fast")
    args = build_parser().parse_args(["rec", "-o", "out"])
    assert args.malloc == "throughput"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rec", "-o", "out", "--malloc", "fast"])


def test_throughput_keeps_freed_blocks_for_the_next_allocation():
    default = _probe_faults("default")
    # fresh pages for each 64 MiB block: 16,384 of 4 KiB (or 32 huge pages with THP always)
    assert default >= 8 * 32
    assert _probe_faults("throughput") < default / 20
    # the same settings given to a started process by glibc's environment variables
    assert _probe_faults("default", env_mode="throughput") < default / 20


def test_environment_sets_and_restores(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with environment("throughput"):
        assert os.environ["MALLOC_ARENA_MAX"] == "1"
        assert int(os.environ["MALLOC_MMAP_THRESHOLD_"]) == 2**31 - 1
    assert os.environ["MALLOC_ARENA_MAX"] == "4" and "MALLOC_TRIM_THRESHOLD_" not in os.environ
    with environment("default"):
        assert "MALLOC_ARENA_MAX" not in os.environ
    assert os.environ["MALLOC_ARENA_MAX"] == "4"


def test_peak_rss_reads_and_resets():
    reset_peak_rss()
    peak = peak_rss_mb()
    assert peak > 10
    assert peak_rss_mb() >= peak and minor_faults() > 0


def _run(rec, params: Path, out: Path, mode: str) -> float:
    """One recording through one worker process (``mode``); the worker's minor page faults per
    frame (models loaded and warmed up before)."""
    from perception_nodes.bags.output import output_typestore
    from perception_nodes.bags.runner import JobOptions, RecordingRun
    from perception_nodes.bags.settings import load_settings
    from perception_nodes.tools.process_bag import load_engine

    settings = load_settings(params)
    opts = JobOptions(batch=1, progress=False, workers=1, threads=1, malloc=mode)
    with default_malloc():  # the worker starts as a user's would: glibc's defaults
        engine = load_engine(settings, opts, warm_up=next(iter(rec.images.values())))
    try:
        faults0 = minor_faults(engine.pids[0])
        run = RecordingRun(engine, settings, opts, rec.path, out, threading.Event(),
                           output_typestore())  # fmt: skip
        summary = run.run()
        assert summary.failed == 0 and summary.processed == len(rec.images)
        return (minor_faults(engine.pids[0]) - faults0) / summary.processed
    finally:
        engine.close()


@pytest.mark.slow
def test_workers_get_the_mode_and_the_outputs_do_not_change(tmp_path):
    rec = write_recording(tmp_path / "in" / "rec", "mcap", n_front=3, n_rear=1, still=True)
    params = params_file(tmp_path, **{"amg.points_per_side": 2})
    one, two = tmp_path / "default", tmp_path / "throughput"
    faults = {"default": _run(rec, params, one, "default"),
              "throughput": _run(rec, params, two, "throughput")}  # fmt: skip
    # glibc's defaults: the SAM masks upscaled to 1024 px are fresh pages in every frame
    assert faults["throughput"] < faults["default"] / 4, faults
    a, b = read_bag(one / "bag"), read_bag(two / "bag")
    assert sorted((t, log) for t, _, log, _ in a) == sorted((t, log) for t, _, log, _ in b)
    for cam in rec.frames:
        for name in OUTPUT_TOPICS:  # compared deserialized (CDR padding bytes are not set)
            topic = f"{cam}/perception/{name}"
            got = [_plain(m) for m in rclpy_messages(two / "bag", topic)]
            assert got == [_plain(m) for m in rclpy_messages(one / "bag", topic)], topic
    assert json.dumps(journal(one)) == json.dumps(journal(two))
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert files and files == sorted(p.relative_to(two) for p in two.rglob("*.png"))
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
