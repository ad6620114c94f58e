"""ONNX export of SAM (sam_tiny_test, generated weights): metadata and onnxruntime-vs-PyTorch parity.

Tolerances (fp32, CPU): embeddings max |diff| <= 1e-4, low-res logits max |diff| <= 1e-3,
mask tokens / IoU predictions <= 1e-4, binarised masks IoU > 0.99.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_fixtures import TINY

from perception_nodes.core.sam.decoder import decode_prompts, pad_point_prompts
from perception_nodes.core.sam.export import SamDecoderOnnx
from perception_nodes.core.sam.export_metadata import OnnxModelError, read_onnx_metadata
from perception_nodes.core.weights.files import GENERATED_WEIGHTS, sha256_file
from perception_nodes.tools import export_onnx


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_metadata_props(tiny_export, tiny_checkpoint):
    enc = read_onnx_metadata(tiny_export.encoder_path)
    dec = read_onnx_metadata(tiny_export.decoder_path)
    assert enc["component"] == "encoder" and dec["component"] == "decoder"
    for meta in (enc, dec):
        assert meta["model"] == TINY
        assert meta["input_size"] == "1024"
        assert json.loads(meta["embedding_shape"]) == [256, 64, 64]
        assert json.loads(meta["pixel_mean"]) == pytest.approx([123.675, 116.28, 103.53])
        assert json.loads(meta["pixel_std"]) == pytest.approx([58.395, 57.12, 57.375])
        assert meta["checkpoint_sha256"] == sha256_file(tiny_checkpoint)
        assert meta["untrained"] == "true"
        assert meta["opset"] == "17" and meta["export_time"].endswith("Z")
        assert meta["perception_nodes_version"]
    assert dec["multimask"] == "both"
    model = onnx.load(str(tiny_export.decoder_path))
    assert [i.name for i in model.graph.input] == [
        "image_embeddings",
        "point_coords",
        "point_labels",
    ]
    assert [o.name for o in model.graph.output] == [
        "low_res_logits",
        "iou_predictions",
        "mask_tokens",
    ]
    dims = [d.dim_param for d in model.graph.input[1].type.tensor_type.shape.dim]
    assert dims[:2] == ["num_prompts", "num_points"]


def test_export_smoke_run_recorded(tiny_export):
    diffs = tiny_export.max_abs_diff
    assert set(diffs) == {"image_embeddings", "low_res_logits", "iou_predictions", "mask_tokens"}
    assert max(diffs.values()) <= 1e-4


def test_encoder_parity_dynamic_batch(tiny_export, tiny_sam):
    session = ort.InferenceSession(
        str(tiny_export.encoder_path), providers=["CPUExecutionProvider"]
    )
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 1024, 1024, generator=gen)  # batch 2 (exported with batch 1)
    out = session.run(None, {"images": images.numpy()})[0]
    with torch.no_grad():
        ref = tiny_sam.image_encoder(images).numpy()
    assert out.shape == (2, 256, 64, 64)
    assert np.abs(out - ref).max() <= 1e-4


def _mixed_prompts(p: int, gen: torch.Generator):
    """P prompts with K = 2: first half one foreground point + padding, second half boxes."""
    n_pts = (p + 1) // 2
    pts, pts_lb = pad_point_prompts(
        torch.rand(n_pts, 1, 2, generator=gen) * 1024, torch.ones(n_pts, 1)
    )
    xy = torch.rand(p - n_pts, 2, generator=gen) * 700
    wh = 50 + torch.rand(p - n_pts, 2, generator=gen) * 300
    boxes = torch.stack([xy, xy + wh], dim=1)  # (P, 2, 2): top-left (label 2), bottom-right (3)
    box_lb = torch.tensor([[2.0, 3.0]]).repeat(p - n_pts, 1)
    return torch.cat([pts, boxes]), torch.cat([pts_lb, box_lb])


@pytest.mark.parametrize("p", [1, 4])
def test_decoder_parity_points_and_boxes(tiny_export, tiny_sam, p):
    session = ort.InferenceSession(
        str(tiny_export.decoder_path), providers=["CPUExecutionProvider"]
    )
    gen = torch.Generator().manual_seed(10 + p)
    embedding = torch.randn(1, 256, 64, 64, generator=gen)
    coords, labels = _mixed_prompts(p, gen)
    logits, iou, tokens = session.run(
        None,
        {
            "image_embeddings": embedding.numpy(),
            "point_coords": coords.numpy(),
            "point_labels": labels.numpy(),
        },
    )
    assert logits.shape == (p, 4, 256, 256) and iou.shape == (p, 4) and tokens.shape == (p, 4, 256)
    with torch.no_grad():
        single = decode_prompts(tiny_sam, embedding, coords, labels, multimask_output=False)
        multi = decode_prompts(tiny_sam, embedding, coords, labels, multimask_output=True)
    ref_logits = torch.cat([single.low_res_logits, multi.low_res_logits], 1).numpy()
    ref_tokens = torch.cat([single.mask_tokens, multi.mask_tokens], 1).numpy()
    ref_iou = torch.cat([single.iou_predictions, multi.iou_predictions], 1).numpy()
    assert np.abs(logits - ref_logits).max() <= 1e-3
    assert np.abs(tokens - ref_tokens).max() <= 1e-4
    assert np.abs(iou - ref_iou).max() <= 1e-4
    for a, b in zip(logits.reshape(-1, 256, 256) > 0, ref_logits.reshape(-1, 256, 256) > 0):
        assert _iou(a, b) > 0.99


def test_wrapper_rejects_unknown_mode(tiny_sam):
    with pytest.raises(ValueError, match="multimask must be one of"):
        SamDecoderOnnx(tiny_sam, "three")


def test_read_metadata_errors(tmp_path):
    with pytest.raises(OnnxModelError, match="not found"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(OnnxModelError, match="corrupted"):
        read_onnx_metadata(bad)


def test_cli_export_generated_single_mask(tmp_path, capsys):
    rc = export_onnx.main(
        [
            "--model",
            TINY,
            "--generated",
            "--seed",
            "2",
            "--single-mask",
            "--no-verify",
            "--out-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert GENERATED_WEIGHTS in out
    assert read_onnx_metadata(tmp_path / "decoder.onnx")["multimask"] == "single"
    assert read_onnx_metadata(tmp_path / "encoder.onnx")["untrained"] == "true"
    session = ort.InferenceSession(
        str(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"]
    )
    (out_logits,) = session.run(
        ["low_res_logits"],
        {
            "image_embeddings": np.zeros((1, 256, 64, 64), np.float32),
            "point_coords": np.full((2, 3, 2), 500, np.float32),
            "point_labels": np.ones((2, 3), np.float32),
        },
    )
    assert out_logits.shape == (2, 1, 256, 256)  # single-mask output only


def test_cli_export_upscale_gate_multimask(tmp_path, capsys):
    """``--upscale-gate``: the onnxruntime graph, one threshold per output slot (3 here)."""
    args = ["--model", TINY, "--generated", "--multimask", "--upscale-gate", "--out-dir"]
    assert export_onnx.main([*args, str(tmp_path)]) == 0  # verified: NaN thresholds, all rows
    assert "upscaling gated by iou_threshold" in capsys.readouterr().out
    assert read_onnx_metadata(tmp_path / "decoder.onnx")["upscale_gate"] == "true"
    session = ort.InferenceSession(
        str(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"]
    )
    feeds = {
        "image_embeddings": np.zeros((1, 256, 64, 64), np.float32),
        "point_coords": np.full((2, 1, 2), 500, np.float32),
        "point_labels": np.ones((2, 1), np.float32),
        "iou_threshold": np.full(3, np.inf, np.float32),  # no slot keeps a prompt
    }
    logits, iou, _, rows = session.run(None, feeds)
    assert logits.shape == (0, 3, 256, 256) and rows.shape == (0,) and iou.shape == (2, 3)


def test_cli_export_errors(tmp_path, capsys):
    assert export_onnx.main(["--model", "vit_q", "--generated", "--out-dir", str(tmp_path)]) == 2
    assert "unknown SAM model" in capsys.readouterr().err
    assert export_onnx.main(["--model", TINY, "--opset", "11", "--generated"]) == 2
    assert (
        export_onnx.main(
            [
                "--model",
                TINY,
                "--checkpoint",
                str(tmp_path / "nope.pth"),
                "--out-dir",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_onnx.main(["--model", TINY, "--generated", "--checkpoint", "x.pth"])
