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
    from perception_nodes.core.weights.checkpoint_io import process_alive

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not process_alive(proc.pid)
    return proc.pid


def answer_with_resend(client, request, wait, timeout: float, resend_after: float = 5.0):
    """The answer to ``request``, sent again every ``resend_after`` s while unanswered (only for
    requests that are safe to repeat); ``wait(condition, seconds) -> bool`` waits (spinning the
    client's executor if nothing else does). Fast DDS drops a response when the server has not
    yet matched the client's response reader 100 ms after the request arrived (rmw_fastrtps#467;
    rclpy warns "failed to send response (timeout)"), and ``service_is_ready`` only sees the
    client's side of the discovery: a new client's first answer can be lost for good on a
    loaded machine. Once one answer came back, the client is matched."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        future = client.call_async(request)
        if wait(future.done, min(resend_after, deadline - time.monotonic())):
            return future.result()
        client.remove_pending_request(future)
        print(f"{client.srv_name}: unanswered after {resend_after} s, sending the request again")
    raise AssertionError(f"{client.srv_name} never answered within {timeout} s")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, seconds) the process ``pid`` has used so far (Linux /proc): a
    condition for "the process has worked N s on it" that holds on a loaded machine, where a
    fixed wall-clock sleep may pass before the process ran at all."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendant_pids(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            kids = [int(k) for k in task.read_text().split()]
            out += kids
            todo += kids
    return out


def pid_running(name: str, among: list[int]) -> int | None:
    """The first pid of ``among`` whose command line contains ``name`` (None: none)."""
    for p in among:
        try:
            if name in Path(f"/proc/{p}/cmdline").read_text().replace("\0", " "):
                return p
        except OSError:
            continue
    return None
