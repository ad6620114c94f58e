"""Helpers of the issue-21 DDS tests (tests/test_edges_dds.py): start the fault-injecting
perception node (tests/edges_fault_node.py) in a NodeGraph, and read the latest perception
diagnostics status with its level."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from perception_nodes.launch_overrides import NODE_ENV
from perception_nodes.tools.graph_runner import NodeGraph, NodeProcess

FAULT_NODE = Path(__file__).resolve().parent / "edges_fault_node.py"


def start_fault_node(graph: NodeGraph, params_file: Path) -> NodeProcess:
    """The perception node of tests/edges_fault_node.py, started as NodeGraph starts nodes (own
    process group, log file in the graph's log folder), stopped with the graph."""
    graph.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = graph.log_dir / "perception_node.log"
    cmd = [sys.executable, str(FAULT_NODE), "--ros-args", "-r", "__node:=perception_node"]
    cmd += ["--params-file", str(params_file)]
    env = dict(NODE_ENV) | dict(
        os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0"
    )
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    node = NodeProcess("perception_node", proc, log_path)
    graph.processes.append(node)
    return node


def latest_status(receiver):
    """The latest perception ``DiagnosticStatus`` the receiver got (None before one)."""
    with receiver.lock:
        for _, msg in reversed(receiver.data.diagnostics):
            for status in msg.status:
                if "pipeline" in status.name:
                    return status
    return None
