"""One object that runs every stage on a frame: SAM -> labels -> relations -> tracking -> scene graph.

ROS-free: numpy in, dataclasses out. The perception node is a thin adapter around it.
Models load once (``Pipeline.load``); the text embeddings of the vocabulary are computed once
per vocabulary change (never per frame); each frame computes the SAM image embedding once.
Which settings apply live, and the stage objects they rebuild, are in :mod:`.live_settings`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.live_settings import (
    Stages,
    changed_settings,
    stages_for,
    vocabulary_changed,
)
from perception_nodes.core.output.projection import region_centroids
from perception_nodes.core.output.scene_graph import SceneGraph, build_scene_graph
from perception_nodes.core.pipeline_factory import (
    PipelineError,
    fetch_command,
    load_models,
    sam_untrained,
)
from perception_nodes.core.stream.cancel import FrameAbandoned, raise_if_stopped  # noqa: F401  (FrameAbandoned: re-exported)
from perception_nodes.core.tracking import TrackingStage
from perception_nodes.core.types import FrameResult, RegionLabels, Relations, Segmentation
from perception_nodes.core.weights.files import GENERATED_WEIGHTS
from perception_nodes.core.weights.generated_policy import (
    apply_generated_sam_policy,
    describe_changes,
)

if TYPE_CHECKING:  # annotations only: model code is imported where the models are loaded
    from perception_nodes.core.classify.base import RegionClassifier
    from perception_nodes.core.relations.base import RelationPredictor
    from perception_nodes.core.sam.amg import MaskGenerator
    from perception_nodes.core.vocabulary.runtime import Vocabulary

logger = logging.getLogger(__name__)

UNTRAINED_NOTICE = (
    f"{GENERATED_WEIGHTS} are in use: masks, labels and relations are NOT meaningful. "
    "Fetch real weights with `pn-fetch-weights` (see README)."
)

# Smallest image side (pixels) a frame may have: below it SAM's masks degenerate (a 1x1 or 2x2
# frame gives regions of area 0) and no region is worth a label. README "Topics and services".
MIN_IMAGE_SIDE = 16


def check_image_size(hw: tuple[int, int]) -> None:
    """:class:`PipelineError` when an ``(H, W)`` image is smaller than ``MIN_IMAGE_SIDE`` on a side."""
    h, w = int(hw[0]), int(hw[1])
    if min(h, w) < MIN_IMAGE_SIDE:
        raise PipelineError(
            f"{w}x{h} image is below the minimum size {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels"
        )


def _without_empty_regions(seg: Segmentation) -> Segmentation:
    """Drop regions whose mask has no pixel (never published: a region has area >= 1)."""
    if len(seg) == 0 or bool(np.all(seg.areas > 0)):
        return seg
    return seg.select(np.flatnonzero(seg.areas > 0))


@dataclass
class LatestFrame:
    """What QueryRegions needs of the latest processed frame."""

    image: np.ndarray
    segmentation: Segmentation
    region_ids: np.ndarray
    stamp_ns: int  # exact integer nanoseconds of the frame's stamp (see core/stream/stamps.py)


@dataclass
class FrameWork:
    """What :meth:`Pipeline.infer` computed of a frame: everything before tracking (numpy and
    dataclasses only: picklable, so worker processes can hand it over).

    ``depth_m``: the frame's ``HxW`` depth (m) when it fits the segmentation, else None;
    ``config``: the settings the frame ran with; ``labels_meaningful``: no generated weights
    anywhere (:attr:`Pipeline.meaningful`); ``scores_meaningful``: SAM's weights are real.
    """

    image: np.ndarray | None
    segmentation: Segmentation
    labels: RegionLabels | None
    relations: Relations | None
    depth_m: np.ndarray | None
    config: PipelineConfig
    timings: dict[str, float]
    labels_meaningful: bool
    scores_meaningful: bool


def finish_frame(
    work: FrameWork, tracking: TrackingStage, k: np.ndarray | None = None, stamp: float = 0.0,
    stream: str = "",
) -> tuple[FrameResult, SceneGraph]:  # fmt: skip
    """The in-order part of a frame (tracking, then the scene graph); frames of a stream must
    come in order. ``k``: 3x3 intrinsics (3D centroids with ``work.depth_m``); ``stamp``:
    seconds; ``stream``: the camera (see :meth:`Pipeline.process`)."""
    seg, cfg, timings = work.segmentation, work.config, dict(work.timings)
    t0 = time.perf_counter()
    tracked = tracking.apply(stream, seg, work.labels, work.relations, cfg, image=work.image,
                             stamp=stamp, scores_meaningful=work.scores_meaningful)  # fmt: skip
    labels, relations = tracked.labels, tracked.relations
    timings["tracking"] = time.perf_counter() - t0
    timings["tracking.camera_motion"] = tracked.camera_motion_ms / 1e3
    t0 = time.perf_counter()
    region_ids = np.arange(1, 1 + len(seg), dtype=np.uint32)
    centroids = region_centroids(seg.masks, work.depth_m, k, seg.boxes_xyxy)
    graph = build_scene_graph(
        seg, labels, relations, region_ids, centroids, top_k=cfg.relations_top_k,
        top_k_per_subject=cfg.relations_per_subject, score_threshold=cfg.relations_score_threshold,
        stamp=stamp,
    )  # fmt: skip
    graph.labels_meaningful = work.labels_meaningful and (labels.meaningful if labels else True)
    graph.track_ids, graph.track_ages = tracked.track_ids, tracked.track_ages
    graph.relation_smoothing = tracked.relation_smoothing
    timings["assemble"] = time.perf_counter() - t0
    result = FrameResult(seg, labels, relations, region_ids, centroids, timings,
                         tracked.track_ids, tracked.track_ages)  # fmt: skip
    return result, graph


class Pipeline:
    """Runs segmentation, classification and relation prediction on frames.

    Thread-safety: :meth:`process` is called from one worker; :meth:`set_vocabulary`,
    :meth:`vocabulary_snapshot`, :meth:`apply_settings` and :meth:`query` may be called from
    other threads at any time.
    """

    def __init__(
        self,
        config: PipelineConfig,
        generator: MaskGenerator,
        classifier: RegionClassifier | None,
        vocabulary: Vocabulary | None,
        relation_predictor: RelationPredictor | None,
        untrained_parts: list[str],
    ) -> None:
        self._stages = Stages(config, generator, classifier, relation_predictor)
        self.vocabulary = vocabulary
        self.untrained_parts = untrained_parts
        self._latest: LatestFrame | None = None
        self._latest_lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self._settings_lock = threading.Lock()  # a frame's start vs. a settings change
        # {setting: (configured, applied)} of core.generated_policy when SAM weights are generated
        self.generated_sam_policy: dict | None = None
        self.tracking = TrackingStage()

    @property
    def config(self) -> PipelineConfig:
        """The settings the next frame runs with."""
        return self._stages.config

    @property
    def generator(self):
        return self._stages.generator

    @property
    def classifier(self):
        return self._stages.classifier

    @property
    def relation_predictor(self):
        return self._stages.relation_predictor

    # ------------------------------------------------------------------ live settings
    def check_settings(self, config: PipelineConfig) -> list[str]:
        """Names of the settings ``config`` changes; PipelineError (nothing changes) if one of
        them needs a reload (:data:`~.live_settings.RELOAD_SETTINGS`) or a value is invalid."""
        config = self._effective(config)
        stages_for(self._stages, config)
        if self.vocabulary is not None and vocabulary_changed(self.config, config):
            self.vocabulary.check(list(config.vocabulary_labels), list(config.vocabulary_templates))
        return changed_settings(self.config, config)

    def apply_settings(self, config: PipelineConfig) -> list[str]:
        """Run every frame from the next one with ``config`` (changed names returned).

        Atomic: a frame runs entirely with the old or entirely with the new settings, vocabulary
        included (a change of ``vocabulary_labels``/``vocabulary_templates`` replaces the
        vocabulary with those labels and templates). Raises PipelineError (and changes nothing)
        like :meth:`check_settings`.
        """
        config = self._effective(config)
        words = list(config.vocabulary_labels), list(config.vocabulary_templates)
        if self.vocabulary is not None and vocabulary_changed(self.config, config):
            # encoded before the lock every frame takes first (3,000 new labels encoded under it
            # stopped the frames for 7.9 s); the change under it looks them up
            self.vocabulary.prepare(*words)
        with self._settings_lock:
            stages = stages_for(self._stages, config)
            changed = changed_settings(self.config, config)
            if self.vocabulary is not None and vocabulary_changed(self.config, config):
                self.vocabulary.set(*words)
            self._stages = stages
        if changed:
            logger.info("settings applied from the next frame: %s", ", ".join(changed))
        return changed

    def _effective(self, config: PipelineConfig) -> PipelineConfig:
        """``config`` as frames run it: with generated SAM weights, the same filter policy as at
        load time (the ROS parameters still hold SAM's defaults; see ``core.generated_policy``)."""
        if self.generated_sam_policy is None:
            return config
        return apply_generated_sam_policy(config)[0]

    # ------------------------------------------------------------------ building
    @classmethod
    def load(cls, config: PipelineConfig) -> Pipeline:
        """Load every model named by ``config`` (clear :class:`PipelineError` on failure)."""
        models = load_models(config)
        generator, vocabulary, classifier = models.generator, models.vocabulary, models.classifier
        relations, untrained = models.relation_predictor, models.untrained
        if untrained:
            fetch = fetch_command(untrained) or "none to download for test-only models"
            logger.warning("%s (generated: %s; real ones: `%s`)", UNTRAINED_NOTICE,
                           ", ".join(untrained), fetch)  # fmt: skip
        policy = None
        if sam_untrained(untrained):  # the generator above was built with the same settings
            config, policy = apply_generated_sam_policy(config)
            logger.info("%s", describe_changes(policy))
        pipeline = cls(config, generator, classifier, vocabulary, relations, untrained)
        pipeline.generated_sam_policy = policy
        return pipeline

    @property
    def meaningful(self) -> bool:
        return not self.untrained_parts

    @property
    def sam_backend_name(self) -> str:
        """The SAM backend that runs (``sam.backend: auto`` resolved): torch/onnxruntime/tensorrt."""
        return str(self.generator.backend.name)

    @property
    def sam_untrained(self) -> bool:
        """The SAM backend runs GENERATED weights (torch checkpoint, ONNX export or TensorRT engine)."""
        return bool(self.generator.backend.untrained)

    # ------------------------------------------------------------------ per frame
    def process(
        self,
        image: np.ndarray,
        depth_m: np.ndarray | None = None,
        k: np.ndarray | None = None,
        stamp: float = 0.0,
        stamp_ns: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        stream: str = "",
    ) -> tuple[FrameResult, SceneGraph]:
        """Scene graph of one ``HxWx3`` uint8 RGB image.

        ``depth_m``: optional HxW float32 meters (NaN = invalid) registered to the image;
        ``k``: 3x3 intrinsics; both needed for 3D centroids and depth relations.
        ``stamp``: seconds (the graph's stamp); ``stamp_ns``: the exact stamp in integer
        nanoseconds that :meth:`query` answers with (default: ``stamp`` rounded).
        ``should_stop``: polled between stages and between SAM decoder batches; when it returns
        True the frame is abandoned with :class:`FrameAbandoned` (nothing of it is kept).
        Images with a side below :data:`MIN_IMAGE_SIDE` raise :class:`PipelineError`.
        ``stream``: which camera the frame comes from (e.g. its namespace); each stream has
        its own tracks (``tracking_*`` settings, read from :attr:`config` every frame).
        Same as ``finish_frame(infer(...), self.tracking, ...)`` under one lock.
        """
        check_image_size(image.shape[:2])
        with self._infer_lock:
            work = self._infer(image, depth_m, should_stop)
            raise_if_stopped(should_stop)
            result, graph = finish_frame(work, self.tracking, k, stamp, stream)
        raise_if_stopped(should_stop)
        with self._latest_lock:
            self._latest = LatestFrame(
                image, result.segmentation, result.region_ids,
                round(stamp * 1e9) if stamp_ns is None else int(stamp_ns),
            )  # fmt: skip
        return result, graph

    def infer(
        self,
        image: np.ndarray,
        depth_m: np.ndarray | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> FrameWork:
        """The order-free part of :meth:`process` (SAM, labels, relations; no tracking): frames
        may go through it in any order or in parallel processes; :func:`finish_frame` then
        does the rest in frame order. ``process`` = ``finish_frame(infer(...), tracking, ...)``."""
        check_image_size(image.shape[:2])
        with self._infer_lock:
            return self._infer(image, depth_m, should_stop)

    def _infer(self, image, depth_m, stop) -> FrameWork:
        timings: dict[str, float] = {}
        with self._settings_lock:  # settings and vocabulary of ONE version for the whole frame
            stages = self._stages
            vocab = self.vocabulary.snapshot() if self.vocabulary is not None else None
        raise_if_stopped(stop)
        t0 = time.perf_counter()
        seg = _without_empty_regions(stages.generator.generate(image, should_stop=stop))
        timings["segment"] = time.perf_counter() - t0
        stage_timings = getattr(stages.generator, "timings", None)
        if stage_timings is not None:
            timings.update({f"segment.{k_}": v for k_, v in stage_timings.as_dict().items()})
        raise_if_stopped(stop)
        labels = self._classify(stages, vocab, image, seg, timings)
        raise_if_stopped(stop)
        t0 = time.perf_counter()
        rel_depth = depth_m if depth_m is not None and depth_m.shape == seg.image_size else None
        relations = self._relate(stages, seg, labels, rel_depth)
        timings["relations"] = time.perf_counter() - t0
        return FrameWork(image, seg, labels, relations, rel_depth, stages.config, timings,
                         self.meaningful, not self.sam_untrained)  # fmt: skip

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

    @staticmethod
    def _classify(
        stages: Stages, vocab, image: np.ndarray, seg: Segmentation, timings: dict[str, float]
    ) -> RegionLabels | None:
        if stages.classifier is None:
            return None
        t0 = time.perf_counter()
        labels = stages.classifier.classify(image, seg, vocab, top_k=stages.config.classifier_top_k)
        timings["classify"] = time.perf_counter() - t0
        return labels

    @staticmethod
    def _relate(
        stages: Stages, seg: Segmentation, labels: RegionLabels | None, depth: np.ndarray | None
    ) -> Relations | None:
        if stages.relation_predictor is None:
            return None
        return stages.relation_predictor.predict(seg, labels, depth)

    # ------------------------------------------------------------------ services
    def set_vocabulary(
        self,
        labels: list[str],
        templates: list[str] | None = None,
        append: bool = False,
        should_stop: Callable[[], bool] | None = None,
        on_ticket: Callable[[], object] | None = None,
    ):
        """Atomically change the vocabulary (VocabularyError on bad input; unchanged then);
        returns the :class:`~perception_nodes.core.vocabulary.runtime.VocabularyChange`.
        ``should_stop``: polled between text-encoder chunks (WorkAbandoned, unchanged);
        ``on_ticket()``: called once the change's place in the arrival order is taken."""
        if self.vocabulary is None:
            raise PipelineError("no classifier is configured (classifier.type = none)")
        return self.vocabulary.change(
            list(labels),
            templates=list(templates) if templates else None,
            append=append,
            should_stop=should_stop,
            on_ticket=on_ticket,
        )

    def vocabulary_snapshot(self):
        return None if self.vocabulary is None else self.vocabulary.snapshot()

    def query(self, text: str, top_k: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
        """Region ids and scores (best first) of the latest frame against free ``text``, and
        that frame's stamp in exact integer nanoseconds (``stamp_ns`` of :meth:`process`)."""
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
        return latest.region_ids[order], scores[order].astype(np.float32), latest.stamp_ns
