"""SAM's ``Attention`` layers, evaluated in a cheaper but mathematically identical order.

Shapes: ``P`` prompts, ``T`` tokens per prompt (5 output tokens + the sparse prompt tokens),
``N = h * w`` image tokens (4096 for SAM), ``C`` the embedding width (256), ``H`` heads, ``d``
the per-head width of the attention's internal projection (``internal_dim / H``, 16 for SAM's
cross attentions). Image-side tensors have a leading batch of ``1`` (shared by every prompt,
computed once per image) or ``P``. Every function takes the weights of a
``segment_anything.modeling.transformer.Attention`` unchanged.

Why this order is exact (same maths; only floating-point rounding differs):

- token-to-image (queries = tokens, keys/values = image): the score of head ``h`` is
  ``q_h (W_k,h k + b_k,h) = (q_h W_k,h) k + q_h . b_k,h``; the last term is constant along the
  softmax axis and cancels, so ``q_h W_k,h`` (``T x C``) is scored against the *un-projected*
  image tokens. Softmax rows sum to 1, so ``A_h (V W_v,h^T + b_v,h) = (A_h V) W_v,h^T + b_v,h``:
  the value projection runs on ``T`` rows instead of ``N``.
- image-to-token (queries = image, keys/values = tokens): ``(W_q,h x + b_q,h) . k_h =
  x . (W_q,h^T k_h) + b_q,h . k_h`` folds ``W_q`` into the ``T`` keys, and
  ``(A_h v_h) W_o,h^T = A_h (v_h W_o,h^T)`` folds ``W_o`` into the ``T`` values: the ``N``
  image tokens are never projected.
"""

from __future__ import annotations

import math

import torch
from segment_anything.modeling.transformer import Attention


def _split_weight(attn: Attention, proj: torch.nn.Linear) -> torch.Tensor:
    """``(H, d, C)`` per-head rows of a ``(H*d, C)`` input projection weight."""
    return proj.weight.view(attn.num_heads, -1, proj.weight.shape[1])


def project_heads(attn: Attention, proj: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``proj(x)`` split into heads: ``(B, L, C)`` -> ``(B, L, H, d)``."""
    y = proj(x)
    return y.view(*y.shape[:-1], attn.num_heads, -1)


def token_to_image(
    attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """``attn(q=q, k=k, v=v)`` for ``q (P, T, C)`` tokens, ``k``/``v (B, N, C)`` image, B in {1, P}.

    Key projection folded into the queries, value projection after the weighted sum
    (module docstring). Returns ``(P, T, C)``.
    """
    p, t, _ = q.shape
    heads = attn.num_heads
    qh = project_heads(attn, attn.q_proj, q)  # (P, T, H, d)
    scale = 1.0 / math.sqrt(qh.shape[-1])
    q_folded = torch.einsum("pthd,hdc->phtc", qh, _split_weight(attn, attn.k_proj)) * scale
    q_folded = q_folded.reshape(p, heads * t, -1)  # (P, H*T, C)
    if k.shape[0] == 1:  # one GEMM against the shared image tokens
        scores = q_folded @ k[0].transpose(0, 1)
        weights = torch.softmax(scores, dim=-1)
        pooled = weights @ v[0]  # (P, H*T, C)
    else:
        scores = torch.bmm(q_folded, k.transpose(1, 2))
        pooled = torch.bmm(torch.softmax(scores, dim=-1), v)
    pooled = pooled.view(p, heads, t, -1)
    out = torch.einsum("phtc,hdc->pthd", pooled, _split_weight(attn, attn.v_proj))
    out = out.reshape(p, t, -1) + attn.v_proj.bias
    return attn.out_proj(out)


def token_to_image_projected(
    attn: Attention, q: torch.Tensor, k_proj: torch.Tensor, v_proj: torch.Tensor
) -> torch.Tensor:
    """``attn(q, k, v)`` with the image side already projected once per image.

    ``q (P, T, C)``; ``k_proj = attn.k_proj(k)``, ``v_proj = attn.v_proj(v)``, both ``(1, N, H*d)``
    (the first layer's image tokens do not depend on the prompt). Official order, batched over
    heads so that every head's image matrix is shared by all prompts (no broadcast copies).
    Returns ``(P, T, C)``.
    """
    p, t, _ = q.shape
    heads = attn.num_heads
    qh = project_heads(attn, attn.q_proj, q)  # (P, T, H, d)
    d = qh.shape[-1]
    qh = (qh * (1.0 / math.sqrt(d))).permute(2, 0, 1, 3).reshape(heads, p * t, d)
    kh = k_proj[0].view(-1, heads, d).permute(1, 2, 0)  # (H, d, N)
    vh = v_proj[0].view(-1, heads, d).transpose(0, 1)  # (H, N, d)
    out = torch.softmax(torch.bmm(qh, kh), dim=-1) @ vh  # (H, P*T, d)
    return attn.out_proj(out.view(heads, p, t, d).permute(1, 2, 0, 3).reshape(p, t, -1))


def _folded_token_keys(attn: Attention, k: torch.Tensor, v: torch.Tensor):
    """Per-head token keys/values with ``W_q`` and ``W_o`` folded in (see module docstring).

    Returns ``keys (P, H*T, C)`` (scaled by ``1/sqrt(d)``), ``key_bias (P, H*T, 1)`` (the
    ``b_q . k_h`` term, scaled), ``values (P, H*T, C)``. The output bias ``b_o`` is folded into
    the values as ``b_o / H`` on every row: each head's softmax weights sum to 1, so the
    weighted sum over all heads adds exactly ``b_o``.
    """
    kh = project_heads(attn, attn.k_proj, k)  # (P, T, H, d)
    keys, key_bias = _fold_queries_into_keys(attn, kh)
    return keys, key_bias, _fold_output_into_values(attn, project_heads(attn, attn.v_proj, v))


def _fold_queries_into_keys(attn: Attention, kh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``kh (P, T, H, d)`` -> ``(W_q,h^T k_h) / sqrt(d)`` ``(P, H*T, C)`` and ``b_q,h . k_h / sqrt(d)``
    ``(P, H*T, 1)``."""
    p, t, heads, d = kh.shape
    scale = 1.0 / math.sqrt(d)
    keys = torch.einsum("pthd,hdc->phtc", kh, _split_weight(attn, attn.q_proj)) * scale
    key_bias = torch.einsum("pthd,hd->pht", kh, attn.q_proj.bias.view(heads, -1)) * scale
    return keys.reshape(p, heads * t, -1), key_bias.reshape(p, heads * t, 1)


def _fold_output_into_values(attn: Attention, vh: torch.Tensor) -> torch.Tensor:
    """``vh (P, T, H, d)`` -> ``v_h W_o,h^T + b_o / H`` as ``(P, H*T, C)``."""
    p, t, heads, _ = vh.shape
    w_out = attn.out_proj.weight.view(attn.out_proj.weight.shape[0], heads, -1)  # (C, H, d)
    values = torch.einsum("pthd,chd->phtc", vh, w_out) + attn.out_proj.bias / heads
    return values.reshape(p, heads * t, -1)


def softmax_middle(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.softmax(x, dim)`` for a ``dim`` that is not the last one.

    Eager torch: ``torch.softmax``. While exporting to ONNX: the same formula spelled out
    (``exp(x - max) / sum``), because onnxruntime's ``Softmax`` on a non-last axis transposes
    the tensor there and back: 61 ms against 24 ms for the scores of 64 prompts on a 2-core CPU
    (and 89 ms against 32 ms the other way round in eager torch, hence the branch). Differences
    to ``torch.softmax``: rounding only (<= 3e-7 on those scores).
    """
    if not torch.onnx.is_in_onnx_export():
        return torch.softmax(x, dim=dim)
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def _mix_values(
    scores_t: torch.Tensor,
    values: torch.Tensor,
    heads: int,
    residual: torch.Tensor,
    inplace: bool = False,
) -> torch.Tensor:
    """``residual + attention`` from transposed scores ``(P, H*T, N)`` (softmax per head over
    its T tokens) and folded ``values (P, H*T, C)`` -> ``(P, N, C)``.

    Scores are kept token-major (``N`` contiguous) so the softmax over the few tokens of each
    head runs along long rows; the residual add is the ``beta`` term of one ``baddbmm``. A
    shared ``(1, N, C)`` residual broadcasts there: never ``expand`` it (or the image tokens)
    to ``P`` copies, which the ONNX export would materialise as ``Expand`` ops (~10 % of the
    exported decoder's time, measured with onnxruntime's profiler).
    """
    p, ht, n = scores_t.shape
    weights = softmax_middle(scores_t.view(p, heads, ht // heads, n), dim=2).view(p, ht, n)
    if inplace and residual.dtype == weights.dtype == values.dtype:  # not under autocast
        return residual.baddbmm_(weights.transpose(1, 2), values)
    return torch.baddbmm(residual, weights.transpose(1, 2), values)


def image_to_token(
    attn: Attention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    residual: torch.Tensor,
    inplace: bool = False,
) -> torch.Tensor:
    """``residual + attn(q=q, k=k, v=v)`` for ``q (B, N, C)`` image tokens (B in {1, P}) and
    ``k``/``v (P, T, C)`` tokens, without projecting the image tokens. ``residual``
    ``(B, N, C)``; ``inplace=True`` (only for a ``(P, N, C)`` residual the caller owns and no
    longer needs) adds into it. Returns ``(P, N, C)``."""
    keys, key_bias, values = _folded_token_keys(attn, k, v)
    p = keys.shape[0]
    image_t = q.transpose(1, 2)  # (B, C, N)
    if image_t.shape[0] != p:  # bmm needs equal batches (a view: no copy)
        image_t = image_t.expand(p, -1, -1)
    scores_t = torch.baddbmm(key_bias, keys, image_t)  # (P, H*T, N)
    if inplace and residual.shape[0] != p:
        raise ValueError("inplace needs a per-prompt (P, N, C) residual")
    return _mix_values(scores_t, values, attn.num_heads, residual, inplace)


def image_to_token_projected(
    attn: Attention, q_proj: torch.Tensor, k: torch.Tensor, v: torch.Tensor, residual: torch.Tensor
) -> torch.Tensor:
    """``residual + attn(q, k, v)`` with the shared image queries projected once per image:
    ``q_proj = attn.q_proj(q)`` ``(1, N, H*d)``; ``W_o`` still folded into the values.
    Returns ``(P, N, C)``."""
    kh = project_heads(attn, attn.k_proj, k)  # (P, T, H, d)
    p, t, heads, d = kh.shape
    kh = (kh * (1.0 / math.sqrt(d))).permute(2, 0, 1, 3).reshape(heads, p * t, d)
    qh = q_proj[0].view(-1, heads, d).permute(1, 2, 0)  # (H, d, N)
    scores_t = torch.bmm(kh, qh).view(heads, p, t, -1).transpose(0, 1)  # (P, H, T, N)
    scores_t = scores_t.reshape(p, heads * t, -1)
    values = _fold_output_into_values(attn, project_heads(attn, attn.v_proj, v))
    return _mix_values(scores_t, values, heads, residual)
