"""Core results <-> perception_msgs (``Region``, ``RegionArray``, ``SceneGraph``).

Region ids, boxes and masks follow ``perception_msgs/Region``: boxes become
``RegionOfInterest`` (integer pixels covering the XYXY box), masks COCO uncompressed RLE.
``Region.track_id``/``track_age`` carry the tracking identity (0 = untracked) and
``SceneGraph.relations_smoothed``/``relation_smoothing`` whether relation scores are averaged;
``labels_meaningful`` (SceneGraph and RegionArray) is False with generated weights.
"""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import Point
from perception_msgs.msg import LabelScore, Region, RegionArray, Relation
from perception_msgs.msg import SceneGraph as SceneGraphMsg

from perception_nodes.core.output.scene_graph import SceneGraph
from perception_nodes.core.stream.stamps import stamp_to_seconds
from perception_nodes.core.types import UNKNOWN_LABEL, FrameResult


def _roi(region: Region, box_xyxy: np.ndarray, width: int, height: int) -> None:
    x0, y0 = max(0, int(math.floor(box_xyxy[0]))), max(0, int(math.floor(box_xyxy[1])))
    x1, y1 = min(width, int(math.ceil(box_xyxy[2]))), min(height, int(math.ceil(box_xyxy[3])))
    region.bbox.x_offset, region.bbox.y_offset = x0, y0
    region.bbox.width, region.bbox.height = max(0, x1 - x0), max(0, y1 - y0)


def _alternatives(result: FrameResult, i: int, vocabulary: list[str]) -> list[LabelScore]:
    labels = result.labels
    if labels is None:
        return []
    best = int(labels.label_index[i])
    out = []
    for idx, score in zip(labels.topk_index[i], labels.topk_score[i]):
        idx = int(idx)
        if idx == best or idx < 0:
            continue
        out.append(
            LabelScore(
                label=vocabulary[idx] if idx < len(vocabulary) else UNKNOWN_LABEL,
                label_index=idx,
                score=float(score),
            )
        )
    return out


def regions_to_msgs(
    result: FrameResult, graph: SceneGraph, include_embeddings: bool = False
) -> list[Region]:
    """One ``Region`` per region of the frame (same order as ``graph``)."""
    seg = result.segmentation
    h, w = graph.image_size
    vocabulary = list(result.labels.labels) if result.labels is not None else []
    regions = []
    for i in range(graph.num_regions):
        r = Region(
            id=int(graph.region_ids[i]),
            track_id=int(graph.track_ids[i]),
            track_age=int(graph.track_ages[i]),
            area=int(graph.areas[i]),
            predicted_iou=float(seg.predicted_iou[i]),
            stability_score=float(seg.stability_score[i]),
            label=graph.labels[i],
            label_index=int(graph.label_index[i]),
            label_score=float(graph.label_scores[i]),
            mask_height=h,
            mask_width=w,
        )
        _roi(r, graph.boxes_xyxy[i], w, h)
        r.alternatives = _alternatives(result, i, vocabulary)
        r.mask_counts = graph.mask_counts[i]
        c = graph.centroids[i]
        r.centroid = Point(x=float(c[0]), y=float(c[1]), z=float(c[2]))
        if include_embeddings:
            r.embedding = np.asarray(seg.tokens[i], dtype=np.float32).tolist()
            r.embedding_kind = "sam_token"
        regions.append(r)
    return regions


def scene_graph_to_msg(
    result: FrameResult,
    graph: SceneGraph,
    header,
    include_embeddings: bool = False,
    regions: list[Region] | None = None,
) -> SceneGraphMsg:
    """``perception_msgs/SceneGraph`` of a frame; ``header`` is the input image's header."""
    msg = SceneGraphMsg(
        header=header,
        image_height=graph.image_size[0],
        image_width=graph.image_size[1],
        labels_meaningful=bool(graph.labels_meaningful),
    )
    msg.regions = (
        regions if regions is not None else regions_to_msgs(result, graph, include_embeddings)
    )
    msg.relations = [
        Relation(
            subject_id=int(graph.region_ids[s]),
            object_id=int(graph.region_ids[o]),
            predicate=graph.predicates[p],
            predicate_index=int(p),
            score=float(sc),
        )
        for s, o, p, sc in zip(
            graph.subject, graph.object, graph.predicate_index, graph.relation_scores
        )
    ]
    msg.predicates = list(graph.predicates)
    msg.relation_source = graph.relation_source
    msg.vocabulary_version = int(graph.vocabulary_version)
    msg.vocabulary = list(result.labels.labels) if result.labels is not None else []
    msg.relations_smoothed = graph.relations_smoothed
    msg.relation_smoothing = float(graph.relation_smoothing) if graph.relations_smoothed else 1.0
    return msg


def region_array_to_msg(
    graph: SceneGraph, regions: list[Region], header, vocabulary: list[str]
) -> RegionArray:
    return RegionArray(
        header=header,
        image_height=graph.image_size[0],
        image_width=graph.image_size[1],
        labels_meaningful=bool(graph.labels_meaningful),
        regions=regions,
        vocabulary_version=int(graph.vocabulary_version),
        vocabulary=vocabulary,
    )


def msg_to_scene_graph(msg: SceneGraphMsg) -> SceneGraph:
    """Core :class:`SceneGraph` of a message (for visualization, logging and datasets).

    One pass over the regions; each region's RLE counts are copied as a ``(K,)`` uint32 array
    (not decoded: :func:`~perception_nodes.core.output.draw.draw_overlay` reads the runs).
    """
    regions = msg.regions
    n = len(regions)
    index = {r.id: i for i, r in enumerate(regions)}
    rel = [
        (index.get(r.subject_id), index.get(r.object_id), r.predicate_index, r.score)
        for r in msg.relations
    ]
    rel = [t for t in rel if t[0] is not None and t[1] is not None]
    ints, floats, labels, counts, tracks = [], [], [], [], []
    for r in regions:
        b, c = r.bbox, r.centroid
        # id, box (x0, y0, x1, y1), area, label index, track age
        ints.append((r.id, b.x_offset, b.y_offset, b.x_offset + b.width,
                     b.y_offset + b.height, r.area, r.label_index, r.track_age))  # fmt: skip
        tracks.append(r.track_id)  # uint64
        floats.append((r.label_score, c.x, c.y, c.z))
        labels.append(r.label)
        counts.append(np.array(r.mask_counts, dtype=np.uint32))
    ints = np.array(ints, dtype=np.int64).reshape(n, 8)
    floats = np.array(floats, dtype=np.float64).reshape(n, 4)
    return SceneGraph(
        image_size=(int(msg.image_height), int(msg.image_width)),
        region_ids=ints[:, 0].astype(np.uint32),
        labels=labels,
        label_index=ints[:, 6].copy(),
        label_scores=floats[:, 0].astype(np.float32),
        boxes_xyxy=ints[:, 1:5].astype(np.float32),
        areas=ints[:, 5].copy(),
        centroids=floats[:, 1:4].astype(np.float32),
        mask_counts=counts,
        subject=np.array([t[0] for t in rel], dtype=np.int64),
        object=np.array([t[1] for t in rel], dtype=np.int64),
        predicate_index=np.array([t[2] for t in rel], dtype=np.int64),
        relation_scores=np.array([t[3] for t in rel], dtype=np.float32),
        predicates=list(msg.predicates),
        relation_source=msg.relation_source,
        vocabulary_version=int(msg.vocabulary_version),
        labels_meaningful=bool(msg.labels_meaningful),
        stamp=stamp_to_seconds(msg.header.stamp),
        track_ids=np.array(tracks, dtype=np.uint64),
        track_ages=ints[:, 7].astype(np.uint32),
        relation_smoothing=float(msg.relation_smoothing) if msg.relations_smoothed else None,
    )
