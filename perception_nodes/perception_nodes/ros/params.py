"""ROS parameters of the perception node: names, types, defaults, descriptions, ranges, choices.

One table drives the declarations (with ``ParameterDescriptor``s, so rclpy itself refuses
out-of-range values and writes to read-only ones), the validation of string choices, and the
structural check of the launch file and YAML config.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from perception_nodes.core.config import (
    CLASSIFIER_TYPES,
    PRECISIONS,
    RELATIONS_TYPES,
    SAM_BACKENDS,
    SAM_MODEL_NAMES,
    PipelineConfig,
)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    description: str
    read_only: bool = False
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


_PIPELINE_DOCS: dict[str, tuple[str, dict]] = {
    "sam_backend": (
        "SAM backend (auto: onnxruntime on CPU, torch on CUDA)",
        {"choices": SAM_BACKENDS, "read_only": True},
    ),
    "sam_model": ("SAM registry model", {"choices": SAM_MODEL_NAMES, "read_only": True}),
    "sam_checkpoint": (
        "SAM state_dict file; empty = cached official weights (or generated ones)",
        {"read_only": True},
    ),
    "sam_encoder_path": (
        "ONNX file or TensorRT engine of the image encoder (onnxruntime/tensorrt backends; "
        "empty: the cache's, made on first run)",
        {"read_only": True},
    ),
    "sam_decoder_path": (
        "ONNX file or TensorRT engine of the mask decoder (onnxruntime/tensorrt backends)",
        {"read_only": True},
    ),
    "sam_device": ("torch/onnxruntime device: cpu, cuda or cuda:N", {"read_only": True}),
    "sam_precision": ("encoder precision", {"choices": PRECISIONS, "read_only": True}),
    "amg_points_per_side": (
        "segment-everything point grid side (points = side^2)",
        {"low": 1, "high": 128},
    ),
    "amg_points_per_batch": ("prompts per decoder batch; 0 = automatic", {"low": 0, "high": 4096}),
    "amg_pred_iou_thresh": (
        "keep masks whose predicted IoU is at least this, [0, 1]",
        {"low": 0.0, "high": 1.0},
    ),
    "amg_stability_score_thresh": (
        "keep masks whose stability score is at least this, [0, 1]",
        {"low": 0.0, "high": 1.0},
    ),
    "amg_box_nms_thresh": (
        "box IoU above which the weaker mask is suppressed, [0, 1]",
        {"low": 0.0, "high": 1.0},
    ),
    "amg_min_mask_region_area": (
        "remove islands/holes smaller than this, pixels",
        {"low": 0, "high": 1_000_000},
    ),
    "amg_max_regions": (
        "at most this many regions per frame (best first), <= 65535",
        {"low": 1, "high": 65535},
    ),
    "classifier_type": ("region classifier", {"choices": CLASSIFIER_TYPES, "read_only": True}),
    "classifier_regionspot_checkpoint": (
        "RegionSpot head checkpoint (pn-train-regionspot)",
        {"read_only": True},
    ),
    "classifier_unknown_threshold": (
        "best label score below this -> 'unknown', [0, 1]",
        {"low": 0.0, "high": 1.0},
    ),
    "classifier_top_k": ("alternative labels per region", {"low": 1, "high": 100}),
    "clip_model": ("open_clip model name (ViT-B-16, ViT-L-14-336, ...)", {"read_only": True}),
    "clip_checkpoint": (
        "open_clip weights file; empty = the cached default weights (pn-fetch-weights clip), else generated ones",
        {"read_only": True},
    ),
    "vocabulary_labels": (
        "vocabulary; setting it at runtime replaces the vocabulary like ~/set_vocabulary",
        {},
    ),
    "vocabulary_templates": (
        "prompt templates, each with one {}; setting it re-embeds the labels",
        {},
    ),
    "relations_type": (
        "relation predictor; auto = learned if a checkpoint is set, else geometric",
        {"choices": RELATIONS_TYPES, "read_only": True},
    ),
    "relations_checkpoint": ("relation head checkpoint (pn-train-relations)", {"read_only": True}),
    "relations_top_k": ("relations per frame", {"low": 0, "high": 100000}),
    "relations_per_subject": ("relations per subject region", {"low": 0, "high": 1000}),
    "relations_score_threshold": ("minimum relation score, [0, 1]", {"low": 0.0, "high": 1.0}),
    "tracking_enabled": (
        "track regions across frames: Region.track_id/track_age, voted labels, smoothed relations",
        {},
    ),
    "tracking_iou_gate": (
        "mask IoU at which a region may continue a track; also keeps nested parts off their whole, [0, 1]",
        {"low": 0.0, "high": 1.0},
    ),
    "tracking_similarity_weight": (
        "weight of SAM-token cosine similarity (vs mask IoU) in the match score, [0, 1]",
        {"low": 0.0, "high": 1.0},
    ),
    "tracking_similarity_gate": (
        "token cosine at which a region may continue a track it does not overlap "
        "(fast motion, dropped frames, re-entry), [-1, 1]",
        {"low": -1.0, "high": 1.0},
    ),
    "tracking_birth_hits": (
        "consecutive frames a new track is seen before it gets a track_id",
        {"low": 1, "high": 100},
    ),
    "tracking_death_misses": (
        "processed frames a track may go unseen before it ends (dropped frames do not count)",
        {"low": 1, "high": 10000},
    ),
    "tracking_label_window": (
        "frames of a track's score-weighted label vote (1 = this frame's label)",
        {"low": 1, "high": 1000},
    ),
    "tracking_relation_smoothing": (
        "EMA weight of the newest frame in relation scores per (subject track, predicate, "
        "object track); 1 = raw scores, (0, 1]",
        {"low": 0.01, "high": 1.0},
    ),
    "weights_allow_generated": (
        "without weights, use seeded random ones (output NOT meaningful)",
        {"read_only": True},
    ),
    "weights_cache_dir": (
        "weights cache; empty = $PERCEPTION_NODES_CACHE or ~/.cache/perception_nodes",
        {"read_only": True},
    ),
}

NODE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "cameras",
        [""],
        "camera namespaces served by this node (one model for all), e.g. ['/front', '/rear']",
        read_only=True,
    ),
    ParamSpec(
        "image_topic", "image_raw", "image topic relative to each camera namespace", read_only=True
    ),
    ParamSpec(
        "use_compressed",
        False,
        "subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage) instead",
        read_only=True,
    ),
    ParamSpec(
        "use_depth",
        False,
        "subscribe to a registered depth image and CameraInfo for 3D centroids",
        read_only=True,
    ),
    ParamSpec(
        "depth_topic",
        "depth/image_raw",
        "depth topic relative to each camera namespace (16UC1 mm or 32FC1 m)",
        read_only=True,
    ),
    ParamSpec(
        "camera_info_topic",
        "camera_info",
        "CameraInfo topic relative to each camera namespace",
        read_only=True,
    ),
    ParamSpec(
        "depth_slop",
        0.05,
        "a frame gets the depth image stamped nearest to it within this many seconds; none: no 3D "
        "for that frame (counted, logged)",
        read_only=True,
        low=0.0,
        high=10.0,
    ),
    ParamSpec(
        "depth_wait",
        0.1,
        "seconds a frame waits for its depth image when that has not arrived yet",
        read_only=True,
        low=0.0,
        high=5.0,
    ),
    ParamSpec(
        "output_namespace",
        "perception",
        "outputs go to <camera>/<output_namespace>/...",
        read_only=True,
    ),
    ParamSpec("publish_regions", True, "publish <ns>/regions (perception_msgs/RegionArray)"),
    ParamSpec("publish_scene_graph", True, "publish <ns>/scene_graph (perception_msgs/SceneGraph)"),
    ParamSpec(
        "publish_label_image",
        True,
        "publish <ns>/label_image (sensor_msgs/Image 16UC1, 0 = background)",
    ),
    ParamSpec("publish_embeddings", False, "fill Region.embedding with the 256-d SAM token"),
    ParamSpec(
        "max_image_pixels",
        16_000_000,
        "frames larger than this are refused with a log, pixels",
        low=1,
        high=1_000_000_000,
    ),
    ParamSpec(
        "diagnostics_period", 1.0, "seconds between diagnostics messages", low=0.1, high=60.0
    ),
    ParamSpec(
        "autostart",
        True,
        "configure and activate on start (otherwise drive the lifecycle yourself)",
        read_only=True,
    ),
)


def pipeline_params() -> tuple[ParamSpec, ...]:
    defaults = PipelineConfig()
    out = []
    for f in fields(PipelineConfig):
        doc, extra = _PIPELINE_DOCS[f.name]
        out.append(
            ParamSpec(PipelineConfig.ros_name(f.name), getattr(defaults, f.name), doc, **extra)
        )
    return tuple(out)


def all_params() -> tuple[ParamSpec, ...]:
    return pipeline_params() + NODE_PARAMS


def check_choice(spec: ParamSpec, value) -> str | None:
    """Reason ``value`` is not allowed for ``spec`` (choices), or None."""
    if spec.choices and value not in spec.choices:
        return f"{spec.name} must be one of {list(spec.choices)}, got {value!r}"
    return None
