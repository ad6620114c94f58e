"""One object that runs every stage on a frame: SAM -> labels -> relations -> tracking -> scene graph.

ROS-free: numpy in, dataclasses out. The perception node is a thin adapter around it.
Models load once (``Pipeline.load``); the text embeddings of the vocabulary are computed once
per vocabulary change (never per frame); each frame computes the SAM image embedding once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import PipelineConfig
from .projection import region_centroids
from .scene_graph import SceneGraph, build_scene_graph
from .tracking import TrackingStage
from .types import FrameResult, RegionLabels, Relations, Segmentation
from .weights import default_cache_dir

logger = logging.getLogger(__name__)

UNTRAINED_NOTICE = (
    "GENERATED (untrained) weights are in use: masks, labels and relations are NOT meaningful. "
    "Fetch real weights with `pn-fetch-weights` (see README)."
)


class PipelineError(RuntimeError):
    """The pipeline cannot be built (missing weights, bad settings) or a frame is unusable."""


@dataclass
class LatestFrame:
    """What QueryRegions needs of the latest processed frame."""

    image: np.ndarray
    segmentation: Segmentation
    region_ids: np.ndarray
    stamp: float


class Pipeline:
    """Runs segmentation, classification and relation prediction on frames.

    Thread-safety: :meth:`process` is called from one worker; :meth:`set_vocabulary`,
    :meth:`vocabulary_snapshot` and :meth:`query` may be called from other threads at any time.
    """

    def __init__(self, config: PipelineConfig, generator, classifier, vocabulary, relation_predictor,
                 untrained_parts: list[str]) -> None:
        self.config = config
        self.generator = generator
        self.classifier = classifier
        self.vocabulary = vocabulary
        self.relation_predictor = relation_predictor
        self.untrained_parts = untrained_parts
        self._latest: LatestFrame | None = None
        self._latest_lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self.tracking = TrackingStage()

    # ------------------------------------------------------------------ building
    @classmethod
    def load(cls, config: PipelineConfig) -> "Pipeline":
        """Load every model named by ``config`` (clear :class:`PipelineError` on failure)."""
        untrained: list[str] = []
        try:
            generator = _load_generator(config, untrained)
            clip, vocabulary, classifier = _load_classifier(config, untrained)
            relations = _load_relations(config, untrained)
        except PipelineError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            raise PipelineError(f"cannot build the pipeline: {exc}") from exc
        if untrained:
            logger.warning("%s (untrained: %s)", UNTRAINED_NOTICE, ", ".join(untrained))
        return cls(config, generator, classifier, vocabulary, relations, untrained)

    @property
    def meaningful(self) -> bool:
        return not self.untrained_parts

    # ------------------------------------------------------------------ per frame
    def process(self, image: np.ndarray, depth_m: np.ndarray | None = None, k: np.ndarray | None = None,
                stamp: float = 0.0, region_id_offset: int = 0, stream: str = "") -> tuple[FrameResult, SceneGraph]:
        """Scene graph of one ``HxWx3`` uint8 RGB image.

        ``depth_m``: optional HxW float32 meters (NaN = invalid) registered to the image;
        ``k``: 3x3 intrinsics; both needed for 3D centroids and depth relations.
        ``stream``: which camera the frame comes from (e.g. its namespace); each stream has
        its own tracks (``tracking_*`` settings, read from :attr:`config` every frame).
        """
        timings: dict[str, float] = {}
        with self._infer_lock:
            t0 = time.perf_counter()
            seg = self.generator.generate(image)
            timings["segment"] = time.perf_counter() - t0
            stage_timings = getattr(self.generator, "timings", None)
            if stage_timings is not None:
                timings.update({f"segment.{k_}": v for k_, v in stage_timings.as_dict().items()})
            labels = self._classify(image, seg, timings)
            t0 = time.perf_counter()
            rel_depth = depth_m if depth_m is not None and depth_m.shape == seg.image_size else None
            relations = self._relate(seg, labels, rel_depth)
            timings["relations"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            tracked = self.tracking.apply(stream, seg, labels, relations, self.config)
            labels, relations = tracked.labels, tracked.relations
            timings["tracking"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            region_ids = np.arange(1 + region_id_offset, 1 + region_id_offset + len(seg), dtype=np.uint32)
            centroids = region_centroids(seg.masks, rel_depth, k)
            graph = build_scene_graph(
                seg, labels, relations, region_ids, centroids,
                top_k=self.config.relations_top_k, top_k_per_subject=self.config.relations_per_subject,
                score_threshold=self.config.relations_score_threshold, stamp=stamp,
            )
            graph.labels_meaningful = self.meaningful and (labels.meaningful if labels else True)
            graph.track_ids, graph.track_ages = tracked.track_ids, tracked.track_ages
            graph.relation_smoothing = tracked.relation_smoothing
            timings["assemble"] = time.perf_counter() - t0
        with self._latest_lock:
            self._latest = LatestFrame(image, seg, region_ids, stamp)
        return FrameResult(seg, labels, relations, region_ids, centroids, timings,
                           tracked.track_ids, tracked.track_ages), graph

    def encode_together(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Encode frames that arrived together (several cameras) in ONE SAM encoder batch.

        Returns the converted ``HxWx3 uint8`` RGB images; pass exactly those arrays to
        :meth:`process` so it reuses their embeddings.
        """
        embed_batch = getattr(self.generator, "embed_batch", None)
        if embed_batch is None or len(images) < 2:
            return list(images)
        with self._infer_lock:
            return embed_batch(images)

    def _classify(self, image: np.ndarray, seg: Segmentation, timings: dict[str, float]) -> RegionLabels | None:
        if self.classifier is None:
            return None
        t0 = time.perf_counter()
        labels = self.classifier.classify(image, seg, self.vocabulary.snapshot(), top_k=self.config.classifier_top_k)
        timings["classify"] = time.perf_counter() - t0
        return labels

    def _relate(self, seg: Segmentation, labels: RegionLabels | None, depth: np.ndarray | None) -> Relations | None:
        if self.relation_predictor is None:
            return None
        return self.relation_predictor.predict(seg, labels, depth)

    # ------------------------------------------------------------------ services
    def set_vocabulary(self, labels: list[str], templates: list[str] | None = None, append: bool = False):
        """Atomically change the vocabulary (VocabularyError on bad input; unchanged then)."""
        if self.vocabulary is None:
            raise PipelineError("no classifier is configured (classifier.type = none)")
        return self.vocabulary.set(list(labels), templates=list(templates) if templates else None, append=append)

    def vocabulary_snapshot(self):
        return None if self.vocabulary is None else self.vocabulary.snapshot()

    def query(self, text: str, top_k: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
        """Region ids and scores (best first) of the latest frame against free ``text``."""
        if self.classifier is None:
            raise PipelineError("no classifier is configured (classifier.type = none)")
        with self._latest_lock:
            latest = self._latest
        if latest is None:
            raise PipelineError("no frame has been processed yet")
        scores = self.classifier.query(latest.image, latest.segmentation, text)
        order = np.argsort(-scores, kind="stable")
        if top_k > 0:
            order = order[:top_k]
        return latest.region_ids[order], scores[order].astype(np.float32), latest.stamp


# ---------------------------------------------------------------------- loaders
def _cache_dir(config: PipelineConfig) -> Path:
    return Path(config.weights_cache_dir).expanduser() if config.weights_cache_dir else default_cache_dir()


def _generated(config: PipelineConfig, what: str, filename: str, make) -> str:
    if not config.weights_allow_generated:
        raise PipelineError(f"no weights for {what} and weights.allow_generated is false; fetch them with "
                            f"`pn-fetch-weights` (see README)")
    path = _cache_dir(config) / "generated" / filename
    if not path.is_file():
        logger.warning("no weights for %s: writing GENERATED (untrained) weights to %s", what, path)
        make(path)
    return str(path)


def _sam_checkpoint(config: PipelineConfig, untrained: list[str]) -> str | None:
    from .sam.registry import get_spec, make_generated_checkpoint
    from .weights import CheckpointNotFoundError, resolve_checkpoint

    if config.sam_checkpoint:
        return config.sam_checkpoint
    try:
        return str(resolve_checkpoint(config.sam_model, None, config.weights_cache_dir or None))
    except CheckpointNotFoundError as exc:
        logger.info("%s", exc)
    get_spec(config.sam_model)
    untrained.append(f"SAM {config.sam_model}")
    return _generated(config, f"SAM {config.sam_model}", f"sam_{config.sam_model}_seed0.pth",
                      lambda p: make_generated_checkpoint(config.sam_model, p, seed=0))


def _load_generator(config: PipelineConfig, untrained: list[str]):
    from .sam.amg import MaskGenerator
    from .sam.backends import create_backend
    from .sam.registry import get_spec

    spec = get_spec(config.sam_model)
    if config.sam_backend == "torch":
        ckpt = _sam_checkpoint(config, untrained)
        backend = create_backend("torch", model=config.sam_model, checkpoint=ckpt, device=config.sam_device,
                                 precision=config.sam_precision)
        if getattr(backend, "untrained", False) and not any(p.startswith("SAM") for p in untrained):
            untrained.append(f"SAM {config.sam_model}")
    else:
        backend = create_backend(config.sam_backend, model=config.sam_model, device=config.sam_device,
                                 encoder_path=config.sam_encoder_path or None,
                                 decoder_path=config.sam_decoder_path or None)
    return MaskGenerator(
        backend, spec,
        points_per_side=config.amg_points_per_side,
        points_per_batch=config.amg_points_per_batch or None,
        pred_iou_thresh=config.amg_pred_iou_thresh,
        stability_score_thresh=config.amg_stability_score_thresh,
        box_nms_thresh=config.amg_box_nms_thresh,
        min_mask_region_area=config.amg_min_mask_region_area,
        max_regions=config.amg_max_regions or None,
    )


def _load_classifier(config: PipelineConfig, untrained: list[str]):
    if config.classifier_type == "none":
        return None, None, None
    from .classify.regionspot import RegionSpotClassifier
    from .classify.zero_shot import ZeroShotClassifier
    from .clip_model import load_clip_model, make_generated_clip_checkpoint
    from .vocabulary import Vocabulary

    ckpt = config.clip_checkpoint
    if not ckpt:
        ckpt = _generated(config, f"CLIP {config.clip_model}", f"clip_{config.clip_model}_seed0.pt",
                          lambda p: make_generated_clip_checkpoint(config.clip_model, p, seed=0))
    clip = load_clip_model(config.clip_model, ckpt, device=config.sam_device)
    if clip.generated:
        untrained.append(f"CLIP {config.clip_model}")
    vocabulary = Vocabulary(clip, templates=config.vocabulary_templates)
    if config.vocabulary_labels:
        vocabulary.set(list(config.vocabulary_labels))
    meaningful = not untrained
    if config.classifier_type == "zero_shot":
        classifier = ZeroShotClassifier(clip, meaningful=meaningful, unknown_threshold=config.classifier_unknown_threshold)
    elif config.classifier_type == "regionspot":
        if not config.classifier_regionspot_checkpoint:
            raise PipelineError("classifier.type is regionspot but classifier.regionspot_checkpoint is empty "
                                "(train one with `pn-train-regionspot`)")
        classifier = RegionSpotClassifier.from_checkpoint(
            config.classifier_regionspot_checkpoint, clip, config.sam_model, meaningful=meaningful,
            unknown_threshold=config.classifier_unknown_threshold)
    else:
        raise PipelineError(f"classifier.type must be zero_shot, regionspot or none, got {config.classifier_type!r}")
    return clip, vocabulary, classifier


def _load_relations(config: PipelineConfig, untrained: list[str]):
    from .relations.geometric import GeometricRelationPredictor
    from .relations.head import LearnedRelationPredictor

    kind = config.relations_type
    if kind == "auto":
        kind = "learned" if config.relations_checkpoint else "geometric"
    if kind == "none":
        return None
    if kind == "geometric":
        return GeometricRelationPredictor(min_score=config.relations_score_threshold,
                                          max_per_subject=config.relations_per_subject)
    if kind == "learned":
        if not config.relations_checkpoint:
            raise PipelineError("relations.type is learned but relations.checkpoint is empty "
                                "(train one with `pn-train-relations`)")
        return LearnedRelationPredictor.from_checkpoint(
            config.relations_checkpoint, sam_model=config.sam_model, top_k=config.relations_top_k,
            min_score=config.relations_score_threshold, max_per_subject=config.relations_per_subject,
            device=config.sam_device)
    raise PipelineError(f"relations.type must be auto, learned, geometric or none, got {config.relations_type!r}")
