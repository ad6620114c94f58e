"""Per-frame overlay helpers of issue 17 against the code they replaced: captions from one
``tolist()`` per array equal :func:`region_text` per region, and the blend tables from looked-up
powers equal raising every entry (bit for bit, so the overlay is unchanged)."""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.core.output.draw import blend_tables, region_text, region_texts
from perception_nodes.core.output.scene_graph import SceneGraph


def _graph(rng, n: int) -> SceneGraph:
    # scores at and around the rounding points of two decimals, tracked and untracked regions
    edges = np.float32([0.005, 0.015, 0.125, 0.995, 0.0, 1.0, 0.335, 0.665])
    scores = np.concatenate([edges, rng.random(n)]).astype(np.float32)[:n]
    tracks = np.where(rng.random(n) < 0.5, rng.integers(1, 2**63, n), 0).astype(np.uint64)
    return SceneGraph(
        image_size=(10, 10), region_ids=rng.permutation(np.arange(1, n + 1)).astype(np.uint32),
        labels=[f"thing {i % 7}" for i in range(n)], label_index=np.zeros(n, np.int64),
        label_scores=scores, boxes_xyxy=np.zeros((n, 4), np.float32),
        areas=np.zeros(n, np.int64), centroids=np.zeros((n, 3), np.float32),
        mask_counts=[[100]] * n, subject=np.zeros(0, np.int64), object=np.zeros(0, np.int64),
        predicate_index=np.zeros(0, np.int64), relation_scores=np.zeros(0, np.float32),
        predicates=[], track_ids=tracks,
    )  # fmt: skip


def test_region_texts_equal_region_text_per_region():
    rng = np.random.default_rng(0)
    for n in (0, 1, 8, 300):
        graph = _graph(rng, n)
        assert region_texts(graph) == [region_text(graph, i) for i in range(n)]
    assert any(t.startswith("#") for t in region_texts(graph))
    assert any(":" in t.split()[0] for t in region_texts(graph))


def _previous_tables(members, colours, alpha):
    """``blend_tables`` before: every weight raised on its own."""
    keep = 1.0 - float(alpha)
    k = members.sum(axis=1)
    after = k[:, None] - np.cumsum(members, axis=1)
    weights = np.where(members, float(alpha) * keep ** after.astype(np.float64), 0.0)
    offset = (weights @ colours.astype(np.float64)).astype(np.float32)
    scale = (keep ** k.astype(np.float64)).astype(np.float32)
    tables = scale[:, None, None] * np.arange(256, dtype=np.float32) + offset[:, :, None]
    return np.clip(tables, 0, 255, out=tables).astype(np.uint8)


@pytest.mark.parametrize("alpha", [0.45, 0.3, 0.7, 0.123456, 1.0, 0.0])
def test_blend_tables_equal_the_previous_powers(alpha):
    rng = np.random.default_rng(int(alpha * 1000))
    for n, s in ((1, 1), (17, 40), (100, 347), (300, 900)):
        members = rng.random((s, n)) < rng.uniform(0.02, 0.6)
        colours = rng.integers(0, 256, (n, 3)).astype(np.uint8)
        got = blend_tables(members, colours, alpha)
        assert got.dtype == np.uint8 and np.array_equal(
            got, _previous_tables(members, colours, alpha)
        )


def test_unique_rows_name_each_set_once_whatever_the_path(monkeypatch):
    """``_unique_rows`` for 1, 2 and 3 words per row: the distinct rows, each row's index
    among them, the empty set first; also through the np.unique fallbacks (keys whose 32-bit
    hashes collide, 64-bit keys shared by different rows)."""
    from perception_nodes.core.output import draw

    rng = np.random.default_rng(3)
    for k in (1, 2, 3):
        pool = rng.integers(0, 2**63, (300, k), dtype=np.int64).astype(np.uint64)
        pool[0] = 0
        words = pool[np.concatenate([[0], rng.integers(0, 300, 20000)])]
        # one word is its own key; more words are hashed, and a shared key is checked
        for patch in (None, "no_hash_order") + (("shared_keys",) if k > 1 else ()):
            with monkeypatch.context() as m:
                if patch == "no_hash_order":
                    m.setattr(draw, "_hash_order", lambda key: None)
                elif patch == "shared_keys":
                    m.setattr(draw, "_row_keys", lambda w: w[:, 0] & np.uint64(7))
                rows, inverse = draw._unique_rows(words)
            assert np.array_equal(rows[inverse], words), (k, patch)
            assert len(np.unique(rows, axis=0)) == len(rows) == len(np.unique(words, axis=0))
            assert not rows[inverse[0]].any()


def test_hash_order_gives_up_on_colliding_hashes():
    from perception_nodes.core.output.draw import _hash_order

    golden = 0x9E3779B97F4A7C15
    step = pow(golden, -1, 2**64)  # key + step: the hash grows by 1, its top 32 bits stay
    a = 123456789
    key = np.array([a, (a + step) % 2**64, a, 5, 5], np.uint64)
    assert _hash_order(key) is None
    key = np.array([a, 5, a, 7, 5, a], np.uint64)
    order = _hash_order(key)
    assert sorted(order.tolist()) == list(range(6))
    runs = 1 + int(np.count_nonzero(key[order][1:] != key[order][:-1]))
    assert runs == 3  # equal keys adjacent
