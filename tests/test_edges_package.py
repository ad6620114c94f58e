"""package.xml declares what the package uses (issue 21, item 10: it declared cv_bridge,
which no node imports; the image conversion is the package's own)."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "perception_nodes"


def _used_names() -> set[str]:
    """Top-level modules imported, and string constants (``package="rviz2"``), in the
    package's Python code and the launch file."""
    files = [*PACKAGE.joinpath("perception_nodes").rglob("*.py"), *ROOT.glob("launch/*.py")]
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    return names


def test_every_ros_exec_depend_is_used_by_the_code():
    """Message packages and system (python3-*) dependencies aside, each ROS package named as
    an exec_depend is imported (or launched by name) somewhere."""
    declared = [e.text for e in ET.parse(PACKAGE / "package.xml").getroot().iter("exec_depend")]
    ros_libraries = [
        d
        for d in declared
        if not d.startswith("python3-") and not d.endswith(("_msgs", "_srvs", "_interfaces"))
    ]
    assert "rclpy" in ros_libraries
    used = _used_names()
    unused = [d for d in ros_libraries if d not in used]
    assert not unused, f"package.xml declares {unused}, which no node imports or launches"


def test_image_conversion_does_not_claim_cv_bridge():
    from perception_nodes.ros import image_conversion

    assert "cv_bridge is used" not in image_conversion.__doc__
    assert "none uses cv_bridge" in " ".join(image_conversion.__doc__.split())
