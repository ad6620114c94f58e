"""Pipeline configuration: one flat set of named settings shared by the core, the ROS
parameters (same names, dots as namespaces) and the YAML files in ``config/``.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, get_args

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


@dataclass(frozen=True)
class SettingInfo:
    """What a :class:`PipelineConfig` field means and may hold: the one source of the ROS
    parameter descriptors (``ros/params.py``), the runtime checks (:func:`setting_problems`,
    used by ``core/live_settings.py``), the launch arguments' help and the error messages.

    ``low``/``high`` bound numbers (inclusive); ``choices`` lists a string's allowed values;
    ``live`` False: the setting picks or loads models and changes only with a reload (its ROS
    parameter is read-only).
    """

    description: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    live: bool = True

    def problem(self, name: str, value: object) -> str | None:
        """Why ``value`` is not allowed for the setting ``name``, or None."""
        if self.choices and value not in self.choices:
            return f"{name} must be one of {list(self.choices)}, got {value!r}"
        if self.low is not None and not self.low <= value <= self.high:
            return f"{name} must be in {self.range_text()}, got {value}"
        return None

    def range_text(self) -> str:
        """``"[0, 1]"``, ``"[0, 1000000]"`` (bounds as written, integers without a point)."""
        low, high = (int(b) if float(b).is_integer() else b for b in (self.low, self.high))
        return f"[{low}, {high}]"


def _setting(default=MISSING, *, factory=MISSING, **info) -> Any:
    """A dataclass field carrying its :class:`SettingInfo` (``metadata["setting"]``)."""
    return field(
        default=default, default_factory=factory, metadata={"setting": SettingInfo(**info)}
    )


@dataclass
class PipelineConfig:
    """Every setting of :class:`perception_nodes.core.pipeline.Pipeline`, each with its
    :class:`SettingInfo` (description, range or choices, live or reload): see :func:`settings`.

    Names map 1:1 to ROS parameters: ``sam_model`` <-> ``sam.model`` (first ``_`` -> ``.``).
    Empty strings for paths mean "the cached official file, or generated weights when
    ``weights_allow_generated`` is true".
    """

    sam_backend: SamBackendName = _setting(
        DEFAULT_SAM_BACKEND,
        description="SAM backend (auto: onnxruntime on CPU, torch on CUDA)",
        choices=SAM_BACKENDS,
        live=False,
    )
    sam_model: SamModelName = _setting(
        "vit_t",
        description="SAM registry model (vit_t = MobileSAM, real time on a CPU)",
        choices=SAM_MODEL_NAMES,
        live=False,
    )
    sam_checkpoint: str = _setting(
        "",
        description="SAM state_dict file; empty = cached official weights (or generated ones)",
        live=False,
    )
    sam_encoder_path: str = _setting(
        "",
        description="ONNX file or TensorRT engine of the image encoder (onnxruntime/tensorrt "
        "backends; empty: the cache's, made on first run)",
        live=False,
    )
    sam_decoder_path: str = _setting(
        "",
        description="ONNX file or TensorRT engine of the mask decoder (onnxruntime/tensorrt "
        "backends)",
        live=False,
    )
    sam_device: str = _setting(
        "cpu", description="torch/onnxruntime device: cpu, cuda or cuda:N", live=False
    )
    sam_precision: PrecisionName = _setting(
        "fp32",
        description="encoder precision (and TensorRT engine precision)",
        choices=PRECISIONS,
        live=False,
    )
    amg_points_per_side: int = _setting(
        16, description="segment-everything point grid side (points = side^2)", low=1, high=128
    )
    amg_points_per_batch: int = _setting(
        0,
        description="prompts per decoder batch; 0 = automatic (16 on CPU, 256 on CUDA)",
        low=0,
        high=4096,
    )
    amg_pred_iou_thresh: float = _setting(
        0.86, description="keep masks whose predicted IoU is at least this", low=0.0, high=1.0
    )
    amg_stability_score_thresh: float = _setting(
        0.92, description="keep masks whose stability score is at least this", low=0.0, high=1.0
    )
    amg_box_nms_thresh: float = _setting(
        0.7,
        description="box IoU above which the weaker mask is suppressed",
        low=0.0,
        high=1.0,
    )
    amg_min_mask_region_area: int = _setting(
        0, description="remove islands/holes smaller than this, pixels", low=0, high=1_000_000
    )
    amg_max_regions: int = _setting(
        64,
        description="at most this many regions per frame (best predicted IoU first)",
        low=1,
        high=65535,
    )
    classifier_type: ClassifierType = _setting(
        "zero_shot", description="region classifier", choices=CLASSIFIER_TYPES, live=False
    )
    classifier_regionspot_checkpoint: str = _setting(
        "", description="RegionSpot head checkpoint (pn-train-regionspot)", live=False
    )
    classifier_unknown_threshold: float = _setting(
        0.1, description="best label score below this -> 'unknown'", low=0.0, high=1.0
    )
    classifier_top_k: int = _setting(
        5, description="alternative labels per region", low=1, high=100
    )
    clip_model: str = _setting(
        "ViT-B-16", description="open_clip model name (ViT-B-16, ViT-L-14-336, ...)", live=False
    )
    clip_checkpoint: str = _setting(
        "",
        description="open_clip weights file; empty = the cached default weights "
        "(pn-fetch-weights clip), else generated ones",
        live=False,
    )
    vocabulary_labels: list[str] = _setting(
        factory=lambda: list(DEFAULT_LABELS),
        description="vocabulary; setting it at runtime replaces the vocabulary like "
        "~/set_vocabulary",
    )
    vocabulary_templates: list[str] = _setting(
        factory=lambda: list(DEFAULT_TEMPLATES),
        description="prompt templates, each with one {}; setting it re-embeds the labels",
    )
    relations_type: RelationsType = _setting(
        "auto",
        description="relation predictor; auto = learned if a checkpoint is set, else geometric",
        choices=RELATIONS_TYPES,
        live=False,
    )
    relations_checkpoint: str = _setting(
        "", description="relation head checkpoint (pn-train-relations)", live=False
    )
    relations_top_k: int = _setting(
        50,
        description="at most this many relations per frame, best first; 0 = no limit "
        "(relations.type none switches relations off)",
        low=0,
        high=100000,
    )
    relations_per_subject: int = _setting(
        5,
        description="at most this many relations per subject region, best first; 0 = no limit",
        low=0,
        high=1000,
    )
    relations_score_threshold: float = _setting(
        0.3, description="minimum relation score", low=0.0, high=1.0
    )
    tracking_enabled: bool = _setting(
        True,
        description="track regions across frames: Region.track_id/track_age, voted labels, "
        "smoothed relations",
    )
    tracking_iou_gate: float = _setting(
        0.5,
        description="mask IoU at which a region may continue a track; also keeps nested parts "
        "off their whole",
        low=0.0,
        high=1.0,
    )
    tracking_similarity_weight: float = _setting(
        0.3,
        description="weight of SAM-token cosine similarity (vs mask IoU) in the match score",
        low=0.0,
        high=1.0,
    )
    tracking_similarity_gate: float = _setting(
        0.8,
        description="token cosine at which a region may continue a track it does not overlap "
        "(fast motion, dropped frames, re-entry)",
        low=-1.0,
        high=1.0,
    )
    tracking_birth_hits: int = _setting(
        2,
        description="consecutive frames a new track is seen before it gets a track_id",
        low=1,
        high=100,
    )
    tracking_death_misses: int = _setting(
        30,
        description="processed frames a track may go unseen before it ends (dropped frames do "
        "not count)",
        low=1,
        high=10000,
    )
    tracking_label_window: int = _setting(
        10,
        description="frames of a track's score-weighted label vote (1 = this frame's label)",
        low=1,
        high=1000,
    )
    tracking_relation_smoothing: float = _setting(
        0.5,
        description="EMA weight of the newest frame in relation scores per (subject track, "
        "predicate, object track); 1 = raw scores",
        low=0.01,
        high=1.0,
    )
    weights_allow_generated: bool = _setting(
        True,
        description="without weights, use seeded random ones (output NOT meaningful)",
        live=False,
    )
    weights_cache_dir: str = _setting(
        "",
        description="weights cache; empty = $PERCEPTION_NODES_CACHE or ~/.cache/perception_nodes",
        live=False,
    )

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


def settings() -> dict[str, SettingInfo]:
    """``{field name: SettingInfo}`` of every :class:`PipelineConfig` field, in field order."""
    return {f.name: f.metadata["setting"] for f in fields(PipelineConfig)}


def default_setting(name: str) -> object:
    """The default value of the :class:`PipelineConfig` field ``name`` (tools take theirs here)."""
    return getattr(PipelineConfig(), name)


def setting_problems(config: PipelineConfig) -> list[str]:
    """Every value of ``config`` outside its :class:`SettingInfo` range or choices ([] = none)."""
    info = settings()
    problems = (info[n].problem(n, getattr(config, n)) for n in info)
    return [p for p in problems if p]
