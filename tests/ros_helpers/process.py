"""Start and stop helper ROS processes for tests, wait on ROS conditions, and the pid of a
process that is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

HELPERS_DIR = Path(__file__).resolve().parent


@contextmanager
def ros_process(
    script: str, *args: str, ready_line: str = "READY", timeout: float = 60.0
) -> Iterator[subprocess.Popen]:
    """Run ``tests/ros_helpers/<script>`` in a new Python process until the block ends.

    Waits until the process prints ``ready_line`` on stdout; its stderr is shown on failure.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(HELPERS_DIR / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            line = proc.stdout.readline()
            if line.strip() == ready_line:
                break
            if not line and proc.poll() is not None:
                raise RuntimeError(
                    f"{script} exited with {proc.returncode}: {proc.stderr.read()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{script} did not become ready within {timeout} s")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spin_until(executor, condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Spin ``executor`` until ``condition()`` holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        executor.spin_once(timeout_sec=step)
    return condition()


def dead_pid() -> int:
    """The pid of a process that has exited (what a write stopped mid-way leaves in a name)."""
    from perception_nodes.core.checkpoint_io import process_alive

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not process_alive(proc.pid)
    return proc.pid
