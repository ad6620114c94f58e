"""Shared pytest set-up: CPU only, an isolated ROS domain per test session, ROS fixtures.

ROS tests use real rclpy over real DDS (Fast DDS from the PyPI wheels); helper processes are
started with the venv's Python so they are separate DDS participants.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# Shared fixtures, registered once for every test module (no per-module fixture imports).
pytest_plugins = ["sam_fixtures", "export_fixtures", "e2e_fixtures"]

# Tests never use a GPU, and keep to the 2 cores CI has.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# A ROS domain of our own so concurrent test runs on one machine do not see each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a minute on 2 cores")
    config.addinivalue_line("markers", "ros: needs rclpy and the built perception_msgs")


@pytest.fixture
def ros_context():
    """A fresh rclpy context for one test (init/shutdown around it)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)
