"""The README's main command (`pn-demo`) runs end to end and writes what it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from perception_nodes.core.output.scene_graph import from_json
from perception_nodes.nodes.image_folder_publisher import load_image

pytestmark = pytest.mark.ros


def test_demo_quick_writes_graph_json_overlay_png_and_timing_table(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, PERCEPTION_NODES_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "perception_nodes.tools.demo",
            "--quick",
            "--images",
            "astronaut",
            "rocket",
            "--max-side",
            "160",
            "--points-per-side",  # 3x3 SAM prompts (--quick: 6x6): each photo needs some
            "3",  # regions, not many; the decoder's CPU goes with the prompt count
            "--out-dir",
            str(out),
            "--start-timeout",
            "600",
            "--frame-timeout",
            "400",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stdout = proc.stdout
    assert "GENERATED (seeded random) weights" in stdout and "NOT meaningful" in stdout
    # the banner names exactly the generated parts and the command that replaces them
    assert "weights for: SAM sam_tiny_test, CLIP pn-clip-tiny-test" in stdout
    assert "Real weights: none to download (test-only models; run without --quick)" in stdout
    assert "segment.encoder" in stdout and "end-to-end (publish -> SceneGraph received)" in stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights_meaningful"] is False and summary["sam_model"] == "sam_tiny_test"
    assert summary["generated_parts"] == ["SAM sam_tiny_test", "CLIP pn-clip-tiny-test"]
    assert [f["name"] for f in summary["frames"]] == ["astronaut", "rocket"]
    for name in ("astronaut", "rocket"):
        graph = from_json((out / f"{name}.json").read_text())
        assert graph.labels_meaningful is False  # generated weights: the JSON says so too
        overlay = cv2.imread(str(out / f"{name}_overlay.png"))
        assert overlay is not None and overlay.shape[:2] == tuple(graph.image_size)
        assert graph.num_regions >= 1
        for i in range(graph.num_regions):
            assert graph.mask(i).shape == tuple(graph.image_size) and graph.mask(i).any()
        # the overlay is the photo with masks and labels drawn on it: close to it, but not equal
        photo_bgr = load_image(name, 160)[:, :, ::-1].astype(np.int16)
        diff = np.abs(overlay.astype(np.int16) - photo_bgr)
        assert 0 < diff.mean() < 100
    frame = summary["frames"][0]
    assert frame["regions"] >= 1 and frame["latency_s"] > 0
    assert float(summary["diagnostics"]["segment.encoder_ms"]) > 0
