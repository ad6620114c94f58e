"""Helpers for tests that need other ROS processes (separate DDS participants)."""
