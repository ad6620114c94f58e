"""A new process (a new DDS participant) whose fresh clients call the perception node's
get_vocabulary once each, all at once, right when each sees the service; prints
``ANSWERED <n> LOST <k>`` (used by tests/test_edges_dds.py).

Usage: python tests/edges_fresh_callers.py <clients> <timeout s>
"""

from __future__ import annotations

import sys
import threading
import time

import rclpy
from perception_msgs.srv import GetVocabulary
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from perception_nodes.ros.qos import SERVICE_QOS


def main(clients: int, timeout: float) -> int:
    rclpy.init()
    node = Node("fresh_callers")
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    made = [
        node.create_client(
            GetVocabulary, "/perception_node/get_vocabulary", qos_profile=SERVICE_QOS
        )
        for _ in range(clients)
    ]
    if not all(c.wait_for_service(timeout_sec=60) for c in made):
        print("NO SERVICE", flush=True)
        return 1
    futures = [c.call_async(GetVocabulary.Request()) for c in made]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(f.done() for f in futures):
        time.sleep(0.05)
    done = sum(f.done() for f in futures)
    print(f"ANSWERED {done} LOST {clients - done}", flush=True)
    executor.shutdown()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), float(sys.argv[2])))
