"""A running perception graph (separate processes) with small models, for end-to-end tests."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from perception_nodes.launch_overrides import launch_overrides
from perception_nodes.tools.graph_runner import NodeGraph, write_params_file

CAMERA = "/camera"


def small_overrides(cache_dir: Path, **extra) -> dict:
    """Launch-file overrides plus small test models (same code, few layers)."""
    ov = launch_overrides([CAMERA], model="sam_tiny_test", use_depth=True)
    ov["perception_node"].update({
        "clip.model": "pn-clip-tiny-test",
        "amg.points_per_side": 4,
        "amg.pred_iou_thresh": 0.0,
        "amg.stability_score_thresh": 0.0,
        "amg.max_regions": 16,
        "relations.score_threshold": 0.0,
        "weights.cache_dir": str(cache_dir),
        "vocabulary.labels": ["person", "cup", "rocket", "cat"],
        "diagnostics_period": 0.5,
    })
    ov["perception_node"].update(extra)
    return ov


def start_graph(tmp_dir: Path, **extra) -> NodeGraph:
    params = write_params_file(small_overrides(tmp_dir / "cache", **extra), folder=tmp_dir)
    graph = NodeGraph(log_dir=tmp_dir)
    graph.start("perception_node", params)
    graph.start("visualization_node", params)
    return graph


class Spinner:
    """Spins a node in a background thread (the test thread publishes and waits)."""

    def __init__(self, context, *nodes):
        from rclpy.executors import MultiThreadedExecutor

        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        for n in nodes:
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def stop(self):
        self.executor.shutdown()
        self.thread.join(timeout=10)


def wait_for(condition, timeout: float, graph: NodeGraph | None = None, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if graph is not None:
            graph.check_alive()
        time.sleep(step)
    return condition()


def call(client, request, timeout: float = 60.0):
    """Call a service from the test thread (the Spinner spins the node)."""
    assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
    future = client.call_async(request)
    assert wait_for(future.done, timeout), f"{client.srv_name} did not answer within {timeout} s"
    return future.result()


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
