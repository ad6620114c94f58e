"""One recording end to end: read ahead, encode frames in batches, process, write, resume.

A reader thread deserializes, decodes and pairs frames (:func:`.frames.read_frames`) into a
bounded queue; up to ``batch`` frames at a time go through the SAM image encoder together
(:meth:`Pipeline.encode_together`), then each frame through the models. With a
:class:`~.workers.FramePool` (``--workers``) the batches' models run in worker processes, several
batches at once, while this thread does, in frame order, the tracking and scene graph
(:func:`~perception_nodes.core.pipeline.finish_frame`) and the writing; without one, each frame
goes through :meth:`Pipeline.process` here. Either way each stream has its own tracking, and
track ids continue after the highest one an interrupted run already wrote (never reused within
an output; the tracks themselves start anew at the resume point). A frame that fails is logged,
counted and journalled as failed; it never stops the run. ``stop`` (SIGINT/SIGTERM in the
command) ends the run after the frame in flight is abandoned; the part in progress is committed
so the output stays valid and ``--resume`` continues with the frames not done.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perception_nodes.bags import output
from perception_nodes.bags.frames import Frame, ReadAhead, Window, open_recording, read_frames
from perception_nodes.bags.messages import OUTPUT_TYPES, OutputSwitches, output_topic
from perception_nodes.bags.settings import BagSettings
from perception_nodes.bags.topics import CameraTopics, find_cameras, named_camera
from perception_nodes.bags.training_data import frame_record
from perception_nodes.core.pipeline import FrameWork, Pipeline, PipelineError, finish_frame
from perception_nodes.core.stream.cancel import FrameAbandoned
from perception_nodes.core.stream.stamps import ns_to_seconds
from perception_nodes.core.tracking import TrackingStage
from perception_nodes.core.tracking.ids import TrackIdSource

logger = logging.getLogger(__name__)

READ_AHEAD_BATCHES = 2  # decoded frames waiting = this many batches


@dataclass
class JobOptions:
    """What to read and write, besides the node's settings (the command's options)."""

    cameras: list[str] = field(default_factory=list)  # namespaces; empty = found automatically
    image_topic: str | None = None  # full names of one camera's topics instead
    depth_topic: str | None = None
    info_topic: str | None = None
    window: Window = field(default_factory=Window)
    batch: int = 4
    part_frames: int = 50
    copy_inputs: bool = False
    overlay: bool = True
    markers: bool = True
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    threads: int | None = None  # torch CPU threads of the process (None: torch's default)
    workers: int = 0  # model processes (pn-process-bag: FramePool); 0: models in this process
    malloc: str = "throughput"  # the model processes' allocator (.malloc); "default": as started


def set_threads(threads: int | None) -> None:
    """torch's CPU threads (the same count gives the same numbers in any process)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@dataclass
class Summary:
    """What a recording's run did (one row of the command's table)."""

    input: str
    output: str
    frames_total: int = 0  # frames of the window in the recording (this run and earlier ones)
    processed: int = 0  # this run
    failed: int = 0  # this run (logged)
    done_before: int = 0  # by earlier runs (resume)
    regions: int = 0
    no_3d: int = 0  # frames of a camera with depth that got no depth/K
    seconds: float = 0.0
    interrupted: bool = False
    cameras: list[str] = field(default_factory=list)

    @property
    def frames_per_s(self) -> float:
        return (self.processed + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "frames_per_s": self.frames_per_s}


def recording_name(path: Path) -> str:
    """Output folder name of a recording: its directory or file name without the suffix."""
    path = Path(path)
    return path.name if path.is_dir() else path.stem


def select_cameras(types: dict[str, str], settings: BagSettings, opts: JobOptions):
    if opts.image_topic:
        return [named_camera(types, opts.image_topic, opts.depth_topic, opts.info_topic)]
    return find_cameras(
        types,
        image_topic=str(settings.get("image_topic")),
        depth_topic=str(settings.get("depth_topic")),
        info_topic=str(settings.get("camera_info_topic")),
        cameras=opts.cameras,
        prefer_compressed=bool(settings.get("use_compressed")),
        use_depth=bool(settings.get("use_depth")),
    )


def switches_of(settings: BagSettings, opts: JobOptions) -> OutputSwitches:
    return OutputSwitches(
        regions=bool(settings.get("publish_regions")),
        scene_graph=bool(settings.get("publish_scene_graph")),
        label_image=bool(settings.get("publish_label_image")),
        embeddings=bool(settings.get("publish_embeddings")),
        overlay=opts.overlay,
        markers=opts.markers,
    )


def run_info(path: Path, settings: BagSettings, opts: JobOptions, cams: list[CameraTopics]):
    """What a resumed run must share with the interrupted one (``run.json``)."""
    return {
        "input": str(Path(path).resolve()),
        "pipeline": asdict(settings.pipeline),
        "node": {k: v for k, v in settings.node.items() if k != "diagnostics_period"},
        "cameras": [asdict(c) for c in cams],
        "window": asdict(opts.window),
        "copy_inputs": opts.copy_inputs,
        "outputs": switches_of(settings, opts).names(),
    }


class IdsAfter(TrackIdSource):
    """Track ids ``last + 1, last + 2, ...``: a resumed run's ids after those already written."""

    def __init__(self, last: int) -> None:
        super().__init__()
        self.last = int(last)

    def next(self) -> int:
        return self.last + super().next()


class RecordingRun:
    """Processing of one recording into ``out`` (see module docstring)."""

    def __init__(self, pipeline, settings: BagSettings, opts: JobOptions,
                 path: Path, out: Path, stop: threading.Event, typestore) -> None:  # fmt: skip
        """``pipeline``: a loaded :class:`Pipeline` or a :class:`~.workers.FramePool`."""
        self.pool = None if isinstance(pipeline, Pipeline) else pipeline
        self.pipeline = pipeline if self.pool is None else None
        self.settings, self.opts = settings, opts
        self.tracking = TrackingStage()
        self.path, self.out, self.stop, self.typestore = Path(path), Path(out), stop, typestore
        self.switches = switches_of(settings, opts)
        self.summary = Summary(str(path), str(out))
        self.last_track_id = 0  # the highest track id in the output before this run
        self.part: output.PartWriter | None = None

    # ------------------------------------------------------------------ frames
    def _write_raw(self, frame: Frame, reader) -> None:
        types = {c.topic: c.msgtype for c in reader.connections}
        for raw in frame.raw:
            self.part.write(raw.topic, types[raw.topic], raw.log_ns, raw.data, reader.typestore)

    def _process(self, frame: Frame, work: FrameWork | None) -> dict:
        """Run the pipeline on a decoded frame (or finish a worker's ``work`` of it) and write
        its messages; its journal record."""
        stamp = ns_to_seconds(frame.stamp_ns)
        if work is None:
            result, graph = self.pipeline.process(
                frame.rgb, frame.depth, frame.k, stamp=stamp, stamp_ns=frame.stamp_ns,
                should_stop=self.stop.is_set, stream=frame.camera,
            )  # fmt: skip
        else:
            if work.image is not None:  # converted by the worker's encoder batch
                frame.rgb = work.image
            work.image = frame.rgb
            result, graph = finish_frame(work, self.tracking, frame.k, stamp, frame.camera)
        from perception_nodes.bags.messages import frame_messages  # rclpy: only where needed

        messages = frame_messages(
            frame.rgb, result, graph, frame.stamp_ns, frame.frame_id, frame.k, self.switches
        )
        namespace = str(self.settings.get("output_namespace"))
        for name, data in messages.items():
            topic = output_topic(frame.camera, namespace, name)
            self.part.write(topic, OUTPUT_TYPES[name][0], frame.log_ns, data)
        predicates = list(graph.predicates)
        record = frame_record(self.out, frame.key, frame.camera, frame.index, frame.stamp_ns,
                              frame.rgb, result, graph, predicates)  # fmt: skip
        self.summary.regions += graph.num_regions
        return record

    def _handle(self, frame: Frame, reader, work: FrameWork | str | None = None) -> None:
        if frame.tail:
            self._write_raw(frame, reader)
            self.part.record({"key": frame.key, "status": "tail"})
            return
        record = {"key": frame.key, "status": "failed", "error": frame.error}
        if isinstance(work, str):  # failed in a worker
            record["error"] = work
        elif frame.error is None:
            try:
                record = self._process(frame, work)
            except FrameAbandoned:
                return  # stopping: not journalled, done again by a resumed run
            except (PipelineError, ValueError, RuntimeError, OSError) as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
                logger.debug(traceback.format_exc())
            except Exception as exc:  # noqa: BLE001  (as the node's worker: no frame ends the run)
                record["error"] = f"{type(exc).__name__}: {exc}"
                logger.error("unexpected failure:\n%s", traceback.format_exc())
        if record["status"] == "failed":
            self.summary.failed += 1
            logger.error("[%s] frame %s failed: %s", self.path.name, frame.key, record["error"])
        else:
            self.summary.processed += 1
            if frame.no_3d:
                self.summary.no_3d += 1
                logger.warning("[%s] frame %s: no 3D: %s", self.path.name, frame.key, frame.no_3d)
        self._write_raw(frame, reader)
        self.part.record(record)

    def _encode(self, frames: list[Frame]) -> None:
        """One SAM encoder batch for the decoded frames; their arrays replaced by the encoded
        ones (``process`` then reuses the embeddings). A failing batch: frames go one by one."""
        todo = [f for f in frames if f.rgb is not None and f.error is None]
        if len(todo) < 2:
            return
        try:
            rgbs = self.pipeline.encode_together([f.rgb for f in todo])
        except (ValueError, RuntimeError) as exc:
            logger.warning("batched encoding of %d frames failed (%s); one by one", len(todo), exc)
            return
        for f, rgb in zip(todo, rgbs):
            f.rgb = rgb

    def _write_batch(self, batch: list[Frame], reader, bar, works: dict | None = None) -> None:
        for frame in batch:
            if self.stop.is_set():
                break
            self._rotate()
            self._handle(frame, reader, None if works is None else works.get(frame.key))
            bar.update(0 if frame.tail else 1)

    def _run_pool(self, ahead: ReadAhead, reader, done: set[str], bar) -> None:
        """Batches to the workers (each worker busy with one and one waiting), their results
        finished and written here in frame order."""
        pending: deque = deque()
        end = False
        while not self.stop.is_set() and (pending or not end):
            if not end and len(pending) < 2 * self.pool.workers:
                batch = ahead.take(max(1, self.opts.batch))
                end = batch is None
                if not end:
                    batch = [f for f in batch if f.key not in done]
                    todo = [f for f in batch if f.rgb is not None and f.error is None]
                    future = (
                        self.pool.submit([f.rgb for f in todo], [f.depth for f in todo])
                        if todo
                        else None
                    )
                    pending.append((batch, todo, future))
                continue
            batch, todo, future = pending.popleft()
            try:
                works = dict(zip((f.key for f in todo), future.result())) if future else {}
            except BrokenProcessPool as exc:
                raise PipelineError(
                    f"a worker process died ({exc}; out of memory? try fewer --workers)"
                ) from exc
            self._write_batch(batch, reader, bar, works)

    # ------------------------------------------------------------------ parts
    def _rotate(self) -> None:
        if self.part is not None and self.part.records >= max(1, self.opts.part_frames):
            self.part.commit()
            self.part = None
        if self.part is None:
            number = output.next_part_number(self.out)
            self.part = output.PartWriter(
                self.out, recording_name(self.path), number, self.typestore
            )

    def _close_part(self) -> None:
        if self.part is not None:
            if self.part.records:
                self.part.commit()
            else:
                self.part.abort()
            self.part = None

    # ------------------------------------------------------------------ run
    def run(self) -> Summary:
        t0 = time.perf_counter()
        reader = open_recording(self.path)
        try:
            types = {t: info.msgtype for t, info in reader.topics.items()}
            cams = select_cameras(types, self.settings, self.opts)
            self.summary.cameras = [c.colour for c in cams]
            output.prepare(self.out, run_info(self.path, self.settings, self.opts, cams),
                           self.opts.resume, self.opts.overwrite)  # fmt: skip
            records = output.journal(self.out)
            done = {r["key"] for r in records}
            self.last_track_id = output.last_track_id(records)
            self.summary.done_before = sum(1 for k in done if not k.endswith("#tail"))
            self._loop(reader, cams, done)
        finally:
            self._close_part()
            reader.close()
            self.summary.seconds = time.perf_counter() - t0
        return self.summary

    def _total(self, reader, cams: list[CameraTopics]) -> int | None:
        w = self.opts.window
        if w.start_s is not None or w.end_s is not None:
            return None
        counts = reader.topics
        return sum(-(-counts[c.colour].msgcount // max(1, w.every)) for c in cams)

    def _loop(self, reader, cams: list[CameraTopics], done: set[str]) -> None:
        from tqdm import tqdm

        self.tracking = TrackingStage()  # each recording starts without tracks; resumed: ids
        self.tracking.ids = IdsAfter(self.last_track_id)  # after those written before
        if self.pipeline is not None:
            self.pipeline.tracking = self.tracking
        total = self._total(reader, cams)
        self.summary.frames_total = total or 0
        frames = read_frames(
            reader, cams, self.opts.window,
            float(self.settings.get("depth_slop")), float(self.settings.get("depth_wait")),
            skip=done.__contains__, keep_raw=self.opts.copy_inputs,
        )  # fmt: skip
        bar = tqdm(total=total, initial=self.summary.done_before, unit="frame",
                   desc=recording_name(self.path), disable=not self.opts.progress)  # fmt: skip
        ahead = ReadAhead(frames, READ_AHEAD_BATCHES * max(1, self.opts.batch))
        try:
            if self.pool is not None:
                self._run_pool(ahead, reader, done, bar)
            while self.pool is None and not self.stop.is_set():
                batch = ahead.take(max(1, self.opts.batch))
                if batch is None:
                    break
                batch = [f for f in batch if f.key not in done]
                self._encode(batch)
                self._write_batch(batch, reader, bar)
        finally:
            ahead.close()
            bar.close()
        self.summary.interrupted = self.stop.is_set()
        if self.summary.frames_total == 0:
            self.summary.frames_total = self.summary.processed + self.summary.failed
