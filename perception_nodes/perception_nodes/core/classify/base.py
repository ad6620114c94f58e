"""The interface shared by every region classifier, and the score -> labels step."""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod

import numpy as np

from perception_nodes.core.types import UNKNOWN_INDEX, RegionLabels, Segmentation
from perception_nodes.core.vocabulary.runtime import VocabularySnapshot


class ClassifierError(ValueError):
    """Bad input to a classifier (image, segmentation, vocabulary or query)."""


#: characters of a query text (whitespace runs counted as one) beyond which it is refused before
#: tokenizing: far more than CLIP's 77 tokens hold, and 1 MB took 4.7 s of an executor thread
MAX_QUERY_CHARS = 16_384


def labels_from_scores(
    scores: np.ndarray,
    vocab: VocabularySnapshot,
    top_k: int,
    unknown_threshold: float,
    meaningful: bool,
    embeddings: np.ndarray | None = None,
) -> RegionLabels:
    """Turn ``(N, V)`` scores in [0, 1] into :class:`RegionLabels`.

    The best entry becomes ``label_index`` unless its score is below ``unknown_threshold``
    (then ``UNKNOWN_INDEX``); ``topk_*`` hold the best ``min(top_k, V)`` entries, best first.
    """
    n, v = scores.shape
    k = max(0, min(int(top_k), v))
    if k == 0:
        top_i = np.zeros((n, 0), dtype=np.int64)
    else:
        part = (
            np.argpartition(-scores, k - 1, axis=1)[:, :k]
            if k < v
            else np.tile(np.arange(v), (n, 1))
        )
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        top_i = np.take_along_axis(part, order, axis=1).astype(np.int64)
    top_s = np.take_along_axis(scores, top_i, axis=1).astype(np.float32)
    if v == 0:
        best_i, best_s = np.full(n, UNKNOWN_INDEX, np.int64), np.zeros(n, np.float32)
    else:
        best_i = scores.argmax(axis=1).astype(np.int64)
        best_s = scores[np.arange(n), best_i].astype(np.float32)
        best_i = np.where(best_s >= unknown_threshold, best_i, UNKNOWN_INDEX)
    return RegionLabels(
        label_index=best_i,
        label_score=best_s,
        topk_index=top_i,
        topk_score=top_s,
        labels=list(vocab.labels),
        vocabulary_version=vocab.version,
        embeddings=embeddings,
        meaningful=meaningful,
    )


def check_inputs(image: np.ndarray, segmentation: Segmentation) -> None:
    """Raise :class:`ClassifierError` unless image is HxWx3 uint8 and matches the segmentation."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
    ):
        raise ClassifierError(
            f"image must be an HxWx3 uint8 RGB array, got {getattr(image, 'dtype', type(image))} "
            f"{getattr(image, 'shape', '')}"
        )
    if not isinstance(segmentation, Segmentation):
        raise ClassifierError(
            f"segmentation must be a Segmentation, got {type(segmentation).__name__}"
        )
    if tuple(segmentation.image_size) != image.shape[:2]:
        raise ClassifierError(
            f"segmentation is for a {segmentation.image_size} image, the image is {image.shape[:2]}"
        )


class RegionClassifier(ABC):
    """Labels the regions of one frame against a vocabulary snapshot.

    Subclasses implement :meth:`region_embeddings` (``(N, D)`` in the text space, computed
    once per frame and cached for a following :meth:`query`) and :meth:`scores`.

    Args:
        meaningful: False when the weights are generated (untrained); copied into every
            :class:`RegionLabels`.
        unknown_threshold: best scores below this give ``label_index = -1``.
    """

    def __init__(self, meaningful: bool, unknown_threshold: float) -> None:
        if not 0.0 <= unknown_threshold <= 1.0:
            raise ClassifierError(f"unknown_threshold must be in [0, 1], got {unknown_threshold}")
        self.meaningful = bool(meaningful)
        self.unknown_threshold = float(unknown_threshold)
        self._cache_lock = threading.Lock()
        self._cache_key: bytes | None = None
        self._cache_val: np.ndarray | None = None

    @abstractmethod
    def region_embeddings(self, image: np.ndarray, segmentation: Segmentation) -> np.ndarray:
        """``(N, D)`` float32 L2-normalised region embeddings in the CLIP text space."""

    @abstractmethod
    def scores(self, region_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        """``(N, V)`` float32 calibrated scores in [0, 1] of regions vs vocabulary entries."""

    @abstractmethod
    def query_scores(self, region_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        """``(N,)`` float32 scores in [0, 1] of regions vs ONE text embedding ``(D,)``."""

    @abstractmethod
    def embed_query(self, text: str) -> np.ndarray:
        """``(D,)`` normalised embedding of a free-text query (templates as the vocabulary)."""

    def classify(
        self,
        image: np.ndarray,
        segmentation: Segmentation,
        vocab: VocabularySnapshot,
        top_k: int = 5,
    ) -> RegionLabels:
        """Label every region of ``segmentation`` (of ``image``, HxWx3 uint8 RGB) with ``vocab``."""
        if not isinstance(vocab, VocabularySnapshot):
            raise ClassifierError(f"vocab must be a VocabularySnapshot, got {type(vocab).__name__}")
        emb = self._cached_embeddings(image, segmentation)
        if vocab.embeddings.shape[1] != emb.shape[1] and len(vocab):
            raise ClassifierError(
                f"vocabulary embeddings are {vocab.embeddings.shape[1]}-d (model "
                f"{vocab.model_id}); this classifier produces {emb.shape[1]}-d"
            )
        s = (
            self.scores(emb, vocab.embeddings)
            if len(vocab)
            else np.zeros((len(emb), 0), np.float32)
        )
        return labels_from_scores(s, vocab, top_k, self.unknown_threshold, self.meaningful, emb)

    def query(self, image: np.ndarray, segmentation: Segmentation, text: str) -> np.ndarray:
        """``(N,)`` scores in [0, 1] of each region against free ``text`` (vocabulary unchanged)."""
        if not isinstance(text, str) or not text.strip():
            raise ClassifierError("query text must be a non-empty string")
        text = " ".join(text.split())
        if len(text) > MAX_QUERY_CHARS:  # before any crop or token is computed
            raise ClassifierError(
                f"query text has {len(text)} characters; at most {MAX_QUERY_CHARS}"
            )
        emb = self._cached_embeddings(image, segmentation)
        return self.query_scores(emb, self.embed_query(text))

    def _cached_embeddings(self, image: np.ndarray, segmentation: Segmentation) -> np.ndarray:
        """Region embeddings of this (image, segmentation), reused by a following call."""
        check_inputs(image, segmentation)
        h = hashlib.blake2b(digest_size=16)
        for a in (image, segmentation.boxes_xyxy, segmentation.tokens):
            h.update(np.ascontiguousarray(a).data)
        h.update(
            np.ascontiguousarray(segmentation.areas).data
        )  # masks: too costly to hash per frame
        key = h.digest()
        with self._cache_lock:
            if key == self._cache_key and self._cache_val is not None:
                return self._cache_val
        emb = self.region_embeddings(image, segmentation) if len(segmentation) else None
        if emb is None:
            emb = np.zeros((0, self.embed_dim), np.float32)
        with self._cache_lock:
            self._cache_key, self._cache_val = key, emb
        return emb

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """D, the text-space dimension."""
