"""Zero-shot region labels: CLIP embeddings of masked region crops vs the vocabulary."""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np

from perception_nodes.core.classify.base import ClassifierError, RegionClassifier
from perception_nodes.core.classify.clip_model import ClipModel
from perception_nodes.core.types import Segmentation
from perception_nodes.core.vocabulary.runtime import DEFAULT_TEMPLATES, embed_phrases, fill_template

logger = logging.getLogger(__name__)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class TemplatedQueryEmbedder:
    """Embeds free-text queries exactly like vocabulary entries (:func:`~..vocabulary.embed_phrases`:
    renormalised mean over templates), with a small LRU and CLIP's context-length check."""

    def __init__(self, clip: ClipModel, templates: tuple[str, ...], cache_size: int = 256) -> None:
        self.clip, self.templates = clip, tuple(templates)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = cache_size

    def __call__(self, text: str) -> np.ndarray:
        if text in self._cache:
            self._cache.move_to_end(text)
            return self._cache[text]
        n = max(self.clip.count_tokens(fill_template(t, text)) for t in self.templates)
        if n > self.clip.context_length:
            raise ClassifierError(
                f"query {text[:40]!r} needs {n} CLIP tokens; the limit is {self.clip.context_length}"
            )
        e = embed_phrases(self.clip.encode_text, [text], self.templates)[0]
        self._cache[text] = e
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return e


class ZeroShotClassifier(RegionClassifier):
    """CLIP image embedding of each region crop, cosine vs vocabulary, softmax at CLIP's scale.

    Args:
        clip: the CLIP model that also embedded the vocabulary.
        meaningful: False for generated weights (default: ``not clip.generated``).
        unknown_threshold: softmax probability below which a region is "unknown".
        padding: crop margin as a fraction of the box's longer side.
        suppress_background: fill pixels outside the mask with CLIP's mean colour.
        templates: for :meth:`query` texts (use the vocabulary's).
        query_center: cosine at which a query score is 0.5; query scores are
            ``sigmoid(logit_scale * (cos - query_center))`` (one text has no softmax partner; 0.25
            sits between typical matching (~0.3) and non-matching (~0.2) CLIP region cosines).
        batch_size: crops per CLIP forward pass.
    """

    def __init__(
        self,
        clip: ClipModel,
        meaningful: bool | None = None,
        unknown_threshold: float = 0.1,
        padding: float = 0.1,
        suppress_background: bool = True,
        templates: tuple[str, ...] = DEFAULT_TEMPLATES,
        query_center: float = 0.25,
        batch_size: int = 64,
    ) -> None:
        super().__init__(
            not clip.generated if meaningful is None else meaningful, unknown_threshold
        )
        self.clip = clip
        self.padding = float(padding)
        self.suppress_background = bool(suppress_background)
        self.query_center = float(query_center)
        self.batch_size = int(batch_size)
        self._queries = TemplatedQueryEmbedder(clip, templates)

    @property
    def embed_dim(self) -> int:
        return self.clip.embed_dim

    def region_embeddings(self, image: np.ndarray, segmentation: Segmentation) -> np.ndarray:
        masks = segmentation.masks if self.suppress_background else None
        return self.clip.encode_image_crops(
            image, segmentation.boxes_xyxy, masks, self.padding, self.batch_size
        )

    def scores(self, region_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        """Softmax over the vocabulary of ``logit_scale * cosine``, ``(N, V)``."""
        return softmax(self.clip.logit_scale * (region_emb @ text_emb.T)).astype(np.float32)

    def query_scores(self, region_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        z = self.clip.logit_scale * (region_emb @ text_emb - self.query_center)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._queries(text)
