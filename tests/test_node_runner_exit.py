"""A node that ends by itself (image_folder_publisher after its loops) and then gets SIGINT or
SIGTERM while the interpreter is still tearing down (seconds of torch/open_clip teardown on a
busy CPU: here a sleep after ``run_node`` returned) exits 0 at once, not -2/-15: ``ros2 launch``
reports a negative code as a failed process. Real rclpy in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ros

CHILD = textwrap.dedent(
    """
    import time
    from rclpy.node import Node
    from perception_nodes.ros.node_runner import run_node

    def ends_by_itself(node, shutdown):
        return

    code = run_node(lambda: Node("ends_by_itself"), ends_by_itself, ["child"])
    print(f"run_node returned {code}", flush=True)
    time.sleep(120)  # stands for the interpreter's slow teardown
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_after_the_node_ended_by_itself_exits_0(signum):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "run_node returned 0", line + child.stdout.read()
        child.send_signal(signum)
        child.wait(timeout=60)  # catches a hang only: the sleep would take 120 s
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, child.stdout.read()
