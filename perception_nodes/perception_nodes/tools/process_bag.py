"""pn-process-bag: rosbag2 recordings in, scene graphs (MCAP) and training data out.

    pn-process-bag INPUT [INPUT ...] --output DIR [--params FILE] [--set NAME=VALUE ...]

INPUT: a rosbag2 recording (directory with metadata.yaml, .mcap or .db3 file), a ROS 1 .bag, a
folder of recordings, or a glob. ``--params`` is the perception node's own parameter file (the
one ``ros2 launch perception_nodes scene_graph.launch.py config_file:=`` takes); ``--set``
overrides single parameters (``--set sam.model=vit_b``). Per recording, ``DIR/<name>/`` holds
``bag/`` (MCAP: the node's topics, stamped like the input frames), ``instances.json`` (COCO),
``psg.json`` (OpenPSG), ``images/``, ``panoptic/`` and ``summary.json``; see
:mod:`perception_nodes.bags.output`. Ctrl-C (or SIGTERM) stops after the frame in flight and
leaves a valid output; ``--resume`` continues it. On a CPU the models run in ``--workers``
processes (one torch thread each), frames in parallel, while this process tracks and writes in
frame order (the same outputs as frame after frame); these processes keep freed memory for the
next frame (``--malloc throughput``, glibc: less CPU per frame, more memory). ``--ray [ADDRESS]`` processes the recordings
on Ray workers (a local Ray without ADDRESS).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import yaml

from perception_nodes.bags.frames import BagError, Window, open_recording
from perception_nodes.bags.malloc import DEFAULT_MODE, MODES, tune
from perception_nodes.bags.output import OutputError, check_writable
from perception_nodes.bags.runner import (
    JobOptions,
    RecordingRun,
    Summary,
    recording_name,
    select_cameras,
    set_threads,
)
from perception_nodes.bags.settings import BagSettings, SettingsError, load_settings
from perception_nodes.bags.topics import TopicError
from perception_nodes.core.pipeline_factory import PipelineError

logger = logging.getLogger("pn-process-bag")
RECORDING_SUFFIXES = (".mcap", ".db3", ".bag")
EXIT_REFUSED, EXIT_INTERRUPTED = 2, 130
MAX_AUTO_WORKERS = 4  # each worker holds the models: memory grows with the count


def default_workers(settings: BagSettings) -> int:
    """Local model processes when ``--workers`` is not given: one per CPU core (at most
    :data:`MAX_AUTO_WORKERS`); none on CUDA (the GPU does the models' work in this process)."""
    if str(settings.pipeline.sam_device).startswith("cuda"):
        return 0
    return min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pn-process-bag", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="recordings, folders or globs")
    p.add_argument("--output", "-o", required=True, type=Path, help="output folder")
    p.add_argument("--params", type=Path, help="the perception node's parameter YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override one node parameter (value in YAML syntax)")  # fmt: skip
    t = p.add_argument_group("topics (default: every camera namespace with <ns>/<image_topic>)")
    t.add_argument("--cameras", nargs="+", default=[], metavar="NS", help="camera namespaces")
    t.add_argument("--image-topic", help="full colour topic of one camera (Image/CompressedImage)")
    t.add_argument("--depth-topic", help="with --image-topic: its registered depth topic")
    t.add_argument("--info-topic", help="with --image-topic: its CameraInfo topic")
    f = p.add_argument_group("frames")
    f.add_argument("--start", type=float, help="seconds after the recording's start")
    f.add_argument("--end", type=float, help="seconds after the recording's start")
    f.add_argument("--every", type=int, default=1, help="every N-th frame of each camera")
    f.add_argument("--batch", type=int, help="frames per SAM encoder batch (default: 1 with "
                   "--workers: one-thread encoder batches cost more per frame on a CPU; else 4)")  # fmt: skip
    f.add_argument("--part-frames", type=int, default=50,
                   help="frames per MCAP part (at most this many are redone after a kill -9)")  # fmt: skip
    o = p.add_argument_group("output")
    o.add_argument("--copy-inputs", action="store_true", help="copy the camera topics too")
    o.add_argument("--no-overlay", action="store_true", help="no <out>/overlay/compressed")
    o.add_argument("--no-markers", action="store_true", help="no <out>/markers")
    o.add_argument("--resume", action="store_true", help="continue an interrupted output")
    o.add_argument("--overwrite", action="store_true", help="replace an existing output")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--threads", type=int,
                   help="CPU threads per model process: torch's; in local workers also "
                        "onnxruntime's and OpenCV's (default: 1 per local worker; torch's "
                        "with --workers 0; Ray: --cpus-per-worker)")  # fmt: skip
    r = p.add_argument_group("processes")
    r.add_argument("--workers", type=int,
                   help="processes running the models: here, frames in parallel (default: the "
                        f"CPU cores, at most {MAX_AUTO_WORKERS}; 0 with sam.device cuda; 0 = in "
                        "this process); with --ray, Ray workers (default: GPUs, else CPUs)")  # fmt: skip
    r.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="process the recordings on Ray (no ADDRESS: start a local Ray)")  # fmt: skip
    r.add_argument("--cpus-per-worker", type=float, default=1.0)
    r.add_argument("--malloc", choices=MODES, default=DEFAULT_MODE,
                   help="glibc malloc of the processes running the models (this one, the "
                        "workers, Ray's): 'throughput' keeps freed memory for the next frame "
                        "(no fresh pages for each frame's large tensors: less CPU per frame; "
                        "the memory stays at its peak); 'default': glibc's settings or your "
                        "MALLOC_* variables (default: %(default)s)")  # fmt: skip
    return p


def expand_inputs(items: list[str]) -> list[Path]:
    """Recordings named by ``items``: paths, globs, and folders holding recordings."""
    paths: list[Path] = []
    for item in items:
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            raise BagError(f"{item}: no file matches")
        for m in map(Path, matches):
            if m.is_dir() and not (m / "metadata.yaml").exists():
                inner = sorted(c for c in m.iterdir() if (c / "metadata.yaml").exists()
                               or c.suffix in RECORDING_SUFFIXES)  # fmt: skip
                if not inner:
                    raise BagError(
                        f"{m} is not a recording (no metadata.yaml) and holds none "
                        f"(rosbag2 folders or {', '.join(RECORDING_SUFFIXES)} files)"
                    )
                paths += inner
            else:
                paths.append(m)
    names = [recording_name(p) for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BagError(f"several inputs share the output name(s) {twice}; process them apart")
    return paths


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"--set {item!r}: expected NAME=VALUE")
        out[name.strip()] = yaml.safe_load(value)
    return out


def options_of(args: argparse.Namespace, settings: BagSettings) -> JobOptions:
    if args.every < 1 or (args.batch is not None and args.batch < 1) or args.part_frames < 1:
        raise SettingsError("--every, --batch and --part-frames must be at least 1")
    if args.workers is not None and args.workers < 0:
        raise SettingsError("--workers must be at least 0")
    local = default_workers(settings) if args.workers is None else args.workers
    local = 0 if args.ray is not None else local
    batch = args.batch or (1 if local else 4)
    if (args.depth_topic or args.info_topic) and not args.image_topic:
        raise SettingsError(
            "--depth-topic/--info-topic name one camera's topics: add --image-topic"
        )
    return JobOptions(
        cameras=args.cameras, image_topic=args.image_topic, depth_topic=args.depth_topic,
        info_topic=args.info_topic, window=Window(args.start, args.end, args.every),
        batch=batch, part_frames=args.part_frames, copy_inputs=args.copy_inputs,
        overlay=not args.no_overlay, markers=not args.no_markers, resume=args.resume,
        overwrite=args.overwrite, progress=not args.no_progress, threads=args.threads,
        workers=local, malloc=args.malloc,
    )  # fmt: skip


def precheck(inputs: list[Path], out_dir: Path, settings: BagSettings, opts: JobOptions) -> None:
    """Every refusal before the models load: not a recording, no/unknown topics, output."""
    check_writable(out_dir)
    for path in inputs:
        reader = open_recording(path)
        try:
            if opts.copy_inputs and not reader.is2:
                raise BagError(
                    f"{path}: --copy-inputs needs a rosbag2 recording (ROS 1 messages differ from "
                    "ROS 2's; convert it first: rosbags-convert --src FILE.bag --dst FOLDER)"
                )
            types = {t: info.msgtype for t, info in reader.topics.items()}
            select_cameras(types, settings, opts)
        except TopicError as exc:
            raise TopicError(f"{path}: {exc}") from exc
        finally:
            reader.close()
        out = out_dir / recording_name(path)
        if out.exists() and not (opts.resume or opts.overwrite):
            raise OutputError(
                f"output {out} exists already: --resume continues it, --overwrite replaces it"
            )


def _install_stop(stop: threading.Event, at_once: bool) -> None:
    """SIGINT/SIGTERM: stop after the frame in flight (``at_once``, with Ray: stop now; Ray's
    workers are ended, their committed parts stay, ``--resume`` continues). A second: at once."""

    def on_signal(signum, frame) -> None:
        if stop.is_set() or at_once:
            stop.set()
            raise KeyboardInterrupt
        stop.set()
        print(
            f"\n{signal.Signals(signum).name}: stopping after the frame in flight; the output "
            "stays valid, --resume continues it (again: stop at once)",
            file=sys.stderr,
        )

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def load_engine(settings: BagSettings, opts: JobOptions, warm_up=None):
    """The models: ``opts.workers`` worker processes (a FramePool), or a Pipeline here (0);
    this process's message writing loaded too (no one-time cost in the first frame's time).
    This process and the workers get ``opts.malloc``'s allocator (:mod:`.bags.malloc`)."""
    from perception_nodes.bags.messages import load_type_support

    tune(opts.malloc)
    load_type_support()
    if opts.workers > 0:
        import cv2

        from perception_nodes.bags.workers import FramePool

        cv2.setNumThreads(1)  # this process reads, tracks and writes: the cores are the workers'
        return FramePool(settings.pipeline, opts.workers, opts.threads or 1, warm_up, opts.malloc)
    from perception_nodes.core.pipeline import Pipeline

    set_threads(opts.threads)
    pipeline = Pipeline.load(settings.pipeline)
    if warm_up is not None:
        pipeline.process(warm_up)
    return pipeline


def run_local(inputs, out_dir, settings, opts, stop, engine=None) -> list[Summary]:
    """Every recording of ``inputs`` in turn (``engine``: from :func:`load_engine`, else here)."""
    from perception_nodes.bags.output import output_typestore

    own = engine is None
    engine = load_engine(settings, opts) if own else engine
    typestore = output_typestore()
    summaries = []
    try:
        for path in inputs:
            if stop.is_set():
                break
            run = RecordingRun(engine, settings, opts, path, out_dir / recording_name(path),
                               stop, typestore)  # fmt: skip
            summaries.append(run.run())
    finally:
        if own and hasattr(engine, "close"):
            engine.close()
    return summaries


def print_table(summaries: list[Summary]) -> None:
    """One row per recording (fits 80 columns: ``resumed`` = frames done by earlier runs)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pn-process-bag")
    columns = ("recording", "frames", "done", "failed", "resumed", "regions", "no 3D", "s",
               "frames/s", "state")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col == "recording" else "right")
    for s in summaries:
        table.add_row(
            Path(s.input).name, str(s.frames_total), str(s.processed), str(s.failed),
            str(s.done_before), str(s.regions), str(s.no_3d), f"{s.seconds:.1f}",
            f"{s.frames_per_s:.2f}", "stopped" if s.interrupted else "complete",
        )  # fmt: skip
    Console(stderr=True, width=max(100, Console(stderr=True).width)).print(table)


def write_summaries(out_dir: Path, summaries: list[Summary]) -> None:
    for s in summaries:
        Path(s.output, "summary.json").write_text(json.dumps(s.as_dict(), indent=1))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.params, parse_overrides(args.overrides))
        opts = options_of(args, settings)
        inputs = expand_inputs(args.inputs)
        precheck(inputs, args.output, settings, opts)
    except (SettingsError, BagError, TopicError, OutputError) as exc:
        print(f"pn-process-bag: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    stop = threading.Event()
    _install_stop(stop, at_once=args.ray is not None)
    try:
        if args.ray is not None:
            from perception_nodes.bags.ray_runner import RayMissing, run_on_ray

            try:
                summaries = run_on_ray(inputs, args.output, settings, opts, args.ray or None,
                                       args.workers, args.cpus_per_worker)  # fmt: skip
            except RayMissing as exc:
                print(f"pn-process-bag: {exc}", file=sys.stderr)
                return EXIT_REFUSED
        else:
            summaries = run_local(inputs, args.output, settings, opts, stop)
    except (SettingsError, BagError, TopicError, OutputError, PipelineError) as exc:
        print(f"pn-process-bag: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("stopped: the committed parts are valid; --resume continues", file=sys.stderr)
        return EXIT_INTERRUPTED
    write_summaries(args.output, summaries)
    print_table(summaries)
    if stop.is_set():
        print("interrupted: run again with --resume to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
