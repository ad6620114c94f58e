"""SAM prompt encoder + mask decoder, returning the decoder's output mask tokens too.

:func:`decode_prompts` runs the restructured, exact decoder
(:class:`perception_nodes.core.sam.modules.PromptDecoder`: same maths, the image tokens
projected far less often, see that module); every backend and the ONNX export use it.
:func:`reference_decode_prompts` is the step-by-step ``MaskDecoder.predict_masks`` below, kept
as the reference the tests compare against.

Why the reference re-implements ``MaskDecoder.forward``/``predict_masks``: segment_anything's
``MaskDecoder.forward`` returns only masks and IoU predictions; the output mask tokens
(``hs[:, 1:1 + num_mask_tokens]`` inside ``predict_masks``) are local variables that are thrown
away. RegionSpot and RAM consume exactly those tokens, so we re-run the steps of
``predict_masks`` by calling the model's own submodules (``transformer``,
``output_upscaling``, ``output_hypernetworks_mlps``, ``iou_prediction_head``) and keep them.
No weights or maths are changed; ``tests/test_sam_decoder.py`` checks the result against
``MaskDecoder.forward``.

The point embedding follows ``segment_anything.utils.onnx.SamOnnxModel._embed_points`` (a
branch-free form of ``PromptEncoder._embed_points``) so the function is traceable for ONNX
export: no python-side branching on tensor values, batched over prompts.
"""

from __future__ import annotations

import torch
from segment_anything.modeling import Sam

from perception_nodes.core.sam.backend import DecoderOutput
from perception_nodes.core.sam.modules import ImageContext, PromptDecoder
from perception_nodes.core.sam.modules import embed_points as _embed_points

PAD_LABEL = -1.0


def embed_points(
    model: Sam, point_coords: torch.Tensor, point_labels: torch.Tensor
) -> torch.Tensor:
    """Sparse prompt embeddings ``(P, K, C)`` of points in the resized input frame.

    Labels: -1 padding (``not_a_point_embed``), 0 background, 1 foreground, 2/3 box top-left /
    bottom-right corners (``point_embeddings[0..3]``), as in ``PromptEncoder``.
    """
    return _embed_points(model.prompt_encoder, point_coords, point_labels)


def mask_slots(multimask_output: bool) -> slice:
    """``MaskDecoder.forward``'s selection of the 4 mask slots: 1..3 multimask, 0 single."""
    return slice(1, None) if multimask_output else slice(0, 1)


def pad_point_prompts(
    point_coords: torch.Tensor, point_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append one padding point (label -1) per prompt.

    ``PromptEncoder.forward`` does this whenever points are given without a box; callers that
    want bit-identical results to ``SamPredictor.predict_torch(point_coords=..., boxes=None)``
    pad their point prompts with this. Box prompts (labels 2/3) are not padded.
    Shapes: ``(P, K, 2)``, ``(P, K)`` -> ``(P, K + 1, 2)``, ``(P, K + 1)``.
    """
    p = point_coords.shape[0]
    pad_xy = torch.zeros((p, 1, 2), dtype=point_coords.dtype, device=point_coords.device)
    pad_lb = torch.full((p, 1), PAD_LABEL, dtype=point_labels.dtype, device=point_labels.device)
    return torch.cat([point_coords, pad_xy], dim=1), torch.cat([point_labels, pad_lb], dim=1)


def decode_prompts(
    model: Sam | PromptDecoder,
    embedding: torch.Tensor | ImageContext,
    point_coords: torch.Tensor,
    point_labels: torch.Tensor,
    multimask_output: bool = True,
    iou_threshold: float | None = None,
) -> DecoderOutput:
    """SAM's prompt encoder + mask decoder on P prompts of ONE image, restructured (exact).

    Args:
        model: a segment_anything ``Sam`` or its :class:`PromptDecoder`.
        embedding: ``(1, C, h, w)`` image embedding, or its ``PromptDecoder.prepare_image``
            context (computed once per image, reused by every batch).
        point_coords / point_labels / multimask_output: as in :func:`reference_decode_prompts`.
        iou_threshold: compute ``low_res_logits`` only for prompts with a selected mask whose
            IoU prediction is ``> iou_threshold`` (``DecoderOutput.logit_rows`` lists them);
            None: every prompt.
    """
    decoder = model if isinstance(model, PromptDecoder) else PromptDecoder.from_sam(model)
    if not isinstance(embedding, ImageContext):
        embedding = decoder.prepare_image(embedding)
    out = decoder(
        embedding,
        point_coords,
        point_labels.to(embedding.keys.dtype),
        mask_slots(multimask_output),
        iou_threshold,
    )
    return DecoderOutput(out.low_res_logits, out.iou_predictions, out.mask_tokens, out.logit_rows)


def reference_decode_prompts(
    model: Sam,
    embedding: torch.Tensor,
    point_coords: torch.Tensor,
    point_labels: torch.Tensor,
    multimask_output: bool = True,
) -> DecoderOutput:
    """Run SAM's real prompt encoder and mask decoder on P prompts for ONE image (reference).

    Args:
        model: a segment_anything ``Sam``.
        embedding: ``(1, C, h, w)`` image embedding.
        point_coords: ``(P, K, 2)`` points (x, y) in the resized (``input_size``) input frame.
        point_labels: ``(P, K)`` labels (-1 pad, 0 bg, 1 fg, 2/3 box corners).
        multimask_output: True -> the 3 multimask outputs; False -> the single output.

    Returns:
        :class:`DecoderOutput` with ``low_res_logits (P, M, 4h, 4w)``,
        ``iou_predictions (P, M)`` and ``mask_tokens (P, M, C)``.
    """
    dec = model.mask_decoder
    sparse = embed_points(model, point_coords, point_labels).to(embedding.dtype)
    n_prompts = sparse.shape[0]
    _, c, h, w = embedding.shape
    dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).to(embedding.dtype)
    image_pe = model.prompt_encoder.get_dense_pe().to(embedding.dtype)

    # --- MaskDecoder.predict_masks, step by step (see module docstring) ---
    output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0).to(
        embedding.dtype
    )
    output_tokens = output_tokens.unsqueeze(0).expand(n_prompts, -1, -1)
    tokens = torch.cat((output_tokens, sparse), dim=1)
    src = embedding.expand(n_prompts, -1, -1, -1) + dense
    pos_src = image_pe.expand(n_prompts, -1, -1, -1)
    hs, src = dec.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + dec.num_mask_tokens), :]

    src = src.transpose(1, 2).reshape(n_prompts, c, h, w)
    upscaled = dec.output_upscaling(src)
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)],
        dim=1,
    )
    _, uc, uh, uw = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(n_prompts, uc, uh * uw)).reshape(n_prompts, -1, uh, uw)
    iou_pred = dec.iou_prediction_head(iou_token_out)

    # Same selection as MaskDecoder.forward, applied to the tokens as well.
    sel = slice(1, None) if multimask_output else slice(0, 1)
    return DecoderOutput(
        low_res_logits=masks[:, sel],
        iou_predictions=iou_pred[:, sel],
        mask_tokens=mask_tokens_out[:, sel],
    )
