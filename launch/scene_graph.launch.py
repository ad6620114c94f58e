"""Scene graphs from camera images: perception_node + visualization_node (+ RViz, + demo images).

    ros2 launch perception_nodes scene_graph.launch.py cameras:=/camera backend:=auto model:=vit_t
    ros2 launch perception_nodes scene_graph.launch.py rviz:=true demo_images:=true

`pn-run` starts the same nodes with the same configuration where `ros2 launch` is unavailable.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# Allowed values are declared once, in the package's config module.
from perception_nodes.core.config import (
    DEFAULT_SAM_BACKEND,
    PRECISIONS,
    RELEASE_SAM_MODELS,
    SAM_BACKENDS,
)

# The parameter overrides of these arguments: one function, shared with pn-run.
from perception_nodes.launch_overrides import (
    NODE_ENV,
    overrides_from_launch_arguments,
    parse_cameras,
)

PACKAGE = "perception_nodes"
CONFIG_FILE = "scene_graph.yaml"
RVIZ_FILE = "scene_graph.rviz"

ARGUMENTS = [
    # name, default, description, choices
    ("cameras", "/camera", "comma-separated camera namespaces served by one model", None),
    ("image_topic", "image_raw", "image topic relative to each camera namespace", None),
    (
        "backend",
        DEFAULT_SAM_BACKEND,
        "SAM backend (auto: onnxruntime on CPU, torch on CUDA; tensorrt: engines built on first run)",
        SAM_BACKENDS,
    ),
    ("model", "vit_t", "SAM model from the registry", RELEASE_SAM_MODELS),
    ("device", "cpu", "cpu, cuda or cuda:N", None),
    ("precision", "fp32", "encoder precision (and TensorRT engine precision)", PRECISIONS),
    ("use_depth", "false", "use registered depth + CameraInfo for 3D centroids", ["true", "false"]),
    ("config_file", "", "parameter file (default: the package's config/scene_graph.yaml)", None),
    ("rviz", "false", "start RViz with the shipped configuration", ["true", "false"]),
    (
        "demo_images",
        "false",
        "publish scikit-image's bundled photos as the camera stream",
        ["true", "false"],
    ),
]


def _nodes(context):
    share = get_package_share_directory(PACKAGE)
    arg = {name: context.perform_substitution(LaunchConfiguration(name)) for name, *_ in ARGUMENTS}
    config = arg["config_file"] or os.path.join(share, "config", CONFIG_FILE)
    cameras = parse_cameras(arg["cameras"])
    overrides = overrides_from_launch_arguments(arg)  # the same function pn-run uses
    env = {k: os.environ.get(k, v) for k, v in NODE_ENV.items()}  # as pn-run's children get it
    actions = [
        Node(
            package=PACKAGE,
            executable="perception_node",
            additional_env=env,
            name="perception_node",
            output="screen",
            parameters=[config, overrides["perception_node"]],
        ),
        Node(
            package=PACKAGE,
            executable="visualization_node",
            additional_env=env,
            name="visualization_node",
            output="screen",
            parameters=[config, overrides["visualization_node"]],
        ),
    ]
    if arg["demo_images"] == "true":
        actions.append(
            Node(
                package=PACKAGE,
                executable="image_folder_publisher",
                additional_env=env,
                name="image_folder_publisher",
                namespace=cameras[0],
                output="screen",
                parameters=[{"loops": 0, "rate": 1.0}],
            )
        )
    if arg["rviz"] == "true":
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                output="screen",
                arguments=["-d", os.path.join(share, "config", RVIZ_FILE)],
            )
        )
    return actions


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(
            name,
            default_value=default,
            description=description,
            **({"choices": list(choices)} if choices else {}),
        )
        for name, default, description, choices in ARGUMENTS
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)])
