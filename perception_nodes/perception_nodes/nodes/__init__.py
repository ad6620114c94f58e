"""ROS 2 nodes: thin adapters over perception_nodes.core."""
