"""pn-bench-e2e: end-to-end latency and throughput over DDS, and the ROS layer's share.

Side by side in one command, on the same photos and the same parameter file:
1. ``core``: :class:`Pipeline.process` called directly in this process (no ROS at all);
2. ``ros``: the perception node in its own process (as launched), fed over DDS by this
   process, which receives each frame's ``SceneGraph``; latency = publish -> received.
   Frames are sent one at a time (latency), then as fast as possible for ``--burst-seconds``
   (throughput; the node drops what it cannot take, so there is no backlog).
The ROS layer's share = (ros latency - core latency) / ros latency: conversion, DDS transport
of the image and the outputs, message building. Target <= 10 %.
Prints a table and writes JSON (default ``outputs/bench/e2e.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from perception_nodes.tools.demo import CAMERA, GENERATED_SAM_OVERRIDES, QUICK_OVERRIDES, DemoSession, sam_weights_available
from perception_nodes.tools.graph_runner import DEFAULT_CONFIG, NodeGraph, launch_overrides, write_params_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pn-bench-e2e", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", nargs="+", default=["astronaut", "coffee", "chelsea", "rocket"])
    p.add_argument("--max-side", type=int, default=640)
    p.add_argument("--model", default="vit_t")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "tensorrt"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--points-per-side", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2, help="passes over the photos for latency (default 2)")
    p.add_argument("--burst-seconds", type=float, default=20.0, help="throughput phase length (0 = skip)")
    p.add_argument("--config-file", default=str(DEFAULT_CONFIG))
    p.add_argument("--quick", action="store_true", help="tiny test models (plumbing cost dominates)")
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
    return {"mean_ms": float(a.mean()), "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "max_ms": float(a.max()), "n": int(a.size)}


def bench_core(params_file: Path, photos: list[np.ndarray], repeats: int) -> dict:
    from perception_nodes.core.pipeline import Pipeline

    pipeline = Pipeline.load(pipeline_config(params_file))
    pipeline.process(photos[0])  # warm-up (allocations, lazy init)
    times = []
    for _ in range(repeats):
        for rgb in photos:
            t0 = time.perf_counter()
            pipeline.process(rgb)
            times.append(time.perf_counter() - t0)
    return {"latency": percentiles(times), "meaningful": pipeline.meaningful, "untrained": pipeline.untrained_parts}


def bench_ros(params_file: Path, photos: list[np.ndarray], repeats: int, burst_s: float, log_dir: Path) -> dict:
    graph = NodeGraph(log_dir=log_dir)
    session = None
    try:
        graph.start("perception_node", params_file)
        session = DemoSession()
        session.wait_until_ready(graph, 900.0, subscribers=1)
        header = session.publish_until_received(photos[0], graph)  # warm-up
        session.wait_for("graphs", header.stamp, graph, 600.0)
        latencies = []
        for _ in range(repeats):
            for rgb in photos:
                t0 = time.monotonic()
                header = session.publish_until_received(rgb, graph)
                t_recv, _ = session.wait_for("graphs", header.stamp, graph, 600.0)
                latencies.append(t_recv - t0)
        result = {"latency": percentiles(latencies)}
        if burst_s > 0:
            result["throughput"] = _burst(session, photos, burst_s, graph)
        result["diagnostics"] = session.receiver.diagnostics_values()
        return result
    finally:
        if session is not None:
            session.close()
        graph.stop()


def _burst(session: DemoSession, photos: list[np.ndarray], seconds: float, graph: NodeGraph) -> dict:
    """Publish at 30 Hz for ``seconds``; graphs received per second, drops reported by the node."""
    before = session.receiver.count("graphs")
    sent, t_end = 0, time.monotonic() + seconds
    while time.monotonic() < t_end:
        session.publish(photos[sent % len(photos)])
        sent += 1
        graph.check_alive()
        time.sleep(1 / 30)
    time.sleep(1.0)
    received = session.receiver.count("graphs") - before
    values = session.receiver.diagnostics_values()
    return {"published": sent, "graphs_received": received, "graphs_per_s": received / seconds,
            "dropped_by_node": int(values.get(f"{CAMERA}.dropped", "0"))}


def table(core: dict, ros: dict) -> str:
    c, r = core["latency"], ros["latency"]
    share = (r["mean_ms"] - c["mean_ms"]) / r["mean_ms"]
    lines = [f"{'':<28}{'mean ms':>10}{'p50 ms':>10}{'p90 ms':>10}{'max ms':>10}{'n':>5}"]
    for name, v in (("core (Pipeline.process)", c), ("ROS (publish -> SceneGraph)", r)):
        lines.append(f"{name:<28}{v['mean_ms']:>10.1f}{v['p50_ms']:>10.1f}{v['p90_ms']:>10.1f}{v['max_ms']:>10.1f}{v['n']:>5}")
    lines.append(f"ROS layer share of end-to-end latency: {100 * share:.1f} % (target <= 10 %)")
    if "throughput" in ros:
        t = ros["throughput"]
        lines.append(f"throughput at 30 Hz input: {t['graphs_per_s']:.2f} graphs/s "
                     f"({t['graphs_received']} of {t['published']} frames; node dropped {t['dropped_by_node']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from perception_nodes.nodes.image_folder_publisher import load_image

    args = parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov = launch_overrides([CAMERA], backend=args.backend, model=args.model, device=args.device, precision=args.precision)
    if args.quick:
        ov["perception_node"].update(QUICK_OVERRIDES)
    elif not sam_weights_available(args.model, "", fetch=False):
        ov["perception_node"].update(GENERATED_SAM_OVERRIDES)  # same regions per frame as the demo shows
    if args.points_per_side:
        ov["perception_node"]["amg.points_per_side"] = args.points_per_side
    ov["perception_node"]["diagnostics_period"] = 0.5
    ov["perception_node"]["publish_label_image"] = True
    params = write_params_file(ov, base=Path(args.config_file), folder=out.parent)
    photos = [load_image(s, args.max_side) for s in args.images]
    try:
        print("pn-bench-e2e: core pipeline in this process ...", flush=True)
        core = bench_core(params, photos, args.repeats)
        print("pn-bench-e2e: perception node over DDS ...", flush=True)
        ros = bench_ros(params, photos, args.repeats, args.burst_seconds, out.parent / "e2e_logs")
    except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
        print(f"pn-bench-e2e: {exc}", file=sys.stderr)
        return 1
    finally:
        params.unlink(missing_ok=True)
    import torch

    share = (ros["latency"]["mean_ms"] - core["latency"]["mean_ms"]) / ros["latency"]["mean_ms"]
    result = {"core": core, "ros": ros, "ros_share": share,
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "hardware": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "device": args.device}}
    print(table(core, ros))
    if not core["meaningful"]:
        print(f"note: generated (untrained) weights for {', '.join(core['untrained'])}: timings are real, output is not")
    out.write_text(json.dumps(result, indent=1))
    print(f"pn-bench-e2e: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
