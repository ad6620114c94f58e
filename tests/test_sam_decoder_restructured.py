"""The restructured decoder (``core/sam/modules``) equals segment_anything's ``MaskDecoder``.

Two weight sets: the generated ``sam_tiny_test`` checkpoint (loaded through the real loader,
full 64x64 embedding grid) and freshly randomised weights with non-zero biases and non-unit
norms (every folded bias term matters) on the official decoder architecture with a 16x16 grid
(so that batches up to 256 prompts stay cheap). Every multimask setting, point and box
prompts, with and without a mask input. Tolerances (fp32, CPU): logits max |diff| <= 1e-4,
IoU predictions <= 1e-5, mask tokens <= 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from perception_nodes.core.sam.decoder import (
    decode_prompts,
    pad_point_prompts,
    reference_decode_prompts,
)
from perception_nodes.core.sam.modules import PromptDecoder, decoder_state_dict
from perception_nodes.core.sam.torch_backend import TorchSamBackend

SLOTS = {"multimask": slice(1, None), "single": slice(0, 1), "both": slice(None)}


def _official_modules(grid: int = 16) -> tuple[PromptEncoder, MaskDecoder]:
    """segment_anything's prompt encoder + mask decoder, as ``build_sam`` makes them."""
    prompt_encoder = PromptEncoder(
        embed_dim=256,
        image_embedding_size=(grid, grid),
        input_image_size=(16 * grid, 16 * grid),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
    )
    return prompt_encoder, mask_decoder


@pytest.fixture(scope="module")
def random_modules():
    """Official modules, default init, then every bias N(0, 1) and every norm N(1, 0.3) /
    N(0, 0.3): the bias terms the restructuring folds away or moves all matter."""
    torch.manual_seed(7)
    pe, md = _official_modules()
    with torch.no_grad():
        for name, p in list(pe.named_parameters()) + list(md.named_parameters()):
            if p.ndim == 1 and "norm" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)
            elif p.ndim == 1:
                p.normal_(0.0, 1.0)
    return pe.eval(), md.eval()


def _official(pe: PromptEncoder, md: MaskDecoder, emb, points=None, boxes=None, masks=None):
    """``MaskDecoder.forward`` with all 4 slots (single = 0, multimask = 1..3)."""
    sparse, dense = pe(points=points, boxes=boxes, masks=masks)
    md_masks, iou = md.predict_masks(
        image_embeddings=emb,
        image_pe=pe.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
    )
    return md_masks, iou


def _prompts(kind: str, p: int, side: int, gen: torch.Generator):
    """(official points, official boxes, our coords, our labels) for ``p`` prompts."""
    if kind == "points":
        coords = torch.rand((p, 3, 2), generator=gen) * side
        labels = (torch.rand((p, 3), generator=gen) > 0.3).float()
        return (coords, labels), None, *pad_point_prompts(coords, labels)
    xy0 = torch.rand((p, 2), generator=gen) * side * 0.6
    boxes = torch.cat([xy0, xy0 + torch.rand((p, 2), generator=gen) * side * 0.4 + 1], dim=1)
    return None, boxes, boxes.reshape(p, 2, 2), torch.tensor([[2.0, 3.0]]).repeat(p, 1)


def _check(ours, ref_logits, ref_iou, slots):
    torch.testing.assert_close(ours.low_res_logits, ref_logits[:, slots], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.iou_predictions, ref_iou[:, slots], atol=1e-5, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize(
    "kind, p", [("points", 1), ("boxes", 2), ("points", 17), ("boxes", 64), ("points", 256)]
)
def test_random_weights_batches_and_prompt_kinds(random_modules, kind, p):
    pe, md = random_modules
    gen = torch.Generator().manual_seed(p)
    emb = torch.randn((1, 256, 16, 16), generator=gen)
    points, boxes, coords, labels = _prompts(kind, p, 256, gen)
    ref_logits, ref_iou = _official(pe, md, emb, points=points, boxes=boxes)
    assert ref_logits.abs().max() > 1.0  # weights big enough for the comparison to mean something
    decoder = PromptDecoder(pe, md)
    ctx = decoder.prepare_image(emb)
    for slots in SLOTS.values():
        _check(decoder(ctx, coords, labels, slots), ref_logits, ref_iou, slots)


@torch.no_grad()
@pytest.mark.parametrize("kind", ["points", "boxes"])
def test_random_weights_with_mask_input(random_modules, kind):
    pe, md = random_modules
    gen = torch.Generator().manual_seed(3)
    p = 5
    emb = torch.randn((1, 256, 16, 16), generator=gen)
    masks = torch.randn((p, 1, 64, 64), generator=gen) * 4
    points, boxes, coords, labels = _prompts(kind, p, 256, gen)
    ref_logits, ref_iou = _official(pe, md, emb, points=points, boxes=boxes, masks=masks)
    decoder = PromptDecoder(pe, md)
    for _name, slots in SLOTS.items():
        ours = decoder(emb, coords, labels, slots, dense_embeddings=pe._embed_masks(masks))
        _check(ours, ref_logits, ref_iou, slots)


@torch.no_grad()
@pytest.mark.parametrize("p", [3])
def test_generated_checkpoint_matches_mask_decoder(tiny_sam, p):
    gen = torch.Generator().manual_seed(20 + p)
    emb = torch.randn((1, 256, 64, 64), generator=gen)
    pe, md = tiny_sam.prompt_encoder, tiny_sam.mask_decoder
    for kind in ("points", "boxes"):
        points, boxes, coords, labels = _prompts(kind, p, 1024, gen)
        ref_logits, ref_iou = _official(pe, md, emb, points=points, boxes=boxes)
        for multimask in (True, False):
            ours = decode_prompts(tiny_sam, emb, coords, labels, multimask_output=multimask)
            _check(ours, ref_logits, ref_iou, SLOTS["multimask" if multimask else "single"])
        ref = reference_decode_prompts(tiny_sam, emb, coords, labels, multimask_output=False)
        torch.testing.assert_close(
            ours.mask_tokens, ref.mask_tokens, atol=1e-4, rtol=0
        )  # last: single
    masks = torch.randn((2, 1, 256, 256), generator=gen)
    points, _, coords, labels = _prompts("points", 2, 1024, gen)
    ref_logits, ref_iou = _official(pe, md, emb, points=points, masks=masks)
    ours = PromptDecoder.from_sam(tiny_sam)(
        emb, coords, labels, dense_embeddings=pe._embed_masks(masks)
    )
    _check(ours, ref_logits, ref_iou, SLOTS["both"])


@torch.no_grad()
def test_upscales_only_prompts_above_iou_threshold(random_modules):
    pe, md = random_modules
    gen = torch.Generator().manual_seed(5)
    emb = torch.randn((1, 256, 16, 16), generator=gen)
    _, _, coords, labels = _prompts("points", 40, 256, gen)
    decoder = PromptDecoder(pe, md)
    full = decoder(emb, coords, labels, SLOTS["multimask"])
    thr = float(full.iou_predictions.max(1).values.median())
    part = decoder(emb, coords, labels, SLOTS["multimask"], iou_threshold=thr)
    expected_rows = torch.nonzero((full.iou_predictions > thr).any(1)).flatten()
    assert 0 < len(part.logit_rows) < 40
    assert torch.equal(part.logit_rows, expected_rows)
    torch.testing.assert_close(
        part.low_res_logits, full.low_res_logits[expected_rows], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(part.iou_predictions, full.iou_predictions, atol=1e-6, rtol=0)
    none = decoder(emb, coords, labels, SLOTS["multimask"], iou_threshold=1e9)
    assert none.low_res_logits.shape == (0, 3, 64, 64) and none.mask_tokens.shape == (40, 3, 256)


def test_official_state_dict_loads_unchanged(tiny_checkpoint, tiny_sam):
    """The checkpoint's own ``prompt_encoder.*`` / ``mask_decoder.*`` entries load strictly."""
    state = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    pe, md = _official_modules(grid=64)
    decoder = PromptDecoder(pe, md)
    decoder.load_state_dict(decoder_state_dict(state), strict=True)
    for key, value in decoder.state_dict().items():
        assert torch.equal(value, tiny_sam.state_dict()[key]), key


@torch.no_grad()
def test_torch_backend_reuses_image_context_and_sees_in_place_changes(tiny_sam, monkeypatch):
    backend = TorchSamBackend(tiny_sam)
    built = []
    prepare = backend.prompt_decoder.prepare_image
    monkeypatch.setattr(
        backend.prompt_decoder, "prepare_image", lambda e: built.append(1) or prepare(e)
    )
    gen = torch.Generator().manual_seed(9)
    emb = torch.randn((1, 256, 64, 64), generator=gen)
    coords, labels = pad_point_prompts(
        torch.rand((3, 1, 2), generator=gen) * 1024, torch.ones((3, 1))
    )
    first = backend.decode(emb, coords, labels)
    again = backend.decode(emb, coords[:2], labels[:2])
    assert len(built) == 1
    torch.testing.assert_close(again.low_res_logits, first.low_res_logits[:2], atol=1e-5, rtol=0)
    emb.mul_(-1.0)  # same tensor, new values: the cached context must not be used
    changed = backend.decode(emb, coords, labels)
    assert len(built) == 2
    ref = reference_decode_prompts(tiny_sam, emb, coords, labels)
    torch.testing.assert_close(changed.low_res_logits, ref.low_res_logits, atol=1e-4, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("p", [1, 9])
def test_onnx_export_matches_mask_decoder(tiny_export, tiny_sam, p):
    """The exported decoder (restructured graph, all 4 slots) vs the official MaskDecoder."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(tiny_export.decoder_path), providers=["CPUExecutionProvider"]
    )
    gen = torch.Generator().manual_seed(40 + p)
    emb = torch.randn((1, 256, 64, 64), generator=gen)
    for kind in ("points", "boxes"):
        points, boxes, coords, labels = _prompts(kind, p, 1024, gen)
        logits, iou, _ = session.run(
            None,
            {
                "image_embeddings": emb.numpy(),
                "point_coords": coords.numpy(),
                "point_labels": labels.numpy(),
            },
        )
        ref_logits, ref_iou = _official(
            tiny_sam.prompt_encoder, tiny_sam.mask_decoder, emb, points=points, boxes=boxes
        )
        torch.testing.assert_close(torch.from_numpy(logits), ref_logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.from_numpy(iou), ref_iou, atol=1e-5, rtol=0)


def test_upscaled_rows_keeps_nan_and_nan_threshold_keeps_all():
    from perception_nodes.core.sam.modules.prompt_decoder import upscaled_rows

    iou = torch.tensor([[0.1, 0.9], [0.2, 0.3], [float("nan"), 0.0], [0.5, 0.5]])
    assert upscaled_rows(iou, 0.4).tolist() == [0, 2, 3]  # NaN kept: a superset is allowed
    assert upscaled_rows(iou, torch.tensor([float("nan")])).tolist() == [0, 1, 2, 3]
    assert upscaled_rows(iou, 1.0).tolist() == [2]


@torch.no_grad()
def test_gated_onnx_export_upscales_only_prompts_above_iou_threshold(tiny_gated_export, tiny_sam):
    """The gated graph (onnxruntime's cached export): same rows and logits as the torch
    decoder's ``iou_threshold``, every prompt for NaN, none above every prediction (R = 0)."""
    import onnxruntime as ort

    from perception_nodes.core.sam.export import GATED_DECODER_INPUTS, GATED_DECODER_OUTPUTS

    session = ort.InferenceSession(
        str(tiny_gated_export.decoder_path), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == GATED_DECODER_INPUTS
    assert [o.name for o in session.get_outputs()] == GATED_DECODER_OUTPUTS
    gen = torch.Generator().manual_seed(77)
    emb = torch.randn((1, 256, 64, 64), generator=gen)
    _, _, coords, labels = _prompts("points", 24, 1024, gen)
    decoder = PromptDecoder.from_sam(tiny_sam)
    full = decoder(emb, coords, labels)
    best = full.iou_predictions.max(1).values.sort().values
    median = float(best[11:13].mean())  # between two predictions: rounding cannot flip a row
    inf = float("inf")
    cases = [(float("nan"), slice(None)), (median, slice(None)), (1e9, slice(None))]
    cases += [(median, slice(1, None)), (median, slice(0, 1))]  # one mode asked: others +inf
    for threshold, asked in cases:
        per_slot = np.full(4, inf, dtype=np.float32)
        per_slot[asked] = threshold
        logits, iou, tokens, rows = session.run(
            None,
            {
                "image_embeddings": emb.numpy(),
                "point_coords": coords.numpy(),
                "point_labels": labels.numpy(),
                "iou_threshold": per_slot,
            },
        )
        expected = _upscaled_rows_of(full.iou_predictions[:, asked], threshold)
        assert rows.tolist() == expected.tolist() and logits.shape[0] == len(expected)
        torch.testing.assert_close(
            torch.from_numpy(logits), full.low_res_logits[expected], atol=1e-4, rtol=0
        )
        torch.testing.assert_close(torch.from_numpy(iou), full.iou_predictions, atol=1e-5, rtol=0)
        assert tokens.shape == (24, 4, 256)
    assert 0 < len(_upscaled_rows_of(full.iou_predictions, median)) < 24


def _upscaled_rows_of(iou: torch.Tensor, threshold: float) -> torch.Tensor:
    """Prompts with a mask above ``threshold`` (all for NaN), written out independently."""
    if threshold != threshold:
        return torch.arange(iou.shape[0])
    return torch.nonzero((iou > threshold).any(1)).flatten()


class _AllLogits(TorchSamBackend):
    """The torch backend asked for every prompt's logits (ignores ``iou_threshold``)."""

    def decode(
        self, embedding, point_coords, point_labels, multimask_output=True, iou_threshold=None
    ):
        return super().decode(embedding, point_coords, point_labels, multimask_output, None)


@torch.no_grad()
def test_generator_skipping_filtered_prompts_gives_the_same_regions(tiny_sam):
    from sam_fixtures import SKIPPING_AMG_SETTINGS, skimage_photo

    from perception_nodes.core.sam.amg import MaskGenerator

    image = skimage_photo("coffee", longest=160)
    settings = SKIPPING_AMG_SETTINGS
    backend = TorchSamBackend(tiny_sam)
    calls = []
    decode = backend.decode
    backend.decode = lambda *a, **k: calls.append(decode(*a, **k)) or calls[-1]
    fast = MaskGenerator(backend, **settings).generate(image)
    full = MaskGenerator(_AllLogits(tiny_sam), **settings).generate(image)
    skipped = sum(int(c.iou_predictions.shape[0] - c.low_res_logits.shape[0]) for c in calls)
    assert skipped > 0, "the threshold filtered no prompt: nothing was compared"
    assert len(fast) == len(full) > 0
    np.testing.assert_array_equal(fast.masks, full.masks)
    np.testing.assert_allclose(fast.predicted_iou, full.predicted_iou, atol=1e-6)
    np.testing.assert_allclose(fast.tokens, full.tokens, atol=1e-6)


@torch.no_grad()
def test_torch_backend_bf16_autocast_runs_close(tiny_sam):
    """Reduced precision (autocast) goes through the restructured path too (mixed dtypes)."""
    gen = torch.Generator().manual_seed(11)
    emb = torch.randn((1, 256, 64, 64), generator=gen)
    coords, labels = pad_point_prompts(
        torch.rand((2, 1, 2), generator=gen) * 1024, torch.ones((2, 1))
    )
    out = TorchSamBackend(tiny_sam, precision="bf16").decode(emb, coords, labels)
    ref = reference_decode_prompts(tiny_sam, emb, coords, labels)
    assert out.low_res_logits.dtype == torch.float32
    assert (
        out.low_res_logits - ref.low_res_logits
    ).abs().max() <= 0.05 * ref.low_res_logits.abs().max()
