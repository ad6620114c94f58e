"""``backend: tensorrt`` end to end with the TensorRT stand-in (``FakeTensorRT``): through
``Pipeline.load`` (first run exports ONNX and builds both engines with the timing cache, the
next run finds them in the cache, a new checkpoint or precision builds new ones, no TensorRT /
no GPU refuses with the exact commands) and through the node in its own process over DDS
(diagnostics show the backend and that the engines come from generated weights)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from export_fixtures import FakeTensorRT, fake_runtime_info

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.pipeline import Pipeline, PipelineError
from perception_nodes.core.sam import tensorrt as eng
from perception_nodes.core.sam.registry import make_generated_checkpoint
from perception_nodes.core.weights.files import sha256_file

TESTS = Path(__file__).resolve().parent
INFO = fake_runtime_info()


@pytest.fixture
def fake_gpu(monkeypatch):
    """A TensorRT stand-in as ``import tensorrt`` and a GPU as ``torch.cuda`` reports it."""
    trt = FakeTensorRT(INFO.tensorrt_version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: INFO.gpu_name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (8, 9))
    return trt


def _config(cache: Path, **extra) -> PipelineConfig:
    values = dict(
        sam_backend="tensorrt",
        sam_model="sam_tiny_test",
        sam_device="cpu",
        sam_precision="fp16",
        amg_points_per_side=4,
        amg_pred_iou_thresh=0.0,
        amg_stability_score_thresh=0.0,
        amg_max_regions=8,
        classifier_type="none",
        relations_type="geometric",
        weights_cache_dir=str(cache),
    )
    values.update(extra)
    return PipelineConfig(**values)


def _engine_dir(cache: Path, precision: str = "fp16") -> Path:
    return (
        cache
        / "engines"
        / eng.engine_cache_key("sam_tiny_test", INFO.gpu_name, INFO.tensorrt_version, precision)
    )


def test_first_run_builds_next_run_finds_new_checkpoint_or_precision_rebuilds(
    fake_gpu, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    pipeline = Pipeline.load(_config(cache))
    # first run: ONNX export + two engine builds, with the requested precision and the timing cache
    assert [Path(r["onnx"]).name for r in fake_gpu.built] == ["encoder.onnx", "decoder.onnx"]
    assert all(r["flags"] == ["FP16"] for r in fake_gpu.built)
    assert (cache / "engines" / "timing.cache").read_bytes().startswith(b"timing-cache:")
    folder = _engine_dir(cache)
    backend = pipeline.generator.backend
    assert backend.name == "tensorrt" and backend.encoder_metadata.precision == "fp16"
    assert Path(backend._encoder.path) == folder / "encoder.engine"
    # generated SAM weights: the engines know it, the backend declares it, the pipeline reports it
    assert eng.EngineMetadata.load(eng.metadata_path(folder / "encoder.engine")).untrained is True
    assert (
        backend.untrained
        and pipeline.sam_untrained
        and pipeline.untrained_parts == ["SAM sam_tiny_test"]
    )
    rgb = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    result, _ = pipeline.process(rgb)
    assert result.segmentation.masks.shape[1:] == (96, 128) and len(result.segmentation) >= 1

    # next run: found in the cache, nothing built
    again = FakeTensorRT(INFO.tensorrt_version)
    monkeypatch.setitem(sys.modules, "tensorrt", again)
    Pipeline.load(_config(cache))
    assert again.built == []
    # engines of another checkpoint are not used: rebuilt from the new one
    other = make_generated_checkpoint("sam_tiny_test", tmp_path / "other.pth", seed=3)
    Pipeline.load(_config(cache, sam_checkpoint=str(other)))
    assert len(again.built) == 2
    meta = eng.EngineMetadata.load(eng.metadata_path(folder / "encoder.engine"))
    assert meta.source_checkpoint_sha256 == sha256_file(other)
    # another precision: its own engines
    Pipeline.load(_config(cache, sam_checkpoint=str(other), sam_precision="fp32"))
    assert len(again.built) == 4 and again.built[-1]["flags"] == []
    assert (_engine_dir(cache, "fp32") / "decoder.engine").is_file()


def test_no_tensorrt_or_no_gpu_refuses_with_the_exact_commands(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt fails
    with pytest.raises(PipelineError) as info:
        Pipeline.load(_config(cache))
    msg = str(info.value)
    assert "pip install tensorrt" in msg
    generated = cache / "generated" / "sam_sam_tiny_test_seed0.pth"
    assert (
        f"pn-export-onnx --model sam_tiny_test --checkpoint {generated} --out-dir {cache / 'onnx' / 'sam_tiny_test'}"
        in msg
    )
    assert (
        f"pn-build-engine --onnx {cache / 'onnx' / 'sam_tiny_test' / 'decoder.onnx'} --precision fp16 "
        f"--cache-dir {cache / 'engines'}"
    ) in msg
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PipelineError, match="need a CUDA GPU.*\n.*\n.*pn-export-onnx"):
        Pipeline.load(_config(cache))


@pytest.mark.ros
def test_node_with_tensorrt_backend_builds_engines_and_reports_generated_weights(
    tmp_path, ros_context, monkeypatch
):
    """The perception node (own process, real DDS) with ``sam.backend: tensorrt`` and empty paths."""
    from e2e_fixtures import CAMERA, Spinner, start_graph, wait_for
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from perception_nodes.ros.image_conversion import numpy_to_image_msg
    from perception_nodes.tools.receiver import GraphReceiver

    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(TESTS / "trt_standin"), os.environ.get("PYTHONPATH", "")]),
    )
    graph = start_graph(
        tmp_path, **{"sam.backend": "tensorrt", "sam.precision": "fp16", "sam.device": "cpu"}
    )
    cam = Node("test_trt_camera", namespace=CAMERA, context=ros_context)
    pub = cam.create_publisher(Image, "image_raw", qos_profile_sensor_data)
    receiver = GraphReceiver(camera=CAMERA, context=ros_context)
    spinner = Spinner(ros_context, cam, receiver)
    try:
        assert wait_for(lambda: receiver.diagnostics_values().get("state") == "active", 300, graph)
        diag = receiver.diagnostics_values()
        assert diag["backend"] == "tensorrt/cpu/fp16" and diag["sam_untrained"] == "True"
        assert "SAM sam_tiny_test" in diag["untrained"] and diag["weights_meaningful"] == "False"
        assert (_engine_dir(tmp_path / "cache") / "encoder.engine").is_file()
        log = next(p for p in graph.processes if p.name == "perception_node").log_tail(200_000)
        assert "[3/3] decoder engine built" in log
        rgb = (np.random.default_rng(1).random((96, 128, 3)) * 255).astype(np.uint8)
        msg = numpy_to_image_msg(rgb, "rgb8")
        msg.header.stamp.sec = 7
        assert wait_for(lambda: pub.get_subscription_count() >= 1, 60, graph)
        for _ in range(10):  # best effort topic: resend until the graph arrives
            pub.publish(msg)
            if wait_for(lambda: receiver.count("graphs") >= 1, 30, graph):
                break
        sg = receiver.latest("graphs")
        assert (
            sg is not None
            and (sg.image_height, sg.image_width) == (96, 128)
            and len(sg.regions) >= 1
        )
    finally:
        spinner.stop()
        graph.stop()
