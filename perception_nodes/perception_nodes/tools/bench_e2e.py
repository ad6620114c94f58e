"""pn-bench-e2e: end-to-end latency and throughput over DDS, and the ROS layer's share.

Side by side in one command, on the same photos and the same parameter file:
1. ``core``: :class:`Pipeline.process` called directly in this process (no ROS at all);
2. ``ros``: the perception node in its own process (as launched), fed over DDS by this
   process, which receives each frame's ``SceneGraph``; latency = publish -> received.
The two alternate frame by frame (the same load for both on a shared machine). Then frames
go out at 30 Hz for ``--burst-seconds`` (throughput; the node drops what it cannot take, so
there is no backlog).
The ROS layer's share = 1 - (the node's own core stage times, from its diagnostics) / (ros
latency): image conversion, DDS transport of the image and the outputs, message building.
Target <= 10 %. (The in-process core time is printed beside it; it shares this process's GIL
with the receiving DDS threads, so it is not used for the share.)
Prints a table and writes JSON (default ``outputs/bench/e2e.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from perception_nodes.core.config import (
    PRECISIONS,
    SAM_BACKENDS,
    SAM_MODEL_NAMES,
    default_setting,
)
from perception_nodes.core.weights.files import GENERATED_WEIGHTS
from perception_nodes.launch_overrides import launch_overrides
from perception_nodes.tools import bench_vocabulary_load
from perception_nodes.tools.bench_common import hardware_info
from perception_nodes.tools.demo import QUICK_OVERRIDES
from perception_nodes.tools.demo_session import CAMERA, DemoSession
from perception_nodes.tools.graph_runner import DEFAULT_CONFIG, NodeGraph, write_params_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pn-bench-e2e",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--images", nargs="+", default=["astronaut", "coffee", "chelsea", "rocket"])
    p.add_argument("--max-side", type=int, default=640)
    p.add_argument("--model", default=default_setting("sam_model"), choices=SAM_MODEL_NAMES)
    p.add_argument("--backend", default=default_setting("sam_backend"), choices=SAM_BACKENDS)
    p.add_argument("--device", default=default_setting("sam_device"))
    p.add_argument("--precision", default=default_setting("sam_precision"), choices=PRECISIONS)
    p.add_argument("--points-per-side", type=int, default=None)
    p.add_argument(
        "--repeats", type=int, default=2, help="passes over the photos for latency (default 2)"
    )
    p.add_argument(
        "--burst-seconds", type=float, default=20.0, help="throughput phase length (0 = skip)"
    )
    p.add_argument(
        "--vocabulary-callers",
        type=int,
        default=0,
        help="then N concurrent set_vocabulary clients while frames flow: p99 (target < 2 s "
        "with 20); 0 = skip",
    )
    p.add_argument("--vocabulary-seconds", type=float, default=12.0)
    p.add_argument("--config-file", default=str(DEFAULT_CONFIG))
    p.add_argument(
        "--quick", action="store_true", help="tiny test models (plumbing cost dominates)"
    )
    p.add_argument("--out", default="outputs/bench/e2e.json")
    return p.parse_args(argv)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """``{'sam': {'model': 'vit_t'}}`` -> ``{'sam.model': 'vit_t'}`` (ROS parameter names)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def pipeline_config(params_file: Path):
    """The :class:`PipelineConfig` the perception node builds from ``params_file``."""
    from perception_nodes.core.config import PipelineConfig

    params = flatten(yaml.safe_load(params_file.read_text())["perception_node"]["ros__parameters"])
    names = {PipelineConfig.ros_name(n) for n in PipelineConfig.field_names()}
    return PipelineConfig.from_flat({k: v for k, v in params.items() if k in names})


def percentiles(values: list[float]) -> dict[str, float]:
    a = 1000 * np.asarray(values, dtype=np.float64)
    return {
        "mean_ms": float(a.mean()),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "max_ms": float(a.max()),
        "n": int(a.size),
    }


def bench_side_by_side(
    params_file: Path,
    photos: list[np.ndarray],
    repeats: int,
    burst_s: float,
    log_dir: Path,
    vocabulary_load: tuple[int, float] = (0, 0.0),
) -> tuple[dict, dict]:
    """Core and ROS latency frame by frame, alternating (same load on a shared machine)."""
    from perception_nodes.core.pipeline import Pipeline

    pipeline = Pipeline.load(pipeline_config(params_file))
    graph = NodeGraph(log_dir=log_dir)
    session = None
    try:
        node = graph.start("perception_node", params_file)
        session = DemoSession()
        session.wait_until_ready(graph, 900.0, subscribers=1)
        pipeline.process(photos[0])  # warm-up of both (allocations, lazy init)
        _ros_latency(session, photos[0], graph)
        time.sleep(1.0)  # one diagnostics period: the node's means now cover the warm-up frame
        warm_diag = session.receiver.diagnostics_values()
        core_s, ros_s = [], []
        for _ in range(repeats):
            for rgb in photos:
                t0 = time.perf_counter()
                pipeline.process(rgb)
                core_s.append(time.perf_counter() - t0)
                ros_s.append(_ros_latency(session, rgb, graph))
        core = {
            "latency": percentiles(core_s),
            "meaningful": pipeline.meaningful,
            "untrained": pipeline.untrained_parts,
            "peak_rss_mb": peak_rss_mb(),  # this process: the Pipeline plus the DDS receiver
        }
        del pipeline  # free its memory and threads before the throughput run
        time.sleep(
            1.0
        )  # one more diagnostics period: the node's stage means include the last frame
        ros = {
            "latency": percentiles(ros_s),
            "node_stages_ms": node_core_stages(warm_diag, session.receiver.diagnostics_values()),
        }
        if burst_s > 0:
            ros["throughput"] = _burst(session, photos, burst_s, graph)
        if vocabulary_load[0] > 0:
            ros["vocabulary_load"] = bench_vocabulary_load.vocabulary_load(
                session, photos, graph, *vocabulary_load
            )
        ros["diagnostics"] = session.receiver.diagnostics_values()
        ros["peak_rss_mb"] = peak_rss_mb(node.process.pid)  # the node's, over every phase
        return core, ros
    finally:
        if session is not None:
            session.close()
        graph.stop()


CORE_STAGES = ("segment", "classify", "relations", "assemble")


def node_core_stages(before: dict[str, str], after: dict[str, str]) -> dict[str, float]:
    """Mean ms per core stage inside the node over the frames processed between two diagnostics
    snapshots (the node reports running means over its last 100 frames), and their sum as ``core``.
    """
    n0 = int(before.get(f"{CAMERA}.processed", "0"))
    n1 = int(after.get(f"{CAMERA}.processed", "0"))
    if n1 <= n0 or n1 > 100:
        raise RuntimeError(
            f"cannot separate the timed frames in the node's diagnostics ({n0} -> {n1} processed)"
        )
    stages = {}
    for k in CORE_STAGES:
        if f"{k}_ms" in after:
            total = float(after[f"{k}_ms"]) * n1 - float(before.get(f"{k}_ms", "0")) * n0
            stages[k] = total / (n1 - n0)
    stages["core"] = sum(stages.values())
    return stages


def peak_rss_mb(pid: int | None = None) -> float | None:
    """Peak resident set size (``VmHWM``) of process ``pid`` (default: this one) so far, MiB;
    None when it cannot be read (not Linux, or the process is gone)."""
    try:
        status = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


def _ros_latency(session: DemoSession, rgb: np.ndarray, graph: NodeGraph) -> float:
    """Seconds from publishing ``rgb`` to receiving its SceneGraph (resends count against it)."""
    t0 = time.monotonic()
    header = session.publish_until_received(rgb, graph)
    t_recv, _ = session.wait_for("graphs", header.stamp, graph, 600.0)
    return t_recv - t0


def _burst(
    session: DemoSession, photos: list[np.ndarray], seconds: float, graph: NodeGraph
) -> dict:
    """Publish at 30 Hz for ``seconds``, then let the frame in flight finish.

    Throughput = scene graphs received / (last one's arrival - start); the node drops (and
    counts) what it cannot take, so no backlog forms.
    """
    before = session.receiver.count("graphs")
    dropped_before = session.counter("dropped")
    sent, t_start = 0, time.monotonic()
    while time.monotonic() < t_start + seconds:
        session.publish(photos[sent % len(photos)])
        sent += 1
        graph.check_alive()
        time.sleep(1 / 30)
    time.sleep(1.0)  # the node's counters arrive with its diagnostics (period 0.5 s)
    processing_before = (
        session.counter("received") - session.counter("dropped") - session.counter("rejected")
    )
    deadline = time.monotonic() + 600
    while session.counter("processed") < processing_before and time.monotonic() < deadline:
        graph.check_alive()  # the frame taken last is still being processed
        time.sleep(0.1)
    time.sleep(1.0)
    with session.receiver.lock:
        arrivals = [t for t, _ in session.receiver.data.graphs[before:]]
    elapsed = (max(arrivals) - t_start) if arrivals else seconds
    return {
        "published": sent,
        "graphs_received": len(arrivals),
        "graphs_per_s": len(arrivals) / elapsed,
        "seconds": elapsed,
        "dropped_by_node": session.counter("dropped") - dropped_before,
    }


def ros_share(ros: dict) -> float:
    """ROS layer's share of the end-to-end latency: 1 - (the node's core compute / end to end)."""
    return 1.0 - ros["node_stages_ms"]["core"] / ros["latency"]["mean_ms"]


def table(core: dict, ros: dict) -> str:
    c, r = core["latency"], ros["latency"]
    lines = [
        f"{'':<36}{'mean ms':>10}{'p50 ms':>10}{'p90 ms':>10}{'max ms':>10}{'n':>5}"
        f"{'peak RSS MB':>13}"
    ]
    for name, v, rss in (
        ("core, Pipeline.process in-process", c, core.get("peak_rss_mb")),
        ("ROS, publish -> SceneGraph received", r, ros.get("peak_rss_mb")),
    ):
        lines.append(
            f"{name:<36}{v['mean_ms']:>10.1f}{v['p50_ms']:>10.1f}{v['p90_ms']:>10.1f}{v['max_ms']:>10.1f}{v['n']:>5}"
            + (f"{rss:>13.0f}" if rss is not None else f"{'n/a':>13}")
        )
    lines.append(
        "peak RSS: core = this process (the Pipeline and the DDS receiver); ROS = the perception "
        "node's process, over every phase"
    )
    stages = ", ".join(f"{k} {v:.1f}" for k, v in ros["node_stages_ms"].items())
    lines.append(f"core stages inside the node (mean ms): {stages}")
    lines.append(
        f"ROS layer share of end-to-end latency: {100 * ros_share(ros):.1f} % (target <= 10 %): image "
        f"conversion, DDS both ways, message building"
    )
    if "throughput" in ros:
        t = ros["throughput"]
        lines.append(
            f"throughput at 30 Hz input: {t['graphs_per_s']:.3f} graphs/s "
            f"({t['graphs_received']} of {t['published']} frames in {t['seconds']:.0f} s; "
            f"node dropped {t['dropped_by_node']}, no backlog)"
        )
    if "vocabulary_load" in ros:
        lines.append(bench_vocabulary_load.line(ros["vocabulary_load"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from perception_nodes.nodes.image_folder_publisher import load_image

    args = parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov = launch_overrides(
        [CAMERA],
        backend=args.backend,
        model=args.model,
        device=args.device,
        precision=args.precision,
    )
    if (
        args.quick
    ):  # without real SAM weights the node applies core/weights/generated_policy.py (as the demo)
        ov["perception_node"].update(QUICK_OVERRIDES)
    if args.points_per_side:
        ov["perception_node"]["amg.points_per_side"] = args.points_per_side
    ov["perception_node"]["diagnostics_period"] = 0.5
    ov["perception_node"]["publish_label_image"] = True
    params = write_params_file(ov, base=Path(args.config_file), folder=out.parent)
    photos = [load_image(s, args.max_side) for s in args.images]
    try:
        print(
            "pn-bench-e2e: core pipeline in this process and the perception node over DDS, "
            "frame by frame ...",
            flush=True,
        )
        core, ros = bench_side_by_side(
            params,
            photos,
            args.repeats,
            args.burst_seconds,
            out.parent / "e2e_logs",
            (args.vocabulary_callers, args.vocabulary_seconds),
        )
    except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
        print(f"pn-bench-e2e: {exc}", file=sys.stderr)
        return 1
    finally:
        params.unlink(missing_ok=True)

    result = {
        "core": core,
        "ros": ros,
        "ros_share": ros_share(ros),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "hardware": hardware_info(args.device),
    }
    print(table(core, ros))
    if not core["meaningful"]:
        print(
            f"note: {GENERATED_WEIGHTS} for {', '.join(core['untrained'])}: timings are real, output is not"
        )
    out.write_text(json.dumps(result, indent=1))
    print(f"pn-bench-e2e: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
