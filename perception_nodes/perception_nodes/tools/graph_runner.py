"""Start the nodes of ``launch/scene_graph.launch.py`` as processes, without ``ros2 launch``.

``launch``/``launch_ros`` are not on PyPI, so machines without a ROS install (and the tests)
use this instead. It starts the same executables with the same parameter file and the same
overrides that the launch file applies.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from perception_nodes.launch_overrides import NODE_ENV
from perception_nodes.nodes import executables
from perception_nodes.nodes.executables import NODE_MODULES

NODE_ENTRY_MODULE = executables.__name__  # the console scripts' entry module too

PACKAGE_DIR = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PACKAGE_DIR / "config" / "scene_graph.yaml"


class _NoAliasDumper(yaml.SafeDumper):
    """rcl's YAML parser does not follow anchors/aliases: write every value out."""

    def ignore_aliases(self, data) -> bool:
        return True


def _set_dotted(params: dict, dotted: str, value) -> None:
    """``params['sam']['model'] = value`` for ``dotted = 'sam.model'`` (ROS YAML nesting)."""
    *parents, leaf = dotted.split(".")
    for p in parents:
        params = params.setdefault(p, {})
    params[leaf] = value


def write_params_file(
    overrides: dict[str, dict[str, object]],
    base: Path = DEFAULT_CONFIG,
    folder: str | os.PathLike | None = None,
) -> Path:
    """The ``base`` parameter file with ``{node: {dotted.name: value}}`` applied, as a new file."""
    data = yaml.safe_load(Path(base).read_text()) or {}
    data = copy.deepcopy(data)
    for node, params in overrides.items():
        target = data.setdefault(node, {}).setdefault("ros__parameters", {})
        for name, value in params.items():
            _set_dotted(target, name, value)
    fd, path = tempfile.mkstemp(prefix="pn_params_", suffix=".yaml", dir=folder)
    with os.fdopen(fd, "w") as f:
        yaml.dump(data, f, Dumper=_NoAliasDumper, allow_unicode=True, sort_keys=False)
    return Path(path)


def _die_with_parent() -> None:
    """Linux: the node gets SIGINT when the process that started it dies (even by SIGKILL), so a
    killed ``pn-run``/demo/test leaves no orphan node behind on the DDS domain."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT)
    except (OSError, AttributeError):  # not Linux/glibc: nothing to do
        pass


@dataclass
class NodeProcess:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class NodeGraph:
    """Processes of one graph; stop() ends them (SIGINT, then SIGKILL)."""

    processes: list[NodeProcess] = field(default_factory=list)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pn_logs_")))

    def start(
        self,
        executable: str,
        params_file: Path | None = None,
        namespace: str = "",
        extra_params: dict[str, object] | None = None,
        quiet: bool = True,
    ) -> NodeProcess:
        if executable not in NODE_MODULES:
            raise ValueError(
                f"unknown node executable {executable!r}; known: {sorted(NODE_MODULES)}"
            )
        cmd = [
            sys.executable,
            "-m",
            NODE_ENTRY_MODULE,
            executable,
            "--ros-args",
            "-r",
            f"__node:={executable}",
        ]
        if namespace:
            cmd += ["-r", f"__ns:={namespace}"]
        if params_file is not None:
            cmd += ["--params-file", str(params_file)]
        for k, v in (extra_params or {}).items():
            cmd += [
                "-p",
                f"{k}:={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}",
            ]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{executable}.log"
        log = open(log_path, "w")
        # log files: unbuffered, so that a log line is there as soon as the node writes it
        env = dict(NODE_ENV) | dict(
            os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0"
        )
        proc = subprocess.Popen(
            cmd,
            stdout=log if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        node = NodeProcess(executable, proc, log_path)
        self.processes.append(node)
        return node

    def check_alive(self) -> None:
        for p in self.processes:
            if p.process.poll() is not None and p.name != "image_folder_publisher":
                raise RuntimeError(f"{p.name} exited with {p.process.returncode}:\n{p.log_tail()}")

    def stop(self, timeout: float = 15.0) -> dict[str, tuple[int, float]]:
        """SIGINT to every running process at once (as ``ros2 launch`` does), SIGKILL to those
        still running ``timeout`` s later. Returns ``{name: (exit code, seconds to exit)}`` of
        the processes that were running (-9: killed)."""
        t0 = time.monotonic()
        running = [p for p in self.processes if p.process.poll() is None]
        for p in running:
            os.killpg(p.process.pid, signal.SIGINT)
        deadline = t0 + timeout
        outcome: dict[str, tuple[int, float]] = {}
        for p in running:
            try:
                p.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.process.pid, signal.SIGKILL)
                p.process.wait()
            outcome[p.name] = (p.process.returncode, time.monotonic() - t0)
        return outcome

    def __enter__(self) -> "NodeGraph":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
