"""Scene graph of one frame: regions + filtered relations; JSON export (lossless round trip).

Regions carry ids (unique in the frame, >= 1), labels, boxes (XYXY pixels), areas (pixels),
3D centroids (meters, camera frame; NaN without depth) and masks as COCO uncompressed RLE
counts (column-major, see :mod:`perception_nodes.core.output.rle`). Relations refer to regions by index
into the region arrays (``subject_ids``/``object_ids`` give the ids).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from perception_nodes.core.output.rle import decode_mask, encode_masks
from perception_nodes.core.relations.predicates import SYMMETRIC_PREDICATES
from perception_nodes.core.types import (
    UNKNOWN_INDEX,
    UNKNOWN_LABEL,
    RegionLabels,
    Relations,
    Segmentation,
)

JSON_FORMAT = "perception_nodes.scene_graph"
JSON_VERSION = 1


class SceneGraphError(ValueError):
    """Inconsistent inputs for a scene graph or malformed scene-graph JSON."""


@dataclass
class SceneGraph:
    """Regions (N) and relations (M) of one frame.

    Attributes:
        image_size: ``(H, W)`` pixels.
        region_ids: ``(N,)`` uint32, unique, >= 1.
        labels: N label texts (``"unknown"`` where unlabelled).
        label_index: ``(N,)`` int64 vocabulary index, -1 = unknown.
        label_scores: ``(N,)`` float32 [0, 1].
        boxes_xyxy: ``(N, 4)`` float32 pixels.
        areas: ``(N,)`` int64 pixels.
        centroids: ``(N, 3)`` float32 meters (camera frame), NaN where unknown.
        mask_counts: N lists of RLE counts over the ``H x W`` image (column-major, 0-run first).
        subject: ``(M,)`` int64 region index of each relation's subject.
        object: ``(M,)`` int64 region index of the object.
        predicate_index: ``(M,)`` int64 index into ``predicates``.
        relation_scores: ``(M,)`` float32 [0, 1], descending.
        predicates: the predicate list published with the graph.
        relation_source: ``"learned"``, ``"geometric"`` or ``"none"``.
        vocabulary_version: version of the label vocabulary.
        labels_meaningful: False when labels come from untrained weights.
        stamp: seconds (e.g. the image header stamp).
        track_ids: ``(N,)`` uint64 identity across frames, 0 = untracked (zeros when not given).
        track_ages: ``(N,)`` uint32 frames the track was observed, 0 = untracked.
        relation_smoothing: EMA weight of the newest frame when relation scores are smoothed
            per (subject track, predicate, object track); None = this frame's raw scores.
    """

    image_size: tuple[int, int]
    region_ids: np.ndarray
    labels: list[str]
    label_index: np.ndarray
    label_scores: np.ndarray
    boxes_xyxy: np.ndarray
    areas: np.ndarray
    centroids: np.ndarray
    mask_counts: list[list[int]]
    subject: np.ndarray
    object: np.ndarray
    predicate_index: np.ndarray
    relation_scores: np.ndarray
    predicates: list[str]
    relation_source: str = "none"
    vocabulary_version: int = 0
    labels_meaningful: bool = True
    stamp: float = 0.0
    extra: dict = field(default_factory=dict)
    track_ids: np.ndarray | None = None
    track_ages: np.ndarray | None = None
    relation_smoothing: float | None = None

    def __post_init__(self) -> None:
        n = self.num_regions
        ids, ages = self.track_ids, self.track_ages
        self.track_ids = np.zeros(n, np.uint64) if ids is None else np.asarray(ids, np.uint64)
        self.track_ages = np.zeros(n, np.uint32) if ages is None else np.asarray(ages, np.uint32)
        if self.track_ids.shape != (n,) or self.track_ages.shape != (n,):
            raise SceneGraphError(
                f"track ids/ages of shapes {self.track_ids.shape}/{self.track_ages.shape} "
                f"for {n} regions"
            )

    @property
    def relations_smoothed(self) -> bool:
        return self.relation_smoothing is not None

    @property
    def num_regions(self) -> int:
        return int(self.region_ids.shape[0])

    @property
    def num_relations(self) -> int:
        return int(self.subject.shape[0])

    @property
    def subject_ids(self) -> np.ndarray:
        return self.region_ids[self.subject]

    @property
    def object_ids(self) -> np.ndarray:
        return self.region_ids[self.object]

    def mask(self, i: int) -> np.ndarray:
        """``HxW`` bool mask of region ``i`` (decoded from RLE)."""
        return decode_mask(self.image_size[0], self.image_size[1], self.mask_counts[i])

    def triplets(self) -> list[tuple[str, str, str, float]]:
        """Readable ``(subject label, predicate, object label, score)`` per relation."""
        return [(self.labels[s], self.predicates[p], self.labels[o], float(sc))
                for s, o, p, sc in zip(self.subject, self.object, self.predicate_index, self.relation_scores)]  # fmt: skip


def filter_relations(
    relations: Relations,
    top_k: int = 100,
    top_k_per_subject: int = 10,
    score_threshold: float = 0.1,
    merge_symmetric: bool = True,
    symmetric_predicates: Iterable[str] = SYMMETRIC_PREDICATES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(subject, object, predicate, score)`` arrays after filtering, sorted by score.

    Drops self-relations and scores below ``score_threshold`` (and NaN); merges exact duplicates
    and, for symmetric predicates, "a p b" with "b p a" (keeping the higher score, with its
    orientation; the first given on a tie); sorts by descending score, then subject, object,
    predicate; keeps at most ``top_k_per_subject`` per subject and ``top_k`` overall (0 = no
    limit). Array operations (no Python loop per relation); with a ``top_k``, over the
    best-scored relations first (the same result, see below).
    """
    s = np.asarray(relations.subject, dtype=np.int64).reshape(-1)
    o = np.asarray(relations.object, dtype=np.int64).reshape(-1)
    p = np.asarray(relations.predicate_index, dtype=np.int64).reshape(-1)
    raw = np.asarray(relations.score).reshape(-1)
    if raw.dtype.kind != "f":
        raw = raw.astype(np.float64)
    symmetric_predicates = tuple(symmetric_predicates)  # an iterator would be read once only
    args = (relations.predicates, top_k, top_k_per_subject, merge_symmetric, symmetric_predicates)
    take = _BEST_FIRST * top_k
    while 0 < take < raw.size:
        # Only the best-scored relations can make the top ``top_k``: filter those scoring at
        # least the ``take``-th best given score (ties included). Merging keeps each key's
        # best score, so their winners are exactly the winners scoring >= that score, and
        # sorted they are the head of all winners in order (so are the per-subject counts):
        # when ``top_k`` of them pass, they are the answer. Else try 4 times as many.
        least = np.partition(raw, raw.size - take)[raw.size - take]
        if np.isnan(least):  # NaN sorts last: more than ``take`` NaN scores
            take *= 4
            continue
        best = np.flatnonzero(raw >= least)
        for sel, cut in _tie_cuts(s, o, p, raw, best, least, take, args):
            got = _filter_kept(*_passing(s[sel], o[sel], p[sel], raw[sel], score_threshold), *args)
            k = top_k - 1  # with a cut: certain up to the winners at ``least`` of subjects <= cut
            if got[0].size >= top_k and (cut is None or got[3][k] > least or got[0][k] <= cut):
                return got
        take *= 4
    return _filter_kept(*_passing(s, o, p, raw, score_threshold), *args)


def _tie_cuts(s, o, p, raw, best, least, take: int, args: tuple):
    """``(selection, cut)`` of relations ``best`` (scoring >= ``least``) to try in turn. When
    over ``2 * take`` tie at ``least`` (saturated scores): those above it and the tied ones
    whose merge key's first region (subject; the smaller region of a merged symmetric pair)
    is <= ``cut``, the least region giving ``take`` tied relations and twice the subjects
    ``top_k`` needs. Every winner above ``least``, and at ``least`` every winner of a subject
    <= cut (its pair is wholly there), is found as among all, and they come first in order:
    a result whose ``top_k``-th is one of them is the answer. Then all of ``best``. float32
    scores only (the result's scores compare exactly with ``least``)."""
    predicates, top_k, per_subject, merge, symmetric = args
    tied = raw[best] == least
    if raw.dtype == np.float32 and np.count_nonzero(tied) > 2 * take:
        k0 = _merge_keys(s[best], o[best], p[best], predicates, merge, symmetric)[0]
        if k0.min() >= 0:
            counts = np.bincount(k0[tied])
            subjects = 2 * -(-top_k // per_subject) if per_subject > 0 else 1
            ok = (np.cumsum(counts) >= take) & (np.cumsum(counts > 0) >= subjects)
            if ok.any():
                cut = int(np.argmax(ok))
                yield best[~tied | (k0 <= cut)], cut
    yield best, None


def _passing(s, o, p, sc, score_threshold: float):
    """``(s, o, p, sc)`` of the relations that are no self-relations and score at least
    ``score_threshold`` (compared in float64; NaN fails), with float64 scores."""
    sc = sc.astype(np.float64)
    keep = np.flatnonzero((s != o) & (sc >= score_threshold))
    return s[keep], o[keep], p[keep], sc[keep]


#: ``filter_relations`` first filters the ``_BEST_FIRST * top_k`` best-scored relations
_BEST_FIRST = 4


def _filter_kept(s, o, p, sc, predicates: list[str], top_k: int, top_k_per_subject: int,
                 merge_symmetric: bool, symmetric_predicates: Iterable[str]):  # fmt: skip
    """:func:`filter_relations` of ``(M,)`` int64 ``s, o, p`` and float64 ``sc`` (given order)
    that are past the self-relation and threshold filter: ``(s, o, p, float32 scores)``."""
    k0, k1 = _merge_keys(s, o, p, predicates, merge_symmetric, symmetric_predicates)
    # one winner per key: the highest score, the earliest on a tie (lexsort is stable)
    key = _joint_key(k0, k1, p)
    order = np.lexsort((-sc, *key))
    new_key = np.ones(order.size, dtype=bool)
    for k in key:
        new_key[1:] &= k[order][1:] == k[order][:-1]
    new_key[1:] = ~new_key[1:]
    win = order[new_key]
    s, o, p, sc = s[win], o[win], p[win], sc[win]
    order = np.lexsort((*_joint_key(s, o, p), -sc))
    s, o, p, sc = s[order], o[order], p[order], sc[order]
    if top_k_per_subject > 0:
        sel = _rank_within(s) < top_k_per_subject
        s, o, p, sc = s[sel], o[sel], p[sel], sc[sel]
    if top_k > 0:
        s, o, p, sc = s[:top_k], o[:top_k], p[:top_k], sc[:top_k]
    return s, o, p, sc.astype(np.float32)


def _merge_keys(s, o, p, predicates: list[str], merge_symmetric: bool,
                symmetric_predicates: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The pair part of the merge key of each relation of ``(M,)`` int64 ``s, o, p``:
    ``(s, o)``, or ``(min, max)`` for a symmetric predicate when merging (the key is this
    pair and ``p``)."""
    if not merge_symmetric or s.size == 0:
        return s, o
    names = set(symmetric_predicates)
    sym = np.array([name in names for name in predicates] + [False], dtype=bool)
    is_sym = sym[np.where((p >= 0) & (p < len(predicates)), p, len(predicates))]
    return np.where(is_sym, np.minimum(s, o), s), np.where(is_sym, np.maximum(s, o), o)


def _joint_key(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort keys for ``np.lexsort`` (last = primary) ordering rows by ``(a, b, c)``: ONE int64
    code per row where it fits (a 1-key sort is several times faster), else ``(c, b, a)``."""
    if a.size == 0:
        return (a,)
    lo = [int(v.min()) for v in (a, b, c)]
    span = [int(v.max()) - m + 1 for v, m in zip((a, b, c), lo)]
    if span[0] * span[1] * span[2] >= 2**62:
        return c, b, a
    return (((a - lo[0]) * span[1] + (b - lo[1])) * span[2] + (c - lo[2]),)


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """``(K,)`` int64: how many earlier entries of ``groups`` have the same value."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.ones(order.size, dtype=bool)
    starts[1:] = sorted_groups[1:] != sorted_groups[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size) - first
    return rank


def build_scene_graph(
    segmentation: Segmentation,
    labels: RegionLabels | None,
    relations: Relations | None,
    region_ids: np.ndarray,
    centroids: np.ndarray | None = None,
    top_k: int = 100,
    top_k_per_subject: int = 10,
    score_threshold: float = 0.1,
    merge_symmetric: bool = True,
    symmetric_predicates: Iterable[str] = SYMMETRIC_PREDICATES,
    stamp: float = 0.0,
) -> SceneGraph:
    """Assemble the scene graph of a frame (see :func:`filter_relations` for the filtering)."""
    n = len(segmentation)
    region_ids = np.asarray(region_ids, dtype=np.uint32).reshape(-1)
    if region_ids.shape[0] != n:
        raise SceneGraphError(f"{region_ids.shape[0]} region ids for {n} regions")
    if np.unique(region_ids).size != n or (n and region_ids.min() < 1):
        raise SceneGraphError(
            "region ids must be unique and >= 1 (0 is the label-image background)"
        )
    if centroids is None:
        centroids = np.full((n, 3), np.nan, dtype=np.float32)
    centroids = np.asarray(centroids, dtype=np.float32)
    if centroids.shape != (n, 3):
        raise SceneGraphError(f"centroids have shape {centroids.shape}, expected ({n}, 3)")
    if labels is not None and labels.label_index.shape[0] != n:
        raise SceneGraphError(
            f"labels cover {labels.label_index.shape[0]} regions, the segmentation has {n}"
        )
    if (
        relations is not None
        and len(relations)
        and max(relations.subject.max(), relations.object.max()) >= n
    ):
        raise SceneGraphError(f"relations refer to regions beyond the {n} of the segmentation")
    if labels is None:
        texts, idx = [UNKNOWN_LABEL] * n, np.full(n, UNKNOWN_INDEX, np.int64)
        scores = np.zeros(n, np.float32)
    else:
        texts = [labels.label_text(i) for i in range(n)]
        idx, scores = labels.label_index.astype(np.int64), labels.label_score.astype(np.float32)
    if relations is None:
        s = o = p = np.zeros(0, np.int64)
        sc, predicates, source = np.zeros(0, np.float32), [], "none"
    else:
        s, o, p, sc = filter_relations(relations, top_k, top_k_per_subject, score_threshold,
                                       merge_symmetric, symmetric_predicates)  # fmt: skip
        predicates, source = list(relations.predicates), relations.source
    return SceneGraph(
        image_size=(int(segmentation.image_size[0]), int(segmentation.image_size[1])),
        region_ids=region_ids, labels=texts, label_index=idx, label_scores=scores,
        boxes_xyxy=segmentation.boxes_xyxy.astype(np.float32).reshape(n, 4),
        areas=segmentation.areas.astype(np.int64), centroids=centroids,
        mask_counts=encode_masks(segmentation.masks, segmentation.boxes_xyxy),
        subject=s, object=o, predicate_index=p, relation_scores=sc, predicates=predicates,
        relation_source=source, vocabulary_version=int(labels.vocabulary_version) if labels else 0,
        labels_meaningful=bool(labels.meaningful) if labels else False, stamp=float(stamp),
    )  # fmt: skip


def _nan_to_none(values: np.ndarray) -> list:
    return [None if (isinstance(v, float) and math.isnan(v)) else v for v in values.tolist()]


def to_json(graph: SceneGraph, indent: int | None = None) -> str:
    """Serialise ``graph`` as strict JSON (NaN centroids as ``null``); exact for float32 values."""
    regions = [
        {"id": int(graph.region_ids[i]), "label": graph.labels[i], "label_index": int(graph.label_index[i]),
         "label_score": float(graph.label_scores[i]), "bbox_xyxy": [float(v) for v in graph.boxes_xyxy[i]],
         "area": int(graph.areas[i]), "centroid": _nan_to_none(graph.centroids[i].astype(np.float64)),
         "mask_rle": {"size": list(graph.image_size), "counts": [int(c) for c in graph.mask_counts[i]]},
         "track_id": int(graph.track_ids[i]), "track_age": int(graph.track_ages[i])}
        for i in range(graph.num_regions)
    ]  # fmt: skip
    relations = [
        {"subject": int(s), "object": int(o), "subject_id": int(graph.region_ids[s]), "object_id": int(graph.region_ids[o]),
         "predicate": graph.predicates[p], "predicate_index": int(p), "score": float(sc)}
        for s, o, p, sc in zip(graph.subject, graph.object, graph.predicate_index, graph.relation_scores)
    ]  # fmt: skip
    doc = {"format": JSON_FORMAT, "version": JSON_VERSION, "image_size": list(graph.image_size),
           "stamp": graph.stamp, "vocabulary_version": graph.vocabulary_version,
           "labels_meaningful": graph.labels_meaningful, "relation_source": graph.relation_source,
           "predicates": graph.predicates, "regions": regions, "relations": relations, "extra": graph.extra,
           "relation_smoothing": graph.relation_smoothing}  # fmt: skip
    return json.dumps(doc, indent=indent, allow_nan=False)


def from_json(text: str) -> SceneGraph:
    """Inverse of :func:`to_json`."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SceneGraphError(f"scene graph JSON does not parse: {e}") from e
    if doc.get("format") != JSON_FORMAT or doc.get("version") != JSON_VERSION:
        raise SceneGraphError(
            f"not a {JSON_FORMAT} v{JSON_VERSION} document (format={doc.get('format')!r})"
        )
    try:
        regs, rels = doc["regions"], doc["relations"]
        cent = [[np.nan if v is None else v for v in r["centroid"]] for r in regs]
        return SceneGraph(
            image_size=(int(doc["image_size"][0]), int(doc["image_size"][1])),
            region_ids=np.array([r["id"] for r in regs], dtype=np.uint32),
            labels=[r["label"] for r in regs],
            label_index=np.array([r["label_index"] for r in regs], dtype=np.int64),
            label_scores=np.array([r["label_score"] for r in regs], dtype=np.float32),
            boxes_xyxy=np.array([r["bbox_xyxy"] for r in regs], dtype=np.float32).reshape(-1, 4),
            areas=np.array([r["area"] for r in regs], dtype=np.int64),
            centroids=np.array(cent, dtype=np.float32).reshape(-1, 3),
            mask_counts=[list(r["mask_rle"]["counts"]) for r in regs],
            subject=np.array([r["subject"] for r in rels], dtype=np.int64),
            object=np.array([r["object"] for r in rels], dtype=np.int64),
            predicate_index=np.array([r["predicate_index"] for r in rels], dtype=np.int64),
            relation_scores=np.array([r["score"] for r in rels], dtype=np.float32),
            predicates=list(doc["predicates"]), relation_source=doc["relation_source"],
            vocabulary_version=int(doc["vocabulary_version"]), labels_meaningful=bool(doc["labels_meaningful"]),
            stamp=float(doc["stamp"]), extra=dict(doc.get("extra", {})),
            track_ids=np.array([r.get("track_id", 0) for r in regs], dtype=np.uint64),
            track_ages=np.array([r.get("track_age", 0) for r in regs], dtype=np.uint32),
            relation_smoothing=doc.get("relation_smoothing"),
        )  # fmt: skip
    except (KeyError, TypeError, IndexError) as e:
        raise SceneGraphError(f"malformed scene graph JSON: {e!r}") from e
