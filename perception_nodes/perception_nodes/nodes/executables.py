"""Entry points of the node executables: the console scripts (``ros2 run``/``ros2 launch``) and
``python -m perception_nodes.nodes.executables <name> [--ros-args ...]`` (``pn-run``).

Importing a node module takes seconds (torch, open_clip, rclpy), and until the node's own
shutdown handling is in place (:func:`perception_nodes.ros.node_runner.run_node`) SIGINT would
raise KeyboardInterrupt somewhere in an import: a traceback and exit code -2, which ``ros2
launch`` reports as a crash. So this module imports only the standard library, and SIGINT or
SIGTERM before the node takes over exits 0 at once: no ROS entity exists yet, nothing is lost.
"""

from __future__ import annotations

import os
import signal
import sys

NODE_MODULES = {
    "perception_node": "perception_nodes.nodes.perception_node",
    "visualization_node": "perception_nodes.nodes.visualization_node",
    "image_folder_publisher": "perception_nodes.nodes.image_folder_publisher",
}
# = node_runner.SHUTDOWN_SIGNALS, not imported from there: it imports rclpy (seconds)
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_now(signum, frame) -> None:
    os._exit(0)


def run(name: str) -> int:
    """Start node executable ``name``: signals exit 0 at once until the node handles them."""
    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, _exit_now)
    import importlib

    return importlib.import_module(NODE_MODULES[name]).main()


def perception_node() -> int:
    return run("perception_node")


def visualization_node() -> int:
    return run("visualization_node")


def image_folder_publisher() -> int:
    return run("image_folder_publisher")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in NODE_MODULES:
        sys.exit(f"usage: python -m {__spec__.name} {{{','.join(NODE_MODULES)}}} [--ros-args ...]")
    node_name = sys.argv.pop(1)
    sys.exit(run(node_name))
