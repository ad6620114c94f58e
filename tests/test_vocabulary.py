"""Runtime vocabulary: atomic swaps under concurrency, limits and bad entries, cache, templates, exemplars.

Uses the tiny test CLIP (open_clip's real towers, generated weights saved and loaded through the
real loader); its context length is 32 tokens, which the token-limit test relies on.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import skimage.data
from classify_fixtures import box_segmentation, tiny_clip

from perception_nodes.core.classify.zero_shot import ZeroShotClassifier
from perception_nodes.core.vocabulary.arrival_order import ArrivalTurns
from perception_nodes.core.vocabulary.checks import fold
from perception_nodes.core.vocabulary.runtime import Vocabulary, VocabularyError, VocabularyLimits


class CountingEmbedder:
    """Delegates to a ClipModel and counts text-encoder calls and prompts."""

    def __init__(self, clip) -> None:
        self.clip = clip
        self.model_id, self.embed_dim, self.context_length = (
            clip.model_id,
            clip.embed_dim,
            clip.context_length,
        )
        self.calls = 0
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return self.clip.count_tokens(text)

    def encode_text(self, phrases: list[str]) -> np.ndarray:
        self.calls += 1
        self.prompts.extend(phrases)
        return self.clip.encode_text(phrases)

    def encode_image_crops(self, image, boxes_xyxy, masks=None):
        return self.clip.encode_image_crops(image, boxes_xyxy, masks)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture
def counting(clip):
    return CountingEmbedder(clip)


POOL = [
    ["cup", "plate"],
    ["red mug", "the red mug on the left shelf", "bowl", "spoon"],
    ["chair", "table", "sofa"],
    ["person", "dog", "cat", "bicycle", "car", "traffic light"],
]


def test_concurrent_set_and_classify_see_one_snapshot(clip):
    """Writers swap vocabularies while readers classify: every result matches ONE published version."""
    vocab = Vocabulary(clip, templates=["a photo of a {}.", "a {}."])
    ref = Vocabulary(clip, templates=["a photo of a {}.", "a {}."])
    expected = {tuple(labels): np.array(ref.set(labels).embeddings) for labels in POOL}
    image = skimage.data.astronaut()[::4, ::4].copy()  # 128 x 128
    seg = box_segmentation(
        image, np.array([[10, 10, 60, 60], [60, 20, 120, 100], [0, 64, 64, 128]], np.float32)
    )
    clf = ZeroShotClassifier(clip, meaningful=False)
    region_emb = clf.region_embeddings(image, seg)
    published: dict[int, tuple] = {}
    superseded: list[int] = []
    errors: list[str] = []
    seen: set[int] = set()
    stop = threading.Event()
    n_sets = 12

    def writer(offset: int) -> None:
        for i in range(n_sets):
            change = vocab.change(POOL[(i + offset) % len(POOL)])
            if change.superseded:  # a later-arrived writer published first
                superseded.append(change.snapshot.version)
            else:
                published[change.snapshot.version] = change.snapshot.labels

    def reader() -> None:
        last_version = 0
        while not stop.is_set():
            snap = vocab.snapshot()
            out = clf.classify(image, seg, snap, top_k=2)
            if snap.version < last_version:
                errors.append(f"version went back {last_version} -> {snap.version}")
            last_version = snap.version
            seen.add(snap.version)
            if snap.version == 0:
                continue
            exp = expected.get(snap.labels)
            if exp is None or not np.allclose(snap.embeddings, exp, atol=1e-5):
                errors.append(f"v{snap.version}: embeddings do not belong to labels {snap.labels}")
            if out.vocabulary_version != snap.version or tuple(out.labels) != snap.labels:
                errors.append(
                    f"v{snap.version}: result labelled with v{out.vocabulary_version} {out.labels}"
                )
            want = clf.scores(region_emb, exp if exp is not None else snap.embeddings)
            if not np.allclose(out.topk_score[:, 0], want.max(axis=1), atol=1e-5):
                errors.append(
                    f"v{snap.version}: scores not computed from this snapshot's embeddings"
                )

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[:5]
    assert len(seen) >= 3, (
        f"readers saw only versions {seen}: the test did not overlap reads and writes"
    )
    # every set() published exactly one new version, numbered 1..N without gaps, or was
    # superseded by a later-arrived one (and then names a published version)
    assert len(published) + len(superseded) == 3 * n_sets
    assert sorted(published) == list(range(1, len(published) + 1))
    assert set(superseded) <= set(published) and vocab.version == len(published)
    assert vocab.snapshot().labels == published[vocab.version]


def test_version_increments_and_snapshot_is_immutable(counting):
    vocab = Vocabulary(counting)
    assert vocab.version == 0 and len(vocab.snapshot()) == 0
    s1 = vocab.set(["cup"])
    s2 = vocab.set(["plate"], append=True)
    assert (s1.version, s2.version) == (1, 2)
    assert s2.labels == ("cup", "plate") and s2.kinds == ("text", "text")
    assert s1.labels == ("cup",)  # an old snapshot never changes
    with pytest.raises(ValueError):
        s2.embeddings[0, 0] = 1.0  # read-only array
    np.testing.assert_allclose(np.linalg.norm(s2.embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "labels, match",
    [
        (["cup", ""], r"entry 1 is empty"),
        (["   "], r"entry 0 is empty"),
        (["Red  Cup", "red cup"], r"duplicate entry 'red cup' \(same as 'Red Cup'"),
        (["CUP", "cup"], r"duplicate entry 'cup'"),
        (["cup", 3], r"entry 1 must be a string, got int"),
        ([None], r"entry 0 must be a string, got NoneType"),
        ("cup", r"labels must be a list of strings, got str"),
        (["x" * 300], r"has 300 characters; the limit is 256"),
        (
            [" ".join(["word"] * 30)],
            r"needs \d+ CLIP tokens with its templates; the text encoder takes 32",
        ),
    ],
)
def test_bad_entries_are_refused_and_change_nothing(counting, labels, match):
    vocab = Vocabulary(counting)
    before = vocab.set(["keep me"])
    with pytest.raises(VocabularyError, match=match):
        vocab.set(labels)
    assert vocab.snapshot() is before


def test_too_many_entries(counting):
    vocab = Vocabulary(counting, limits=VocabularyLimits(max_entries=3))
    vocab.set(["a", "b"])
    with pytest.raises(VocabularyError, match="4 entries exceed the limit of 3"):
        vocab.set(["c", "d"], append=True)
    with pytest.raises(VocabularyError, match="duplicate entry 'A'"):
        vocab.set(["A"], append=True)
    assert vocab.snapshot().labels == ("a", "b") and vocab.version == 1


def test_fold():
    assert fold("  Red\tCUP ") == fold("red cup") == "red cup"
    assert fold("ﬁsh") == "fish"  # NFKC ligature


def test_cache_hit_on_repeats(counting):
    vocab = Vocabulary(counting, templates=["a photo of a {}.", "a {}."])
    vocab.set(["cup", "plate"])
    assert counting.calls == 1 and len(counting.prompts) == 4  # 2 phrases x 2 templates, one batch
    vocab.set(["plate", "cup"])  # same phrases: no encoder call, new version
    assert counting.calls == 1 and vocab.version == 2
    vocab.set(["cup", "bowl"])  # only the new phrase is encoded
    assert counting.calls == 2 and counting.prompts[-2:] == ["a photo of a bowl.", "a bowl."]
    s = vocab.set(["cup", "plate", "bowl"])
    assert counting.calls == 2
    # cached rows are exactly what a fresh vocabulary computes
    fresh = Vocabulary(CountingEmbedder(counting.clip), templates=["a photo of a {}.", "a {}."])
    np.testing.assert_allclose(
        s.embeddings, fresh.set(["cup", "plate", "bowl"]).embeddings, atol=1e-5
    )
    vocab.set(["cup"], templates=["a {}."])  # other templates: another cache key
    assert counting.calls == 3 and counting.prompts[-1] == "a {}.".format("cup")


def test_templates_configurable(counting):
    vocab = Vocabulary(counting, templates=["a photo of a {}."])
    s = vocab.set(["cup"], templates=["{}", "a drawing of a {}."])
    assert s.templates == ("{}", "a drawing of a {}.")
    raw = counting.clip.encode_text(["cup", "a drawing of a cup."]).mean(axis=0)
    np.testing.assert_allclose(s.embeddings[0], raw / np.linalg.norm(raw), atol=1e-5)
    assert vocab.set(["plate"], append=True).templates == s.templates  # kept for later changes
    for bad, match in [
        ([], "non-empty list"),
        (["no slot"], "exactly once"),
        (["{} and {}"], "exactly once"),
        (["{{}}"], "exactly once"),  # formats to "{}": no place for the phrase
        ("a {}", "non-empty list"),
        (["{0} {}"], "exactly once|not a valid"),
    ]:
        with pytest.raises(VocabularyError, match=match):
            vocab.set(["cup"], templates=bad)
    with pytest.raises(VocabularyError, match="templates exceed the limit"):
        Vocabulary(
            counting, limits=VocabularyLimits(max_templates=2), templates=["{}", "a {}", "the {}"]
        )


def test_exemplar_entries(counting):
    vocab = Vocabulary(counting)
    vocab.set(["cat", "dog"])
    image = skimage.data.chelsea()
    mask = np.zeros(image.shape[:2], bool)
    mask[40:260, 120:320] = True
    s = vocab.add_exemplar("my cat Chelsea", image, mask=mask)
    assert (
        s.labels[-1] == "my cat Chelsea"
        and s.kinds == ("text", "text", "exemplar")
        and s.version == 2
    )
    want = counting.clip.encode_image_crops(
        image, np.array([[120, 40, 320, 260]], np.float32), mask[None]
    )[0]
    np.testing.assert_allclose(s.embeddings[2], want / np.linalg.norm(want), atol=1e-5)
    # a box-only exemplar, kept by an append, dropped by a replacing set
    s = vocab.add_exemplar("coffee", skimage.data.coffee(), box=[180, 20, 480, 300])
    assert s.kinds[-1] == "exemplar" and vocab.set(["bird"], append=True).labels[-2:] == (
        "coffee",
        "bird",
    )
    assert vocab.set(["bird"]).kinds == ("text",)
    with pytest.raises(VocabularyError, match="needs a mask"):
        vocab.add_exemplar("x", image)
    with pytest.raises(VocabularyError, match="mask is empty"):
        vocab.add_exemplar("x", image, mask=np.zeros(image.shape[:2], bool))
    with pytest.raises(VocabularyError, match=r"mask must be 300x451"):
        vocab.add_exemplar("x", image, mask=np.ones((10, 10), bool))
    with pytest.raises(VocabularyError, match="HxWx3 uint8"):
        vocab.add_exemplar("x", image.astype(np.float32), box=[0, 0, 5, 5])
    with pytest.raises(VocabularyError, match="x1 > x0"):
        vocab.add_exemplar("x", image, box=[10, 10, 5, 20])
    with pytest.raises(VocabularyError, match="duplicate entry 'BIRD'"):
        vocab.add_exemplar("BIRD", image, box=[0, 0, 50, 50])
    assert vocab.snapshot().labels == ("bird",)


def _slow_first(counting, first, second):
    """Run ``first()`` in a thread whose text encoding takes 0.5 s, then ``second()`` once that
    encoding has started; returns both results."""
    slow_started = threading.Event()
    encode = counting.encode_text

    def slow_encode(phrases):
        slow_started.set()
        threading.Event().wait(0.5)
        return encode(phrases)

    counting.encode_text = slow_encode
    results = {}
    thread = threading.Thread(target=lambda: results.update(first=first()))
    thread.start()
    assert slow_started.wait(5)
    counting.encode_text = encode
    results["second"] = second()
    thread.join(5)
    return results["first"], results["second"]


def test_an_earlier_slow_replacement_never_overrides_a_later_one(counting):
    """A caller's second change must not be overtaken by its first (found by CI: versions
    [4, 5, 7, 6] for changes sent in order): the later one is in force, the earlier one says it
    was superseded, and the fast one did not wait for the slow one."""
    vocab = Vocabulary(counting)
    vocab.set(["mug"])  # cached: the second change below encodes nothing
    t0 = time.monotonic()
    first, second = _slow_first(
        counting, lambda: vocab.change(["plate", "bowl"]), lambda: vocab.change(["mug"])
    )
    assert second.snapshot.labels == ("mug",) and not second.superseded
    assert first.superseded and first.snapshot.version == second.snapshot.version
    assert vocab.snapshot().labels == ("mug",) and vocab.version == second.snapshot.version
    assert time.monotonic() - t0 < 5


def test_an_append_waits_for_the_change_before_it(counting):
    vocab = Vocabulary(counting)
    vocab.set(["mug"])
    first, second = _slow_first(
        counting,
        lambda: vocab.change(["plate", "bowl"]),
        lambda: vocab.change(["mug"], append=True),
    )
    assert not first.superseded and not second.superseded
    assert second.snapshot.version == first.snapshot.version + 1
    assert vocab.snapshot().labels == ("plate", "bowl", "mug")


def test_a_replacement_keeping_the_templates_waits_for_an_earlier_template_change(counting):
    vocab = Vocabulary(counting)
    vocab.set(["mug"])
    first, second = _slow_first(
        counting,
        lambda: vocab.change(["plate"], templates=["a photo of a {}."]),
        lambda: vocab.change(["mug"]),
    )
    assert not first.superseded and second.snapshot.version == first.snapshot.version + 1
    assert vocab.snapshot().labels == ("mug",)
    assert vocab.snapshot().templates == ("a photo of a {}.",)


def test_a_refused_writer_does_not_stall_the_ones_behind_it(counting):
    vocab = Vocabulary(counting)
    with pytest.raises(VocabularyError):
        vocab.set(["cup", "CUP"])
    counting.encode_text = lambda phrases: (_ for _ in ()).throw(RuntimeError("encoder down"))
    with pytest.raises(RuntimeError, match="encoder down"):
        vocab.set(["fresh phrase"])
    del counting.encode_text
    done = threading.Event()
    threading.Thread(target=lambda: (vocab.set(["cup"]), done.set()), daemon=True).start()
    assert done.wait(10) and vocab.snapshot().labels == ("cup",)


def test_a_long_change_is_abandoned_between_encoder_chunks_and_changes_nothing(counting):
    """Shutdown during a change of 1,000 entries: abandoned at the next chunk, the vocabulary
    in force stays, and the next change is not blocked by the abandoned one's turn."""
    from perception_nodes.core.stream.cancel import WorkAbandoned
    from perception_nodes.core.vocabulary.runtime import ENCODE_CHUNK_PHRASES

    vocab = Vocabulary(counting, templates=["a photo of a {}."])
    before = vocab.set(["cup", "plate"])
    labels = [f"thing number {i}" for i in range(1000)]
    calls = counting.calls
    with pytest.raises(WorkAbandoned):
        vocab.change(labels, should_stop=lambda: counting.calls > calls)  # stop after 1 chunk
    assert counting.calls == calls + 1 and len(counting.prompts) <= ENCODE_CHUNK_PHRASES + 2
    assert vocab.snapshot() is before
    assert vocab.set(["bowl"]).labels == ("bowl",)  # its ticket was released


def test_chunked_encoding_gives_the_embeddings_of_one_call(clip):
    """Encoding in chunks between stop checks changes no number (chunks align with the text
    encoder's batches)."""
    from perception_nodes.core.vocabulary.runtime import ENCODE_CHUNK_PHRASES, embed_phrases

    labels = [f"thing number {i}" for i in range(ENCODE_CHUNK_PHRASES + 37)]
    templates = ("a photo of a {}.", "a {}.", "一张{}的照片")
    whole = embed_phrases(clip.encode_text, labels, templates)
    chunked = Vocabulary(clip, templates=list(templates)).set(labels).embeddings
    np.testing.assert_array_equal(np.asarray(chunked), whole)


def test_changes_take_their_place_in_the_order_of_the_calls_not_of_their_threads(counting):
    """The node runs each set_vocabulary call on a thread of its own; a later call's thread can
    start first (CI: a caller's slow change was published after its later fast one, v6 over
    v5). With arrival turns taken in call order, the slow first change is superseded by the fast
    second one although the second one's thread took its turn first."""
    vocab, turns = Vocabulary(counting), ArrivalTurns()
    vocab.set(["mug"])  # cached: the second change encodes nothing
    first_turn, second_turn = turns.take(), turns.take()  # the order the calls arrived in
    encode, results = counting.encode_text, {}

    def slow_encode(phrases):
        threading.Event().wait(0.3)
        return encode(phrases)

    counting.encode_text = slow_encode

    def call(key, turn, labels):
        try:
            turns.wait(turn)
            results[key] = vocab.change(labels, on_ticket=lambda: turns.done(turn))
        finally:
            turns.done(turn)

    second = threading.Thread(target=call, args=("second", second_turn, ["mug"]))
    second.start()  # the later call's thread runs first
    threading.Event().wait(0.1)
    first = threading.Thread(target=call, args=("first", first_turn, ["plate", "bowl"]))
    first.start()
    first.join(10)
    second.join(10)
    counting.encode_text = encode
    assert results["second"].snapshot.labels == ("mug",) and not results["second"].superseded
    assert results["first"].superseded and vocab.snapshot().labels == ("mug",)
