"""Automatic and prompted mask generation (``core/sam/amg.py``, ``prompted.py``,
``image_session.py``, ``postprocess.py``) on generated ``sam_tiny_test`` weights, and image
input checks (``core/sam/preprocess.py``).

Fidelity: our ``MaskGenerator`` and the official ``segment_anything.SamAutomaticMaskGenerator``
run on the SAME torch ``Sam`` (weights loaded through our loader) with the SAME settings on real
scikit-image photos; >= 95% of the official masks must be matched at IoU >= 0.9.

Settings chosen for random weights (identical in both generators): the untrained decoder
gives noisy, image-wide masks whose logits stay within about +-1, so with SAM's defaults every
mask is filtered out (stability 0 at offset 1.0), and every box is the whole image (any NMS
threshold < 1 keeps one mask). So the parity run uses stability offset 0.05 with threshold 0.2,
a low predicted-IoU threshold, NMS at 1.0 and hole/island clean-up, which leaves 20-40 masks per
image to compare: filtering, upscaling, stability, clean-up, boxes, point grid all compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from sam_fixtures import skimage_photo
from segment_anything import SamAutomaticMaskGenerator, SamPredictor

from perception_nodes.core.output.rle import decode_mask, encode_mask
from perception_nodes.core.sam.amg import MaskGenerator
from perception_nodes.core.sam.decoder import pad_point_prompts
from perception_nodes.core.sam.preprocess import (
    ImageInputError,
    ImageTypeError,
    preprocess_image,
    to_rgb_uint8,
)
from perception_nodes.core.sam.torch_backend import TorchSamBackend

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
LONGEST = 256  # downscaled photos: CPU time goes to the decoder, the image size matters little
PARITY = dict(
    points_per_side=4,
    points_per_batch=16,
    pred_iou_thresh=0.005,
    stability_score_thresh=0.2,
    stability_score_offset=0.05,
    box_nms_thresh=1.0,
    min_mask_region_area=10,
)
MIN_COMPARED = 10


@pytest.fixture(scope="module")
def backend(tiny_sam):
    return TorchSamBackend(tiny_sam, device="cpu")


@pytest.fixture(scope="module")
def parity_runs(tiny_sam, backend):
    """Lazily computed ``{photo: (image, official records, our Segmentation)}``."""
    cache: dict = {}

    def run(name: str):
        if name not in cache:
            image = skimage_photo(name, longest=LONGEST)
            official = SamAutomaticMaskGenerator(tiny_sam, **PARITY).generate(image)
            ours = MaskGenerator(backend, **PARITY).generate(image)
            cache[name] = (image, official, ours)
        return cache[name]

    return run


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask in ``a (N, H, W)`` with every mask in ``b (M, H, W)``."""
    fa = torch.from_numpy(a.reshape(len(a), -1)).float()
    fb = torch.from_numpy(b.reshape(len(b), -1)).float()
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).numpy()


@pytest.mark.parametrize("name", PHOTOS)
def test_reproduces_official_automatic_mask_generator(parity_runs, name):
    image, official, ours = parity_runs(name)
    assert len(official) >= MIN_COMPARED, (
        f"only {len(official)} official masks: nothing meaningful to compare"
    )
    off_masks = np.stack([r["segmentation"] for r in official])
    iou = _iou_matrix(off_masks, ours.masks)
    best, match = iou.max(1), iou.argmax(1)
    assert (best >= 0.9).mean() >= 0.95, (
        f"{name}: matched {(best >= 0.9).mean():.1%} of {len(official)}"
    )
    assert abs(len(ours) - len(official)) <= 0.05 * len(official)
    # the matched regions carry the same attributes (official bbox is XYWH with inclusive max)
    for rec, j, b in zip(official, match, best):
        if b < 0.999:
            continue
        # Areas agree to the pixels a 0.999 IoU allows, not exactly: on an AMD EPYC (the CI
        # machine now) the restructured decoder's logits differ from the official ones in the
        # last float bits (~1e-7, docs/benchmarks.md) and 5-6 of ~64,000 pixels whose logit is
        # that close to the 0 threshold flip (64082 vs 64087; exact on the Intel Xeon before).
        assert ours.areas[j] == ours.masks[j].sum()
        assert abs(int(ours.areas[j]) - int(rec["area"])) <= 1e-3 * rec["area"]
        assert ours.predicted_iou[j] == pytest.approx(rec["predicted_iou"], abs=1e-4)
        assert ours.stability_score[j] == pytest.approx(rec["stability_score"], abs=1e-3)
        x, y, w, h = rec["bbox"]
        np.testing.assert_allclose(ours.boxes_xyxy[j], [x, y, x + w + 1, y + h + 1])
        np.testing.assert_allclose(ours.point_coords[j], rec["point_coords"][0], atol=1e-3)


def _check_regions(seg, image_hw: tuple[int, int]) -> None:
    """Every per-region output present, typed, shaped and consistent with the masks."""
    n, (h, w) = len(seg), image_hw
    assert seg.image_size == (h, w)
    assert seg.masks.shape == (n, h, w) and seg.masks.dtype == bool
    assert seg.boxes_xyxy.shape == (n, 4) and seg.boxes_xyxy.dtype == np.float32
    assert seg.tokens.shape == (n, 256) and seg.tokens.dtype == np.float32
    assert np.isfinite(seg.tokens).all() and np.isfinite(seg.predicted_iou).all()
    assert ((seg.stability_score >= 0) & (seg.stability_score <= 1)).all()
    for i, m in enumerate(seg.masks):
        assert seg.areas[i] == m.sum()
        ys, xs = np.nonzero(m)
        assert len(xs) > 0
        np.testing.assert_array_equal(
            seg.boxes_xyxy[i], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        )
        hh, ww, counts = encode_mask(m)  # the message's RLE ...
        rle = mask_utils.frPyObjects({"size": [hh, ww], "counts": counts}, hh, ww)
        np.testing.assert_array_equal(
            mask_utils.decode(rle).astype(bool), m
        )  # ... read by pycocotools
        np.testing.assert_array_equal(decode_mask(hh, ww, counts), m)
        assert (
            mask_utils.area(mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))
            == seg.areas[i]
        )


def test_region_outputs_present_and_consistent(parity_runs):
    image, _, ours = parity_runs("astronaut")
    _check_regions(ours, image.shape[:2])
    assert len(np.unique(ours.tokens.round(4), axis=0)) > 1, "tokens differ between regions"


def test_region_token_is_the_decoder_token_of_its_point(parity_runs, backend):
    image, _, ours = parity_runs("coffee")
    gen = MaskGenerator(backend, **PARITY)
    gen.set_image(image)
    embedding = gen.image_embedding()  # cached by set_image: no re-encode
    for i in (0, len(ours) - 1):
        pt = gen.to_model_coords(ours.point_coords[i : i + 1], image.shape[:2])
        coords, labels = pad_point_prompts(
            torch.tensor(pt, dtype=torch.float32)[:, None], torch.ones(1, 1)
        )
        out = backend.decode(embedding, coords, labels, multimask_output=True)
        k = int(np.argmin(np.abs(out.iou_predictions[0].numpy() - ours.predicted_iou[i])))
        np.testing.assert_allclose(out.mask_tokens[0, k].numpy(), ours.tokens[i], atol=1e-5)


def test_image_embedding_and_model_coords_public(tiny_sam, backend):
    """The embedding and coordinate transform a caller needs to drive ``backend.decode``."""
    gen = MaskGenerator(backend)
    with pytest.raises(ValueError, match="set_image"):
        gen.image_embedding()
    image = skimage_photo("chelsea", longest=LONGEST)  # 256 x 170: longest side is the width
    calls = []
    original = backend.encode
    backend.encode = lambda x: calls.append(x.shape) or original(x)
    try:
        gen.set_image(image)
        embedding = gen.image_embedding()
        assert gen.image_embedding(image) is embedding and len(calls) == 1, "cached, no re-encode"
        other = skimage_photo("coffee", longest=LONGEST)
        assert gen.image_embedding(other) is not embedding and len(calls) == 2
        gen.predict_boxes(None, np.array([[0.0, 0.0, 50.0, 50.0]]))  # works on `other` now
        assert len(calls) == 2
    finally:
        del backend.encode
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(image)
    torch.testing.assert_close(embedding, predictor.get_image_embedding(), rtol=0, atol=1e-5)

    h, w = image.shape[:2]
    side = backend.input_size
    corners = np.array([[0, 0], [w, h]], dtype=np.float32)
    np.testing.assert_allclose(
        gen.to_model_coords(corners, (h, w)), [[0, 0], [side, int(h * side / w + 0.5)]]
    )
    boxes = np.array([[[10, 20], [120, 150]]])  # (N, 2, 2) box corners, integer input
    model = gen.to_model_coords(boxes, (h, w))
    assert model.shape == (1, 2, 2) and model.dtype == np.float64
    np.testing.assert_allclose(
        model, predictor.transform.apply_boxes(boxes[0].reshape(1, 4), (h, w)).reshape(1, 2, 2)
    )
    np.testing.assert_array_equal(boxes, [[[10, 20], [120, 150]]])  # input not modified


@pytest.fixture(scope="module")
def prompted(tiny_sam, backend):
    """A MaskGenerator and an official SamPredictor with the chelsea photo set."""
    image = skimage_photo("chelsea", longest=LONGEST)
    gen = MaskGenerator(backend, points_per_batch=2)  # 2: prompts span several decoder batches
    gen.set_image(image)
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(image)
    return image, gen, predictor


def test_prompted_boxes_one_region_per_box(prompted):
    image, gen, predictor = prompted
    boxes = np.array([[10, 20, 120, 150], [100, 5, 250, 160], [0, 0, 255, 169]], dtype=np.float32)
    seg = gen.predict_boxes(None, boxes)
    assert len(seg) == len(boxes) and np.isnan(seg.point_coords).all()
    _check_regions(seg, image.shape[:2])
    for i, box in enumerate(boxes):
        masks, scores, _ = predictor.predict(box=box, multimask_output=False)
        assert _iou_matrix(masks[:1], seg.masks[i : i + 1])[0, 0] >= 0.99
        assert seg.predicted_iou[i] == pytest.approx(scores[0], abs=1e-4)
    assert len(gen.predict_boxes(None, np.zeros((0, 4)))) == 0


def test_prompted_points_one_region_per_prompt(prompted):
    image, gen, predictor = prompted
    points = np.array([[30.0, 40.0], [200.0, 100.0], [128.0, 85.0]])
    seg = gen.predict_points(None, points)
    assert len(seg) == 3
    np.testing.assert_allclose(seg.point_coords, points)
    _check_regions(seg, image.shape[:2])
    for i, p in enumerate(points):
        masks, scores, _ = predictor.predict(point_coords=p[None], point_labels=np.array([1]))
        best = int(np.argmax(scores))
        assert _iou_matrix(masks[best : best + 1], seg.masks[i : i + 1])[0, 0] >= 0.99
    # two prompts of (fg, bg) points each
    multi = gen.predict_points(
        None,
        np.array([[[30, 40], [200, 100]], [[128, 85], [10, 10]]]),
        labels=np.array([[1, 0], [1, 0]]),
    )
    assert len(multi) == 2
    np.testing.assert_allclose(multi.point_coords, [[30, 40], [128, 85]])


def test_prompt_validation(prompted):
    _, gen, _ = prompted
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        gen.predict_boxes(None, np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="x1 >= x0"):
        gen.predict_boxes(None, np.array([[50.0, 0.0, 10.0, 10.0]]))
    with pytest.raises(ValueError, match="finite"):
        gen.predict_points(None, np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="0 \\(background\\) or 1"):
        gen.predict_points(None, np.array([[1.0, 1.0]]), labels=np.array([2]))


def test_crops_run_and_match_official(tiny_sam, backend):
    image = skimage_photo("rocket", longest=192)
    settings = dict(
        points_per_side=2,
        points_per_batch=16,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
        crop_nms_thresh=1.0,
    )
    gen = MaskGenerator(backend, **settings)
    calls = []
    original = backend.encode
    backend.encode = lambda x: calls.append(x.shape) or original(x)
    try:
        seg = gen.generate(image)
    finally:
        del backend.encode
    assert len(calls) == 5, "1 full-image + 4 layer-1 crops"
    assert len(gen.timings.decoder_batches) == 5 and gen.timings.encoder > 0
    _check_regions(seg, image.shape[:2])
    official = SamAutomaticMaskGenerator(tiny_sam, **settings).generate(image)
    assert len(official) == len(seg) > 0
    iou = _iou_matrix(np.stack([r["segmentation"] for r in official]), seg.masks)
    assert (iou.max(1) >= 0.9).mean() >= 0.95


def test_generate_rejects_bad_images(backend):
    gen = MaskGenerator(backend, points_per_side=1)
    with pytest.raises(ImageInputError, match="channels"):
        gen.generate(np.zeros((32, 32, 2), np.uint8))
    with pytest.raises(ImageTypeError):
        gen.generate([[0, 1], [2, 3]])


# ----------------------------------------------------------------------------- input checks
def test_rgb_uint8_passes_through():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(image), image)
    flipped = image[:, :, ::-1]  # a negative-stride view (e.g. BGR->RGB) is made contiguous
    out = to_rgb_uint8(flipped)
    assert out.flags.c_contiguous and np.array_equal(out, flipped)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1)])
def test_grayscale_replicated(shape):
    gray = np.arange(35, dtype=np.uint8).reshape(shape)
    out = to_rgb_uint8(gray)
    assert out.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray.reshape(5, 7))


def test_rgba_drops_alpha():
    rgba = np.random.default_rng(1).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgba[:, :, :3])


def test_other_dtypes_scaled():
    np.testing.assert_array_equal(to_rgb_uint8(np.full((2, 2, 3), 65535, np.uint16)), 255)
    np.testing.assert_array_equal(to_rgb_uint8(np.full((2, 2, 3), 0.5, np.float32)), 128)
    np.testing.assert_array_equal(to_rgb_uint8(np.full((2, 2, 3), 200.0)), 200)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, bool, np.complex64])
def test_wrong_dtype(dtype):
    with pytest.raises(ImageTypeError, match="expected uint8"):
        to_rgb_uint8(np.zeros((4, 4, 3), dtype=dtype))


@pytest.mark.parametrize(
    "image, pattern",
    [
        (np.zeros((4, 4, 3), np.float32) - 1, r"expected \[0, 1\] or \[0, 255\]"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN or inf"),
        (np.zeros((3, 8, 9), np.uint8), "channel-first"),
        (np.zeros((8, 9, 2), np.uint8), r"1 \(gray\), 3 \(RGB\) or 4 \(RGBA\)"),
        (np.zeros((8, 9, 5), np.uint8), "got 5"),
        (np.zeros((2, 4, 4, 3), np.uint8), "HxW or HxWxC"),
        (np.zeros((16,), np.uint8), "HxW or HxWxC"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 0), np.uint8), "empty"),
    ],
)
def test_bad_images_named(image, pattern):
    with pytest.raises(ImageInputError, match=pattern):
        to_rgb_uint8(image)


def test_not_an_array():
    with pytest.raises(ImageTypeError, match="numpy array"):
        to_rgb_uint8(torch.zeros(4, 4, 3, dtype=torch.uint8))
    assert issubclass(ImageTypeError, TypeError) and issubclass(ImageInputError, ValueError)


def test_too_large_image():
    huge = np.broadcast_to(
        np.zeros((1, 1, 3), np.uint8), (10_000, 6_000, 3)
    )  # no 180 MB allocation
    with pytest.raises(ImageInputError, match="more than the limit"):
        to_rgb_uint8(huge)
    with pytest.raises(ImageInputError, match="max_pixels"):
        to_rgb_uint8(np.zeros((100, 100, 3), np.uint8), max_pixels=5_000)


def test_too_elongated_image():
    with pytest.raises(ImageInputError, match="too elongated"):
        preprocess_image(np.zeros((1, 3000, 3), np.uint8))
    pre = preprocess_image(np.zeros((2, 3000, 3), np.uint8))  # short side rounds to 1 pixel
    assert pre.input_size == (1, 1024) and pre.tensor.shape == (1, 3, 1024, 1024)
