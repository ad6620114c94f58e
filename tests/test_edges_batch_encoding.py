"""Frames of two cameras encoded together on the default backend (issue 21, item 0): the
pipeline as a user loads it (``sam.backend`` auto = onnxruntime on a CPU) with a full-size
architecture (MobileSAM's vit_t, generated weights), and an export whose batch axis is not
really dynamic (how vit_t was exported before) encoded one image at a time, logged once."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from sam_fixtures import skimage_photo

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.pipeline import Pipeline

MODEL = "vit_t"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vit_t_cache")


@pytest.fixture(scope="module")
def pipeline(cache) -> Pipeline:
    config = PipelineConfig(
        sam_model=MODEL,
        amg_points_per_side=4,
        classifier_type="none",
        relations_type="geometric",
        weights_cache_dir=str(cache),
    )
    return Pipeline.load(config)


def _backend(pipeline: Pipeline):
    return pipeline.generator.backend


def test_default_backend_encodes_two_camera_frames_in_one_batch(pipeline):
    assert pipeline.config.sam_backend == "auto" and pipeline.sam_backend_name == "onnxruntime"
    images = [skimage_photo("astronaut", 256), skimage_photo("coffee", 256)]
    rgbs = pipeline.encode_together(images)  # raised before (Conv channel error at batch 2)
    backend = _backend(pipeline)
    assert backend.encodes_batches, "the export must really run at batch 2"
    for rgb in rgbs:
        result, graph = pipeline.process(rgb)
        assert result.segmentation.masks.shape[1:] == rgb.shape[:2]
        assert graph.image_size == rgb.shape[:2]
    # the batch gives each image the embedding it gets alone
    size = backend.input_size
    batch = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, size, size)))
    batch = batch.float()
    together = backend.encode(batch)
    alone = torch.cat([backend.encode(batch[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(together, alone, atol=2e-3, rtol=0)


def test_an_export_that_fails_at_batch_2_is_encoded_one_by_one_and_logged_once(
    pipeline, cache, tmp_path, caplog
):
    """An encoder traced the old way (TinyViT's ``len(x)`` frozen at the example batch 1):
    onnxruntime fails at batch 2 with its own exception type (not a RuntimeError); the backend
    detects it at first use, logs it once and encodes one by one from then on."""
    from perception_nodes.core.sam import export as sam_export
    from perception_nodes.core.sam.export_metadata import read_onnx_metadata
    from perception_nodes.core.sam.onnx_backend import OnnxRuntimeSamBackend
    from perception_nodes.core.sam.onnx_cache import onnx_cache_dir
    from perception_nodes.core.sam.registry import build_sam_model

    backend = _backend(pipeline)
    folder = onnx_cache_dir(cache, MODEL, upscale_gate=True)
    encoder, decoder = folder / "encoder.onnx", folder / "decoder.onnx"
    checkpoint = next(cache.rglob(f"sam_{MODEL}_seed0.pth"))
    model = build_sam_model(MODEL, checkpoint)
    old = tmp_path / "encoder.onnx"
    size = model.image_encoder.img_size
    sam_export._trace_export(  # no traceable_batch: as before export revision 4
        sam_export.SamEncoderOnnx(model),
        (torch.randn(1, 3, size, size),),
        old,
        sam_export.ENCODER_INPUTS,
        sam_export.ENCODER_OUTPUTS,
        {"images": {0: "batch"}, "image_embeddings": {0: "batch"}},
        sam_export.DEFAULT_OPSET,
    )
    sam_export.write_metadata(old, read_onnx_metadata(encoder))
    stale = OnnxRuntimeSamBackend(old, decoder)
    batch = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, size, size)))
    batch = batch.float()
    with pytest.raises(Exception) as raised:  # what the old export does at batch 2
        stale._encode_batch(batch)
    assert not isinstance(raised.value, RuntimeError)
    caplog.set_level(logging.WARNING, logger="perception_nodes.core.sam.onnx_backend")
    first = stale.encode(batch)
    second = stale.encode(batch)
    assert not stale.encodes_batches
    assert caplog.text.count("cannot run a batch of 2") == 1
    expected = backend.encode(batch)
    torch.testing.assert_close(first, expected, atol=2e-3, rtol=0)
    torch.testing.assert_close(second, first)
