"""ROS-free core: numpy/torch in, dataclasses out. Nothing here imports rclpy."""
