"""A separate ROS process that echoes messages and answers services deterministically.

Usage: echo.py topic <pkg/msg/Type> <in_topic> <out_topic>
       echo.py service <pkg/srv/Type> <service_name>

Topic mode republishes every message received on ``in_topic`` unchanged on ``out_topic`` (so a
message crosses DDS twice). Service mode answers with a response derived from the request by
``respond`` below, which the tests reproduce to check every field crossed intact.
"""

from __future__ import annotations

import importlib
import sys

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

QOS = QoSProfile(
    depth=10,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
)


def load_type(name: str):
    pkg, kind, cls = name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), cls)


def respond(srv_name: str, request, response):
    """Deterministic responses used by tests/test_msgs_dds.py."""
    if srv_name == "SetVocabulary":
        response.success = True
        response.message = f"received {len(request.labels)} labels, append={request.append}, templates={list(request.prompt_templates)}"
        response.version = 1000 + len(request.labels)
        response.labels = list(reversed(request.labels))
    elif srv_name == "GetVocabulary":
        response.labels = ["tasse", "杯子", "кружка"]
        response.prompt_templates = ["a photo of a {}."]
        response.version = 42
    elif srv_name == "QueryRegions":
        response.success = bool(request.text)
        response.message = request.text[::-1]
        response.region_ids = list(range(1, request.top_k + 1))
        response.scores = [1.0 / i for i in range(1, request.top_k + 1)]
        response.stamp.sec = 1234
        response.stamp.nanosec = 5678
    else:
        raise ValueError(f"no responder for {srv_name}")
    return response


def main(argv: list[str]) -> int:
    mode, type_name = argv[0], argv[1]
    rclpy.init()
    node = Node("echo_helper")
    if mode == "topic":
        msg_type = load_type(type_name)
        pub = node.create_publisher(msg_type, argv[3], QOS)
        node.create_subscription(msg_type, argv[2], pub.publish, QOS)
    else:
        srv_type = load_type(type_name)
        short = type_name.split("/")[-1]
        node.create_service(srv_type, argv[2], lambda req, resp: respond(short, req, resp))
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    except Exception:  # noqa: BLE001 - terminate() during spin raises ExternalShutdownException
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
