"""Stream timing: newest-frame slots, depth paired by stamp, ROS-free stamps, abandoning work on stop."""
