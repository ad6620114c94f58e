"""pn-run: start the scene-graph nodes like `ros2 launch perception_nodes scene_graph.launch.py`.

Same executables, parameter file and launch arguments, for machines where `ros2 launch` is not
available (the PyPI ROS wheels have no `launch`). Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path

from perception_nodes.core.config import PRECISIONS, SAM_BACKENDS, SAM_MODEL_NAMES
from perception_nodes.launch_overrides import (
    LaunchArgumentError,
    configured_cameras,
    launch_overrides,
    parse_cameras,
    refuse_missing_packages,
)
from perception_nodes.tools.graph_runner import DEFAULT_CONFIG, NodeGraph, write_params_file

STOP_TIMEOUT_S = 3.0  # the nodes exit within this after SIGINT (then: SIGKILL, exit code 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pn-run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # Parameter arguments default to None: not given -> the config file's value (as ros2 launch).
    p.add_argument("--cameras", help="comma-separated camera namespaces (sets cameras)")
    p.add_argument("--image-topic", help="image topic relative to each camera namespace")
    p.add_argument("--depth-topic", help="depth topic relative to each camera namespace")
    p.add_argument("--camera-info-topic", help="CameraInfo topic relative to each camera namespace")
    p.add_argument("--backend", choices=SAM_BACKENDS, help="SAM backend (sets sam.backend)")
    p.add_argument("--model", choices=SAM_MODEL_NAMES, help="SAM registry model (sets sam.model)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (sets sam.device)")
    p.add_argument("--precision", choices=PRECISIONS, help="encoder precision (sets sam.precision)")
    p.add_argument(
        "--use-depth",
        action=argparse.BooleanOptionalAction,
        help="use depth + CameraInfo for 3D centroids (sets use_depth)",
    )
    p.add_argument(
        "--config-file",
        default=str(DEFAULT_CONFIG),
        help="parameter file (default: config/scene_graph.yaml)",
    )
    p.add_argument(
        "--rviz", action="store_true", help="also start rviz2 (refused where it is not installed)"
    )
    p.add_argument(
        "--demo-images",
        action="store_true",
        help="publish scikit-image's photos as the camera stream",
    )
    p.add_argument(
        "--verbose", action="store_true", help="show node output here instead of log files"
    )
    return p.parse_args(argv)


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop the nodes: both raise KeyboardInterrupt here.

    Set explicitly, SIGINT included: a process started with SIGINT ignored keeps it ignored
    (Python then installs no handler), and a non-interactive shell starts every background job
    so (``pn-run ... &`` in a script, a CI job): Ctrl-C and ``kill -INT`` then did nothing.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


def start_nodes(graph: NodeGraph, params: Path, camera: str, args: argparse.Namespace) -> None:
    """The launch file's processes: perception and visualization nodes, the demo camera with
    ``--demo-images``, RViz with ``--rviz`` (checked to be installed before: :func:`main`)."""
    graph.start("perception_node", params, quiet=not args.verbose)
    graph.start("visualization_node", params, quiet=not args.verbose)
    if args.demo_images:
        graph.start(
            "image_folder_publisher",
            None,
            namespace=camera,
            extra_params={"loops": 0, "rate": 1.0},
            quiet=not args.verbose,
        )
    if args.rviz:
        import subprocess

        subprocess.Popen(["rviz2", "-d", str(DEFAULT_CONFIG.with_name("scene_graph.rviz"))])


def params_for(args: argparse.Namespace, folder: str | None = None) -> tuple[Path, list[str]]:
    """The nodes' parameter file (``--config-file`` with the options GIVEN applied: an option not
    given leaves the file's value, as a launch argument not given does) and the cameras."""
    overrides = launch_overrides(
        parse_cameras(args.cameras) if args.cameras is not None else None,
        args.image_topic,
        args.backend,
        args.model,
        args.device,
        args.precision,
        args.use_depth,
        args.depth_topic,
        args.camera_info_topic,
    )
    params = write_params_file(overrides, base=args.config_file, folder=folder)
    return params, configured_cameras(args.config_file, overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:  # like the launch file: refused before anything starts
        refuse_missing_packages(
            {"rviz": "true" if args.rviz else "false"}, lambda exe: shutil.which(exe) is not None
        )
    except LaunchArgumentError as exc:
        print(f"pn-run: {exc}", file=sys.stderr)
        return 2
    params, cameras = params_for(args)
    stop_on_signals()
    graph = NodeGraph()
    code = 0
    try:
        start_nodes(graph, params, cameras[0], args)
        print(f"pn-run: nodes started (logs in {graph.log_dir}); Ctrl-C to stop", flush=True)
        while True:
            graph.check_alive()
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"pn-run: {exc}", file=sys.stderr)
        code = 1
    finally:
        outcome = graph.stop(timeout=STOP_TIMEOUT_S)
        for name, (rc, seconds) in outcome.items():
            print(f"pn-run: {name} exited with {rc} after {seconds:.2f} s", flush=True)
    if any(rc != 0 for rc, _ in outcome.values()):
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
