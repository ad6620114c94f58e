"""perception_nodes: segment everything, label it from an open vocabulary, relate it.

The ROS-free algorithms live in :mod:`perception_nodes.core`; the ROS 2 nodes in
:mod:`perception_nodes.nodes` are thin adapters over it.
"""

__version__ = "0.1.0"
