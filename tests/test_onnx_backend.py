"""The onnxruntime backend on the exported sam_tiny_test: parity with the torch backend
(embeddings, masks, tokens; segment-everything on a real skimage photo), metadata use and
error paths (missing/corrupted files, mismatched encoder/decoder, providers, bad input)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_fixtures import TINY
from sam_fixtures import SKIPPING_AMG_SETTINGS, skimage_photo

from perception_nodes.core.sam.amg import MaskGenerator
from perception_nodes.core.sam.export import build_metadata, export_decoder
from perception_nodes.core.sam.export_metadata import ExportMismatchError, OnnxModelError
from perception_nodes.core.sam.onnx_backend import OnnxRuntimeSamBackend, select_providers
from perception_nodes.core.sam.registry import build_sam_model, make_generated_checkpoint
from perception_nodes.core.sam.torch_backend import TorchSamBackend


@pytest.fixture(scope="module")
def ort_backend(tiny_export):
    return OnnxRuntimeSamBackend(tiny_export.encoder_path, tiny_export.decoder_path)


@pytest.fixture(scope="module")
def torch_backend(tiny_sam):
    return TorchSamBackend(tiny_sam, device="cpu")


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float().clamp(min=1)
    return inter / union


def test_reads_geometry_from_metadata(ort_backend):
    assert ort_backend.name == "onnxruntime"
    assert ort_backend.input_size == 1024 and ort_backend.embedding_shape == (256, 64, 64)
    assert ort_backend.decoder_mode == "both" and ort_backend.untrained
    assert ort_backend.metadata["model"] == TINY


def test_encode_decode_parity_with_torch_backend(ort_backend, torch_backend):
    gen = torch.Generator().manual_seed(7)
    images = torch.randn(1, 3, 1024, 1024, generator=gen)
    emb = ort_backend.encode(images)
    ref_emb = torch_backend.encode(images)
    assert emb.dtype == torch.float32 and emb.shape == (1, 256, 64, 64)
    assert (emb - ref_emb).abs().max() <= 1e-4
    # 3 point prompts (fg + bg point) and 3 box prompts, K = 2
    coords = torch.cat(
        [
            torch.rand(3, 2, 2, generator=gen) * 1024,
            torch.tensor(
                [[[100.0, 100], [400, 500]], [[0, 0], [1023, 1023]], [[600, 50], [700, 300]]]
            ),
        ]
    )
    labels = torch.tensor([[1.0, 0.0]] * 3 + [[2.0, 3.0]] * 3)
    for multimask in (True, False):
        out = ort_backend.decode(ref_emb, coords, labels, multimask)
        ref = torch_backend.decode(ref_emb, coords, labels, multimask)
        m = 3 if multimask else 1
        assert out.low_res_logits.shape == (6, m, 256, 256) and out.mask_tokens.shape == (6, m, 256)
        assert (out.low_res_logits - ref.low_res_logits).abs().max() <= 1e-3
        assert (out.iou_predictions - ref.iou_predictions).abs().max() <= 1e-4
        assert (out.mask_tokens - ref.mask_tokens).abs().max() <= 1e-4
        ious = _mask_iou(
            (out.low_res_logits > 0).flatten(0, 1), (ref.low_res_logits > 0).flatten(0, 1)
        )
        assert ious.min() > 0.99


def test_segment_everything_matches_torch_backend_on_photo(ort_backend, torch_backend):
    image = skimage_photo("coffee", longest=320)
    # Random weights: keep every mask (no IoU/stability filter, NMS off) so that many masks
    # of the whole pipeline (grid, batching, upscaling, thresholding, boxes) are compared.
    settings = dict(
        points_per_side=4,
        points_per_batch=16,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
    )
    seg_ort = MaskGenerator(ort_backend, **settings).generate(image)
    seg_ref = MaskGenerator(torch_backend, **settings).generate(image)
    assert len(seg_ref) >= 5, "the comparison needs masks to compare"
    a = torch.from_numpy(seg_ref.masks).flatten(1)
    b = torch.from_numpy(seg_ort.masks).flatten(1)
    inter = a.float() @ b.float().T  # (N_ref, N_ort) pairwise intersections
    union = a.sum(1, keepdim=True) + b.sum(1)[None] - inter
    best = (inter / union.clamp(min=1)).max(dim=1).values
    assert float((best >= 0.9).float().mean()) >= 0.95
    assert abs(len(seg_ort) - len(seg_ref)) <= max(1, len(seg_ref) // 20)


def test_gated_decoder_upscales_only_prompts_above_the_threshold(tiny_gated_export, torch_backend):
    """The gated export (the backend's cache): ``logit_rows`` as the torch backend's (a
    superset), the same logits for those rows, every prompt without a threshold."""
    backend = OnnxRuntimeSamBackend(tiny_gated_export.encoder_path, tiny_gated_export.decoder_path)
    assert backend.upscale_gate
    gen = torch.Generator().manual_seed(8)
    emb = torch.randn(1, 256, 64, 64, generator=gen)
    coords = torch.rand(20, 1, 2, generator=gen) * 1024
    labels = torch.ones(20, 1)
    everything = backend.decode(emb, coords, labels)
    assert everything.logit_rows is None and everything.low_res_logits.shape[0] == 20
    best = everything.iou_predictions.max(1).values.sort().values
    threshold = float(best[9:11].mean())  # between two predictions: rounding cannot flip a row
    for multimask in (True, False):
        out = backend.decode(emb, coords, labels, multimask, iou_threshold=threshold)
        ref = torch_backend.decode(emb, coords, labels, multimask, iou_threshold=threshold)
        assert set(ref.logit_rows.tolist()) <= set(out.logit_rows.tolist())
        assert 0 < len(out.logit_rows) <= 20
        full = torch_backend.decode(emb, coords, labels, multimask)
        assert (out.low_res_logits - full.low_res_logits[out.logit_rows]).abs().max() <= 1e-3
        assert (out.iou_predictions - ref.iou_predictions).abs().max() <= 1e-4


def test_gated_backend_segments_like_the_ungated_one(tiny_gated_export, ort_backend):
    """Segment everything with prompts below ``pred_iou_thresh`` not upscaled: same regions."""
    gated = OnnxRuntimeSamBackend(tiny_gated_export.encoder_path, tiny_gated_export.decoder_path)
    calls = []
    decode = gated.decode
    gated.decode = lambda *a, **k: calls.append(decode(*a, **k)) or calls[-1]
    image = skimage_photo("coffee", longest=160)
    settings = SKIPPING_AMG_SETTINGS
    fast = MaskGenerator(gated, **settings).generate(image)
    full = MaskGenerator(ort_backend, **settings).generate(image)
    skipped = sum(int(c.iou_predictions.shape[0] - c.low_res_logits.shape[0]) for c in calls)
    assert skipped > 0, "the threshold filtered no prompt: nothing was compared"
    assert len(fast) == len(full) > 0
    np.testing.assert_array_equal(fast.masks, full.masks)
    np.testing.assert_allclose(fast.predicted_iou, full.predicted_iou, atol=1e-6)


def test_missing_and_corrupted_files(tiny_export, tmp_path):
    with pytest.raises(OnnxModelError, match="not found.*pn-export-onnx"):
        OnnxRuntimeSamBackend(tmp_path / "enc.onnx", tiny_export.decoder_path)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(tiny_export.encoder_path.read_bytes()[:5000])  # truncated download
    with pytest.raises(OnnxModelError, match="corrupted"):
        OnnxRuntimeSamBackend(broken, tiny_export.decoder_path)
    with pytest.raises(OnnxModelError, match="swapped"):
        OnnxRuntimeSamBackend(tiny_export.decoder_path, tiny_export.encoder_path)


def test_encoder_decoder_from_different_checkpoints_refused(tiny_export, tmp_path):
    other_ckpt = make_generated_checkpoint(TINY, tmp_path / "other.pth", seed=1)
    other = build_sam_model(TINY, other_ckpt)
    from perception_nodes.core.weights.files import sha256_file

    meta = build_metadata(other, TINY, "decoder", sha256_file(other_ckpt), multimask="multimask")
    decoder = export_decoder(other, tmp_path / "decoder.onnx", meta, multimask="multimask")
    with pytest.raises(ExportMismatchError, match="checkpoint_sha256"):
        OnnxRuntimeSamBackend(tiny_export.encoder_path, decoder)


def test_providers():
    assert select_providers("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert (
        select_providers("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0]
        == "CUDAExecutionProvider"
    )
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        select_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="'cpu' or 'cuda"):
        select_providers("mps", ["CPUExecutionProvider"])


def test_bad_inputs(ort_backend):
    with pytest.raises(ValueError, match=r"\(B>=1, 3, 1024, 1024\)"):
        ort_backend.encode(torch.zeros(1, 3, 512, 512))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ort_backend.encode(np.zeros((1, 3, 1024, 1024), np.float32))
    emb = torch.zeros(1, 256, 64, 64)
    with pytest.raises(ValueError, match="embedding must have shape"):
        ort_backend.decode(torch.zeros(1, 256, 32, 32), torch.zeros(1, 1, 2), torch.ones(1, 1))
    with pytest.raises(ValueError, match="point_coords"):
        ort_backend.decode(emb, torch.zeros(1, 2), torch.ones(1, 1))
    with pytest.raises(ValueError, match="point_labels"):
        ort_backend.decode(emb, torch.zeros(2, 1, 2), torch.ones(2, 2))


def test_sessions_keep_no_cpu_memory_arena():
    """Every session the package opens frees its buffers after a run: with onnxruntime's CPU
    arena the defaults peaked at 6.26 GB RSS on the demo photos (3.42 GB without; the arena
    keeps each decoder batch's high-water mark for the session's life). No spin-waiting either."""
    import onnxruntime as ort

    from perception_nodes.core.sam.onnx_backend import session_options

    options = session_options(ort, intra_op_threads=1)
    assert options.enable_cpu_mem_arena is False
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1
