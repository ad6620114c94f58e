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

# The run is here (arguments, node parameters, the photo loop, summary.json); the weights check
# and notice are in demo_weights.py, the camera + receiver in demo_session.py and the per-photo
# files and timing table in demo_output.py. (A comment, not the docstring: that is --help.)

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from perception_nodes.core.config import (
    PRECISIONS,
    SAM_BACKENDS,
    SAM_MODEL_NAMES,
    default_setting,
)
from perception_nodes.launch_overrides import launch_overrides
from perception_nodes.tools.demo_output import FrameOutcome, stage_table, top_triplets, write_frame
from perception_nodes.tools.demo_session import CAMERA, DemoSession
from perception_nodes.tools.demo_weights import (
    clip_weights_available,
    sam_weights_available,
    untrained_banner,
)
from perception_nodes.tools.graph_runner import DEFAULT_CONFIG, NodeGraph, write_params_file

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
        default=default_setting("sam_model"),
        choices=SAM_MODEL_NAMES,
        help="SAM registry model (default: sam.model's, %(default)s)",
    )
    p.add_argument("--backend", default=default_setting("sam_backend"), choices=SAM_BACKENDS)
    p.add_argument("--device", default=default_setting("sam_device"), help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default=default_setting("sam_precision"), choices=PRECISIONS)
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
    # Generated SAM weights: the node opens the region filters itself (core/weights/generated_policy.py,
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
