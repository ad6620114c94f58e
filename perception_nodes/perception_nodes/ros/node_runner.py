"""What every node executable shares: topic names per camera namespace, its main loop, and a
shutdown that publishes nothing once SIGINT/SIGTERM arrived (``ros2 launch`` sends SIGINT)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


def join_topic(namespace: str, name: str) -> str:
    """``/front`` + ``image_raw`` -> ``/front/image_raw``; an empty namespace keeps the name relative."""
    return f"{namespace}/{name}" if namespace else name


def output_base(camera: str, output_namespace: str) -> str:
    """Where a camera's outputs go: ``<camera>/<output_namespace>`` (``~`` for no camera/namespace)."""
    return join_topic(camera, output_namespace) if output_namespace else (camera or "~")


class PublishGate:
    """Publishing that ends for good when shutdown begins (SIGINT/SIGTERM, see :func:`run_node`).

    ``close()`` only sets an event, so it is safe in a signal handler; a publish already past the
    check finishes, and :meth:`wait_idle` (before the node is destroyed) waits for it.
    """

    def __init__(self) -> None:
        self._closed = threading.Event()
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()

    def publish(self, publisher, msg) -> bool:
        """``publisher.publish(msg)`` unless shutdown began; True when published."""
        with self._lock:
            if self._closed.is_set():
                return False
            publisher.publish(msg)
            return True

    def wait_idle(self) -> None:
        """Close, and wait until no publish is in progress."""
        self.close()
        with self._lock:
            pass


SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SPIN_POLL_S = 0.1  # how often the spin loops look at the shutdown request


def spin_until_shutdown(node: Node, shutdown: threading.Event, executor=None) -> None:
    """Spin ``node`` (on ``executor``, default single-threaded) until ``shutdown`` is set or the
    context ends; polls every :data:`SPIN_POLL_S` s so a signal is acted on promptly."""
    if executor is None:
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
    while not shutdown.is_set() and node.context.ok():
        executor.spin_once(timeout_sec=SPIN_POLL_S)


def run_node(
    make_node: Callable[[], Node],
    spin: Callable[[Node, threading.Event], None] = spin_until_shutdown,
    args: list[str] | None = None,
) -> int:
    """``rclpy.init``, build the node, ``spin(node, shutdown)`` until SIGINT/SIGTERM, clean up; exit code 0.

    rclpy's own signal handlers are not installed: they invalidate the context at once, while
    other threads may still publish. Here a signal sets ``shutdown`` and closes the node's
    :class:`PublishGate` (``node.gate``) and calls ``node.begin_shutdown()`` when it has them;
    the spin returns within :data:`SPIN_POLL_S`, then the node is destroyed and rclpy shut down.
    """
    rclpy.init(
        args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO
    )
    shutdown = threading.Event()
    holder: dict[str, Node] = {}

    def on_signal(signum, frame) -> None:
        shutdown.set()
        node = holder.get("node")
        gate = getattr(node, "gate", None)
        if gate is not None:
            gate.close()
        begin = getattr(node, "begin_shutdown", None)
        if begin is not None:
            begin()

    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, on_signal)
    ended_well = False
    try:
        holder["node"] = make_node()
        if not shutdown.is_set():
            spin(holder["node"], shutdown)
        ended_well = True
    except (KeyboardInterrupt, ExternalShutdownException):
        ended_well = True
    finally:
        node = holder.pop("node", None)  # a signal from here on only sets ``shutdown``
        if node is not None:
            gate = getattr(node, "gate", None)
            if gate is not None:
                gate.wait_idle()
            release_lifecycle_state_machine(node)
            node.destroy_node()
        rclpy.try_shutdown()
        _exit_at_next_signal(0 if ended_well else 1)
    if shutdown.is_set():
        _exit_now(0)
    return 0


def _exit_at_next_signal(code: int) -> None:
    """After ROS is shut down, a SIGINT/SIGTERM ends the process at once with ``code``.

    A node that ends by itself (image_folder_publisher after its loops) returns to the
    interpreter, whose teardown of torch/open_clip takes seconds on a busy CPU; Python's default
    handler would turn a Ctrl-C in that window into a KeyboardInterrupt and exit code -2 (what
    ``ros2 launch`` reports as a failed process) for a node that had finished cleanly.
    """
    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, lambda signum, frame: _exit_now(code))


def release_lifecycle_state_machine(node: Node) -> None:
    """Destroy a lifecycle node's rcl state machine (call before ``node.destroy_node()``).

    Written here because rclpy's ``LifecycleNode`` has no ``destroy_node`` of its own: its state
    machine keeps the node handle, so the context and Fast DDS's participant stay alive after
    ``rclpy.try_shutdown()``, and with :func:`_exit_now` the participant's 64 MiB shared-memory
    segment was never removed from ``/dev/shm`` (one per perception-node start; a test-suite run
    left ~4 GB behind, until processes were OOM-killed). Plain nodes are left as they are.
    """
    machine = getattr(node, "_state_machine", None)
    if machine is not None:
        machine.destroy_when_not_in_use()


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown: after a signal everything of ROS is already shut
    down and the logs flushed, while tearing down torch/open_clip modules takes seconds on a
    busy CPU (a launch waits for the process, and escalates to SIGKILL if it takes too long)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
