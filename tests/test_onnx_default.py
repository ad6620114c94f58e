"""``sam.backend: auto`` (the default): onnxruntime on a CPU with the ONNX export made on first
use in the weights cache (``core.sam.onnx_cache``), reused afterwards, redone for another
checkpoint, another export revision or a damaged file; through the node in its own process over
DDS (diagnostics name the backend that runs, a SceneGraph arrives, the second start reuses)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from ros_helpers.process import dead_pid

from perception_nodes.core.config import DEFAULT_SAM_BACKEND, PipelineConfig
from perception_nodes.core.sam import export as sam_export
from perception_nodes.core.sam.backends import resolve_backend_kind
from perception_nodes.core.sam.export_metadata import read_onnx_metadata
from perception_nodes.core.sam.onnx_cache import (
    OnnxExportError,
    ensure_onnx_export,
    onnx_cache_dir,
    reusable_export,
)
from perception_nodes.core.sam.registry import make_generated_checkpoint
from perception_nodes.core.weights.checkpoint_io import writer_tag
from perception_nodes.core.weights.files import sha256_file

MODEL = "sam_tiny_test"


def test_auto_is_the_default_and_means_onnxruntime_on_cpu_and_torch_on_cuda():
    assert DEFAULT_SAM_BACKEND == "auto" and PipelineConfig().sam_backend == "auto"
    assert resolve_backend_kind("auto", "cpu") == "onnxruntime"
    assert resolve_backend_kind("auto", "cuda:0") == "torch"
    assert resolve_backend_kind("torch", "cpu") == "torch"
    assert resolve_backend_kind("tensorrt", "cuda") == "tensorrt"


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")}


def test_export_is_made_once_reused_and_redone_when_stale(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="perception_nodes.core.sam.onnx_cache")
    ckpt = make_generated_checkpoint(MODEL, tmp_path / "a.pth", seed=0)
    folder = onnx_cache_dir(tmp_path / "cache", MODEL)
    paths = ensure_onnx_export(MODEL, ckpt, folder)
    assert [p.name for p in paths] == ["encoder.onnx", "decoder.onnx"] and all(
        p.is_file() for p in paths
    )
    first = _mtimes(folder)
    assert "exporting SAM" in caplog.text and not list(folder.glob(".export-*"))
    caplog.clear()
    assert ensure_onnx_export(MODEL, ckpt, folder) == paths and _mtimes(folder) == first
    assert "reusing the ONNX export" in caplog.text and "exporting SAM" not in caplog.text

    other = make_generated_checkpoint(MODEL, tmp_path / "b.pth", seed=1)  # another checkpoint
    caplog.clear()
    ensure_onnx_export(MODEL, other, folder)
    assert "exporting SAM" in caplog.text and _mtimes(folder) != first

    monkeypatch.setattr(sam_export, "EXPORT_REVISION", sam_export.EXPORT_REVISION + 1)
    caplog.clear()
    ensure_onnx_export(MODEL, other, folder)  # a newer package changed the graphs
    assert "exporting SAM" in caplog.text
    monkeypatch.undo()

    paths[1].write_bytes(paths[1].read_bytes()[:1000])  # truncated by a full disk
    caplog.clear()
    ensure_onnx_export(MODEL, other, folder)
    assert "exporting SAM" in caplog.text and paths[1].stat().st_size > 100_000


def test_gated_and_ungated_exports_live_apart_and_are_not_mistaken(tmp_path, caplog):
    """onnxruntime's gated decoder and TensorRT's ungated one: own folders, and a folder
    holding the other kind is exported again rather than used."""
    caplog.set_level(logging.INFO, logger="perception_nodes.core.sam.onnx_cache")
    ckpt = make_generated_checkpoint(MODEL, tmp_path / "a.pth", seed=0)
    gated_dir = onnx_cache_dir(tmp_path / "cache", MODEL, upscale_gate=True)
    plain_dir = onnx_cache_dir(tmp_path / "cache", MODEL)
    assert gated_dir != plain_dir and gated_dir.name == f"{MODEL}-onnxruntime"
    gated = ensure_onnx_export(MODEL, ckpt, gated_dir, upscale_gate=True)
    plain = ensure_onnx_export(MODEL, ckpt, plain_dir)
    assert read_onnx_metadata(gated[1])["upscale_gate"] == "true"
    assert read_onnx_metadata(plain[1])["upscale_gate"] == "false"
    caplog.clear()
    ensure_onnx_export(MODEL, ckpt, gated_dir)  # ungated asked where a gated one lies
    assert "exporting SAM" in caplog.text
    assert read_onnx_metadata(gated[1])["upscale_gate"] == "false"


def test_an_export_removes_the_unfinished_exports_of_stopped_processes(tmp_path):
    """A node stopped mid-export (SIGINT does not wait for the load) leaves its staging folder;
    the next export removes it, and leaves a running exporter's alone."""
    ckpt = make_generated_checkpoint(MODEL, tmp_path / "a.pth", seed=0)
    folder = onnx_cache_dir(tmp_path / "cache", MODEL, upscale_gate=True)
    stopped = folder / f".export-{writer_tag(dead_pid())}-k2j4"
    running = folder / f".export-{writer_tag(os.getppid())}-x9q1"
    for staging in (stopped, running):
        staging.mkdir(parents=True)
        (staging / "encoder.onnx").write_bytes(b"half an encoder")
    ensure_onnx_export(MODEL, ckpt, folder, upscale_gate=True)
    assert not stopped.exists() and running.is_dir()
    assert reusable_export(folder, sha256_file(ckpt), upscale_gate=True) is not None


def test_failed_export_is_a_clear_error_and_leaves_the_cache_as_it_was(tmp_path):
    ckpt = make_generated_checkpoint(MODEL, tmp_path / "a.pth", seed=0)
    folder = onnx_cache_dir(tmp_path / "cache", MODEL)
    ensure_onnx_export(MODEL, ckpt, folder)
    before = _mtimes(folder)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(OnnxExportError, match="exporting SAM sam_tiny_test to ONNX"):
        ensure_onnx_export(MODEL, broken, folder)
    assert _mtimes(folder) == before and not list(folder.glob(".export-*"))


def test_pipeline_load_with_the_default_backend_runs_onnxruntime_from_the_cache(tmp_path):
    from perception_nodes.core.pipeline import Pipeline

    config = PipelineConfig(
        sam_model=MODEL,
        amg_points_per_side=4,
        classifier_type="none",
        relations_type="geometric",
        weights_cache_dir=str(tmp_path),
    )
    pipeline = Pipeline.load(config)
    assert pipeline.sam_backend_name == "onnxruntime"
    decoder = onnx_cache_dir(tmp_path, MODEL, upscale_gate=True) / "decoder.onnx"
    assert read_onnx_metadata(decoder)["upscale_gate"] == "true"
    assert not onnx_cache_dir(tmp_path, MODEL).exists()  # the ungated one is TensorRT's
    rgb = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    result, graph = pipeline.process(rgb)
    assert result.segmentation.masks.shape[1:] == (64, 96) and graph.image_size == (64, 96)


def test_node_with_the_default_backend_exports_once_and_reuses(tmp_path, ros_context):
    """The perception node in its own process (real DDS), ``sam.backend`` at its default, started
    twice on one cache: the first start exports, the second reuses; both publish graphs."""
    from e2e_fixtures import camera_io, publish_frame, start_graph, wait_graph_for

    rgb = (np.random.default_rng(1).random((96, 128, 3)) * 255).astype(np.uint8)
    overrides = {
        "sam.backend": DEFAULT_SAM_BACKEND,
        "weights.cache_dir": str(tmp_path / "cache"),
        "amg.points_per_side": 2,  # small_overrides: 4x4; a graph per start is all it needs
    }
    exported = []
    for run in range(2):
        (tmp_path / f"run{run}").mkdir()
        graph = start_graph(tmp_path / f"run{run}", **overrides)
        try:
            with camera_io(ros_context, graph) as (pubs, receiver):
                assert receiver.diagnostics_values()["backend"] == "onnxruntime/cpu/fp32"
                node = next(p for p in graph.processes if p.name == "perception_node")
                log = node.log_tail(200_000)
                assert "configured: SAM on onnxruntime" in log
                exported.append("exporting SAM" in log)
                sg = wait_graph_for(receiver, publish_frame(pubs, rgb), graph)
                assert (sg.image_height, sg.image_width) == (96, 128)
        finally:
            graph.stop()
        if run == 0:
            first = _mtimes(onnx_cache_dir(tmp_path / "cache", MODEL, upscale_gate=True))
    assert exported == [True, False], "the second start must reuse the first one's export"
    assert _mtimes(onnx_cache_dir(tmp_path / "cache", MODEL, upscale_gate=True)) == first
    assert len(first) == 2
