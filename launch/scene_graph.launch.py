"""Scene graphs from camera images: perception_node + visualization_node (+ RViz, + demo images).

    ros2 launch perception_nodes scene_graph.launch.py cameras:=/camera backend:=auto model:=vit_t
    ros2 launch perception_nodes scene_graph.launch.py rviz:=true demo_images:=true
    ros2 launch perception_nodes scene_graph.launch.py config_file:=/path/my.yaml

Precedence: an argument given on the command line > the parameter file (config_file) > the
node's default. An argument NOT given overrides nothing. `rviz:=true` without rviz2 installed
is refused before anything starts. `pn-run` starts the same nodes with the same configuration
where `ros2 launch` is unavailable.
"""

import os

from ament_index_python.packages import (
    PackageNotFoundError,
    get_package_prefix,
    get_package_share_directory,
)
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# The arguments (descriptions, allowed values) and the parameter overrides they make: one
# module, shared with pn-run; descriptions and choices come from the settings in core/config.py.
from perception_nodes.launch_overrides import (
    ARGUMENTS,
    NODE_ENV,
    configured_cameras,
    node_parameters,
    overrides_from_launch_arguments,
    refuse_missing_packages,
)

PACKAGE = "perception_nodes"
CONFIG_FILE = "scene_graph.yaml"
RVIZ_FILE = "scene_graph.rviz"


def _installed(package):
    """Whether the ROS package ``package`` is in the ament index (the environment's install)."""
    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        return False
    return True


def _nodes(context):
    share = get_package_share_directory(PACKAGE)
    arg = {a.name: context.perform_substitution(LaunchConfiguration(a.name)) for a in ARGUMENTS}
    refuse_missing_packages(arg, _installed)  # raises before any process starts
    config = arg["config_file"] or os.path.join(share, "config", CONFIG_FILE)
    overrides = overrides_from_launch_arguments(arg)  # the same function pn-run uses
    cameras = configured_cameras(config, overrides)
    env = {k: os.environ.get(k, v) for k, v in NODE_ENV.items()}  # as pn-run's children get it
    actions = [
        Node(
            package=PACKAGE,
            executable="perception_node",
            additional_env=env,
            name="perception_node",
            output="screen",
            parameters=node_parameters(config, overrides, "perception_node"),
        ),
        Node(
            package=PACKAGE,
            executable="visualization_node",
            additional_env=env,
            name="visualization_node",
            output="screen",
            parameters=node_parameters(config, overrides, "visualization_node"),
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
            a.name,
            default_value=a.default,
            description=a.description,
            # arguments that set a parameter default to "" (not given): their values are
            # checked by overrides_from_launch_arguments, with the same allowed values
            **({"choices": list(a.choices)} if a.choices and a.default else {}),
        )
        for a in ARGUMENTS
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)])
