"""pn-demo: the README's main command. Photos in over DDS, scene graphs and overlays out.

1. Makes sure the SAM and CLIP weights are there: cached official ones, else a download attempt
   (``--no-fetch`` skips it), else GENERATED (seeded random) weights with a loud notice naming
   the generated parts: their output is then NOT meaningful, only the plumbing is real.
2. Starts the nodes of ``scene_graph.launch.py`` (perception_node + visualization_node) in
   their own processes, exactly as ``pn-run`` does.
3. This process is the camera and the receiver: it publishes scikit-image's bundled photos as
   ``/camera/image_raw`` (+ ``camera_info``), one at a time, and waits for each frame's
   ``SceneGraph`` and overlay.
4. Writes ``<out>/<photo>.json`` (the scene graph, see ``core.scene_graph.to_json``),
   ``<out>/<photo>_overlay.png`` and ``<out>/summary.json``, and prints a per-stage timing table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception_nodes.core.config import PRECISIONS, SAM_BACKENDS, SAM_MODEL_NAMES
from perception_nodes.launch_overrides import launch_overrides
from perception_nodes.tools.graph_runner import DEFAULT_CONFIG, NodeGraph, write_params_file

CAMERA = "/camera"
BANNER = "!" * 100
CPU_POINTS_PER_SIDE = 8
QUICK_OVERRIDES = {  # --quick: same code, tiny test configurations (CI smoke run)
    "sam.model": "sam_tiny_test",
    "clip.model": "pn-clip-tiny-test",
    "amg.points_per_side": 6,
    "amg.pred_iou_thresh": 0.0,
    "amg.stability_score_thresh": 0.0,
    "amg.max_regions": 16,
    "relations.score_threshold": 0.0,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pn-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--images",
        nargs="+",
        default=["astronaut", "coffee", "chelsea", "rocket"],
        help="scikit-image photo names or image files (default: astronaut coffee chelsea rocket)",
    )
    p.add_argument(
        "--max-side", type=int, default=640, help="photos are downscaled to this longest side (px)"
    )
    p.add_argument(
        "--model",
        default="vit_t",
        choices=SAM_MODEL_NAMES,
        help="SAM registry model (default vit_t = MobileSAM)",
    )
    p.add_argument("--backend", default="torch", choices=SAM_BACKENDS)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument(
        "--points-per-side",
        type=int,
        default=None,
        help=f"override amg.points_per_side (default: the config's; {CPU_POINTS_PER_SIDE} on CPU)",
    )
    p.add_argument(
        "--labels", nargs="+", default=None, help="vocabulary (default: the config file's)"
    )
    p.add_argument(
        "--config-file",
        default=str(DEFAULT_CONFIG),
        help="parameter file (default config/scene_graph.yaml)",
    )
    p.add_argument(
        "--cache-dir",
        default="",
        help="weights cache (default $PERCEPTION_NODES_CACHE or ~/.cache/perception_nodes)",
    )
    p.add_argument("--no-fetch", action="store_true", help="do not try to download missing weights")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny test models (seconds on a CPU; output meaningless)",
    )
    p.add_argument(
        "--out-dir",
        default="outputs/demo",
        help="where JSON, PNG and logs go (default outputs/demo)",
    )
    p.add_argument(
        "--frame-timeout", type=float, default=600.0, help="seconds to wait for each frame's graph"
    )
    p.add_argument(
        "--start-timeout", type=float, default=900.0, help="seconds to wait for the models to load"
    )
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------- weights
def weights_available(spec, cache_dir: str, fetch: bool, what: str) -> bool:
    """True when the registry file of ``spec`` is cached (downloading it if allowed)."""
    from perception_nodes.core.weights import CheckpointError, cached_path
    from perception_nodes.core.weights import fetch as fetch_weights

    if not spec.url:
        return False
    if cached_path(spec, cache_dir or None).is_file():
        return True
    if not fetch:
        return False
    print(f"pn-demo: {what} weights are not cached; trying to download them ({spec.url})")
    try:
        fetch_weights(spec, cache_dir or None, progress=True, timeout=20.0)
        return True
    except (CheckpointError, OSError) as exc:
        print(f"pn-demo: download failed: {str(exc).splitlines()[0]}")
        return False


def sam_weights_available(model: str, cache_dir: str, fetch: bool) -> bool:
    """True when official weights for SAM ``model`` are cached (downloading them if allowed)."""
    from perception_nodes.core.sam.registry import get_spec

    return weights_available(get_spec(model), cache_dir, fetch, f"SAM {model}")


def clip_weights_available(model: str, cache_dir: str, fetch: bool) -> bool:
    """True when registry weights for CLIP ``model`` are cached (downloading them if allowed)."""
    from perception_nodes.core.clip_weights import get_clip_weights

    try:
        spec = get_clip_weights(model)
    except KeyError:
        return False
    return weights_available(spec, cache_dir, fetch, f"CLIP {model}")


def untrained_banner(parts: list[str]) -> str:
    """The notice for GENERATED weights; ``parts`` as the node reports them (``"SAM vit_t"``)."""
    from perception_nodes.core.pipeline_factory import fetch_command
    from perception_nodes.core.weights import GENERATED_WEIGHTS

    command = fetch_command(parts)
    how = (
        f"`{command}` (needs a network), then run the demo again"
        if command
        else "none to download (test-only models; run without --quick)"
    )
    return "\n".join(
        [
            BANNER,
            f"!! {GENERATED_WEIGHTS} for: " + ", ".join(parts),
            "!! Their output below is NOT meaningful; only the plumbing is real.",
            f"!! Real weights: {how}.",
            BANNER,
        ]
    )


# ---------------------------------------------------------------------------------- ROS side
@dataclass
class FrameOutcome:
    name: str
    latency_s: float
    regions: int
    relations: int
    files: list[str] = field(default_factory=list)
    top: list[str] = field(default_factory=list)


class DemoSession:
    """Camera publisher + :class:`GraphReceiver` in this process, spun in a background thread."""

    def __init__(self) -> None:
        import threading

        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        from perception_nodes.tools.receiver import GraphReceiver

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.camera = Node("demo_camera", namespace=CAMERA, context=self.context)
        self.image_pub = self.camera.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.info_pub = self.camera.create_publisher(
            CameraInfo, "camera_info", qos_profile_sensor_data
        )
        self.receiver = GraphReceiver(camera=CAMERA, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.camera)
        self.executor.add_node(self.receiver)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self._rejected_before = 0

    def wait_until_ready(self, graph: NodeGraph, timeout: float, subscribers: int = 2) -> None:
        """Until the perception node reports ``configured`` and ``subscribers`` nodes take the images."""
        deadline = time.monotonic() + timeout
        last_note = 0.0
        while time.monotonic() < deadline:
            graph.check_alive()
            values = self.receiver.diagnostics_values()
            if (
                values.get("state") == "configured"
                and self.image_pub.get_subscription_count() >= subscribers
            ):
                return
            if time.monotonic() - last_note > 15:
                print(
                    f"pn-demo: waiting for the perception node to load its models "
                    f"(logs: {graph.log_dir}) ...",
                    flush=True,
                )
                last_note = time.monotonic()
            time.sleep(0.2)
        raise TimeoutError(
            f"the perception node did not become ready within {timeout:.0f} s "
            f"(see {graph.log_dir}/perception_node.log)"
        )

    def publish(self, rgb: np.ndarray):
        """Publish ``rgb`` (+ CameraInfo) once, stamped now; returns the header."""
        from std_msgs.msg import Header

        header = Header(
            frame_id="camera_optical_frame", stamp=self.camera.get_clock().now().to_msg()
        )
        self.republish(rgb, header)
        return header

    def counter(self, what: str) -> int:
        """The node's per-camera frame counter ``what`` (received/dropped/rejected/processed)."""
        return int(self.receiver.diagnostics_values().get(f"{CAMERA}.{what}", "0"))

    def received_count(self) -> int:
        return self.counter("received")

    def publish_until_received(
        self, rgb: np.ndarray, graph: NodeGraph, tries: int = 10, wait_s: float = 3.0
    ):
        """Publish ``rgb`` and make sure the node got it, resending (same stamp) if not.

        The camera topic is best effort (sensor-data QoS, as real cameras publish): a large
        frame can be lost in transport, so a demo or benchmark that waits for one frame's
        result checks the node's ``received`` counter instead of waiting forever.
        """
        before = self.received_count()
        self._rejected_before = self.counter("rejected")
        header = self.publish(rgb)
        for _ in range(tries):
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self.received_count() > before:
                    return header
                graph.check_alive()
                time.sleep(0.05)
            self.republish(rgb, header)
        raise TimeoutError(f"the perception node did not receive the frame after {tries} sends")

    def republish(self, rgb: np.ndarray, header) -> None:
        from perception_nodes.nodes.image_folder_publisher import pinhole_info
        from perception_nodes.ros.image_conversion import numpy_to_image_msg

        msg = numpy_to_image_msg(rgb, "rgb8", header)
        info = pinhole_info(*rgb.shape[:2])
        info.header = header
        self.info_pub.publish(info)
        self.image_pub.publish(msg)

    def wait_for(self, kind: str, stamp, graph: NodeGraph, timeout: float):
        """The message of ``kind`` (``graphs``/``overlays``) with header ``stamp``, and its arrival time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.receiver.lock:
                hit = next(
                    (
                        (t, m)
                        for t, m in getattr(self.receiver.data, kind)
                        if m.header.stamp == stamp
                    ),
                    None,
                )
            if hit is not None:
                return hit
            if kind == "graphs" and self.counter("rejected") > self._rejected_before:
                raise RuntimeError(
                    f"the perception node refused the frame; its log says why: "
                    f"{graph.log_dir}/perception_node.log"
                )
            graph.check_alive()
            time.sleep(0.05)
        raise TimeoutError(f"no {kind[:-1]} for the frame within {timeout:.0f} s")

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10)
        self.camera.destroy_node()
        self.receiver.destroy_node()
        self.context.try_shutdown()


# ---------------------------------------------------------------------------------- outputs
def write_frame(out_dir: Path, name: str, graph_msg, overlay_msg) -> list[str]:
    """``<name>.json`` (scene graph) and ``<name>_overlay.png``; returns the paths written."""
    import cv2

    from perception_nodes.core.scene_graph import to_json
    from perception_nodes.ros.graph_conversion import msg_to_scene_graph
    from perception_nodes.ros.image_conversion import image_msg_to_numpy

    json_path = out_dir / f"{name}.json"
    json_path.write_text(to_json(msg_to_scene_graph(graph_msg), indent=1))
    written = [str(json_path)]
    if overlay_msg is not None:
        overlay = image_msg_to_numpy(overlay_msg)
        if overlay_msg.encoding == "rgb8":
            overlay = overlay[:, :, ::-1]
        png = out_dir / f"{name}_overlay.png"
        if not cv2.imwrite(str(png), overlay):
            raise OSError(f"could not write {png}")
        written.append(str(png))
    return written


def top_triplets(graph_msg, n: int = 3) -> list[str]:
    labels = {r.id: r.label for r in graph_msg.regions}
    rels = sorted(graph_msg.relations, key=lambda r: -r.score)[:n]
    return [
        f"{labels.get(r.subject_id, '?')}#{r.subject_id} {r.predicate} {labels.get(r.object_id, '?')}#{r.object_id}"
        f" ({r.score:.2f})"
        for r in rels
    ]


def stage_table(frames: list[FrameOutcome], diag: dict[str, str]) -> str:
    """Per-stage mean latencies (the node's diagnostics) and the measured end-to-end latency."""
    rows = [(k.removesuffix("_ms"), float(v)) for k, v in diag.items() if k.endswith("_ms")]
    e2e = 1000 * float(np.mean([f.latency_s for f in frames])) if frames else float("nan")
    rows.append(("end-to-end (publish -> SceneGraph received)", e2e))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'stage':<{width}}  mean ms", f"{'-' * width}  -------"]
    lines += [f"{name:<{width}}  {ms:7.1f}" for name, ms in rows]
    lines.append(
        f"backend: {diag.get('backend', '?')}, model: {diag.get('model', '?')}, "
        f"weights meaningful: {diag.get('weights_meaningful', '?')}"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main
def node_overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    ov = launch_overrides(
        [CAMERA],
        backend=args.backend,
        model=args.model,
        device=args.device,
        precision=args.precision,
    )
    pn = ov["perception_node"]
    if args.quick:
        pn.update(QUICK_OVERRIDES)
    if args.points_per_side:
        pn["amg.points_per_side"] = args.points_per_side
    if args.labels:
        pn["vocabulary.labels"] = list(args.labels)
    if args.cache_dir:
        pn["weights.cache_dir"] = args.cache_dir
    pn["diagnostics_period"] = 0.5
    return ov


def run(args: argparse.Namespace) -> dict:
    from perception_nodes.nodes.image_folder_publisher import load_image

    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = node_overrides(args)
    model = str(overrides["perception_node"]["sam.model"])
    fetch = not (args.no_fetch or args.quick)
    real_sam = sam_weights_available(model, args.cache_dir, fetch=fetch)
    pn = overrides["perception_node"]
    clip_model = str(pn.get("clip.model") or _config_value(args.config_file, "clip", "model"))
    real_clip = clip_weights_available(clip_model, args.cache_dir, fetch=fetch)
    # Generated SAM weights: the node opens the region filters itself (core/generated_policy.py,
    # the same for pn-run and ros2 launch) and logs it once.
    if args.points_per_side is None and args.device == "cpu" and not args.quick:
        pn["amg.points_per_side"] = CPU_POINTS_PER_SIDE
        print(
            f"pn-demo: CPU run: {CPU_POINTS_PER_SIDE}x{CPU_POINTS_PER_SIDE} point grid (SAM's decoder costs "
            f"~0.1-0.3 s per point on a laptop CPU); --points-per-side 16 or 32 for finer masks, or --device cuda"
        )
    photos = [
        (Path(s).stem if "/" in s or "." in s else s, load_image(s, args.max_side))
        for s in args.images
    ]
    params = write_params_file(overrides, base=Path(args.config_file), folder=out_dir)
    graph = NodeGraph(log_dir=out_dir / "logs")
    session = None
    frames: list[FrameOutcome] = []
    try:
        graph.start("perception_node", params)
        graph.start("visualization_node", params)
        session = DemoSession()
        session.wait_until_ready(graph, args.start_timeout)
        ready = session.receiver.diagnostics_values()
        meaningful = ready.get("weights_meaningful") == "True"
        if not meaningful:
            print(untrained_banner(_parts(ready)), flush=True)
        for name, rgb in photos:
            t0 = time.monotonic()
            header = session.publish_until_received(rgb, graph)
            t_graph, graph_msg = session.wait_for("graphs", header.stamp, graph, args.frame_timeout)
            _, overlay = session.wait_for("overlays", header.stamp, graph, 60.0)
            files = write_frame(out_dir, name, graph_msg, overlay)
            frame = FrameOutcome(
                name,
                t_graph - t0,
                len(graph_msg.regions),
                len(graph_msg.relations),
                files,
                top_triplets(graph_msg),
            )
            frames.append(frame)
            print(
                f"pn-demo: {name} {rgb.shape[1]}x{rgb.shape[0]}: {frame.regions} regions, {frame.relations} "
                f"relations, {1000 * frame.latency_s:.0f} ms; e.g. {'; '.join(frame.top) or '-'}",
                flush=True,
            )
        time.sleep(1.0)  # one more diagnostics period, so the means include the last frame
        diag = session.receiver.diagnostics_values()
    finally:
        if session is not None:
            session.close()
        graph.stop()
        params.unlink(missing_ok=True)
    print()
    print(stage_table(frames, diag))
    summary = {
        "frames": [f.__dict__ for f in frames],
        "diagnostics": diag,
        "weights_meaningful": meaningful,
        "sam_model": model,
        "real_sam_weights": real_sam,
        "clip_model": clip_model,
        "real_clip_weights": real_clip,
        "generated_parts": _parts(diag),
        "out_dir": str(out_dir),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if not meaningful:
        print(untrained_banner(_parts(diag)))
    print(f"pn-demo: wrote {len(frames)} scene graphs (JSON) and overlays (PNG) to {out_dir}")
    return summary


def _parts(diag: dict[str, str]) -> list[str]:
    """The generated parts the node reports (diagnostics key ``untrained``)."""
    return [p.strip() for p in diag.get("untrained", "").split(",") if p.strip()]


def _config_value(config_file: str, group: str, name: str):
    import yaml

    params = yaml.safe_load(Path(config_file).read_text())["perception_node"]["ros__parameters"]
    return params.get(group, {}).get(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
        print(f"pn-demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
