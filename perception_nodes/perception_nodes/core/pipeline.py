"""One object that runs every stage on a frame: SAM -> labels -> relations -> scene graph.

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
from .types import FrameResult, RegionLabels, Relations, Segmentation
from .weights import GENERATED_WEIGHTS, default_cache_dir

logger = logging.getLogger(__name__)

UNTRAINED_NOTICE = (
    f"{GENERATED_WEIGHTS} are in use: masks, labels and relations are NOT meaningful. "
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
            logger.warning("%s (generated: %s; real ones: `%s`)", UNTRAINED_NOTICE, ", ".join(untrained),
                           fetch_command(untrained) or "none to download for test-only models")
        return cls(config, generator, classifier, vocabulary, relations, untrained)

    @property
    def meaningful(self) -> bool:
        return not self.untrained_parts

    @property
    def sam_untrained(self) -> bool:
        """The SAM backend runs GENERATED weights (torch checkpoint, ONNX export or TensorRT engine)."""
        return bool(self.generator.backend.untrained)

    # ------------------------------------------------------------------ per frame
    def process(self, image: np.ndarray, depth_m: np.ndarray | None = None, k: np.ndarray | None = None,
                stamp: float = 0.0, region_id_offset: int = 0) -> tuple[FrameResult, SceneGraph]:
        """Scene graph of one ``HxWx3`` uint8 RGB image.

        ``depth_m``: optional HxW float32 meters (NaN = invalid) registered to the image;
        ``k``: 3x3 intrinsics; both needed for 3D centroids and depth relations.
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
            region_ids = np.arange(1 + region_id_offset, 1 + region_id_offset + len(seg), dtype=np.uint32)
            centroids = region_centroids(seg.masks, rel_depth, k)
            graph = build_scene_graph(
                seg, labels, relations, region_ids, centroids,
                top_k=self.config.relations_top_k, top_k_per_subject=self.config.relations_per_subject,
                score_threshold=self.config.relations_score_threshold, stamp=stamp,
            )
            graph.labels_meaningful = self.meaningful and (labels.meaningful if labels else True)
            timings["assemble"] = time.perf_counter() - t0
        with self._latest_lock:
            self._latest = LatestFrame(image, seg, region_ids, stamp)
        return FrameResult(seg, labels, relations, region_ids, centroids, timings), graph

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


def fetch_command(untrained_parts: list[str]) -> str:
    """The ``pn-fetch-weights`` command that replaces the generated parts (``"SAM vit_t"``,
    ``"CLIP ViT-B-16"``) with real weights; ``""`` when none of them has a download (test-only
    configurations such as ``sam_tiny_test``)."""
    from .clip_weights import clip_registry
    from .sam.registry import SAM_MODELS

    names = []
    for part in untrained_parts:
        kind, _, name = part.partition(" ")
        if kind == "SAM" and name in SAM_MODELS and SAM_MODELS[name].url:
            names.append(name)
        elif kind == "CLIP" and name in clip_registry():
            names.append(f"clip:{name}")
    return " ".join(["pn-fetch-weights", *names]) if names else ""


def _generated(config: PipelineConfig, part: str, filename: str, make) -> str:
    """Path of GENERATED weights for ``part`` (``"SAM vit_t"``), written once into the cache."""
    if not config.weights_allow_generated:
        how = f"fetch them with `{fetch_command([part])}`" if fetch_command([part]) else "pass a checkpoint file"
        raise PipelineError(f"no weights for {part} and weights.allow_generated is false; {how} (see README)")
    path = _cache_dir(config) / "generated" / filename
    if not path.is_file():
        logger.warning("no weights for %s: writing %s to %s", part, GENERATED_WEIGHTS, path)
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
    from .sam.registry import get_spec

    spec = get_spec(config.sam_model)
    backend = _create_backend(config, untrained)
    if backend.untrained and not any(p.startswith("SAM") for p in untrained):
        untrained.append(f"SAM {config.sam_model}")
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


def _create_backend(config: PipelineConfig, untrained: list[str]):
    """The SAM backend of ``config``; every setting (model, precision, device, cache) reaches it."""
    from .sam.backends import create_backend

    common = dict(model=config.sam_model, device=config.sam_device, precision=config.sam_precision,
                  cache_dir=config.weights_cache_dir or None)
    if config.sam_backend == "torch":
        return create_backend("torch", checkpoint=_sam_checkpoint(config, untrained), **common)
    encoder, decoder = config.sam_encoder_path or None, config.sam_decoder_path or None
    if config.sam_backend == "tensorrt":
        if config.sam_device == "cpu":
            logger.warning("backend tensorrt with sam.device cpu: TensorRT engines run on CUDA; set sam.device: cuda")
        if encoder is None and decoder is None:
            encoder, decoder = _tensorrt_engines(config, untrained)
    return create_backend(config.sam_backend, encoder_path=encoder, decoder_path=decoder, **common)


def _tensorrt_engines(config: PipelineConfig, untrained: list[str]):
    """Engines from the cache, or exported and built now (see ``core.sam.engine_setup``)."""
    from .sam.engine_setup import EngineSetup, EngineSetupError, ensure_engines

    setup = EngineSetup(config.sam_model, config.sam_precision, Path(_sam_checkpoint(config, untrained)),
                        _cache_dir(config))
    try:
        return ensure_engines(setup)
    except EngineSetupError as exc:
        raise PipelineError(f"backend tensorrt: {exc}") from exc


def _load_classifier(config: PipelineConfig, untrained: list[str]):
    if config.classifier_type == "none":
        return None, None, None
    from .classify.regionspot import RegionSpotClassifier
    from .classify.zero_shot import ZeroShotClassifier
    from .clip_model import load_clip_model, make_generated_clip_checkpoint
    from .vocabulary import Vocabulary

    ckpt = config.clip_checkpoint or _cached_clip(config)
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
        classifier = ZeroShotClassifier(clip, meaningful=meaningful, unknown_threshold=config.classifier_unknown_threshold,
                                        templates=tuple(config.vocabulary_templates))  # queries = labels' templates
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


def _cached_clip(config: PipelineConfig) -> str:
    """The cached registry weights of ``clip.model`` (sha256-checked when pinned), or ""."""
    from .clip_weights import cached_clip_checkpoint, get_clip_weights
    from .weights import ChecksumMismatchError, sha256_file

    path = cached_clip_checkpoint(config.clip_model, config.weights_cache_dir or None)
    if path is None:
        logger.info("no cached CLIP %s weights (fetch them with `pn-fetch-weights clip`)", config.clip_model)
        return ""
    spec = get_clip_weights(config.clip_model)
    if spec.sha256 and sha256_file(path) != spec.sha256:
        raise ChecksumMismatchError(f"sha256 of {path} is not {spec.sha256}: the file is corrupted or another "
                                    f"version; delete it and run `pn-fetch-weights {spec.name}`")
    return str(path)


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
