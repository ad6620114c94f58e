"""perception_msgs builds from a clean copy of msg/ with CMake against the venv's ROS prefix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

PREFIX = Path(sys.prefix)


def test_ros_wheel_cmake_exports_carry_no_foreign_paths():
    leftovers = [p for p in PREFIX.glob("share/*/cmake/*.cmake") if "/opt/python/" in p.read_text()]
    assert not leftovers, f"unpatched CMake exports (run scripts/setup.sh): {leftovers[:3]}"


def test_interface_package_builds_and_imports_from_clean_copy(tmp_path):
    src, build, install = tmp_path / "perception_msgs", tmp_path / "build", tmp_path / "install"
    shutil.copytree(REPO_ROOT / "msg", src)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(PREFIX))
    configure = subprocess.run(
        [
            "cmake",
            "-S",
            str(src),
            "-B",
            str(build),
            f"-DCMAKE_PREFIX_PATH={PREFIX}",
            f"-DCMAKE_INSTALL_PREFIX={install}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    assert "Generating done" in configure.stdout, "CMake's generate step did not succeed"
    assert "non-existent path" not in configure.stderr

    built = subprocess.run(
        ["cmake", "--build", str(build), "--target", "install", "--", f"-j{os.cpu_count() or 2}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]

    site = (
        install
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
    )
    assert (site / "perception_msgs" / "msg" / "_scene_graph.py").is_file()
    probe = (
        "import perception_msgs, sys;"
        f"assert perception_msgs.__file__.startswith({str(install)!r}), perception_msgs.__file__;"
        "from perception_msgs.msg import SceneGraph, RegionArray, Region, Relation, LabelScore;"
        "from perception_msgs.srv import SetVocabulary, GetVocabulary, QueryRegions;"
        "from rclpy.serialization import serialize_message, deserialize_message;"
        "m = SceneGraph(predicates=['on']); m.regions = [Region(id=3, mask_counts=[1, 2, 3])];"
        "b = deserialize_message(serialize_message(m), SceneGraph);"
        "assert b.regions[0].id == 3 and list(b.regions[0].mask_counts) == [1, 2, 3];"
        "print('ok')"
    )
    run_env = dict(
        env,
        PYTHONPATH=str(site),
        AMENT_PREFIX_PATH=f"{install}:{PREFIX}",
        LD_LIBRARY_PATH=f"{install / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}",
    )
    run_env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=run_env
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
