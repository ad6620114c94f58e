"""The perception node's parameter YAML -> what ``pn-process-bag`` runs with.

One source of settings for the live node and the offline tool: the file ``ros2 launch
perception_nodes scene_graph.launch.py config_file:=...`` takes (``perception_node:
ros__parameters: {sam: {model: ...}, ...}``). Nested keys are flattened to ROS parameter names
by the same function the benchmarks use (:func:`perception_nodes.tools.bench_e2e.flatten`), the
pipeline part maps to :class:`PipelineConfig` through ``PipelineConfig.from_flat`` (what the
node's declared parameters go through), and names, string choices and ranges are checked
against the node's own parameter table (:mod:`perception_nodes.ros.params`, ROS-free).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from perception_nodes.core.config import PipelineConfig
from perception_nodes.ros.params import NODE_PARAMS, all_params, check_choice, pipeline_params
from perception_nodes.tools.bench_e2e import flatten

#: Keys under which a ROS 2 parameter file may hold the perception node's parameters.
NODE_KEYS = ("perception_node", "/perception_node", "/**")


class SettingsError(ValueError):
    """The parameter file cannot be used (the message names the file and the parameter)."""


@dataclass
class BagSettings:
    """The pipeline config and the node's own parameters (``cameras``, ``image_topic``, ...)."""

    pipeline: PipelineConfig
    node: dict[str, object] = field(default_factory=dict)
    source: str = "defaults"

    def get(self, name: str):
        return self.node[name]


def _node_section(data: dict, path: Path) -> dict:
    """The flat ``{ros.name: value}`` parameters of the perception node in a parameter file."""
    for key in NODE_KEYS:
        section = data.get(key) if isinstance(data, dict) else None
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            return flatten(section["ros__parameters"])
    raise SettingsError(
        f"{path}: no 'perception_node: ros__parameters:' section (the layout of "
        "perception_nodes/config/scene_graph.yaml)"
    )


def _check_values(values: dict, path: str) -> None:
    specs = {s.name: s for s in all_params()}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise SettingsError(
            f"{path}: unknown perception_node parameters {unknown}; known: {sorted(specs)}"
        )
    for name, value in values.items():
        spec = specs[name]
        reason = check_choice(spec, value)
        if reason is None and spec.low is not None and isinstance(value, (int, float)):
            if not spec.low <= value <= spec.high:
                reason = f"{name} must be in [{spec.low}, {spec.high}], got {value!r}"
        if reason:
            raise SettingsError(f"{path}: {reason}")


def load_settings(params_file: str | Path | None, overrides: dict | None = None) -> BagSettings:
    """Settings from the node's parameter YAML (None: the node's defaults) with ``overrides``
    (``{ros.name: value}``, e.g. from the command line) applied on top."""
    values: dict[str, object] = {}
    source = "defaults"
    if params_file is not None:
        path = Path(params_file)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read the parameter file {path}: {exc}") from exc
        values = _node_section(data, path)
        source = str(path)
    values.update(overrides or {})
    _check_values(values, source)
    pipeline_names = {s.name for s in pipeline_params()}
    try:
        config = PipelineConfig.from_flat({k: v for k, v in values.items() if k in pipeline_names})
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{source}: {exc}") from exc
    node = {s.name: values.get(s.name, s.default) for s in NODE_PARAMS}
    return BagSettings(config, node, source)
