"""What every node executable shares: topic names per camera namespace, and its main loop."""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def join_topic(namespace: str, name: str) -> str:
    """``/front`` + ``image_raw`` -> ``/front/image_raw``; an empty namespace keeps the name relative."""
    return f"{namespace}/{name}" if namespace else name


def output_base(camera: str, output_namespace: str) -> str:
    """Where a camera's outputs go: ``<camera>/<output_namespace>`` (``~`` for no camera/namespace)."""
    return join_topic(camera, output_namespace) if output_namespace else (camera or "~")


def run_node(make_node: Callable[[], Node], spin: Callable[[Node], None] = rclpy.spin,
             args: list[str] | None = None) -> int:
    """``rclpy.init``, build the node, ``spin(node)`` until Ctrl-C or shutdown, clean up; exit code 0."""
    rclpy.init(args=args if args is not None else sys.argv)
    node = make_node()
    try:
        spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
