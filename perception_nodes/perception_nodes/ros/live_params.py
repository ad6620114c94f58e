"""The perception node's parameters at runtime: declared, checked before a change is accepted,
applied once it is.

The table of names, defaults, ranges and choices is :mod:`perception_nodes.ros.params`; here it
is put on a node. rclpy refuses out-of-range values and writes to read-only parameters itself
(the descriptors); :meth:`LiveParameters.check` adds the string choices and asks the pipeline
(or, before configure, the vocabulary rules) whether it would take the new values.
"""

from __future__ import annotations

from collections.abc import Callable

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.pipeline import Pipeline, PipelineError
from perception_nodes.core.vocabulary.checks import check_vocabulary
from perception_nodes.ros.params import all_params, check_choice, pipeline_params
from perception_nodes.ros.ranges import descriptor_for

VOCABULARY_PARAMS = frozenset({"vocabulary.labels", "vocabulary.templates"})


class LiveParameters:
    """Declares every parameter of :func:`all_params` on ``node`` and registers its set-callbacks.

    ``pipeline()`` returns the node's pipeline now (None while unconfigured). After a change is
    accepted, ``on_node_settings(names)`` runs first (the node's own settings, e.g. timers), then
    changed pipeline settings are applied to the pipeline (from its next frame).
    """

    def __init__(
        self,
        node: Node,
        pipeline: Callable[[], Pipeline | None],
        on_node_settings: Callable[[set[str]], None],
    ) -> None:
        self._node = node
        self._pipeline = pipeline
        self._on_node_settings = on_node_settings
        self._specs = {s.name: s for s in all_params()}
        self.pipeline_names = {s.name for s in pipeline_params()}
        for spec in self._specs.values():
            node.declare_parameter(spec.name, spec.default, descriptor_for(spec))
        node.add_on_set_parameters_callback(self.check)
        node.add_post_set_parameters_callback(self.apply)

    def _pipeline_values(self) -> dict:
        return {spec.name: self._node.get_parameter(spec.name).value for spec in pipeline_params()}

    def pipeline_config(self) -> PipelineConfig:
        """The pipeline configuration the parameters describe now."""
        return PipelineConfig.from_flat(self._pipeline_values())

    def check(self, params) -> SetParametersResult:
        """Validate a change before it is accepted (ranges and read-only: the descriptors)."""
        for p in params:
            spec = self._specs.get(p.name)
            reason = check_choice(spec, p.value) if spec else None
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        changes = {p.name: p.value for p in params if p.name in self.pipeline_names}
        reason = self._pipeline_refusal(changes) if changes else None
        if reason:
            self._node.get_logger().warning(f"parameters refused: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _pipeline_refusal(self, changes: dict) -> str | None:
        """Why the pipeline would refuse these parameter values, or None (nothing changes)."""
        values = self._pipeline_values() | changes
        try:
            config = PipelineConfig.from_flat(values)
            pipeline = self._pipeline()
            if pipeline is not None:
                pipeline.check_settings(config)
            elif VOCABULARY_PARAMS & set(changes):
                check_vocabulary(list(config.vocabulary_labels), list(config.vocabulary_templates))
        except (PipelineError, ValueError) as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 (raised in rclpy's callback it ended the executor)
            self._node.get_logger().error(f"parameter check failed: {type(exc).__name__}: {exc}")
            return f"the check failed unexpectedly ({type(exc).__name__}: {exc})"
        return None

    def apply(self, params) -> None:
        """Apply accepted parameters: node settings now, pipeline settings from the next frame."""
        names = {p.name for p in params}
        self._on_node_settings(names)
        pipeline = self._pipeline()
        changed = names & self.pipeline_names
        if pipeline is None or not changed:
            return
        try:
            # new labels are encoded before the lock frames take (Pipeline.apply_settings)
            pipeline.apply_settings(self.pipeline_config())
        except Exception as exc:  # noqa: BLE001 (checked before accepting: only a race or a bug
            # gets here; raised in rclpy's callback it would end the node's executor)
            self._node.get_logger().error(
                f"parameters accepted but not applied: {type(exc).__name__}: {exc}"
            )
            return
        self._node.get_logger().info(f"applied from the next frame: {', '.join(sorted(changed))}")
