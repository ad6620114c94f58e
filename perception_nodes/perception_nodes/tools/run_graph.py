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

from perception_nodes.core.config import (
    DEFAULT_SAM_BACKEND,
    PRECISIONS,
    SAM_BACKENDS,
    SAM_MODEL_NAMES,
)
from perception_nodes.launch_overrides import launch_overrides, parse_cameras
from perception_nodes.tools.graph_runner import DEFAULT_CONFIG, NodeGraph, write_params_file

STOP_TIMEOUT_S = 3.0  # the nodes exit within this after SIGINT (then: SIGKILL, exit code 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pn-run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--cameras", default="/camera", help="comma-separated camera namespaces (default /camera)"
    )
    p.add_argument(
        "--image-topic", default="image_raw", help="image topic relative to each camera namespace"
    )
    p.add_argument("--backend", default=DEFAULT_SAM_BACKEND, choices=SAM_BACKENDS)
    p.add_argument("--model", default="vit_t", choices=SAM_MODEL_NAMES, help="SAM registry model")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument(
        "--use-depth", action="store_true", help="use depth + CameraInfo for 3D centroids"
    )
    p.add_argument(
        "--config-file",
        default=str(DEFAULT_CONFIG),
        help="parameter file (default: config/scene_graph.yaml)",
    )
    p.add_argument("--rviz", action="store_true", help="also start rviz2 (needs a ROS 2 install)")
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
    ``--demo-images``, RViz with ``--rviz`` where it is installed."""
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
        if shutil.which("rviz2") is None:
            print(
                "pn-run: rviz2 is not installed here (it needs a ROS 2 install); skipping it",
                file=sys.stderr,
            )
        else:
            import subprocess

            subprocess.Popen(["rviz2", "-d", str(DEFAULT_CONFIG.with_name("scene_graph.rviz"))])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cameras = parse_cameras(args.cameras)
    overrides = launch_overrides(
        cameras,
        args.image_topic,
        args.backend,
        args.model,
        args.device,
        args.precision,
        args.use_depth,
    )
    params = write_params_file(overrides, base=args.config_file)
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
