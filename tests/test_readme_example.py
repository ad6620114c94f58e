"""The README's "Python without ROS" example runs as written (in a process of its own, its weights
cache in a temporary folder) and prints what it says it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # loads the pipeline (tiny models): ~20 s on 2 cores


def _example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python without ROS") :]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_the_readme_python_example_runs_without_ros(tmp_path):
    code = _example()
    assert "rclpy" not in code and "from perception_nodes.core import" in code
    code = (
        "import sys\nsys.modules['rclpy'] = None  # importing ROS would fail: proves it is ROS-free\n"
        + code
    )
    code = code.replace('"/tmp/perception-example"', repr(str(tmp_path / "cache")))
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0] == "labels meaningful: False", lines[:3]  # generated weights, said so
    assert len(lines) > 1, "no region printed"
