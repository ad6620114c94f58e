"""A node that collects the pipeline's outputs (scene graphs, overlays, label images, diagnostics).

Used by the demo, the end-to-end benchmark and the tests; runs in its own process, separate
from the perception node, so everything it sees crossed DDS.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray
from perception_msgs.msg import RegionArray, SceneGraph
from perception_msgs.srv import GetVocabulary, QueryRegions, SetVocabulary
from rclpy.node import Node
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from perception_nodes.ros.qos import SERVICE_QOS


@dataclass
class Received:
    graphs: list = field(default_factory=list)  # (receive time, SceneGraph)
    regions: list = field(default_factory=list)
    overlays: list = field(default_factory=list)
    label_images: list = field(default_factory=list)
    markers: list = field(default_factory=list)
    diagnostics: list = field(default_factory=list)


class GraphReceiver(Node):
    """Subscribes to ``<camera>/<out_ns>/*`` and ``/diagnostics``; clients for the node's services."""

    def __init__(
        self,
        camera: str = "/camera",
        out_ns: str = "perception",
        node: str = "/perception_node",
        **kwargs,
    ):
        super().__init__("graph_receiver", **kwargs)
        base = f"{camera}/{out_ns}"
        self.data = Received()
        self.lock = threading.Lock()
        self.create_subscription(
            SceneGraph, f"{base}/scene_graph", lambda m: self._add("graphs", m), 50
        )
        self.create_subscription(
            RegionArray, f"{base}/regions", lambda m: self._add("regions", m), 50
        )
        self.create_subscription(Image, f"{base}/overlay", lambda m: self._add("overlays", m), 50)
        self.create_subscription(
            Image, f"{base}/label_image", lambda m: self._add("label_images", m), 50
        )
        self.create_subscription(
            MarkerArray, f"{base}/markers", lambda m: self._add("markers", m), 50
        )
        self.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: self._add("diagnostics", m), 50
        )
        self.set_vocabulary = self.create_client(
            SetVocabulary, f"{node}/set_vocabulary", qos_profile=SERVICE_QOS
        )
        self.get_vocabulary = self.create_client(
            GetVocabulary, f"{node}/get_vocabulary", qos_profile=SERVICE_QOS
        )
        self.query_regions = self.create_client(
            QueryRegions, f"{node}/query_regions", qos_profile=SERVICE_QOS
        )

    def _add(self, kind: str, msg) -> None:
        with self.lock:
            getattr(self.data, kind).append((time.monotonic(), msg))

    def count(self, kind: str) -> int:
        with self.lock:
            return len(getattr(self.data, kind))

    def latest(self, kind: str):
        with self.lock:
            items = getattr(self.data, kind)
            return items[-1][1] if items else None

    def diagnostics_values(self) -> dict[str, str]:
        """Key/values of the latest perception diagnostics status."""
        with self.lock:
            for _, msg in reversed(self.data.diagnostics):
                for status in msg.status:
                    if "pipeline" in status.name:
                        return {kv.key: kv.value for kv in status.values}
        return {}
