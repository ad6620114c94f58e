"""pn-bench-bag: pn-process-bag's frames/s against the live node, and Ray against one process.

Side by side in one command, on the same frames and the same parameter file:
1. ``offline``: :class:`~perception_nodes.bags.runner.RecordingRun` over a recording of
   ``--frames`` photos (written here with rosbags: ``/camera/image_raw`` rgb8 at 10 Hz), models
   loaded and warmed up first, as ``pn-process-bag`` runs by default: ``--workers`` model
   processes (default: one per core) of ``--threads`` compute threads each (torch,
   onnxruntime, OpenCV), tracking and writing in this process; then (last, after the live node) the models in this process, torch's
   default threads, ``--batch-inprocess`` frames per SAM encoder batch (``--workers 0``).
2. ``live``: the perception node in its own process (as launched: torch's and onnxruntime's
   default threads, i.e. every core) fed the same frames over DDS by this process, each frame
   sent once the previous one's SceneGraph came back (the node's best rate without drops; a
   faster feed only makes it drop frames). Target: offline >= 1.5x live frames/s.
   Each side's CPU seconds per frame (every process of it, from /proc), minor page faults per
   frame, peak RSS and the load average before and after it are recorded: on a shared machine
   read the ratios with them. ``--malloc`` is the offline sides' allocator (pn-process-bag's
   option, default ``throughput``); the live node runs as launched (glibc's defaults) unless
   ``--live-malloc throughput`` starts it with the same settings (what the node would gain).
3. ``ray``: ``--ray-recordings`` recordings processed by one process (``pn-process-bag``'s
   local path, torch on every core) and by a local Ray with two workers (one core each), wall
   time from the command's start to its end for both (model loading and Ray's start included).
   Ray overhead = Ray wall / one-process wall - 1; target <= 15 %.
Prints a table and writes JSON (default ``outputs/bench/bag.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from perception_nodes.bags.malloc import (
    DEFAULT_MODE,
    MODES,
    environment,
    minor_faults,
    peak_rss_mb,
    reset_peak_rss,
)
from perception_nodes.core.config import SAM_BACKENDS, SAM_MODEL_NAMES, default_setting
from perception_nodes.launch_overrides import launch_overrides
from perception_nodes.tools.bench_common import hardware_info
from perception_nodes.tools.demo import QUICK_OVERRIDES
from perception_nodes.tools.demo_session import CAMERA
from perception_nodes.tools.graph_runner import DEFAULT_CONFIG, write_params_file

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pn-bench-bag", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--frames", type=int, default=8, help="frames of the offline/live recording")
    p.add_argument("--max-side", type=int, default=320)
    p.add_argument("--model", default=default_setting("sam_model"), choices=SAM_MODEL_NAMES)
    p.add_argument("--backend", default=default_setting("sam_backend"), choices=SAM_BACKENDS)
    p.add_argument("--device", default=default_setting("sam_device"))
    p.add_argument("--points-per-side", type=int, default=None)
    p.add_argument("--batch", type=int, default=1, help="frames per SAM encoder batch (workers)")
    p.add_argument("--workers", type=int, default=None, help="offline model processes "
                   "(default: pn-process-bag's: one per core, at most 4)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch threads per offline worker")
    p.add_argument("--batch-inprocess", type=int, default=4,
                   help="frames per SAM encoder batch of the in-process offline run")  # fmt: skip
    p.add_argument("--ray-recordings", type=int, default=4)
    p.add_argument("--ray-frames", type=int, default=3, help="frames per Ray recording")
    p.add_argument("--malloc", choices=MODES, default=DEFAULT_MODE,
                   help="allocator of the offline sides (pn-process-bag --malloc)")  # fmt: skip
    p.add_argument("--live-malloc", choices=MODES, default="default",
                   help="allocator of the live node (default: as launched)")  # fmt: skip
    p.add_argument("--skip-live", action="store_true")
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--config-file", default=str(DEFAULT_CONFIG))
    p.add_argument("--quick", action="store_true", help="tiny test models (plumbing dominates)")
    p.add_argument("--out", default="outputs/bench/bag.json")
    return p.parse_args(argv)


def write_recording(path: Path, photos: list[np.ndarray], n: int, start_ns: int = 10**18) -> None:
    """``n`` frames cycling over ``photos`` on ``/camera/image_raw`` (rgb8, 10 Hz)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection(f"{CAMERA}/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        for i in range(n):
            rgb = np.ascontiguousarray(photos[i % len(photos)])
            stamp = start_ns + i * 100_000_000
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
                frame_id="camera",
            )
            msg = T["sensor_msgs/msg/Image"](
                header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                is_bigendian=0, step=rgb.shape[1] * 3, data=rgb.reshape(-1),
            )  # fmt: skip
            w.write(conn, stamp, ts.serialize_cdr(msg, conn.msgtype))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes so far (``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


def memory(pids: list[int], faults0: list[int], frames: int) -> dict:
    """Minor page faults per frame since ``faults0`` and peak RSS (MB) of processes."""
    faults = sum(minor_faults(p) - f for p, f in zip(pids, faults0))
    return {"faults_per_frame": faults / max(1, frames),
            "peak_rss_mb": [round(peak_rss_mb(p), 1) for p in pids]}  # fmt: skip


def offline(settings, recording: Path, work: Path, photo: np.ndarray, workers: int,
            threads: int | None, batch: int, malloc: str) -> dict:  # fmt: skip
    """frames/s of a RecordingRun (models loaded and warmed up before the clock starts)."""
    import torch

    from perception_nodes.bags.output import output_typestore
    from perception_nodes.bags.runner import JobOptions, RecordingRun
    from perception_nodes.tools.process_bag import load_engine

    opts = JobOptions(batch=batch, progress=False, workers=workers, threads=threads,
                      malloc=malloc)  # fmt: skip
    reset_peak_rss()  # this process's peak from here (the in-process side runs after others)
    engine = load_engine(settings, opts, warm_up=photo)  # warm-up, as the live side gets
    pids = [os.getpid(), *getattr(engine, "pids", [])]
    out = work / f"offline_workers{workers}_batch{batch}"
    run = RecordingRun(engine, settings, opts, recording, out, threading.Event(),
                       output_typestore())  # fmt: skip
    load0, cpu0 = load_average(), [cpu_seconds([p]) for p in pids]
    faults0 = [minor_faults(p) for p in pids]
    try:
        s = run.run()
        cpu = [cpu_seconds([p]) - c for p, c in zip(pids, cpu0)]
        mem = memory(pids, faults0, s.processed)
    finally:
        if workers:
            engine.close()
    used = (f"{workers} worker processes x {threads} compute thread(s) (torch, onnxruntime "
            "intra-op, OpenCV) + this process (reading, tracking, writing)" if workers else
            f"this process, {torch.get_num_threads()} torch threads")  # fmt: skip
    n = max(1, s.processed)
    return {"frames": s.processed, "failed": s.failed, "seconds": s.seconds,
            "frames_per_s": s.frames_per_s, "batch": batch, "workers": workers,
            "cpu_s_per_frame": sum(cpu) / n, "cpu_s_per_frame_command": cpu[0] / n,
            "load_before": load0, "load_after": load_average(), "malloc": malloc,
            "used": used, **mem}  # fmt: skip


def live(params: Path, photos: list[np.ndarray], n: int, log_dir: Path, malloc: str) -> dict:
    """frames/s of the node fed frame after frame over DDS (closed loop: no drops); the node
    started with ``malloc``'s environment (:func:`~perception_nodes.bags.malloc.environment`)."""
    from perception_nodes.tools.bench_e2e import _ros_latency
    from perception_nodes.tools.demo_session import DemoSession
    from perception_nodes.tools.graph_runner import NodeGraph

    graph = NodeGraph(log_dir=log_dir)
    session = None
    try:
        with environment(malloc):
            graph.start("perception_node", params)
        session = DemoSession()
        session.wait_until_ready(graph, 900.0, subscribers=1)
        _ros_latency(session, photos[0], graph)  # warm-up
        pids = [p.process.pid for p in graph.processes]
        load0, cpu0 = load_average(), cpu_seconds(pids)
        faults0 = [minor_faults(p) for p in pids]
        latencies = [_ros_latency(session, photos[i % len(photos)], graph) for i in range(n)]
        cpu = cpu_seconds(pids) - cpu0
        total = float(sum(latencies))
        return {"frames": n, "seconds": total, "frames_per_s": n / total,
                "mean_latency_ms": 1000 * total / n, "cpu_s_per_frame": cpu / n,
                "load_before": load0, "load_after": load_average(), "malloc": malloc,
                **memory(pids, faults0, n),
                "used": f"1 node process, torch's and onnxruntime's default threads "
                        f"({os.cpu_count()} cores)"}  # fmt: skip
    finally:
        if session is not None:
            session.close()
        graph.stop()


def ray_vs_one(settings, recordings: list[Path], work: Path, malloc: str) -> dict:
    """Wall time of one process and of a local two-worker Ray over the same recordings."""
    from perception_nodes.bags.ray_runner import run_on_ray
    from perception_nodes.bags.runner import JobOptions
    from perception_nodes.tools.process_bag import run_local

    out = {}
    opts = JobOptions(progress=False, malloc=malloc)
    t0 = time.perf_counter()
    one = run_local(recordings, work / "one", settings, opts, threading.Event())
    out["one_process"] = {"seconds": time.perf_counter() - t0,
                          "frames": sum(s.processed for s in one)}  # fmt: skip
    t0 = time.perf_counter()
    two = run_on_ray(recordings, work / "ray", settings, opts, None, workers=2)
    out["ray_two_workers"] = {"seconds": time.perf_counter() - t0,
                              "frames": sum(s.processed for s in two)}  # fmt: skip
    out["overhead"] = out["ray_two_workers"]["seconds"] / out["one_process"]["seconds"] - 1.0
    return out


def table(result: dict) -> str:
    rows = [f"{'':<18}{'malloc':>11}{'frames':>7}{'seconds':>8}{'frames/s':>9}{'CPU s/f':>8}"
            f"{'faults/f':>9}{'load':>10}"]  # fmt: skip
    for key in ("offline_workers", "live", "offline_inprocess"):
        r = result.get(key)
        if r:
            load = f"{r['load_before']:.1f}-{r['load_after']:.1f}"
            rows.append(f"{key:<18}{r['malloc']:>11}{r['frames']:>7}{r['seconds']:>8.1f}"
                        f"{r['frames_per_s']:>9.3f}{r['cpu_s_per_frame']:>8.2f}"
                        f"{r['faults_per_frame']:>9.0f}{load:>10}")  # fmt: skip
    for key in ("offline_workers", "live", "offline_inprocess"):
        if key in result:
            rss = " + ".join(f"{m:.0f}" for m in result[key]["peak_rss_mb"])
            rows.append(f"  {key}: {result[key]['used']}; peak RSS MB: {rss}")
    if "offline_vs_live" in result:
        rows.append(f"offline (workers) / live: {result['offline_vs_live']:.2f}x (target >= 1.5x); "
                    f"in-process / live: {result['inprocess_vs_live']:.2f}x")  # fmt: skip
        cpu = result["offline_workers"]["cpu_s_per_frame"], result["live"]["cpu_s_per_frame"]
        rows.append(f"CPU s/frame offline (workers) / live: {cpu[0]:.2f} / {cpu[1]:.2f} = "
                    f"{cpu[0] / cpu[1]:.2f} (frames/s on a loaded machine follow each side's "
                    "share of the cores: read them with the load column)")  # fmt: skip
    ray = result.get("ray")
    if ray:
        for key in ("one_process", "ray_two_workers"):
            r = ray[key]
            rows.append(f"{key:<44}{r['frames']:>8}{r['seconds']:>10.1f}"
                        f"{r['frames'] / r['seconds']:>10.3f}")  # fmt: skip
        rows.append(f"Ray overhead: {100 * ray['overhead']:+.1f} % (target <= 15 %)")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from perception_nodes.bags.settings import load_settings
    from perception_nodes.nodes.image_folder_publisher import load_image
    from perception_nodes.tools.process_bag import default_workers

    args = parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov = launch_overrides([CAMERA], backend=args.backend, model=args.model, device=args.device)
    if args.quick:
        ov["perception_node"].update(QUICK_OVERRIDES)
    if args.points_per_side:
        ov["perception_node"]["amg.points_per_side"] = args.points_per_side
    ov["perception_node"]["diagnostics_period"] = 0.5
    params = write_params_file(ov, base=Path(args.config_file), folder=out.parent)
    settings = load_settings(params)
    photos = [load_image(s, args.max_side) for s in PHOTOS]
    work = Path(tempfile.mkdtemp(prefix="pn_bench_bag_"))
    result: dict = {"hardware": hardware_info(args.device), "settings": vars(args)}
    try:
        recording = work / "frames"
        write_recording(recording, photos, args.frames)
        workers = default_workers(settings) if args.workers is None else args.workers
        print(f"pn-bench-bag: offline, {workers} workers ...", flush=True)
        result["offline_workers"] = offline(settings, recording, work, photos[0], workers,
                                            args.threads, args.batch, args.malloc)  # fmt: skip
        if not args.skip_live:
            print("pn-bench-bag: the live node over DDS ...", flush=True)
            result["live"] = live(params, photos, args.frames, out.parent / "bag_logs",
                                  args.live_malloc)  # fmt: skip
        print("pn-bench-bag: offline, models in this process ...", flush=True)
        result["offline_inprocess"] = offline(settings, recording, work, photos[0], 0, None,
                                              args.batch_inprocess, args.malloc)  # fmt: skip
        if "live" in result:
            fps = result["live"]["frames_per_s"]
            result["offline_vs_live"] = result["offline_workers"]["frames_per_s"] / fps
            result["inprocess_vs_live"] = result["offline_inprocess"]["frames_per_s"] / fps
        if not args.skip_ray:
            print("pn-bench-bag: one process vs two Ray workers ...", flush=True)
            recs = []
            for i in range(args.ray_recordings):
                recs.append(work / f"rec{i}")
                write_recording(recs[-1], photos[i % len(photos) :] + photos, args.ray_frames)
            result["ray"] = ray_vs_one(settings, recs, work, args.malloc)
    except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
        print(f"pn-bench-bag: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(result))
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
