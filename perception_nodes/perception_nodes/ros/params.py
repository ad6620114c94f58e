"""ROS parameters of the perception node: names, types, defaults, descriptions, ranges, choices.

The pipeline's parameters are derived from :class:`~perception_nodes.core.config.PipelineConfig`
(each field's :class:`~perception_nodes.core.config.SettingInfo`: description, range or choices,
live or read-only); the node's own parameters are the :data:`NODE_PARAMS` table. Together they
drive the declarations (with ``ParameterDescriptor``s, so rclpy itself refuses out-of-range
values and writes to read-only ones), the validation of string choices, the launch arguments'
help and the structural check of the launch file and YAML config.
"""

from __future__ import annotations

from dataclasses import dataclass

from perception_nodes.core.config import PipelineConfig, settings


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    description: str
    read_only: bool = False
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


NODE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "cameras",
        [""],
        "camera namespaces served by this node (one model for all), e.g. ['/front', '/rear']",
        read_only=True,
    ),
    ParamSpec(
        "image_topic", "image_raw", "image topic relative to each camera namespace", read_only=True
    ),
    ParamSpec(
        "use_compressed",
        False,
        "subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage) instead",
        read_only=True,
    ),
    ParamSpec(
        "use_depth",
        False,
        "subscribe to a registered depth image and CameraInfo for 3D centroids",
        read_only=True,
    ),
    ParamSpec(
        "depth_topic",
        "depth/image_raw",
        "depth topic relative to each camera namespace (16UC1 mm or 32FC1 m)",
        read_only=True,
    ),
    ParamSpec(
        "camera_info_topic",
        "camera_info",
        "CameraInfo topic relative to each camera namespace",
        read_only=True,
    ),
    ParamSpec(
        "depth_slop",
        0.05,
        "a frame gets the depth image stamped nearest to it within this many seconds; none: no 3D "
        "for that frame (counted, logged)",
        read_only=True,
        low=0.0,
        high=10.0,
    ),
    ParamSpec(
        "depth_wait",
        0.1,
        "seconds a frame waits for its depth image when that has not arrived yet",
        read_only=True,
        low=0.0,
        high=5.0,
    ),
    ParamSpec(
        "output_namespace",
        "perception",
        "outputs go to <camera>/<output_namespace>/...",
        read_only=True,
    ),
    ParamSpec("publish_regions", True, "publish <ns>/regions (perception_msgs/RegionArray)"),
    ParamSpec("publish_scene_graph", True, "publish <ns>/scene_graph (perception_msgs/SceneGraph)"),
    ParamSpec(
        "publish_label_image",
        True,
        "publish <ns>/label_image (sensor_msgs/Image 16UC1, 0 = background)",
    ),
    ParamSpec("publish_embeddings", False, "fill Region.embedding with the 256-d SAM token"),
    ParamSpec(
        "max_image_pixels",
        16_000_000,
        "frames larger than this are refused with a log, pixels",
        low=1,
        high=1_000_000_000,
    ),
    ParamSpec(
        "diagnostics_period", 1.0, "seconds between diagnostics messages", low=0.1, high=60.0
    ),
    ParamSpec(
        "autostart",
        True,
        "configure and activate on start (otherwise drive the lifecycle yourself)",
        read_only=True,
    ),
)


def pipeline_params() -> tuple[ParamSpec, ...]:
    """One :class:`ParamSpec` per :class:`PipelineConfig` field, from its ``SettingInfo``."""
    defaults = PipelineConfig()
    return tuple(
        ParamSpec(
            PipelineConfig.ros_name(name),
            getattr(defaults, name),
            info.description + (f", {info.range_text()}" if info.low is not None else ""),
            read_only=not info.live,
            choices=info.choices,
            low=info.low,
            high=info.high,
        )
        for name, info in settings().items()
    )


def all_params() -> tuple[ParamSpec, ...]:
    return pipeline_params() + NODE_PARAMS


def check_choice(spec: ParamSpec, value) -> str | None:
    """Reason ``value`` is not allowed for ``spec`` (choices), or None."""
    if spec.choices and value not in spec.choices:
        return f"{spec.name} must be one of {list(spec.choices)}, got {value!r}"
    return None
