"""What the pipeline does when SAM runs on GENERATED (seeded random) weights.

Random SAM weights predict low IoU and stability everywhere and near image-wide boxes, so the
quality filters tuned for real weights (``PipelineConfig`` defaults) leave no region at all: the
plumbing would look broken. With generated SAM weights, every filter setting still at its
default is opened (the best dozen of what the plumbing produces is kept: still NOT meaningful);
settings the user changed are kept as they are. One function for ``pn-demo``, ``pn-run``, the
launch file and the node (they all go through :meth:`Pipeline.load`).
"""

from __future__ import annotations

import dataclasses

from perception_nodes.core.config import PipelineConfig

GENERATED_SAM_SETTINGS: dict[str, object] = {
    "amg_pred_iou_thresh": 0.0,
    "amg_stability_score_thresh": 0.0,
    "amg_box_nms_thresh": 1.0,
    "amg_max_regions": 12,
}


def generated_sam_changes(config: PipelineConfig) -> dict[str, tuple[object, object]]:
    """``{field: (configured, applied)}`` for SAM on generated weights: the settings of
    :data:`GENERATED_SAM_SETTINGS` that ``config`` leaves at their defaults (and that differ)."""
    defaults = PipelineConfig()
    changes = {}
    for name, value in GENERATED_SAM_SETTINGS.items():
        current = getattr(config, name)
        if current == getattr(defaults, name) and current != value:
            changes[name] = (current, value)
    return changes


def apply_generated_sam_policy(
    config: PipelineConfig,
) -> tuple[PipelineConfig, dict[str, tuple[object, object]]]:
    """``config`` with :func:`generated_sam_changes` applied, and those changes."""
    changes = generated_sam_changes(config)
    return dataclasses.replace(config, **{k: new for k, (_, new) in changes.items()}), changes


def describe_changes(changes: dict[str, tuple[object, object]]) -> str:
    """One log line: ``amg.pred_iou_thresh 0.86 -> 0.0, ...`` (ROS parameter names)."""
    if not changes:
        return "generated SAM weights: the region filters were set explicitly; kept as configured"
    items = ", ".join(
        f"{PipelineConfig.ros_name(k)} {old} -> {new}" for k, (old, new) in changes.items()
    )
    return (
        f"generated SAM weights: the default region filters would keep no region; opened "
        f"(output NOT meaningful): {items}"
    )
