"""Image checks/conversion and SAM pre-processing shared by every backend.

Pipeline (identical to ``segment_anything.SamPredictor.set_image``): validate/convert to
``HxWx3 uint8 RGB`` -> ``ResizeLongestSide`` (PIL, longest side = ``input_size``) ->
``(x - mean) / std`` -> zero-pad bottom/right to ``input_size x input_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest accepted image (H*W); about 8K x 6K. Configurable per call."""


class ImageInputError(ValueError):
    """The image cannot be used: wrong type, shape, channel count, values or size."""


class ImageTypeError(ImageInputError, TypeError):
    """The image is not a numpy array, or has an unsupported dtype (also a ``TypeError``)."""


def to_rgb_uint8(image: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Validate ``image`` and convert it to ``HxWx3 uint8 RGB``.

    Accepted: ``HxWx3`` RGB; ``HxW`` / ``HxWx1`` grayscale (replicated to 3 channels);
    ``HxWx4`` RGBA (alpha dropped, not composited). dtypes: ``uint8``; ``uint16`` (scaled by
    255/65535); float (values in [0, 1] are scaled by 255, values in [0, 255] are taken as is;
    NaN/inf rejected). Channel order is assumed RGB (convert BGR yourself).
    """
    if not isinstance(image, np.ndarray):
        raise ImageTypeError(
            f"expected a numpy array HxWx3 uint8 RGB image, got {type(image).__name__}"
        )
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] not in (1, 3, 4):
        raise ImageInputError(
            f"image shape {image.shape} looks channel-first (CxHxW); expected HxWxC, "
            "e.g. image.transpose(1, 2, 0)"
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ImageInputError(
            f"expected an HxW or HxWxC image, got {image.ndim} dims, shape {image.shape}"
        )
    h, w, c = image.shape
    if h == 0 or w == 0:
        raise ImageInputError(f"image is empty (shape {image.shape}); expected H >= 1 and W >= 1")
    if c not in (1, 3, 4):
        raise ImageInputError(
            f"expected 1 (gray), 3 (RGB) or 4 (RGBA) channels, got {c} (shape {image.shape})"
        )
    if h * w > max_pixels:
        raise ImageInputError(
            f"image {h}x{w} has {h * w} pixels, more than the limit {max_pixels}; downscale it "
            "first or raise max_pixels"
        )
    image = _to_uint8(image)
    if c == 1:
        image = np.repeat(image, 3, axis=2)
    elif c == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return np.round(image.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ImageInputError("float image contains NaN or inf values; expected finite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 255.0:
            raise ImageInputError(
                f"float image values span [{lo}, {hi}]; expected [0, 1] or [0, 255]"
            )
        scale = 255.0 if hi <= 1.0 else 1.0
        return np.round(image.astype(np.float32) * scale).astype(np.uint8)
    raise ImageTypeError(
        f"unsupported image dtype {image.dtype}; expected uint8 (or uint16 / float in [0, 1])"
    )


@dataclass
class PreprocessedImage:
    """A pre-processed image ready for ``SamBackend.encode``.

    Attributes:
        tensor: ``(1, 3, S, S)`` float32, normalised, zero-padded bottom/right.
        original_size: ``(H, W)`` of the input image.
        input_size: ``(h, w)`` after ResizeLongestSide (before padding).
    """

    tensor: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def preprocess_image(
    image: np.ndarray,
    input_size: int = 1024,
    pixel_mean: Sequence[float] = (123.675, 116.28, 103.53),
    pixel_std: Sequence[float] = (58.395, 57.12, 57.375),
    device: str | torch.device = "cpu",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PreprocessedImage:
    """Validate, resize (longest side), normalise and pad one image (see module docstring)."""
    rgb = to_rgb_uint8(image, max_pixels=max_pixels)
    h0, w0 = rgb.shape[:2]
    rh, rw = ResizeLongestSide.get_preprocess_shape(h0, w0, input_size)
    if rh < 1 or rw < 1:
        raise ImageInputError(
            f"image {h0}x{w0} is too elongated: resizing its longest side to {input_size} makes the "
            f"other side 0 pixels; expected an aspect ratio below {2 * input_size}:1 (crop or pad it)"
        )
    resized = ResizeLongestSide(input_size).apply_image(rgb)
    x = torch.as_tensor(resized, device=device).permute(2, 0, 1)[None].float()
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    h, w = resized.shape[:2]
    x = F.pad(x, (0, input_size - w, 0, input_size - h))
    return PreprocessedImage(
        x.contiguous(), (int(rgb.shape[0]), int(rgb.shape[1])), (int(h), int(w))
    )
