"""Core results <-> perception_msgs (``Region``, ``RegionArray``, ``SceneGraph``).

Region ids, boxes and masks follow ``perception_msgs/Region``: boxes become
``RegionOfInterest`` (integer pixels covering the XYXY box), masks COCO uncompressed RLE.
``Region.track_id``/``track_age`` carry the tracking identity (0 = untracked) and
``SceneGraph.relations_smoothed``/``relation_smoothing`` whether relation scores are averaged;
``labels_meaningful`` (SceneGraph and RegionArray) is False with generated weights.
"""

from __future__ import annotations

import array
import functools

import numpy as np
from geometry_msgs.msg import Point
from perception_msgs.msg import LabelScore, Region, RegionArray, Relation
from perception_msgs.msg import SceneGraph as SceneGraphMsg
from sensor_msgs.msg import RegionOfInterest

from perception_nodes.core.output.scene_graph import SceneGraph
from perception_nodes.core.stream.stamps import stamp_to_seconds
from perception_nodes.core.types import UNKNOWN_LABEL, FrameResult


def _rois(boxes_xyxy: np.ndarray, width: int, height: int) -> list[list[int]]:
    """``[x_offset, y_offset, width, height]`` of the integer pixels covering each ``(N, 4)``
    XYXY box, inside the image (``RegionOfInterest``)."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(b).all():
        raise ValueError("region boxes must be finite")
    lo = np.maximum(np.floor(b[:, :2]), 0)
    hi = np.minimum(np.ceil(b[:, 2:]), (width, height))
    return np.concatenate([lo, np.maximum(hi - lo, 0)], axis=1).astype(np.int64).tolist()


def _alternatives(result: FrameResult, vocabulary: list[str]) -> list[list[LabelScore]]:
    """Each region's other top-k labels (the best one and ``-1`` left out) as ``LabelScore``."""
    labels = result.labels
    if labels is None:
        return [[] for _ in range(len(result.segmentation))]
    make, known = slot_maker(LabelScore, ("label", "label_index", "score")), len(vocabulary)
    return [
        [
            make(vocabulary[idx] if idx < known else UNKNOWN_LABEL, idx, score)
            for idx, score in zip(indices, scores)
            if idx != best and idx >= 0
        ]
        for best, indices, scores in zip(
            labels.label_index.tolist(), labels.topk_index.tolist(), labels.topk_score.tolist()
        )
    ]


def regions_to_msgs(
    result: FrameResult, graph: SceneGraph, include_embeddings: bool = False
) -> list[Region]:
    """One ``Region`` per region of the frame (same order as ``graph``).

    Each is made with its sub-messages by slot assignments (:func:`slot_maker`) from per-frame
    Python lists (one ``tolist`` per array instead of a numpy scalar per field; the values and
    types are those the constructors and property setters gave: mask counts as uint32
    ``array.array``)."""
    seg = result.segmentation
    h, w = graph.image_size
    n = graph.num_regions
    vocabulary = list(result.labels.labels) if result.labels is not None else []
    fields = zip(
        graph.region_ids.tolist(), graph.track_ids.tolist(), graph.track_ages.tolist(),
        graph.areas.tolist(), seg.predicted_iou[:n].tolist(), seg.stability_score[:n].tolist(),
        graph.labels, graph.label_index.tolist(), graph.label_scores.tolist(),
        _rois(graph.boxes_xyxy, w, h), _alternatives(result, vocabulary), graph.mask_counts,
        graph.centroids.tolist(),
    )  # fmt: skip
    region = slot_maker(Region, _REGION_FIELDS)
    roi_of = slot_maker(RegionOfInterest, ("x_offset", "y_offset", "width", "height"))
    point = slot_maker(Point, ("x", "y", "z"))
    kind = "sam_token" if include_embeddings else ""
    regions = []
    for i, (rid, tid, age, area, iou, stab, label, index, score, roi, alts, counts, c) in (
        enumerate(fields)
    ):  # fmt: skip
        # the float32 values as bytes (a float per element is 15x slower); else an empty
        # array of its own
        emb = array.array("f", np.asarray(seg.tokens[i], dtype=np.float32).tobytes()
                          if include_embeddings else b"")  # fmt: skip
        regions.append(region(rid, tid, age, roi_of(*roi), area, iou, stab, label, index, score,
                              alts, h, w, array.array("I", counts), point(*c), emb, kind))  # fmt: skip
    return regions


#: ``Region``'s fields in the order :func:`regions_to_msgs` gives them
_REGION_FIELDS = (
    "id", "track_id", "track_age", "bbox", "area", "predicted_iou", "stability_score", "label",
    "label_index", "label_score", "alternatives", "mask_height", "mask_width", "mask_counts",
    "centroid", "embedding", "embedding_kind",
)  # fmt: skip


@functools.lru_cache(maxsize=None)
def slot_copier(kind: type):
    """A function returning a shallow copy of a message of class ``kind``, slot by slot in
    straight-line code generated once per class (the generated classes keep every field in a
    slot; the property setters only check types, which the copied values already passed).
    Generated because a loop of ``setattr`` calls costs five times as much, and the nodes copy
    hundreds of Region/Marker templates per frame."""
    names = [name for name in kind.__slots__ if name.isidentifier()]
    body = "".join(f"    o.{name} = m.{name}\n" for name in names)
    scope = {"new": kind.__new__, "kind": kind}
    exec(f"def copy(m):\n    o = new(kind)\n{body}    return o\n", scope)  # noqa: S102
    return scope["copy"]


@functools.lru_cache(maxsize=None)
def slot_maker(kind: type, fields: tuple[str, ...]):
    """A function ``make(*values)``: a new message of class ``kind`` with ``fields`` set to
    ``values`` (in that order) and its other fields the default constructor's values, equal to
    ``kind(**dict(zip(fields, values)))``. Straight-line slot assignments generated once per
    class and fields (the constructor's keyword handling and property setters cost several
    times as much; the nodes build hundreds of these sub-messages per frame). With
    ``ROS_PYTHON_CHECK_FIELDS=1`` (the setters check types and ranges) it is the constructor.
    The other fields must hold immutable defaults (numbers, strings): they are shared."""
    template = kind()
    if template._check_fields:  # keep the setters' checks
        return lambda *values: kind(**dict(zip(fields, values)))
    names = [name for name in kind.__slots__ if name.isidentifier()]
    given = {f"_{name}" for name in fields}
    if not given <= set(names):
        raise ValueError(f"{kind.__name__} has no field(s) {sorted(given - set(names))}")
    for name in set(names) - given:
        if type(getattr(template, name)) not in (bool, int, float, str):
            raise ValueError(f"{kind.__name__}.{name[1:]} is not an immutable default: set it")
    body = "".join(
        f"    o.{name} = {name[1:] if name in given else 't.' + name}\n" for name in names
    )
    args = ", ".join(fields)
    scope = {"new": kind.__new__, "kind": kind, "t": template}
    exec(f"def make({args}):\n    o = new(kind)\n{body}    return o\n", scope)  # noqa: S102
    return scope["make"]


def clone_message(msg):
    """A shallow copy of a ROS 2 message (:func:`slot_copier`), far cheaper than ``copy.copy``.
    The copy shares the original's sub-messages and arrays: assign new ones, do not change them."""
    return slot_copier(type(msg))(msg)


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
    relation = slot_maker(
        Relation, ("subject_id", "object_id", "predicate", "predicate_index", "score")
    )
    names, p = graph.predicates, graph.predicate_index.tolist()
    msg.relations = [
        relation(s, o, names[k], k, sc)
        for s, o, k, sc in zip(
            graph.subject_ids.tolist(), graph.object_ids.tolist(), p,
            graph.relation_scores.tolist(),
        )
    ]  # fmt: skip
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
