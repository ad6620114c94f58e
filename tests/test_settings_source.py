"""One source per setting: each PipelineConfig field carries its description, range or choices and
whether it may change live (core/config.py); the ROS parameter descriptors, the runtime checks,
the launch arguments, the tools' defaults and the shipped YAML derive from it or are checked
against it here. ROS-free (no rclpy): part of the fast tier.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception_nodes import launch_overrides
from perception_nodes.core.config import (
    PipelineConfig,
    default_setting,
    setting_problems,
    settings,
)
from perception_nodes.core.live_settings import RELOAD_SETTINGS, Stages, stages_for
from perception_nodes.core.output.scene_graph import filter_relations
from perception_nodes.core.pipeline_factory import PipelineError
from perception_nodes.core.relations.base import relations_from_scores
from perception_nodes.ros.params import NODE_PARAMS, pipeline_params

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "perception_nodes"
YAML = PKG / "config" / "scene_graph.yaml"
# The files that repeated the default SAM model by hand (issue 20): they take it from the config.
DEFAULT_TAKERS = [
    PKG / "launch" / "scene_graph.launch.py",
    PKG / "perception_nodes" / "launch_overrides.py",
    *(PKG / "perception_nodes" / "tools" / f for f in
      ("demo.py", "bench_e2e.py", "run_graph.py", "bench_sam.py")),
]  # fmt: skip


def test_every_setting_says_what_it_is_and_what_it_may_hold():
    hints = typing.get_type_hints(PipelineConfig)
    for name, info in settings().items():
        assert info.description.strip(), name
        kind = hints[name]
        if typing.get_origin(kind) is typing.Literal:
            assert info.choices == typing.get_args(kind), name
        elif kind in (int, float):
            assert info.low is not None and info.high is not None, f"{name} has no range"
            assert info.low <= getattr(PipelineConfig(), name) <= info.high, name
    assert setting_problems(PipelineConfig()) == []


def test_ros_descriptors_derive_from_the_settings():
    specs = {s.name: s for s in pipeline_params()}
    assert set(specs) == {PipelineConfig.ros_name(n) for n in settings()}
    for name, info in settings().items():
        spec = specs[PipelineConfig.ros_name(name)]
        assert spec.description.startswith(info.description), name
        assert (spec.choices, spec.low, spec.high) == (info.choices, info.low, info.high), name
        assert spec.read_only is (not info.live), name
        assert spec.default == default_setting(name), name


def test_reload_settings_are_the_settings_that_are_not_live():
    assert RELOAD_SETTINGS == {n for n, info in settings().items() if not info.live}
    assert {"sam_model", "clip_model", "relations_type"} <= RELOAD_SETTINGS


@pytest.mark.parametrize("name", [n for n, i in settings().items() if i.live and i.low is not None])
def test_runtime_checks_refuse_every_live_value_out_of_its_range(name):
    """Every ranged live setting is refused by the core above its range (before: only three of
    them were checked by hand; a core user could set tracking_iou_gate 2.0 unnoticed)."""
    info = settings()[name]
    kind = type(default_setting(name))
    config = dataclasses.replace(PipelineConfig(), **{name: kind(info.high + 1)})
    stages = Stages(PipelineConfig(), generator=None, classifier=None, relation_predictor=None)
    with pytest.raises(PipelineError, match=re.escape(f"{name} must be in {info.range_text()}")):
        stages_for(stages, config)


def test_choices_are_refused_with_the_allowed_values():
    config = dataclasses.replace(PipelineConfig(), classifier_type="clip")
    (problem,) = setting_problems(config)
    assert "classifier_type must be one of ['zero_shot', 'regionspot', 'none']" in problem


def test_launch_arguments_describe_and_check_with_the_settings():
    by_name = {a.name: a for a in launch_overrides.ARGUMENTS}
    backend = settings()["sam_backend"]
    assert by_name["backend"].description.startswith(backend.description)
    assert by_name["backend"].choices == backend.choices
    assert by_name["precision"].choices == settings()["sam_precision"].choices
    assert set(by_name["model"].choices) < set(settings()["sam_model"].choices)  # no test models
    assert "depth_topic" in by_name  # plugging in an RGB-D camera needs it


def test_no_tool_repeats_the_default_sam_model():
    """The default SAM model is written once (core/config.py); the launch file, the overrides
    module and the tools take it from there."""
    default = default_setting("sam_model")
    for path in DEFAULT_TAKERS:
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
        }
        literal = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and n.value == default and id(n) not in docstrings
        ]
        assert not literal, f"{path.name} writes {default!r} on lines {literal}"
    from perception_nodes.tools import bench_e2e, bench_sam, demo

    for parse in (demo.parse_args, bench_e2e.parse_args, bench_sam._parser().parse_args):
        assert parse([]).model == default, parse


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def test_shipped_yaml_holds_the_defaults_within_their_ranges():
    """config/scene_graph.yaml (the reference file users copy) states each pipeline setting's
    default as core/config.py declares it, and only allowed values for the node's own."""
    values = _flat(yaml.safe_load(YAML.read_text())["perception_node"]["ros__parameters"])
    for name in settings():
        ros = PipelineConfig.ros_name(name)
        assert values[ros] == default_setting(name), f"YAML {ros}: {values[ros]!r}"
    for spec in NODE_PARAMS:
        value = values[spec.name]
        assert type(value) is type(spec.default), spec.name
        if spec.low is not None:
            assert spec.low <= value <= spec.high, spec.name
        if spec.name != "cameras":  # the YAML serves /camera; the node's default is the root
            assert value == spec.default, f"YAML {spec.name}: {value!r} != {spec.default!r}"


def test_relations_top_k_zero_means_no_limit_everywhere():
    """One meaning of relations.top_k = 0 (and per_subject = 0): no limit. The code did so,
    the descriptor said "relations per frame" (a user setting 0 to switch relations off got all
    of them); relations.type none is the switch."""
    scores = np.random.default_rng(0).uniform(0.5, 1.0, size=(6, 6, 3)).astype(np.float32)
    relations = relations_from_scores(scores, ["near", "above", "holds"], "test", 0.0)
    everything = filter_relations(relations, top_k=0, top_k_per_subject=0, score_threshold=0.0,
                                  merge_symmetric=False)  # fmt: skip
    assert len(everything[0]) == 6 * 5 * 3
    assert len(filter_relations(relations, 7, 0, 0.0, False)[0]) == 7
    for name in ("relations_top_k", "relations_per_subject"):
        assert "0 = no limit" in settings()[name].description, name
    assert "none" in settings()["relations_type"].choices
    yaml_lines = [line for line in YAML.read_text().splitlines() if "top_k: 50" in line
                  or "per_subject: 5" in line]  # fmt: skip
    assert len(yaml_lines) == 2 and all("0 = no limit" in line for line in yaml_lines)
