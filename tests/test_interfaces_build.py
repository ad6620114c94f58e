"""The ROS wheels' CMake exports are usable by a package build (no leftover build-machine paths).

perception_msgs' own build from a clean copy of msg/ (CMake against the venv's ROS prefix) and its
import and serialization from the install space are tested on the one colcon build of
tests/test_colcon_workspace.py (``test_interface_package_builds_and_imports_from_the_install_space``):
colcon runs that same CMake configure/build/install, and building it twice cost a minute of CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

PREFIX = Path(sys.prefix)


def test_ros_wheel_cmake_exports_carry_no_foreign_paths():
    leftovers = [p for p in PREFIX.glob("share/*/cmake/*.cmake") if "/opt/python/" in p.read_text()]
    assert not leftovers, f"unpatched CMake exports (run scripts/setup.sh): {leftovers[:3]}"
