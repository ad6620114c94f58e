"""All CLIP region crops in a few batched tensor operations (issue 17): the device path of
``ClipModel.crop_batch``, used when the model is on CUDA (selectable on the CPU).

The crops are the same as :func:`.clip_crops.square_crops` builds region by region (square
window around the box, masked background and the outside of the image filled with the model's
mean colour, resized to ``S`` as open_clip's PIL bicubic ``Resize`` does), but built from the
image and masks on the device with no per-region Python loop touching pixels and no
device-to-host synchronisation: the windows' pixels are gathered into a padded stack (crops of
similar size together, a few stacks per frame), then PIL's separable resize is applied with
batched matmuls, horizontal pass first, uint8 rounding between the passes, as PIL does.

Why not a library resize: torch's antialiased ``interpolate`` takes one output size per call
(one call per crop) and is PIL's filter only within 2 grey levels. Here the resize matrices are
PIL's own fixed-point coefficients (``precompute_coeffs`` + ``normalize_coeffs_8bpc`` of PIL's
``Resample.c``: bicubic ``a = -0.5``, support 2 scaled by the downscale factor, 22 fraction bits),
and the float32 matmuls are exact: each coefficient is split into three 8-bit parts, so every
product and partial sum is an integer below 2**24 (exact in float32, and in TF32, whose inputs
keep 11 significant bits). The result is PIL's uint8 crop bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from perception_nodes.core.classify.clip_crops import to_device

PRECISION_BITS = 22  # PIL's Resample.c for 8-bit images
#: largest window side per output pixel for float32 matmuls: beyond it a weight's middle 8-bit
#: part summed over the taps (about 4 * side / S of them) could pass 2**24 and the float32 sums
#: stop being exact; a group with a larger window is resized in float64 (exact: sums < 2**53)
MAX_DOWNSCALE = 60
#: padded gather stack per batched operation (float32 elements), bounding the device memory
STACK_ELEMENTS = 24_000_000


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    """PIL's bicubic filter (``a = -0.5``), the same float64 operations in the same order."""
    a = -0.5
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def pil_coefficients(
    sides: torch.Tensor, size: int, max_side: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL's fixed-point resize coefficients of windows of ``sides`` pixels (``(n,)`` int64) to
    ``size``: ``xmin`` ``(n, size)`` int64 (first input pixel of each output pixel) and ``k``
    ``(n, size, taps)`` int64 (weights of input pixels ``xmin + t``, zero past PIL's ``xmax``;
    each row sums to about ``2**22``). ``max_side``: at least ``sides.max()``, known on the
    host (reading it from a device tensor would synchronise)."""
    dev = sides.device
    scale = sides.double() / size  # (n,)
    filterscale = scale.clamp(min=1.0)
    support = 2.0 * filterscale
    center = (torch.arange(size, device=dev, dtype=torch.float64)[None] + 0.5) * scale[:, None]
    xmin = torch.trunc(center - support[:, None] + 0.5).clamp(min=0)
    xmax = torch.minimum(torch.trunc(center + support[:, None] + 0.5), sides[:, None].double())
    taps = 2 * int(np.ceil(2.0 * max(max_side / size, 1.0))) + 1  # PIL's ksize
    return xmin.long(), _weights(center, xmin, xmax - xmin, filterscale, taps)


def _weights(center, xmin, count, filterscale, taps):
    """``(n, size, taps)`` int64 PIL coefficients (see :func:`pil_coefficients`)."""
    u = torch.arange(taps, device=center.device, dtype=torch.float64)
    x = ((xmin[..., None] + u) - center[..., None] + 0.5) * (1.0 / filterscale)[:, None, None]
    w = torch.where(u < count[..., None], _bicubic(x), torch.zeros_like(x))
    ww = w.sum(-1, keepdim=True)  # PIL sums in order: may differ in the last bit (no k seen)
    w = torch.where(ww != 0, w / torch.where(ww != 0, ww, torch.ones_like(ww)), w)
    scaled = w * (1 << PRECISION_BITS)
    return torch.where(scaled < 0, scaled - 0.5, scaled + 0.5).trunc().long()


def _window_matrix(
    sides: torch.Tensor, lo: torch.Tensor, length: int, size: int, max_side: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize matrix of each window over its gathered pixels, and the weight of the rest.

    ``sides``: ``(n,)`` window sides; ``lo``: ``(n,)`` window coordinate of the first gathered
    pixel (its first pixel inside the image); ``length``: gathered (padded) length. Gathered
    pixels past the image are the fill colour (set by the caller), past the window they get no
    weight (PIL's taps end at the side). Returns ``(n, size, length)`` int64 coefficients and
    ``(n, size)`` int64: the summed coefficients of the window pixels not gathered (before the
    image's first pixel or after the gathered length: all the fill colour)."""
    xmin, k = pil_coefficients(sides, size, max_side)
    n, taps = len(sides), k.shape[-1]
    pos = xmin[..., None] + torch.arange(taps, device=sides.device) - lo[:, None, None]
    inside = (pos >= 0) & (pos < length)
    mat = torch.zeros((n, size, length + 1), dtype=torch.int64, device=sides.device)
    mat.scatter_add_(2, torch.where(inside, pos, length), k)
    return mat[..., :length], mat[..., length]


def _split(k: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(..., size, L)`` int64 coefficients as ``(..., 3, size, L)`` float32 8-bit parts
    ``k = p2 * 2**16 + p1 * 2**8 + p0`` (``p1``, ``p0`` in 0..255; ``p2`` signed, small) as
    ``dtype`` (float32, or float64 for windows over :data:`MAX_DOWNSCALE`)."""
    parts = (k >> 16, (k >> 8) & 255, k & 255)
    return torch.stack(parts, dim=-3).to(dtype)


def _combine(parts: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """PIL's rounding of the sums ``(..., 3 parts, ...)`` on dim ``-3`` (exact integers in
    float32) plus ``extra`` (int64, broadcast): ``clip8((sum + 2**21) >> 22)`` as float32."""
    p = parts.long()
    total = (p.select(-3, 0) << 16) + (p.select(-3, 1) << 8) + p.select(-3, 2) + extra
    total = (total + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS
    return total.clamp_(0, 255).float()


def _resize_group(
    image: torch.Tensor,
    masks: torch.Tensor | None,
    idx: torch.Tensor,
    win: torch.Tensor,
    lr: int,
    lc: int,
    size: int,
    fill: torch.Tensor,
    max_side: int,
) -> torch.Tensor:
    """``(n, 3, size, size)`` float32 uint8-valued crops of one group of windows.

    ``image``: ``(H, W, 3)`` uint8; ``masks``: ``(N, H, W)`` bool or None; ``idx``: ``(n,)``
    region indices; ``win``: ``(n, 7)`` int64 windows (:func:`.clip_crops.crop_window`);
    ``lr``/``lc``: padded rows/columns of the windows' parts inside the image; ``fill``:
    ``(3,)`` int64; ``max_side``: the group's largest window side (host int)."""
    sx0, sy0, s, ix0, iy0, ix1, iy1 = win.unbind(1)
    dev = image.device
    rows = iy0[:, None] + torch.arange(lr, device=dev)  # (n, lr) image rows
    cols = ix0[:, None] + torch.arange(lc, device=dev)
    valid = (rows < iy1[:, None])[:, :, None] & (cols < ix1[:, None])[:, None, :]
    rows_c = rows.clamp(max=image.shape[0] - 1)
    cols_c = cols.clamp(max=image.shape[1] - 1)
    pix = image[rows_c[:, :, None], cols_c[:, None, :]]  # (n, lr, lc, 3) uint8
    if masks is not None:
        valid = valid & masks[idx[:, None, None], rows_c[:, :, None], cols_c[:, None, :]]
    n = len(idx)
    src = torch.where(valid[..., None], pix, fill.to(torch.uint8)).permute(0, 3, 1, 2)
    dtype = torch.float64 if max_side > MAX_DOWNSCALE * size else torch.float32
    src = src.to(dtype).reshape(n, 3 * lr, lc)
    # horizontal pass: (n, 3c*lr, lc) @ (n, lc, 3p*size) -> (n, 3c, 3p, lr, size)
    kh, out_h = _window_matrix(s, ix0 - sx0, lc, size, max_side)
    wh = _split(kh, dtype).reshape(n, 3 * size, lc).transpose(1, 2)
    hor = torch.bmm(src, wh).reshape(n, 3, lr, 3, size).permute(0, 1, 3, 2, 4)
    extra_h = out_h[:, None, None, :] * fill[None, :, None, None]  # (n, 3c, 1, size)
    hor = _combine(hor, extra_h).to(
        dtype
    )  # (n, 3c, lr, size) uint8 values, as PIL's temporary image
    # the canvas rows outside the image: the horizontal pass of an all-fill row
    row_sum = (kh.sum(-1) + out_h)[:, None, None, :] * fill[None, :, None, None]
    fill_row = ((row_sum + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS).clamp(0, 255)
    # vertical pass: (n, 3p*size, lr) @ (n, lr, 3c*size) -> (n, row, 3p, 3c, col)
    kv, out_v = _window_matrix(s, iy0 - sy0, lr, size, max_side)
    wv = _split(kv, dtype).reshape(n, 3 * size, lr)
    ver = torch.bmm(wv, hor.permute(0, 2, 1, 3).reshape(n, lr, 3 * size))
    ver = ver.reshape(n, 3, size, 3, size).permute(0, 2, 1, 3, 4)
    extra_v = out_v[:, :, None, None] * fill_row[:, None, :, 0, :]  # (n, row, 3c, col)
    crops = _combine(ver, extra_v)  # (n, row, 3c, col)
    return crops.permute(0, 2, 1, 3)


def _groups(sides: np.ndarray, extents: np.ndarray) -> list[np.ndarray]:
    """Region indices in groups of similar window size (padded stacks waste at most about 4x
    their area, each under :data:`STACK_ELEMENTS`): a few groups per frame."""
    order = np.argsort(-extents.max(1), kind="stable")
    groups, start = [], 0
    while start < len(order):
        big = extents[order[start]].max()
        end = start + 1
        while (
            end < len(order)
            and extents[order[end]].max() * 2 > big
            and (end + 1 - start) * 3 * int(big) ** 2 <= STACK_ELEMENTS
        ):
            end += 1
        groups.append(order[start:end])
        start = end
    return groups


def batched_crops(
    image: np.ndarray | torch.Tensor,
    windows: list[tuple],
    masks: np.ndarray | torch.Tensor | None,
    size: int,
    fill: np.ndarray,
    device: torch.device,
) -> torch.Tensor:
    """``(N, 3, size, size)`` float32 crops with uint8 values (0..255) on ``device``: PIL's
    bicubic resize of each window's square canvas, as :func:`.clip_crops.square_crops`.

    ``image``: ``HxWx3`` uint8 RGB (copied to ``device`` once); ``windows``: ``N`` tuples of
    :func:`.clip_crops.crop_window` (computed on the host from the boxes); ``masks``:
    ``(N, H, W)`` bool (numpy: copied once; a tensor on ``device`` is used as it is) or None;
    ``fill``: ``(3,)`` uint8 colour outside the mask and the image."""
    device = torch.device(device)
    out = torch.empty((len(windows), 3, size, size), dtype=torch.float32, device=device)
    if not windows:
        return out
    win = np.asarray(windows, dtype=np.int64).reshape(-1, 7)
    img = (
        image if isinstance(image, torch.Tensor) else to_device(np.ascontiguousarray(image), device)
    )
    if masks is not None and not isinstance(masks, torch.Tensor):
        masks = to_device(np.ascontiguousarray(masks, dtype=bool), device)
    extents = np.stack([win[:, 6] - win[:, 4], win[:, 5] - win[:, 3]], 1).clip(min=1)
    fill_t = to_device(np.asarray(fill, dtype=np.int64).reshape(3), device)
    win_t = to_device(win, device)
    for group in _groups(win[:, 2], extents):
        lr, lc = (int(v) for v in extents[group].max(0))
        idx = to_device(group.astype(np.int64), device)
        max_side = int(win[group, 2].max())
        crops = _resize_group(img, masks, idx, win_t[idx], lr, lc, size, fill_t, max_side)
        out.index_copy_(0, idx, crops)
    return out
