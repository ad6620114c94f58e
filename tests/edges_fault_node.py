"""The perception node with an injected fault, run as its own process by tests/test_edges_dds.py.

Frames stamped at an odd second raise :class:`FaultInjected` inside ``Pipeline.process``, and
a ``set_vocabulary`` whose labels include :data:`FAULT_LABEL` raises it in
``Pipeline.set_vocabulary``: an ``Exception`` that is neither a ``RuntimeError`` nor a
``ValueError`` (as onnxruntime's own exception types are), where the real models run. Everything else is the real node
(``perception_node.main``'s lifecycle, executor and worker) on real DDS.

Usage: python tests/edges_fault_node.py --ros-args -r __node:=perception_node --params-file F
"""

from __future__ import annotations

import sys

from perception_nodes.core.pipeline import Pipeline
from perception_nodes.nodes import perception_node
from perception_nodes.ros.node_runner import run_node

FAULT_LABEL = "raise an injected fault"


class FaultInjected(Exception):
    """The injected failure of one frame."""


class FaultyPipeline:
    """A loaded pipeline whose ``process`` fails for frames stamped at an odd second."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def __getattr__(self, name: str):
        return getattr(self._pipeline, name)

    def process(self, rgb, *args, stamp: float | None = None, **kwargs):
        if stamp is not None and int(stamp) % 2 == 1:
            raise FaultInjected(f"injected fault for the frame stamped {int(stamp)} s")
        return self._pipeline.process(rgb, *args, stamp=stamp, **kwargs)

    def set_vocabulary(self, labels, *args, **kwargs):
        if FAULT_LABEL in labels:
            raise FaultInjected("injected fault in set_vocabulary")
        return self._pipeline.set_vocabulary(labels, *args, **kwargs)


def main() -> int:
    def make_node():
        return perception_node.PerceptionNode(
            pipeline_loader=lambda config: FaultyPipeline(Pipeline.load(config))
        )

    sys.setswitchinterval(perception_node.GIL_SWITCH_INTERVAL_S)
    return run_node(make_node, perception_node._spin, sys.argv)


if __name__ == "__main__":
    sys.exit(main())
