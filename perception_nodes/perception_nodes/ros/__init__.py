"""ROS-facing code: message conversion and node helpers. Imports ROS message packages."""
