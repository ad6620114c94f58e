"""Live settings of :class:`~perception_nodes.core.pipeline.Pipeline`: which settings need a
reload, the :class:`Stages` one frame runs with, and building new stage objects for changed
settings that share the loaded models (ROS-free; the node's parameter callbacks end here).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from perception_nodes.core.config import PipelineConfig, setting_problems, settings
from perception_nodes.core.pipeline_factory import PipelineError, make_generator

if TYPE_CHECKING:  # annotations only: model code is imported where the models are loaded
    from perception_nodes.core.classify.base import RegionClassifier
    from perception_nodes.core.relations.base import RelationPredictor
    from perception_nodes.core.sam.amg import MaskGenerator

# Settings that pick or load models (``SettingInfo.live`` False in core/config.py): changing
# them needs a new ``Pipeline.load`` (their ROS parameters are read-only). Every other setting
# applies live (``Pipeline.apply_settings``).
RELOAD_SETTINGS = frozenset(name for name, info in settings().items() if not info.live)


@dataclass(frozen=True)
class Stages:
    """The settings and stage objects one frame runs with; replaced as a whole (one reference
    assignment) by :meth:`Pipeline.apply_settings`, so a frame never mixes two settings versions.

    Stages read their settings from ``config`` when they run; settings that live inside a stage
    object (mask generator, classifier threshold, relation predictor) are rebuilt into new
    objects that share the loaded models (see :func:`stages_for`).
    """

    config: PipelineConfig
    generator: MaskGenerator
    classifier: RegionClassifier | None
    relation_predictor: RelationPredictor | None


def stages_for(old: Stages, config: PipelineConfig) -> Stages:
    """New stage objects for ``config`` sharing the models of ``old`` (PipelineError if a
    setting needs a reload (:data:`RELOAD_SETTINGS`) or a value is outside its range or choices
    (the fields' ``SettingInfo``))."""
    changed = set(changed_settings(old.config, config))
    reload = sorted(changed & RELOAD_SETTINGS)
    if reload:
        raise PipelineError(f"{reload} pick or load models: they change only with a reconfigure")
    problems = setting_problems(config)
    if problems:
        raise PipelineError(f"settings refused: {'; '.join(problems)}")
    try:
        generator = old.generator
        if any(n.startswith("amg_") for n in changed):
            generator = make_generator(
                config,
                old.generator.backend,
                (old.generator.pixel_mean, old.generator.pixel_std),
            )
        classifier = with_classifier_settings(old.classifier, config)
        relations = with_relation_settings(old.relation_predictor, config)
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"settings refused: {exc}") from exc
    return Stages(replace(config), generator, classifier, relations)


def changed_settings(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    """Names of the :class:`PipelineConfig` fields whose values differ, in field order."""
    return [f.name for f in fields(PipelineConfig) if getattr(old, f.name) != getattr(new, f.name)]


def vocabulary_changed(old: PipelineConfig, new: PipelineConfig) -> bool:
    """Whether the vocabulary labels or templates differ (the vocabulary must be re-set)."""
    return list(old.vocabulary_labels) != list(new.vocabulary_labels) or list(
        old.vocabulary_templates
    ) != list(new.vocabulary_templates)


def with_classifier_settings(classifier, config: PipelineConfig):
    """A shallow copy (same CLIP model/head) with ``classifier_unknown_threshold`` applied
    (``config`` already checked against its ranges: :func:`setting_problems`)."""
    if classifier is None:
        return None
    out = copy.copy(classifier)
    out.unknown_threshold = float(config.classifier_unknown_threshold)
    return out


def with_relation_settings(predictor, config: PipelineConfig):
    """A shallow copy (same weights) with the ``relations_*`` thresholds and limits applied
    (``config`` already checked against its ranges: :func:`setting_problems`)."""
    if predictor is None:
        return None
    out = copy.copy(predictor)
    out.min_score = float(config.relations_score_threshold)
    out.max_per_subject = int(config.relations_per_subject)
    if hasattr(out, "top_k"):
        out.top_k = int(config.relations_top_k)
    return out
