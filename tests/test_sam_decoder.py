"""decode_prompts runs SAM's real prompt encoder / mask decoder: compare with segment_anything."""

from __future__ import annotations

import torch

from perception_nodes.core.sam.decoder import (
    decode_prompts,
    pad_point_prompts,
    reference_decode_prompts,
)


def _embedding(sam, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((1, 256, 64, 64), generator=g)


def _reference(sam, emb, points=None, boxes=None, multimask=True):
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    return sam.mask_decoder(
        image_embeddings=emb,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


@torch.no_grad()
def test_points_match_segment_anything(tiny_sam):
    emb = _embedding(tiny_sam)
    g = torch.Generator().manual_seed(2)
    coords = torch.rand((5, 2, 2), generator=g) * 1000
    labels = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 1], [1, 0]], dtype=torch.float32)
    for multimask in (True, False):
        ref_masks, ref_iou = _reference(tiny_sam, emb, points=(coords, labels), multimask=multimask)
        pc, pl = pad_point_prompts(coords, labels)
        out = decode_prompts(tiny_sam, emb, pc, pl, multimask_output=multimask)
        m = 3 if multimask else 1
        assert out.low_res_logits.shape == (5, m, 256, 256)
        assert out.iou_predictions.shape == (5, m)
        assert out.mask_tokens.shape == (5, m, 256)
        torch.testing.assert_close(out.low_res_logits, ref_masks, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.iou_predictions, ref_iou, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_boxes_match_segment_anything(tiny_sam):
    emb = _embedding(tiny_sam, 3)
    boxes = torch.tensor([[10.0, 20.0, 300.0, 400.0], [500.0, 100.0, 900.0, 700.0]])
    ref_masks, ref_iou = _reference(tiny_sam, emb, boxes=boxes)
    coords = boxes.reshape(-1, 2, 2)
    labels = torch.tensor([[2.0, 3.0]]).expand(2, 2)
    out = decode_prompts(tiny_sam, emb, coords, labels)
    torch.testing.assert_close(out.low_res_logits, ref_masks, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.iou_predictions, ref_iou, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_tokens_are_the_decoder_mask_tokens(tiny_sam):
    """Tokens equal hs[:, 1 + slot] of the decoder's transformer (captured with a hook): the
    reference path runs the official transformer; the restructured one returns the same tokens."""
    emb = _embedding(tiny_sam, 4)
    coords, labels = pad_point_prompts(
        torch.tensor([[[512.0, 300.0]], [[10.0, 900.0]]]), torch.ones((2, 1))
    )
    captured = {}
    hook = tiny_sam.mask_decoder.transformer.register_forward_hook(
        lambda mod, args, out: captured.__setitem__("hs", out[0])
    )
    try:
        full = reference_decode_prompts(tiny_sam, emb, coords, labels, multimask_output=True)
        hs_multi = captured["hs"]
        single = reference_decode_prompts(tiny_sam, emb, coords, labels, multimask_output=False)
        hs_single = captured["hs"]
    finally:
        hook.remove()
    torch.testing.assert_close(full.mask_tokens, hs_multi[:, 2:5])
    torch.testing.assert_close(single.mask_tokens, hs_single[:, 1:2])
    assert full.mask_tokens.shape == (2, 3, 256) and single.mask_tokens.shape == (2, 1, 256)
    fast_full = decode_prompts(tiny_sam, emb, coords, labels, multimask_output=True)
    fast_single = decode_prompts(tiny_sam, emb, coords, labels, multimask_output=False)
    torch.testing.assert_close(fast_full.mask_tokens, hs_multi[:, 2:5], atol=1e-4, rtol=0)
    torch.testing.assert_close(fast_single.mask_tokens, hs_single[:, 1:2], atol=1e-4, rtol=0)


def test_padding_point_changes_nothing_but_count(tiny_sam):
    coords = torch.zeros((3, 1, 2))
    labels = torch.ones((3, 1))
    pc, pl = pad_point_prompts(coords, labels)
    assert pc.shape == (3, 2, 2) and pl.shape == (3, 2)
    assert (pl[:, 1] == -1).all()
