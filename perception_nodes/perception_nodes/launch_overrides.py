"""The scene-graph launch arguments and their parameter overrides: ONE module, imported by
``launch/scene_graph.launch.py`` (``ros2 launch``) and by ``pn-run`` / the demo / the tests, so
both paths start the nodes with exactly the same parameters. No ROS or launch import here.

Precedence, lowest first: the node's declared default (``core/config.py`` for the pipeline
settings) < the parameter file (``config_file``, default ``config/scene_graph.yaml``) < a launch
argument GIVEN on the command line. An argument not given overrides nothing: its default is
:data:`NOT_GIVEN`, so a value in the user's parameter file survives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from perception_nodes.core.config import RELEASE_SAM_MODELS, settings
from perception_nodes.ros.params import NODE_PARAMS

#: Environment of every node process (``additional_env`` in the launch file, pn-run's children).
#: torch's OpenMP threads spin after each parallel region by default; in the perception node the
#: worker and the service threads call torch concurrently, and on a small CPU the spinning threads
#: steal the cores (2-core machine: a test frame took 10.8 s instead of 2.2 s, service p99 13 s).
#: Values already in the environment win.
NODE_ENV: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}

#: Default of the launch arguments that set a parameter: not given -> the parameter file decides.
NOT_GIVEN = ""
BOOLEAN = ("true", "false")
#: ROS packages (other than this one) that a launch argument may start, by argument.
EXTERNAL_PACKAGES = {"rviz": "rviz2"}


class LaunchArgumentError(ValueError):
    """A launch argument's value is not allowed, or what it asks for is not installed."""


@dataclass(frozen=True)
class LaunchArgument:
    """One launch argument. ``parameter``: the perception_node parameter it overrides (None for
    arguments that pick files or processes); ``choices``: allowed values when given."""

    name: str
    description: str
    parameter: str | None = None
    choices: tuple[str, ...] | None = None
    default: str = NOT_GIVEN


def _param_argument(
    name: str, parameter: str, choices: tuple[str, ...] | None = None, text: str | None = None
) -> LaunchArgument:
    """A launch argument described by the parameter it overrides (one description for both)."""
    node_specs = {s.name: s for s in NODE_PARAMS}
    setting = settings().get(parameter.replace(".", "_", 1))
    text = text or (setting.description if setting else node_specs[parameter].description)
    if choices is None and setting and setting.choices:
        choices = setting.choices
    allowed = f"; one of: {', '.join(choices)}" if choices else ""
    return LaunchArgument(
        name, f"{text}{allowed} (sets {parameter}; default: the config file's)", parameter, choices
    )


ARGUMENTS: tuple[LaunchArgument, ...] = (
    _param_argument(
        "cameras", "cameras", text="comma-separated camera namespaces served by one model"
    ),
    _param_argument("image_topic", "image_topic"),
    _param_argument("depth_topic", "depth_topic"),
    _param_argument("camera_info_topic", "camera_info_topic"),
    _param_argument("use_depth", "use_depth", BOOLEAN),
    _param_argument("backend", "sam.backend"),
    _param_argument("model", "sam.model", RELEASE_SAM_MODELS),
    _param_argument("device", "sam.device"),
    _param_argument("precision", "sam.precision"),
    LaunchArgument(
        "config_file", "parameter file (default: the package's config/scene_graph.yaml)"
    ),
    LaunchArgument("rviz", "start RViz with the shipped configuration", None, BOOLEAN, "false"),
    LaunchArgument(
        "demo_images",
        "publish scikit-image's bundled photos as the camera stream",
        None,
        BOOLEAN,
        "false",
    ),
)
#: Parameters of the visualization node that the same arguments set (it declares these too).
VISUALIZATION_PARAMETERS = ("cameras", "image_topic", "camera_info_topic")


def parse_cameras(text: str) -> list[str]:
    """``"/front, /rear"`` -> ``["/front", "/rear"]`` (the ``cameras`` launch argument)."""
    return [c.strip() for c in text.split(",") if c.strip()]


def launch_overrides(
    cameras: list[str] | None = None,
    image_topic: str | None = None,
    backend: str | None = None,
    model: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    use_depth: bool | None = None,
    depth_topic: str | None = None,
    camera_info_topic: str | None = None,
) -> dict[str, dict[str, object]]:
    """``{node name: {parameter: value}}`` applied on top of the parameter file: only the values
    given (None: not given, the parameter file's value stands)."""
    given = {
        "cameras": cameras,
        "image_topic": image_topic,
        "depth_topic": depth_topic,
        "camera_info_topic": camera_info_topic,
        "use_depth": use_depth,
        "sam.backend": backend,
        "sam.model": model,
        "sam.device": device,
        "sam.precision": precision,
    }
    perception = {k: v for k, v in given.items() if v is not None}
    visualization = {k: v for k, v in perception.items() if k in VISUALIZATION_PARAMETERS}
    return {"perception_node": perception, "visualization_node": visualization}


def check_argument(arg: LaunchArgument, value: str) -> None:
    """LaunchArgumentError naming the argument and its allowed values, if ``value`` is not one."""
    if value != NOT_GIVEN and arg.choices and value not in arg.choices:
        raise LaunchArgumentError(
            f"launch argument {arg.name}:={value!r} is not allowed; one of: {list(arg.choices)}"
        )


def overrides_from_launch_arguments(arg: dict[str, str]) -> dict[str, dict[str, object]]:
    """:func:`launch_overrides` of the launch file's string arguments (``"true"``/``"false"``,
    comma-separated ``cameras``); arguments left at :data:`NOT_GIVEN` override nothing."""
    for spec in ARGUMENTS:
        check_argument(spec, arg.get(spec.name, spec.default))
    given = {a.name: arg[a.name] for a in ARGUMENTS if arg.get(a.name, NOT_GIVEN) != NOT_GIVEN}
    return launch_overrides(
        parse_cameras(given["cameras"]) if "cameras" in given else None,
        given.get("image_topic"),
        given.get("backend"),
        given.get("model"),
        given.get("device"),
        given.get("precision"),
        given["use_depth"] == "true" if "use_depth" in given else None,
        given.get("depth_topic"),
        given.get("camera_info_topic"),
    )


def node_parameters(
    config_file: str, overrides: dict[str, dict[str, object]], node: str
) -> list[object]:
    """A launch ``Node``'s ``parameters``: the parameter file, then the given overrides of
    ``node`` (later entries win; none when no argument was given)."""
    return [config_file] + ([overrides[node]] if overrides[node] else [])


def refuse_missing_packages(arg: dict[str, str], installed: Callable[[str], bool]) -> None:
    """LaunchArgumentError before anything starts when an argument asks for a ROS package that
    is not installed (``rviz:=true`` without rviz2); ``installed(package)`` looks it up."""
    for name, package in EXTERNAL_PACKAGES.items():
        if arg.get(name) == "true" and not installed(package):
            raise LaunchArgumentError(
                f"{name}:=true needs the ROS package {package!r}, which is not installed "
                f"(apt install ros-$ROS_DISTRO-{package}); nothing was started. Launch without "
                f"{name}:=true, or install it."
            )


def configured_cameras(config_file: str | Path, overrides: dict[str, dict[str, object]]) -> list:
    """The perception node's cameras: the override, else the parameter file's, else the
    declared default (the demo camera publishes into the first)."""
    if "cameras" in overrides["perception_node"]:
        return list(overrides["perception_node"]["cameras"])
    data = yaml.safe_load(Path(config_file).read_text()) or {}
    for key in ("perception_node", "/perception_node", "/**"):  # node name, or the wildcard
        params = (data.get(key) or {}).get("ros__parameters") or {}
        if "cameras" in params:
            return list(params["cameras"])
    return list(next(s.default for s in NODE_PARAMS if s.name == "cameras"))
