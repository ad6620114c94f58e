"""``colcon build --symlink-install`` of ros2_ws/ (colcon from PyPI, the venv as underlay), and
the packages used from the install space the way ``ros2 run`` uses them: executables listed from
the ament index, the node started from ``install/``, a SceneGraph received by a separate process;
perception_msgs (CMake against the venv's ROS prefix, from a clean copy of msg/) imported and its
messages serialized from ``install/``.

The workspace is a copy (tmp dir): the repository is not dirtied by build/, install/, log/. It is
built once for the module (one build is a minute of CPU on 2 cores); tests only read it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from e2e_fixtures import small_overrides

from perception_nodes.tools.graph_runner import write_params_file

pytestmark = pytest.mark.ros
COLCON = Path(sys.executable).parent / "colcon"
EXECUTABLES = {
    "perception_node",
    "visualization_node",
    "image_folder_publisher",
    "pn-fetch-weights",
    "pn-run",
    "pn-demo",
}


def _copy_workspace(dest: Path) -> Path:
    """ros2_ws/ with its src/ links resolved (they point at ../../msg and ../../perception_nodes)."""
    src = dest / "src"
    src.mkdir(parents=True)
    for link in sorted((REPO_ROOT / "ros2_ws" / "src").iterdir()):
        shutil.copytree(
            link.resolve(),
            src / link.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "install", "log"),
        )
    return dest


def _install_env() -> dict[str, str]:
    """This environment without the test's own import path (the install space must provide it).

    The ROS wheels' bootstrapper has already set LD_LIBRARY_PATH in this process
    (``_ROS_WHEELS_BOOTSTRAP_COMPLETE``); keeping its flag keeps it from rebuilding the path in
    the children, which it does through a set (random order): the venv's own perception_msgs
    libraries could then shadow the workspace's that ``install/setup.bash`` puts first.
    """
    env = dict(os.environ, CMAKE_PREFIX_PATH=sys.prefix, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return env


def _sourced(ws: Path, command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"source install/setup.bash && {command}"],
        cwd=ws,
        capture_output=True,
        text=True,
        env=_install_env(),
        check=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """ros2_ws/ copied and built with colcon (both packages); the workspace folder."""
    assert COLCON.is_file(), (
        "colcon missing: pip install colcon-common-extensions (scripts/requirements-ros.txt)"
    )
    ws = _copy_workspace(tmp_path_factory.mktemp("colcon") / "ws")
    t0 = time.monotonic()
    build = subprocess.run(
        [
            str(COLCON),
            "build",
            "--symlink-install",
            "--cmake-args",
            "-DBUILD_TESTING=OFF",
            f"-DPython3_EXECUTABLE={sys.executable}",
        ],
        cwd=ws,
        capture_output=True,
        text=True,
        env=_install_env(),
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(f"\ncolcon build: {time.monotonic() - t0:.0f} s")
    return ws


def test_interface_package_builds_and_imports_from_the_install_space(workspace):
    """perception_msgs' CMake configure generated cleanly (no missing paths in the wheels' CMake
    exports) and its messages and services import and serialize from ``install/``."""
    log = workspace / "log" / "latest_build" / "perception_msgs"
    configure = (log / "stdout.log").read_text()
    assert "Generating done" in configure, "CMake's generate step did not succeed"
    assert "non-existent path" not in (log / "stderr.log").read_text()
    install = workspace / "install" / "perception_msgs"
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
    result = _sourced(workspace, f'python -c "{probe}"')
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_colcon_build_then_nodes_run_from_the_install_space(workspace, tmp_path):
    ws = workspace
    probe = (
        "import os, perception_nodes, perception_msgs;"
        "from ament_index_python.packages import get_package_prefix;"
        "lib = os.path.join(get_package_prefix('perception_nodes'), 'lib', 'perception_nodes');"
        "print(perception_nodes.__file__); print(perception_msgs.__file__); print(lib);"
        "print(' '.join(sorted(f for f in os.listdir(lib) if os.access(os.path.join(lib, f), os.X_OK))))"
    )
    listed = _sourced(ws, f'python -c "{probe}"')
    assert listed.returncode == 0, listed.stderr[-3000:]
    nodes_file, msgs_file, lib, executables = listed.stdout.strip().splitlines()
    # --symlink-install: the installed package links back to the (copied) sources
    assert Path(nodes_file).resolve().is_relative_to(ws), nodes_file
    assert msgs_file.startswith(str(ws / "install")), msgs_file
    assert lib == str(ws / "install" / "perception_nodes" / "lib" / "perception_nodes")
    assert EXECUTABLES <= set(executables.split()), (
        executables
    )  # what `ros2 run perception_nodes <x>` finds

    params = write_params_file(
        small_overrides(tmp_path / "cache", **{"amg.points_per_side": 2, "use_depth": False}),
        folder=tmp_path,
    )
    command = (
        f"source install/setup.bash && exec {lib}/perception_node --ros-args "
        f"-r __node:=perception_node --params-file {params}"
    )
    with open(tmp_path / "perception_node.log", "w") as log:
        node = subprocess.Popen(
            ["bash", "-c", command],
            cwd=ws,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_install_env(),
            start_new_session=True,
        )
        try:
            got = _sourced(
                ws,
                f"python {REPO_ROOT / 'tests' / 'ros_helpers' / 'scene_graph_probe.py'} /camera 240",
                timeout=300,
            )
            assert got.returncode == 0 and got.stdout.startswith("SCENE_GRAPH"), (
                got.stdout[-2000:]
                + got.stderr[-2000:]
                + (tmp_path / "perception_node.log").read_text()[-3000:]
            )
            assert node.poll() is None, "perception_node exited"
            assert got.stdout.split()[2].startswith(
                str(ws / "install")
            )  # the probe used the installed messages
        finally:
            os.killpg(node.pid, 2)  # SIGINT, like Ctrl-C
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, 9)
                node.wait()
