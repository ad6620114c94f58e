"""pn-bench-sam runs end to end on the tiny test model (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json

import numpy as np

from perception_nodes.tools import bench_sam


def test_matched_fraction():
    a = np.zeros((2, 4, 4), bool)
    a[0, :2], a[1, 2:] = True, True
    b = a[:1].copy()
    assert bench_sam.matched_fraction(a, b) == 0.5
    assert bench_sam.matched_fraction(a, np.zeros((0, 4, 4), bool)) == 0.0
    assert bench_sam.matched_fraction(np.zeros((0, 4, 4), bool), b) is None


def test_bench_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "sam.json"
    rc = bench_sam.main(
        [
            "--model",
            "sam_tiny_test",
            "--points-per-side",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--longest",
            "96",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr()
    assert "GENERATED" in printed.err and "speedup" in printed.out
    report = json.loads(out.read_text())
    assert report["generated_weights"] and report["hardware"]["torch"]
    entry = report["results"][0]
    assert entry["image"] == "astronaut" and entry["image_hw"] == [96, 96]
    stages = entry["ours"]["stages_s"]
    assert all(stages[k] > 0 for k in ("preprocess", "encoder", "decoder", "postprocess"))
    assert entry["ours"]["masks"] == entry["official"]["masks"]
    assert entry["speedup_total"] > 0 and entry["ours"]["peak_mib"] > 0
    assert entry["official_masks_matched_iou0.9"] in (None, 1.0)


def test_decoder_only_bench_writes_json_and_table(tmp_path, capsys):
    """``--decoder-only``: restructured vs official decoder on torch and onnxruntime, outputs equal."""
    out = tmp_path / "sam_decoder.json"
    rc = bench_sam.main(
        [
            "--decoder-only",
            "--model",
            "sam_tiny_test",
            "--prompts",
            "3",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert "restructured" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert (
        report["prompts"] == 3 and report["generated_weights"] and report["hardware"]["cpu_count"]
    )
    for runtime in ("torch", "onnxruntime"):
        entry = report["results"][runtime]
        assert entry["speedup_median"] > 0
        for impl in ("official", "restructured"):
            assert entry[impl]["median_s"] > 0
            assert (
                entry[impl]["max_abs_logit_diff"] <= 1e-4
                and entry[impl]["max_abs_iou_diff"] <= 1e-5
            )
