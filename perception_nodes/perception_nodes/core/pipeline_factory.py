"""Building the pipeline's models from a :class:`PipelineConfig`: SAM (any backend, cached or
generated weights, TensorRT engines found or built), the classifier with its vocabulary and CLIP,
and the relation predictor. :meth:`perception_nodes.core.pipeline.Pipeline.load` calls
:func:`load_models`; a live change of ``amg_*`` settings calls :func:`make_generator`.

Model imports are local to the loaders: a pipeline without a classifier never imports open_clip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.weights.files import GENERATED_WEIGHTS, default_cache_dir
from perception_nodes.core.weights.generated_policy import apply_generated_sam_policy

if TYPE_CHECKING:  # annotations only: model code is imported where the models are loaded
    from perception_nodes.core.classify.base import RegionClassifier
    from perception_nodes.core.relations.base import RelationPredictor
    from perception_nodes.core.sam.amg import MaskGenerator
    from perception_nodes.core.vocabulary.runtime import Vocabulary

logger = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """The pipeline cannot be built (missing weights, bad settings) or a frame is unusable."""


@dataclass
class LoadedModels:
    """What :func:`load_models` built; ``untrained`` names the parts on GENERATED weights."""

    generator: MaskGenerator
    vocabulary: Vocabulary | None
    classifier: RegionClassifier | None
    relation_predictor: RelationPredictor | None
    untrained: list[str] = field(default_factory=list)


def load_models(config: PipelineConfig) -> LoadedModels:
    """Every model ``config`` names (clear :class:`PipelineError` on failure)."""
    untrained: list[str] = []
    try:
        generator = _load_generator(config, untrained)
        vocabulary, classifier = _load_classifier(config, untrained)
        relations = _load_relations(config, untrained)
    except PipelineError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise PipelineError(f"cannot build the pipeline: {exc}") from exc
    return LoadedModels(generator, vocabulary, classifier, relations, untrained)


def sam_untrained(untrained: list[str]) -> bool:
    return any(part.startswith("SAM") for part in untrained)


def _cache_dir(config: PipelineConfig) -> Path:
    return (
        Path(config.weights_cache_dir).expanduser()
        if config.weights_cache_dir
        else default_cache_dir()
    )


def fetch_command(untrained_parts: list[str]) -> str:
    """The ``pn-fetch-weights`` command that replaces the generated parts (``"SAM vit_t"``,
    ``"CLIP ViT-B-16"``) with real weights; ``""`` when none of them has a download (test-only
    configurations such as ``sam_tiny_test``)."""
    from perception_nodes.core.sam.registry import SAM_MODELS
    from perception_nodes.core.weights.clip import clip_registry

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
        how = (
            f"fetch them with `{fetch_command([part])}`"
            if fetch_command([part])
            else "pass a checkpoint file"
        )
        raise PipelineError(
            f"no weights for {part} and weights.allow_generated is false; {how} (see README)"
        )
    path = _cache_dir(config) / "generated" / filename
    if not path.is_file():
        logger.warning("no weights for %s: writing %s to %s", part, GENERATED_WEIGHTS, path)
        make(path)
    return str(path)


def _sam_checkpoint(config: PipelineConfig, untrained: list[str]) -> str | None:
    from perception_nodes.core.sam.registry import (
        get_spec,
        make_generated_checkpoint,
        resolve_checkpoint,
    )
    from perception_nodes.core.weights.files import CheckpointNotFoundError

    if config.sam_checkpoint:
        return config.sam_checkpoint
    try:
        return str(resolve_checkpoint(config.sam_model, None, config.weights_cache_dir or None))
    except CheckpointNotFoundError as exc:
        logger.info("%s", exc)
    get_spec(config.sam_model)
    untrained.append(f"SAM {config.sam_model}")
    return _generated(
        config,
        f"SAM {config.sam_model}",
        f"sam_{config.sam_model}_seed0.pth",
        lambda p: make_generated_checkpoint(config.sam_model, p, seed=0),
    )


def _load_generator(config: PipelineConfig, untrained: list[str]):
    from perception_nodes.core.sam.registry import get_spec

    spec = get_spec(config.sam_model)
    backend = _create_backend(config, untrained)
    if backend.untrained and not any(p.startswith("SAM") for p in untrained):
        untrained.append(f"SAM {config.sam_model}")
    if sam_untrained(untrained):
        config, _ = apply_generated_sam_policy(config)
    return make_generator(config, backend, spec)


def make_generator(config: PipelineConfig, backend, spec_or_pixel_stats):
    """The segment-everything generator of ``config``'s ``amg_*`` settings over a loaded backend."""
    from perception_nodes.core.sam.amg import MaskGenerator

    return MaskGenerator(
        backend,
        spec_or_pixel_stats,
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
    from perception_nodes.core.sam.backends import create_backend, resolve_backend_kind

    kind = resolve_backend_kind(config.sam_backend, config.sam_device)
    if kind != config.sam_backend:
        logger.info("sam.backend %s on %s: %s", config.sam_backend, config.sam_device, kind)

    common = dict(
        model=config.sam_model,
        device=config.sam_device,
        precision=config.sam_precision,
        cache_dir=config.weights_cache_dir or None,
    )
    if kind == "torch":
        return create_backend("torch", checkpoint=_sam_checkpoint(config, untrained), **common)
    encoder, decoder = config.sam_encoder_path or None, config.sam_decoder_path or None
    if kind == "tensorrt":
        if config.sam_device == "cpu":
            logger.warning(
                "backend tensorrt with sam.device cpu: TensorRT engines run on CUDA; set sam.device: cuda"
            )
        if encoder is None and decoder is None:
            encoder, decoder = _tensorrt_engines(config, untrained)
    elif kind == "onnxruntime" and encoder is None and decoder is None:
        encoder, decoder = _onnx_exports(config, untrained)
    return create_backend(kind, encoder_path=encoder, decoder_path=decoder, **common)


def _onnx_exports(config: PipelineConfig, untrained: list[str]) -> tuple[str, str]:
    """The cached ONNX export of the SAM checkpoint, made now on first use (``core.sam.onnx_cache``)."""
    from perception_nodes.core.sam.onnx_cache import (
        OnnxExportError,
        ensure_onnx_export,
        onnx_cache_dir,
    )

    checkpoint = _sam_checkpoint(config, untrained)
    try:
        onnx_dir = onnx_cache_dir(_cache_dir(config), config.sam_model, upscale_gate=True)
        encoder, decoder = ensure_onnx_export(
            config.sam_model, checkpoint, onnx_dir, upscale_gate=True
        )
    except OnnxExportError as exc:
        raise PipelineError(
            f"backend onnxruntime: {exc}; or export by hand with `pn-export-onnx --model "
            f"{config.sam_model} --checkpoint {checkpoint} --upscale-gate --out-dir <dir>` and set "
            "sam.encoder_path / sam.decoder_path"
        ) from exc
    return str(encoder), str(decoder)


def _tensorrt_engines(config: PipelineConfig, untrained: list[str]):
    """Engines from the cache, or exported and built now (see ``core.sam.tensorrt.first_run``)."""
    from perception_nodes.core.sam.tensorrt.first_run import (
        EngineSetup,
        EngineSetupError,
        ensure_engines,
    )

    setup = EngineSetup(
        config.sam_model,
        config.sam_precision,
        Path(_sam_checkpoint(config, untrained)),
        _cache_dir(config),
    )
    try:
        return ensure_engines(setup)
    except EngineSetupError as exc:
        raise PipelineError(f"backend tensorrt: {exc}") from exc


def _load_classifier(config: PipelineConfig, untrained: list[str]):
    if config.classifier_type == "none":
        return None, None
    from perception_nodes.core.classify.clip_model import (
        load_clip_model,
        make_generated_clip_checkpoint,
    )
    from perception_nodes.core.classify.regionspot import RegionSpotClassifier
    from perception_nodes.core.classify.zero_shot import ZeroShotClassifier
    from perception_nodes.core.vocabulary.runtime import Vocabulary

    ckpt = config.clip_checkpoint or _cached_clip(config)
    if not ckpt:
        ckpt = _generated(
            config,
            f"CLIP {config.clip_model}",
            f"clip_{config.clip_model}_seed0.pt",
            lambda p: make_generated_clip_checkpoint(config.clip_model, p, seed=0),
        )
    clip = load_clip_model(config.clip_model, ckpt, device=config.sam_device)
    if clip.generated:
        untrained.append(f"CLIP {config.clip_model}")
    vocabulary = Vocabulary(clip, templates=config.vocabulary_templates)
    if config.vocabulary_labels:
        vocabulary.set(list(config.vocabulary_labels))
    meaningful = not untrained
    if config.classifier_type == "zero_shot":
        classifier = ZeroShotClassifier(
            clip,
            meaningful=meaningful,
            unknown_threshold=config.classifier_unknown_threshold,
            templates=tuple(config.vocabulary_templates),
        )  # queries = labels' templates
    elif config.classifier_type == "regionspot":
        if not config.classifier_regionspot_checkpoint:
            raise PipelineError(
                "classifier.type is regionspot but classifier.regionspot_checkpoint is empty "
                "(train one with `pn-train-regionspot`)"
            )
        classifier = RegionSpotClassifier.from_checkpoint(
            config.classifier_regionspot_checkpoint,
            clip,
            config.sam_model,
            meaningful=meaningful,
            unknown_threshold=config.classifier_unknown_threshold,
        )
    else:
        raise PipelineError(
            f"classifier.type must be zero_shot, regionspot or none, got {config.classifier_type!r}"
        )
    return vocabulary, classifier


def _cached_clip(config: PipelineConfig) -> str:
    """The cached registry weights of ``clip.model`` (sha256-checked when pinned), or ""."""
    from perception_nodes.core.weights.clip import cached_clip_checkpoint, get_clip_weights
    from perception_nodes.core.weights.files import ChecksumMismatchError, sha256_file

    path = cached_clip_checkpoint(config.clip_model, config.weights_cache_dir or None)
    if path is None:
        logger.info(
            "no cached CLIP %s weights (fetch them with `pn-fetch-weights clip`)", config.clip_model
        )
        return ""
    spec = get_clip_weights(config.clip_model)
    if spec.sha256 and sha256_file(path) != spec.sha256:
        raise ChecksumMismatchError(
            f"sha256 of {path} is not {spec.sha256}: the file is corrupted or another "
            f"version; delete it and run `pn-fetch-weights {spec.name}`"
        )
    return str(path)


def _load_relations(config: PipelineConfig, untrained: list[str]):
    from perception_nodes.core.relations.geometric import GeometricRelationPredictor
    from perception_nodes.core.relations.head import LearnedRelationPredictor

    kind = config.relations_type
    if kind == "auto":
        kind = "learned" if config.relations_checkpoint else "geometric"
    if kind == "none":
        return None
    if kind == "geometric":
        return GeometricRelationPredictor(
            min_score=config.relations_score_threshold, max_per_subject=config.relations_per_subject
        )
    if kind == "learned":
        if not config.relations_checkpoint:
            raise PipelineError(
                "relations.type is learned but relations.checkpoint is empty "
                "(train one with `pn-train-relations`)"
            )
        return LearnedRelationPredictor.from_checkpoint(
            config.relations_checkpoint,
            sam_model=config.sam_model,
            top_k=config.relations_top_k,
            min_score=config.relations_score_threshold,
            max_per_subject=config.relations_per_subject,
            device=config.sam_device,
        )
    raise PipelineError(
        f"relations.type must be auto, learned, geometric or none, got {config.relations_type!r}"
    )
