"""The runtime vocabulary: text phrases (and example regions) embedded once per change.

Every entry is embedded on its own (APE-style: a phrase of any length is one sentence-level
CLIP embedding), averaged over prompt templates, so labelling against V entries costs one
``(N, D) x (D, V)`` product per frame. A change builds a new immutable
:class:`VocabularySnapshot` and swaps it in with one reference assignment: readers never see
half of a vocabulary and never wait for a writer. Text embeddings are cached by
``(model id, templates, phrase)``, so re-setting a vocabulary costs nothing. What an entry or a
template may be: :mod:`.checks`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from perception_nodes.core.config import DEFAULT_TEMPLATES  # noqa: F401 (re-exported: the one default list, labels and queries)
from perception_nodes.core.stream.cancel import WorkAbandoned
from perception_nodes.core.vocabulary.arrival_order import ArrivalOrder
from perception_nodes.core.vocabulary.checks import (  # noqa: F401 (the public API of core.vocabulary)
    VocabularyError,
    VocabularyLimits,
    check_labels,
    check_templates,
    check_unique,
    check_vocabulary,
    fill_template,
    normalised_phrase,
)

logger = logging.getLogger(__name__)

# phrases per text-encoder chunk, between two stop checks; a multiple of ClipModel.encode_text's
# batch of 256 prompts for any template count, so chunking leaves the batches (and the numbers)
# as they were
ENCODE_CHUNK_PHRASES = 256
TEMPLATE_OVERHEADS_KEPT = 64  # template sets whose token overhead is memoised (then cleared)


class Embedder(Protocol):
    """What the vocabulary needs from a CLIP model (:class:`~.clip_model.ClipModel` has it)."""

    model_id: str
    embed_dim: int
    context_length: int

    def count_tokens(self, text: str) -> int: ...

    def encode_text(self, phrases: list[str]) -> np.ndarray: ...

    def encode_image_crops(
        self, image: np.ndarray, boxes_xyxy: np.ndarray, masks: np.ndarray | None = None
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class VocabularySnapshot:
    """One immutable version of the vocabulary.

    Attributes:
        version: increases by one with every change (0 = the initial empty vocabulary).
        labels: entry names; ``labels[i]`` is the text of embedding row ``i``.
        templates: prompt templates the text entries were averaged over.
        embeddings: ``(V, D)`` float32, L2-normalised, read-only.
        kinds: per entry ``"text"`` or ``"exemplar"``.
        model_id: the CLIP model (architecture + weights) that made the embeddings.
    """

    version: int
    labels: tuple[str, ...]
    templates: tuple[str, ...]
    embeddings: np.ndarray
    kinds: tuple[str, ...] = ()
    model_id: str = ""

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class VocabularyChange:
    """Outcome of :meth:`Vocabulary.change`: the snapshot in force afterwards; ``superseded``
    when this change was not published because a change that arrived after it already was
    (that later vocabulary is ``snapshot``)."""

    snapshot: VocabularySnapshot
    superseded: bool = False


def embed_phrases(encode_text, phrases: list[str], templates: tuple[str, ...]) -> np.ndarray:
    """``(len(phrases), D)`` float32: per phrase the renormalised mean of the text embeddings of
    its prompts under ``templates`` (:func:`fill_template`). ``encode_text(list[str]) -> (M, D)``.
    One recipe for vocabulary entries and free-text queries alike."""
    prompts = [fill_template(t, p) for p in phrases for t in templates]
    per = np.asarray(encode_text(prompts), dtype=np.float32)
    per = per.reshape(len(phrases), len(templates), -1).mean(axis=1)
    return per / np.maximum(np.linalg.norm(per, axis=1, keepdims=True), 1e-12)


@dataclass
class _Entry:
    name: str
    kind: str  # "text" | "exemplar"
    embedding: np.ndarray | None = field(default=None)  # exemplars only


class Vocabulary:
    """Thread-safe runtime vocabulary.

    Args:
        embedder: a CLIP model (see :class:`Embedder`).
        templates: default prompt templates, each containing ``{}`` once.
        limits: size limits.
        cache_size: max cached phrase embeddings (LRU).
    """

    def __init__(
        self,
        embedder: Embedder,
        templates: tuple[str, ...] | list[str] = DEFAULT_TEMPLATES,
        limits: VocabularyLimits | None = None,
        cache_size: int = 200_000,
    ) -> None:
        self.embedder = embedder
        self.limits = limits or VocabularyLimits()
        self._templates = self._check_templates(templates)
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._write_lock = threading.Lock()  # serialises writers; readers never take it
        self._order = ArrivalOrder()  # writers ordered by arrival (encoding in parallel)
        self._cache_lock = threading.Lock()  # the embedding cache (encoding runs outside it)
        self._overhead_lock = threading.Lock()  # the template-overhead memo
        self._overhead: dict[tuple[str, ...], int] = {}  # templates -> their token overhead
        self._entries: list[_Entry] = []
        self.text_encoder_calls = 0  # encode_text batches issued (cache misses only)
        self.phrases_encoded = 0
        self._snapshot = VocabularySnapshot(
            0,
            (),
            self._templates,
            _readonly(np.zeros((0, embedder.embed_dim), np.float32)),
            (),
            embedder.model_id,
        )

    # ------------------------------------------------------------------ readers
    def snapshot(self) -> VocabularySnapshot:
        """The current vocabulary (an immutable object; safe to use while others change it)."""
        return self._snapshot

    @property
    def version(self) -> int:
        return self._snapshot.version

    # ------------------------------------------------------------------ writers
    def set(
        self, labels: list[str], templates: list[str] | None = None, append: bool = False
    ) -> VocabularySnapshot:
        """Replace (or with ``append`` extend) the text entries; returns the snapshot in force
        afterwards (see :meth:`change`)."""
        return self.change(labels, templates, append).snapshot

    def change(
        self,
        labels: list[str],
        templates: list[str] | None = None,
        append: bool = False,
        should_stop: Callable[[], bool] | None = None,
        on_ticket: Callable[[], object] | None = None,
    ) -> VocabularyChange:
        """Replace (or with ``append`` extend) the text entries.

        ``templates`` (when given) become the vocabulary's templates for every text entry.
        With ``append=False`` exemplar entries are dropped too. Raises
        :class:`VocabularyError` (and changes nothing) on empty/over-long/duplicate phrases,
        bad templates or too many entries. Concurrent writers are ordered by arrival
        (:mod:`.arrival_order`): a replacement that arrived before another one already published
        is not published (``superseded``: the later vocabulary stays in force).
        ``should_stop`` (e.g. the node's shutdown event) is polled between text-encoder chunks:
        :class:`~perception_nodes.core.stream.cancel.WorkAbandoned` then, nothing changed.
        ``on_ticket()`` is called once this change's place in the arrival order is taken.
        """
        requested = None if templates is None else self._check_templates(templates)

        def encode_ahead() -> None:  # in parallel with other writers
            self.prepare(labels, requested, should_stop)

        barrier = requested is not None
        with self._order.arrive(encode_ahead, barrier, on_ticket) as ticket:
            if append:
                self._order.wait_for_earlier(ticket)  # builds on the current entries
            elif requested is None:
                self._order.wait_for_earlier_barriers(ticket)  # keeps the current templates
            with self._write_lock:
                tpl = self._templates if requested is None else requested
                base = list(self._entries) if append else []
                if append and isinstance(labels, (list, tuple)) and not labels:
                    new = []  # append nothing: the templates change only
                else:
                    new = [_Entry(p, "text") for p in self._checked_phrases(labels, tpl)]
                entries = base + new
                self._check_entries(entries)
                if self._order.superseded(ticket):
                    return VocabularyChange(self._snapshot, superseded=True)
                self._order.published(ticket)
                return VocabularyChange(self._publish(entries, tpl, should_stop))

    def prepare(self, labels, templates=None, should_stop: Callable | None = None) -> None:
        """Encode ``labels`` under ``templates`` (None: the current ones) into the embedding cache,
        changing nothing (a change to them then looks them up); what a change refuses is skipped."""
        if isinstance(labels, (list, tuple)) and labels:
            try:
                tpl = self._templates if templates is None else self._check_templates(templates)
                self._embed_phrases(self._checked_phrases(labels, tpl), tpl, should_stop)
            except VocabularyError:
                pass  # refused by the change, with the reason

    def check(self, labels: list[str], templates: list[str] | None = None) -> None:
        """VocabularyError for what ``set(labels, templates)`` would refuse; changes nothing."""
        tpl = self._templates if templates is None else self._check_templates(templates)
        self._checked_phrases(labels, tpl)

    def _checked_phrases(self, labels: object, templates: tuple[str, ...]) -> list[str]:
        """:func:`check_labels` plus the CLIP token limit of each phrase with ``templates``."""
        phrases = check_labels(labels, self.limits)
        return [self._check_phrase(p, i, templates) for i, p in enumerate(phrases)]

    def add_exemplar(
        self,
        name: str,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        box: np.ndarray | list[float] | None = None,
    ) -> VocabularySnapshot:
        """Append an entry defined by an example region (a visual prompt).

        The CLIP embedding of the masked crop (``mask`` ``HxW`` bool and/or ``box`` XYXY pixels;
        the box defaults to the mask's tight box) becomes the class embedding of ``name``.
        """
        if mask is None and box is None:
            raise VocabularyError("add_exemplar needs a mask (HxW bool) or a box (XYXY pixels)")
        if (
            not isinstance(image, np.ndarray)
            or image.ndim != 3
            or image.shape[2] != 3
            or image.dtype != np.uint8
        ):
            raise VocabularyError(
                f"exemplar image must be HxWx3 uint8 RGB, got {getattr(image, 'shape', image)}"
            )
        h, w = image.shape[:2]
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (h, w):
                raise VocabularyError(
                    f"exemplar mask must be {h}x{w} bool like the image, got {mask.shape}"
                )
            mask = mask.astype(bool)
            if not mask.any():
                raise VocabularyError("exemplar mask is empty")
        if box is None:
            ys, xs = np.nonzero(mask)
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        box = np.asarray(box, dtype=np.float32).reshape(-1)
        if (
            box.shape != (4,)
            or not np.all(np.isfinite(box))
            or box[2] <= box[0]
            or box[3] <= box[1]
        ):
            raise VocabularyError(
                f"exemplar box must be XYXY with x1 > x0 and y1 > y0, got {box.tolist()}"
            )
        with self._order.arrive() as ticket:
            self._order.wait_for_earlier(ticket)  # builds on the current entries
            return self._add_exemplar_entry(ticket, name, image, mask, box)

    def _add_exemplar_entry(self, ticket: int, name: str, image, mask, box) -> VocabularySnapshot:
        with self._write_lock:
            entry = _Entry(self._check_phrase(name, 0, self._templates), "exemplar")
            entries = self._entries + [entry]
            self._check_entries(entries)
            masks = None if mask is None else mask[None]
            emb = self.embedder.encode_image_crops(image, box[None], masks)[0].astype(np.float32)
            entry.embedding = emb / max(float(np.linalg.norm(emb)), 1e-12)
            self._order.published(ticket)
            return self._publish(entries, self._templates)

    # ------------------------------------------------------------------ internals
    def _publish(
        self,
        entries: list[_Entry],
        templates: tuple[str, ...],
        should_stop: Callable[[], bool] | None = None,
    ) -> VocabularySnapshot:
        """Embed ``entries`` (cache first) and atomically swap in the new snapshot."""
        emb = np.zeros((len(entries), self.embedder.embed_dim), dtype=np.float32)
        texts = [i for i, e in enumerate(entries) if e.kind == "text"]
        if texts:
            emb[texts] = self._embed_phrases(
                [entries[i].name for i in texts], templates, should_stop
            )
        for i, e in enumerate(entries):
            if e.kind == "exemplar":
                emb[i] = e.embedding
        snap = VocabularySnapshot(
            self._snapshot.version + 1,
            tuple(e.name for e in entries),
            templates,
            _readonly(emb),
            tuple(e.kind for e in entries),
            self.embedder.model_id,
        )
        self._entries, self._templates = entries, templates
        self._snapshot = snap  # single reference assignment: the atomic swap
        logger.info("vocabulary v%d: %d entries", snap.version, len(entries))
        return snap

    def _embed_phrases(
        self,
        phrases: list[str],
        templates: tuple[str, ...],
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """``(len(phrases), D)``: per phrase the renormalised mean over templates.

        Cache misses are encoded outside every lock (concurrent writers encode in parallel; the
        cache itself is guarded by ``_cache_lock``), :data:`ENCODE_CHUNK_PHRASES` phrases at a
        time with ``should_stop`` polled before each chunk (WorkAbandoned)."""
        key = (self.embedder.model_id, templates)
        with self._cache_lock:
            found = {p: self._cache.get((key, p)) for p in dict.fromkeys(phrases)}
        missing = [p for p, e in found.items() if e is None]
        for start in range(0, len(missing), ENCODE_CHUNK_PHRASES):
            if should_stop is not None and should_stop():
                raise WorkAbandoned("vocabulary change abandoned: stop requested")
            chunk = missing[start : start + ENCODE_CHUNK_PHRASES]
            found.update(zip(chunk, embed_phrases(self.embedder.encode_text, chunk, templates)))
        with self._cache_lock:
            if missing:
                self.text_encoder_calls += 1
                self.phrases_encoded += len(missing)
            for p, e in found.items():
                self._cache[(key, p)] = e
                self._cache.move_to_end((key, p))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return np.stack([found[p] for p in phrases])

    def _check_templates(self, templates: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        return check_templates(templates, self.limits)

    def _check_phrase(self, phrase: object, index: int, templates: tuple[str, ...]) -> str:
        text = normalised_phrase(phrase, index, self.limits)
        if ((self.embedder.model_id, templates), text) in self._cache:
            return text  # embedded before with these templates: its length was checked then
        # Phrase tokens + the longest template's own tokens (BPE splits at spaces and
        # punctuation, so this is exact or over-counts by one: the safe side).
        overhead = self._template_overhead(templates)
        longest = self.embedder.count_tokens(text) - 2 + overhead
        if longest > self.embedder.context_length:
            raise VocabularyError(
                f"entry {index} ({text[:40]!r}) needs {longest} CLIP tokens with its "
                f"templates; the text encoder takes {self.embedder.context_length}"
            )
        return text

    def _template_overhead(self, templates: tuple[str, ...]) -> int:
        """CLIP tokens of the longest template without its phrase (start/end included).

        Memoised per template set in one dict under ``_overhead_lock``: checks run on several
        service threads at once with different template sets, and a memo in two attributes
        (key, value) could pair one set's key with another's value (a phrase then passed the
        token-limit check with the wrong overhead)."""
        with self._overhead_lock:
            overhead = self._overhead.get(templates)
            if overhead is None:
                if len(self._overhead) >= TEMPLATE_OVERHEADS_KEPT:
                    self._overhead.clear()
                overhead = max(self.embedder.count_tokens(fill_template(t, "")) for t in templates)
                self._overhead[templates] = overhead
            return overhead

    def _check_entries(self, entries: list[_Entry]) -> None:
        if len(entries) > self.limits.max_entries:
            raise VocabularyError(
                f"{len(entries)} entries exceed the limit of {self.limits.max_entries}"
            )
        check_unique([e.name for e in entries])


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.setflags(write=False)
    return a
