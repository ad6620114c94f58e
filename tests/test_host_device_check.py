"""scripts/device_check.sh runs end to end with ``--cpu`` (test-size models), so the command
prepared for a GPU machine cannot rot: every step passes and its JSON is in the summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts the benchmarks as processes

REPO = Path(__file__).resolve().parents[1]


def test_device_check_cpu_mode_passes_every_step(tmp_path):
    out = tmp_path / "check"
    env = dict(os.environ, PYTHON=sys.executable, PERCEPTION_NODES_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "device_check.sh"), str(out), "--cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,  # hang guard only (about 2 minutes on an idle 2-core machine)
    )
    summary = json.loads((out / "summary.json").read_text())
    failed = [s["step"] for s in summary["steps"] if s["rc"] != 0]
    assert proc.returncode == 0 and summary["ok"], (failed, proc.stdout[-3000:])
    steps = {s["step"]: s for s in summary["steps"]}
    assert set(steps) == {"env", "gpu_tests", "bench_sam_fp32", "pipeline_fp32", "bench_host"}
    assert steps["env"]["result"]["torch"]
    pipeline = steps["pipeline_fp32"]["result"]["pipeline"]
    assert pipeline["graphs_per_s"] > 0 and pipeline["peak_rss_mb"] > 0
    host = steps["bench_host"]["result"]["host"][0]
    assert host["ms"]["to_segmentation"] > 0 and host["peak_rss_mb"] > 0
    assert steps["bench_sam_fp32"]["result"]
    suite = ET.parse(out / "gpu_tests.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) >= 6 and int(suite.get("failures")) == 0
    assert (out / "logs" / "gpu_tests.log").is_file()
