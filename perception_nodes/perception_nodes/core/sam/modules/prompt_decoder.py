"""SAM's prompt encoder + mask decoder, restructured (same maths, cheaper order).

:class:`PromptDecoder` holds segment_anything's own ``PromptEncoder`` and ``MaskDecoder``
modules (so official state_dicts load unchanged, see :func:`decoder_state_dict`) and evaluates
``MaskDecoder.predict_masks`` differently:

- the cross attentions use :mod:`.attention` (projections folded into the few tokens);
- everything that depends only on the image (``embedding + no_mask_embed``, ``+ image_pe``,
  the first layer's key/value/query projections of the image tokens) is an
  :class:`ImageContext`, computed once per image and reused by every prompt batch;
- the IoU head runs before the output upscaling, and only the prompts that the caller keeps
  (``iou_threshold``) are upscaled;
- the transposed convolutions (kernel 2, stride 2) are per-pixel matrix products in channel-last
  layout, and the hypernetwork product runs before the pixel shuffle, so only the ``M`` mask
  channels are re-ordered.

Mask slots: the decoder always computes all ``num_mask_tokens`` (4) outputs; slot 0 is the
single-mask output, slots 1..3 the multimask outputs (``MaskDecoder.forward``'s selection).
Coordinates: points ``(x, y)`` in the resized ``input_size`` frame, as in ``PromptEncoder``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam

from perception_nodes.core.sam.modules import attention as fa

_UPSCALE_CHUNK = 32  # prompts upscaled at once (bounds memory: ~12 MiB of activations each)


@dataclass
class ImageContext:
    """Per-image tensors of the decoder, shared by every prompt of that image.

    Attributes (``N = h * w`` image tokens, token layout ``(1, N, C)``):
        keys: ``embedding + no_mask_embed``, the transformer's initial keys.
        pe: the dense positional encoding ``get_dense_pe()``.
        t2i_k, t2i_v: first layer's token-to-image key/value projections of ``keys (+ pe)``.
        i2t_q: first layer's image-to-token query projection of ``keys + pe``.
        hw: ``(h, w)`` of the embedding grid.
    """

    keys: torch.Tensor
    pe: torch.Tensor
    t2i_k: torch.Tensor
    t2i_v: torch.Tensor
    i2t_q: torch.Tensor
    hw: tuple[int, int]


@dataclass
class DecodedPrompts:
    """Outputs for ``P`` prompts and ``M`` selected mask slots.

    Attributes:
        low_res_logits: ``(R, M, 4h, 4w)`` logits of the prompts ``logit_rows`` (all P if None).
        iou_predictions: ``(P, M)``; mask_tokens: ``(P, M, C)``.
        logit_rows: ``(R,)`` ascending prompt indices whose logits were computed, or None.
    """

    low_res_logits: torch.Tensor
    iou_predictions: torch.Tensor
    mask_tokens: torch.Tensor
    logit_rows: torch.Tensor | None = None


def embed_points(
    prompt_encoder: PromptEncoder, coords: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Sparse prompt embeddings ``(P, K, C)``; branch-free ``PromptEncoder._embed_points``.

    As ``segment_anything.utils.onnx.SamOnnxModel._embed_points`` (traceable). Labels: -1
    padding, 0 background, 1 foreground, 2/3 box top-left / bottom-right.
    """
    in_h, in_w = prompt_encoder.input_image_size
    coords = coords.to(torch.float32) + 0.5  # pixel centre, as SAM does
    scale = torch.tensor([1.0 / in_w, 1.0 / in_h], dtype=coords.dtype, device=coords.device)
    embedding = prompt_encoder.pe_layer._pe_encoding(coords * scale)
    labels = labels.to(embedding.dtype).unsqueeze(-1)
    embedding = embedding * (labels != -1).to(embedding.dtype)
    embedding = embedding + prompt_encoder.not_a_point_embed.weight * (labels == -1).to(
        embedding.dtype
    )
    for i in range(prompt_encoder.num_point_embeddings):
        embedding = embedding + prompt_encoder.point_embeddings[i].weight * (labels == i).to(
            embedding.dtype
        )
    return embedding


def upscaled_rows(iou: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """``(R,)`` ascending indices of the prompts to upscale: those with a mask whose IoU
    prediction ``iou (P, M)`` is not ``<= threshold`` (so above it, or NaN); ``threshold``: a
    number or one per slot ``(M,)``. A NaN threshold keeps every prompt (no comparison with NaN
    is true), which is how the ONNX graph's ``iou_threshold`` input says "no threshold"; +inf
    makes a slot keep none (a slot the caller did not ask for)."""
    return torch.nonzero(torch.logical_not((iou <= threshold).all(dim=1))).flatten()


def decoder_state_dict(sam_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of an official ``Sam`` state_dict that :class:`PromptDecoder` loads.

    The mapping is the identity on ``prompt_encoder.*`` and ``mask_decoder.*`` (the module
    holds those modules), so official checkpoints load as they are, no converted files.
    """
    return {
        k: v
        for k, v in sam_state_dict.items()
        if k.startswith(("prompt_encoder.", "mask_decoder."))
    }


class PromptDecoder(torch.nn.Module):
    """Restructured ``PromptEncoder`` + ``MaskDecoder`` (see the module docstring).

    Build from a model with :meth:`from_sam` (shares its modules, no copy) or from official
    weights with ``PromptDecoder(PromptEncoder(...), MaskDecoder(...))`` +
    ``load_state_dict(decoder_state_dict(sam_sd))``.
    """

    def __init__(
        self,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        upscale_chunk: int | None = _UPSCALE_CHUNK,
    ) -> None:
        """``upscale_chunk``: prompts upscaled at once (bounds memory); None: all at once
        (needed for tracing, where a python loop over the prompt count would be frozen)."""
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.upscale_chunk = upscale_chunk

    @classmethod
    def from_sam(cls, sam: Sam, upscale_chunk: int | None = _UPSCALE_CHUNK) -> "PromptDecoder":
        """Share ``sam``'s prompt encoder and mask decoder (no copy)."""
        return cls(sam.prompt_encoder, sam.mask_decoder, upscale_chunk)

    # ------------------------------------------------------------------ per image
    def prepare_image(self, embedding: torch.Tensor) -> ImageContext:
        """:class:`ImageContext` of one ``(1, C, h, w)`` image embedding."""
        if embedding.ndim != 4 or embedding.shape[0] != 1:
            raise ValueError(f"embedding must be (1, C, h, w), got {tuple(embedding.shape)}")
        _, c, h, w = embedding.shape
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, 1, c).to(embedding.dtype)
        keys = embedding.flatten(2).transpose(1, 2) + dense  # (1, N, C)
        pe = self.prompt_encoder.get_dense_pe().to(embedding.dtype).flatten(2).transpose(1, 2)
        first = self.mask_decoder.transformer.layers[0]
        keys_pe = keys + pe
        return ImageContext(
            keys=keys,
            pe=pe,
            t2i_k=first.cross_attn_token_to_image.k_proj(keys_pe),
            t2i_v=first.cross_attn_token_to_image.v_proj(keys),
            i2t_q=first.cross_attn_image_to_token.q_proj(keys_pe),
            hw=(h, w),
        )

    # ------------------------------------------------------------------ per prompt
    def forward(
        self,
        image: torch.Tensor | ImageContext,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_slots: slice = slice(None),
        iou_threshold: float | torch.Tensor | None = None,
        dense_embeddings: torch.Tensor | None = None,
    ) -> DecodedPrompts:
        """Decode ``P`` prompts of ONE image.

        Args:
            image: ``(1, C, h, w)`` embedding or its :meth:`prepare_image` context.
            point_coords / point_labels: ``(P, K, 2)`` / ``(P, K)`` (see :func:`embed_points`).
            mask_slots: which of the 4 mask slots to return (1..3 multimask, 0:1 single).
            iou_threshold: upscale only prompts with a returned slot's IoU prediction
                ``> iou_threshold`` or NaN (``logit_rows`` says which); None: all prompts.
                A tensor (``(M,)`` per returned slot, traced into the ONNX graph): NaN keeps
                every prompt, +inf makes that slot keep none.
            dense_embeddings: ``(P, C, h, w)`` dense prompt embeddings of a mask input
                (``PromptEncoder._embed_masks``) replacing ``no_mask_embed``; None: no mask.
        """
        ctx = image if isinstance(image, ImageContext) else self.prepare_image(image)
        sparse = embed_points(self.prompt_encoder, point_coords, point_labels).to(ctx.keys.dtype)
        dec = self.mask_decoder
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0).to(
            sparse.dtype
        )
        tokens = torch.cat(
            [output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1
        )
        queries, keys = self._transformer(ctx, tokens, dense_embeddings)
        iou_all = dec.iou_prediction_head(queries[:, 0])[:, mask_slots]
        mask_tokens = queries[:, 1 : 1 + dec.num_mask_tokens][:, mask_slots]
        rows = None
        if iou_threshold is not None:
            rows = upscaled_rows(iou_all, iou_threshold)
            keys, mask_tokens_kept = keys[rows], mask_tokens[rows]
        else:
            mask_tokens_kept = mask_tokens
        hyper_in = self._hyper_in(mask_tokens_kept, mask_slots)
        logits = self._upscaled_masks(keys, hyper_in, ctx.hw)
        return DecodedPrompts(logits, iou_all, mask_tokens, rows)

    def _transformer(
        self, ctx: ImageContext, tokens: torch.Tensor, dense: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``TwoWayTransformer.forward``: ``tokens (P, T, C)`` -> queries ``(P, T, C)``,
        keys ``(P, N, C)``."""
        tr = self.mask_decoder.transformer
        pe, query_pe = ctx.pe, tokens
        queries = tokens
        if dense is None:
            keys, shared = ctx.keys, True
        else:
            keys, shared = ctx.keys + (dense.flatten(2).transpose(1, 2) - self._no_mask(ctx)), False
        for i, layer in enumerate(tr.layers):
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries, k=queries, v=queries)
            else:
                q = queries + query_pe
                queries = queries + layer.self_attn(q=q, k=q, v=queries)
            queries = layer.norm1(queries)
            q = queries + query_pe
            if i == 0 and shared:
                attn = fa.token_to_image_projected(
                    layer.cross_attn_token_to_image, q, ctx.t2i_k, ctx.t2i_v
                )
                keys_pe = ctx.keys + pe  # (1, N, C)
            else:
                keys_pe = keys + pe  # shared by both cross attentions of this layer
                attn = fa.token_to_image(layer.cross_attn_token_to_image, q, keys_pe, keys)
            queries = layer.norm2(queries + attn)
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + query_pe
            if i == 0 and shared:
                keys = fa.image_to_token_projected(
                    layer.cross_attn_image_to_token, ctx.i2t_q, q, queries, keys
                )
            else:
                keys = fa.image_to_token(
                    layer.cross_attn_image_to_token, keys_pe, q, queries, keys, inplace=True
                )
            keys = layer.norm4(keys)
        attn = fa.token_to_image(tr.final_attn_token_to_image, queries + query_pe, keys + pe, keys)
        queries = tr.norm_final_attn(queries + attn)
        if keys.shape[0] != queries.shape[0]:  # depth-0 transformer: keys still shared
            keys = keys.expand(queries.shape[0], -1, -1)
        return queries, keys

    def _no_mask(self, ctx: ImageContext) -> torch.Tensor:
        return self.prompt_encoder.no_mask_embed.weight.reshape(1, 1, -1).to(ctx.keys.dtype)

    def _hyper_in(self, mask_tokens: torch.Tensor, mask_slots: slice) -> torch.Tensor:
        """``(R, M, C // 8)`` hypernetwork outputs of the selected slots."""
        mlps = list(self.mask_decoder.output_hypernetworks_mlps)[mask_slots]
        if mask_tokens.shape[0] == 0:
            return mask_tokens.new_zeros((0, len(mlps), self.mask_decoder.transformer_dim // 8))
        return torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(mlps)], dim=1)

    def _upscaled_masks(
        self, keys: torch.Tensor, hyper_in: torch.Tensor, hw: tuple[int, int]
    ) -> torch.Tensor:
        """``hyper_in @ output_upscaling(keys)`` -> ``(R, M, 4h, 4w)``, in chunks of prompts."""
        h, w = hw
        r, m = hyper_in.shape[:2]
        if self.upscale_chunk is None:
            return self._upscale_chunk(keys, hyper_in, hw)
        if r == 0:
            return keys.new_zeros((0, m, 4 * h, 4 * w))
        step = self.upscale_chunk
        chunks = [
            self._upscale_chunk(keys[i : i + step], hyper_in[i : i + step], hw)
            for i in range(0, r, step)
        ]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def _upscale_chunk(
        self, keys: torch.Tensor, hyper_in: torch.Tensor, hw: tuple[int, int]
    ) -> torch.Tensor:
        """``output_upscaling`` (ConvT 2x2/2, LayerNorm2d, GELU, ConvT 2x2/2, GELU) in
        channel-last layout ``(R, h, w, a1, b1, a2, b2, ch)`` where output pixel
        ``(4y + 2 a1 + a2, 4x + 2 b1 + b2)`` comes from embedding pixel ``(y, x)``; the
        hypernetwork product reads that layout and writes ``(R, M, pixels)``, so only the
        ``M`` mask planes are shuffled into image order."""
        conv1, norm, act1, conv2, act2 = self.mask_decoder.output_upscaling
        r, m = hyper_in.shape[:2]
        h, w = hw
        # ConvTranspose2d weight (in, out, kh, kw); kernel == stride == 2: no overlap, so each
        # input pixel maps to a 2x2 output block by one matrix product (columns (kh, kw, out),
        # so the bias repeats 4x); 2-D addmm: one GEMM with its bias (ONNX Gemm), no extra pass.
        w1 = conv1.weight.permute(0, 2, 3, 1).reshape(conv1.weight.shape[0], -1)  # (C, 2*2*C1)
        # Explicit row counts, no -1: R may be 0 (no prompt above the gate's threshold).
        x = torch.addmm(conv1.bias.repeat(4), keys.reshape(r * h * w, keys.shape[-1]), w1)
        x = F.layer_norm(
            x.view(r * h * w * 4, conv1.weight.shape[1]),
            (self.mask_decoder.transformer_dim // 4,),
            norm.weight,
            norm.bias,
            norm.eps,
        )
        x = act1(x)
        w2 = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.weight.shape[0], -1)  # (C1, 2*2*C2)
        x = act2(torch.addmm(conv2.bias.repeat(4), x, w2))  # rows (R, h, w, a1, b1)
        # Mask slots first: (R, M, C2) @ (R, C2, pixels), the transposed operand read in place
        # by the GEMM; then the pixel shuffle in two small permutes. One 8-D permute with M
        # innermost cost ~2x more (onnxruntime and torch, measured on a 2-core CPU).
        masks = hyper_in @ x.view(r, h * w * 16, conv2.weight.shape[1]).transpose(1, 2)
        masks = masks.reshape(r * m, h, w, 2, 2, 4).permute(0, 1, 3, 2, 4, 5)  # rows y1, x1
        masks = masks.reshape(r * m, 2 * h, 2 * w, 2, 2).permute(0, 1, 3, 2, 4)
        return masks.reshape(r, m, 4 * h, 4 * w)
