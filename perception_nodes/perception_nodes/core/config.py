"""Pipeline configuration: one flat set of named settings shared by the core, the ROS
parameters (same names, dots as namespaces) and the YAML files in ``config/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, get_args

from perception_nodes.core.records import dataclass_from_dict

# Allowed values, declared once (typed). ROS parameter descriptors, launch arguments, the demo
# and the tools derive their choices from these tuples; the registries check against them.
SamBackendName = Literal["auto", "torch", "onnxruntime", "tensorrt"]
SamModelName = Literal["vit_b", "vit_l", "vit_h", "vit_t", "sam_tiny_test"]
PrecisionName = Literal["fp32", "fp16", "bf16"]
ClassifierType = Literal["zero_shot", "regionspot", "none"]
RelationsType = Literal["auto", "learned", "geometric", "none"]

SAM_BACKENDS: tuple[str, ...] = get_args(SamBackendName)
# "auto": onnxruntime on a CPU (faster there by measurement: `pn-bench-sam`, README), torch on
# CUDA (onnxruntime's CUDA provider needs onnxruntime-gpu; TensorRT needs engines built first).
DEFAULT_SAM_BACKEND: SamBackendName = "auto"
SAM_MODEL_NAMES: tuple[str, ...] = get_args(SamModelName)
TEST_ONLY_SAM_MODELS: tuple[str, ...] = ("sam_tiny_test",)
RELEASE_SAM_MODELS: tuple[str, ...] = tuple(
    m for m in SAM_MODEL_NAMES if m not in TEST_ONLY_SAM_MODELS
)
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)
CLASSIFIER_TYPES: tuple[str, ...] = get_args(ClassifierType)
RELATIONS_TYPES: tuple[str, ...] = get_args(RelationsType)

DEFAULT_LABELS = [
    "person",
    "cup",
    "bottle",
    "chair",
    "table",
    "laptop",
    "keyboard",
    "book",
    "cat",
    "dog",
    "plant",
    "door",
    "window",
    "floor",
    "wall",
    "sky",
    "tree",
    "car",
    "bicycle",
    "rocket",
]
#: The one default template list: region labels (the vocabulary) and free-text queries use it.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
)


@dataclass
class PipelineConfig:
    """Every setting of :class:`perception_nodes.core.pipeline.Pipeline`.

    Names map 1:1 to ROS parameters: ``sam_model`` <-> ``sam.model`` (first ``_`` -> ``.``).
    Empty strings for paths mean "the cached official file, or generated weights when
    ``weights_allow_generated`` is true".
    """

    sam_backend: SamBackendName = DEFAULT_SAM_BACKEND  # SAM_BACKENDS
    sam_model: SamModelName = "vit_t"  # SAM_MODEL_NAMES (the registry's keys)
    sam_checkpoint: str = ""  # state_dict file (torch backend)
    sam_encoder_path: str = ""  # ONNX file / TensorRT engine; "" = the cache's (made on first run)
    sam_decoder_path: str = ""
    sam_device: str = "cpu"  # cpu | cuda | cuda:N
    sam_precision: PrecisionName = "fp32"  # PRECISIONS
    amg_points_per_side: int = 16  # point grid side for segment-everything
    amg_points_per_batch: int = 0  # 0 = automatic (64 on CPU, 256 on CUDA)
    amg_pred_iou_thresh: float = 0.86  # [0, 1]
    amg_stability_score_thresh: float = 0.92  # [0, 1]
    amg_box_nms_thresh: float = 0.7  # [0, 1]
    amg_min_mask_region_area: int = 0  # pixels; holes/islands below are removed
    amg_max_regions: int = 64  # cap on regions per frame (best predicted IoU first)
    classifier_type: ClassifierType = "zero_shot"  # CLASSIFIER_TYPES
    classifier_regionspot_checkpoint: str = ""
    classifier_unknown_threshold: float = 0.1  # [0, 1]; best score below -> "unknown"
    classifier_top_k: int = 5  # alternatives per region
    clip_model: str = "ViT-B-16"  # open_clip model name
    clip_checkpoint: str = ""  # open_clip weights file; "" = cached default (pn-fetch-weights clip)
    vocabulary_labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    vocabulary_templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    relations_type: RelationsType = (
        "auto"  # RELATIONS_TYPES; auto = learned if checkpoint else geometric
    )
    relations_checkpoint: str = ""
    relations_top_k: int = 50  # relations per frame
    relations_per_subject: int = 5  # relations per subject region
    relations_score_threshold: float = 0.3  # [0, 1]
    tracking_enabled: bool = True  # persistent track ids, voted labels, smoothed relations
    tracking_iou_gate: float = 0.5  # [0, 1] mask IoU for a region to continue a track
    tracking_similarity_weight: float = (
        0.3  # [0, 1] weight of SAM-token cosine vs mask IoU in the match score
    )
    tracking_similarity_gate: float = (
        0.8  # [-1, 1] token cosine that matches without overlap (fast motion, re-entry)
    )
    tracking_birth_hits: int = 2  # frames a new track must be seen before it gets an id
    tracking_death_misses: int = 30  # processed frames a track may be missed before it ends
    tracking_label_window: int = 10  # frames in a track's score-weighted label vote
    tracking_relation_smoothing: float = (
        0.5  # (0, 1] EMA weight of the newest frame's relation score; 1 = raw
    )
    weights_allow_generated: bool = True  # no weights -> seeded random ones (labels NOT meaningful)
    weights_cache_dir: str = ""  # "" = $PERCEPTION_NODES_CACHE or ~/.cache/perception_nodes

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @staticmethod
    def ros_name(name: str) -> str:
        """``sam_model`` -> ``sam.model`` (the ROS parameter name)."""
        group, _, rest = name.partition("_")
        return f"{group}.{rest}"

    @classmethod
    def from_flat(cls, values: dict) -> "PipelineConfig":
        """Build from ``{name or ros.name: value}``; unknown names raise with the valid ones."""
        names = {cls.ros_name(n): n for n in cls.field_names()}
        return dataclass_from_dict(
            cls, {names.get(k, k): v for k, v in values.items()}, "pipeline settings"
        )
