"""ROS-free core: numpy/torch in, dataclasses out. Nothing here imports rclpy.

The public face, for running the pipeline from Python (README "Python without ROS")::

    from perception_nodes.core import Pipeline, PipelineConfig
    pipeline = Pipeline.load(PipelineConfig())
    result, graph = pipeline.process(rgb)  # HxWx3 uint8 RGB -> FrameResult, SceneGraph

Folders by concern: ``sam/`` (segment everything), ``classify/`` (labels, CLIP),
``relations/``, ``tracking/``, ``vocabulary/``, ``output/`` (scene graph, RLE, label image,
overlay), ``stream/`` (frame slots, depth pairing, stamps), ``weights/`` (files, checkpoints).

Names are imported on first use (PEP 562), so ``import perception_nodes.core.stream.stamps``
stays light: the models' libraries load only with the pipeline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_PUBLIC = {
    "Pipeline": "perception_nodes.core.pipeline",
    "PipelineError": "perception_nodes.core.pipeline_factory",
    "PipelineConfig": "perception_nodes.core.config",
    "FrameResult": "perception_nodes.core.types",
    "Segmentation": "perception_nodes.core.types",
    "RegionLabels": "perception_nodes.core.types",
    "Relations": "perception_nodes.core.types",
    "SceneGraph": "perception_nodes.core.output.scene_graph",
}
__all__ = [
    "FrameResult",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "RegionLabels",
    "Relations",
    "SceneGraph",
    "Segmentation",
]

if TYPE_CHECKING:
    from perception_nodes.core.config import PipelineConfig
    from perception_nodes.core.output.scene_graph import SceneGraph
    from perception_nodes.core.pipeline import Pipeline
    from perception_nodes.core.pipeline_factory import PipelineError
    from perception_nodes.core.types import FrameResult, RegionLabels, Relations, Segmentation


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
