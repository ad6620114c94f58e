"""Both classifiers on regions of real photos (scikit-image's bundled ones), generated weights.

The zero-shot case has a known answer without trained weights: vocabulary entries defined by
EXAMPLE regions (exemplars) are the CLIP embeddings of exactly the masked crops that the frame
later shows, so each region's best entry must be its own exemplar (cosine 1), whatever the
(random) CLIP weights are.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from classify_fixtures import TINY_SAM, box_segmentation, tiny_clip

from perception_nodes.core.classify.base import ClassifierError
from perception_nodes.core.classify.regionspot import (
    CheckpointMismatchError,
    RegionSpotClassifier,
    make_generated_regionspot_checkpoint,
)
from perception_nodes.core.classify.zero_shot import ZeroShotClassifier
from perception_nodes.core.types import UNKNOWN_INDEX, UNKNOWN_LABEL
from perception_nodes.core.vocabulary.runtime import Vocabulary

#: exemplar name -> (photo, XYXY region in it)
EXEMPLARS = {
    "chelsea the cat": ("chelsea", (120, 40, 320, 260)),
    "coffee cup": ("coffee", (200, 30, 460, 290)),
    "astronaut face": ("astronaut", (160, 30, 330, 230)),
    "rocket": ("rocket", (230, 20, 400, 420)),
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def _region(name: str) -> np.ndarray:
    photo, (x0, y0, x1, y1) = EXEMPLARS[name]
    return getattr(skimage.data, photo)()[y0:y1, x0:x1]


@pytest.fixture(scope="module")
def mosaic():
    """A 440 x 900 frame with the four photo regions pasted side by side, and their boxes."""
    frame = np.full((440, 900, 3), 90, np.uint8)
    boxes, x = [], 0
    for name in EXEMPLARS:
        r = _region(name)
        h, w = r.shape[:2]
        frame[0:h, x : x + w] = r
        boxes.append([x, 0, x + w, h])
        x += w
    return frame, np.asarray(boxes, np.float32)


@pytest.fixture(scope="module")
def vocab(clip):
    v = Vocabulary(clip)
    v.set(["dog", "car", "banana"])
    for name, (photo, box) in EXEMPLARS.items():
        image = getattr(skimage.data, photo)()
        mask = np.zeros(image.shape[:2], bool)
        mask[box[1] : box[3], box[0] : box[2]] = True
        v.add_exemplar(name, image, mask=mask)
    return v


def test_exemplar_regions_get_their_exemplar_names(clip, vocab, mosaic):
    frame, boxes = mosaic
    seg = box_segmentation(frame, boxes)
    clf = ZeroShotClassifier(clip, unknown_threshold=0.0)
    out = clf.classify(frame, seg, vocab.snapshot(), top_k=3)
    assert [out.label_text(i) for i in range(len(boxes))] == list(EXEMPLARS)
    assert out.vocabulary_version == vocab.version and out.labels == list(vocab.snapshot().labels)
    # the region embedding IS the exemplar embedding (same pixels, same crop) -> cosine 1
    cos = out.embeddings @ vocab.snapshot().embeddings[3:].T
    np.testing.assert_allclose(np.diag(cos), 1.0, atol=1e-4)
    assert not out.meaningful  # generated CLIP weights: flagged, whatever the labels look like


def test_topk_sorted_and_unknown_threshold(clip, vocab, mosaic):
    frame, boxes = mosaic
    seg = box_segmentation(frame, boxes)
    snap = vocab.snapshot()
    clf = ZeroShotClassifier(clip, unknown_threshold=0.0)
    scores = clf.scores(clf.region_embeddings(frame, seg), snap.embeddings)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)  # softmax over the vocabulary
    out = clf.classify(frame, seg, snap, top_k=4)
    assert out.topk_index.shape == (4, 4)
    assert np.all(np.diff(out.topk_score, axis=1) <= 0)  # best first
    np.testing.assert_allclose(
        out.topk_score, np.take_along_axis(scores, out.topk_index, 1), atol=1e-6
    )
    np.testing.assert_array_equal(out.topk_index[:, 0], scores.argmax(axis=1))
    assert clf.classify(frame, seg, snap, top_k=50).topk_index.shape == (
        4,
        len(snap),
    )  # k capped at V
    # threshold between the best scores: exactly the regions below it become unknown
    best = scores.max(axis=1)
    thr = (
        float(np.sort(best)[1] + np.sort(best)[2]) / 2
        if np.ptp(best) > 0
        else float(best[0]) + 1e-3
    )
    out = ZeroShotClassifier(clip, unknown_threshold=min(thr, 1.0)).classify(frame, seg, snap)
    below = best < thr
    assert below.any()
    np.testing.assert_array_equal(out.label_index == UNKNOWN_INDEX, below)
    assert all(out.label_text(i) == UNKNOWN_LABEL for i in np.nonzero(below)[0])
    np.testing.assert_allclose(
        out.label_score, best, atol=1e-6
    )  # the score is kept even when unknown
    with pytest.raises(ClassifierError, match=r"unknown_threshold must be in \[0, 1\]"):
        ZeroShotClassifier(clip, unknown_threshold=1.5)


def test_query_scores_each_region_without_changing_vocabulary(clip, vocab, mosaic):
    frame, boxes = mosaic
    seg = box_segmentation(frame, boxes)
    clf = ZeroShotClassifier(clip)
    version = vocab.version
    s = clf.query(frame, seg, "a   cup of coffee")
    assert s.shape == (len(boxes),) and s.dtype == np.float32 and np.all((s >= 0) & (s <= 1))
    emb = clf.region_embeddings(frame, seg)
    q = clf.embed_query("a cup of coffee")
    want = 1 / (1 + np.exp(-clip.logit_scale * (emb @ q - clf.query_center)))
    np.testing.assert_allclose(s, want, atol=1e-5)
    assert vocab.version == version
    with pytest.raises(ClassifierError, match="non-empty string"):
        clf.query(frame, seg, "   ")
    with pytest.raises(ClassifierError, match="CLIP tokens"):
        clf.query(frame, seg, " ".join(["word"] * 40))


def test_an_oversized_query_is_refused_before_any_crop_or_token(clip, mosaic, monkeypatch):
    """A query text over ``MAX_QUERY_CHARS`` (whitespace runs counted as one) is refused by the
    classifier, for every caller (the node's query_regions, Python users), before its region
    crops are encoded or the text is tokenized (1 MB of text took 4.7 s to tokenize)."""
    from perception_nodes.core.classify.base import MAX_QUERY_CHARS

    frame, boxes = mosaic
    seg = box_segmentation(frame, boxes)
    clf = ZeroShotClassifier(clip)

    def not_expected(*args, **kwargs):
        raise AssertionError("work done for a refused query")

    monkeypatch.setattr(clf, "_cached_embeddings", not_expected)
    monkeypatch.setattr(clf, "embed_query", not_expected)
    text = "cup " * (MAX_QUERY_CHARS // 4 + 1)
    with pytest.raises(ClassifierError, match=f"at most {MAX_QUERY_CHARS}"):
        clf.query(frame, seg, text)
    monkeypatch.undo()  # at the limit (spaces collapsed) it is not refused for its length
    with pytest.raises(ClassifierError, match="CLIP tokens"):
        clf.query(frame, seg, "cup   " * (MAX_QUERY_CHARS // 4))


def test_bad_inputs_are_refused(clip, vocab, mosaic):
    frame, boxes = mosaic
    seg = box_segmentation(frame, boxes)
    clf = ZeroShotClassifier(clip)
    with pytest.raises(ClassifierError, match="HxWx3 uint8"):
        clf.classify(frame.astype(np.float32), seg, vocab.snapshot())
    with pytest.raises(ClassifierError, match="segmentation is for a"):
        clf.classify(frame[:100], seg, vocab.snapshot())
    with pytest.raises(ClassifierError, match="VocabularySnapshot"):
        clf.classify(frame, seg, ["cup"])


@pytest.fixture(scope="module")
def sam_generator(tmp_path_factory):
    from perception_nodes.core.sam.amg import MaskGenerator
    from perception_nodes.core.sam.backends import create_backend
    from perception_nodes.core.sam.registry import make_generated_checkpoint

    path = make_generated_checkpoint(
        TINY_SAM, tmp_path_factory.mktemp("sam") / "sam_tiny.pt", seed=0
    )
    return MaskGenerator(create_backend("torch", model=TINY_SAM, checkpoint=path)), path


def test_regionspot_end_to_end_on_photo_regions_with_generated_head(
    clip, vocab, sam_generator, tmp_path
):
    from perception_nodes.core.weights.files import sha256_file

    gen, sam_path = sam_generator
    image = skimage.data.astronaut()
    boxes = np.array([[160, 30, 330, 230], [0, 0, 150, 512], [330, 250, 512, 512]], np.float32)
    seg = gen.predict_boxes(image, boxes)  # real (tiny, random) SAM: masks + 256-d mask tokens
    assert seg.tokens.shape == (3, 256)
    ckpt = make_generated_regionspot_checkpoint(
        tmp_path / "head.pt",
        TINY_SAM,
        clip,
        seed=1,
        sam_checkpoint_sha256=sha256_file(sam_path),
        num_layers=1,
    )
    # even when a caller claims meaningful output, a generated head is flagged as not meaningful
    clf = RegionSpotClassifier.from_checkpoint(
        ckpt, clip, TINY_SAM, meaningful=True, unknown_threshold=0.0
    )
    out = clf.classify(image, seg, vocab.snapshot(), top_k=3)
    assert not out.meaningful
    assert out.label_index.shape == (3,) and np.all(
        (out.label_index >= 0) & (out.label_index < len(vocab.snapshot()))
    )
    assert np.all((out.label_score > 0) & (out.label_score < 1)) and np.all(
        np.diff(out.topk_score, axis=1) <= 0
    )
    assert out.embeddings.shape == (3, clip.embed_dim)
    assert clf.query(image, seg, "a face").shape == (3,)
    # a head made for another SAM is refused, naming the mismatch
    with pytest.raises(
        CheckpointMismatchError, match=r"SAM model: head 'sam_tiny_test', pipeline 'vit_b'"
    ):
        RegionSpotClassifier.from_checkpoint(ckpt, clip, "vit_b")
