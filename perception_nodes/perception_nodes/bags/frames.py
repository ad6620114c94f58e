"""Frames of a recording: colour images decoded to RGB, each paired with its depth and K.

Reads rosbag2 (MCAP, sqlite3; a directory or the storage file) and ROS 1 ``.bag`` files with
``rosbags`` (:class:`rosbags.highlevel.AnyReader`), in log-time order. Pairing is the node's:
a frame gets the depth image stamped nearest to it within ``depth_slop`` seconds
(:class:`perception_nodes.core.stream.depth_sync.StampMatcher`, the node's own matcher); a frame waits
for its depth until a depth image logged after it is stamped past it (the node's "moved past",
counted from the frame's arrival so a frame stamped out of order still gets its own depth) or
``depth_wait`` seconds of recording time went by (the node waits that long in wall time). K comes from the CameraInfo stamped
nearest the frame within the slop, else the last one before it (the node keeps the last one);
K is used only with depth and when it fits the image (:func:`~.projection.intrinsics_problem`).

A frame that cannot be decoded (corrupt data, unsupported encoding) is yielded with ``error``
set and no image: the caller logs and counts it. Every camera message inside the chosen window is
also handed over once, raw, with the frame that follows it on its camera (``--copy-inputs``; the
messages after a camera's last frame come with a tail unit ``<camera>#tail``).

Frame keys ``<camera or />#<index>`` (index of the colour message on its topic, from the start
of the recording) identify frames across runs (resume).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception_nodes.bags.topics import CameraTopics
from perception_nodes.core.output.projection import intrinsics_problem
from perception_nodes.core.pipeline import PipelineError, check_image_size
from perception_nodes.core.stream.depth_sync import StampMatcher
from perception_nodes.core.stream.stamps import NS_PER_SEC, stamp_to_ns
from perception_nodes.ros.image_conversion import (
    ImageConversionError,
    compressed_to_rgb8,
    depth_to_meters,
    image_msg_to_numpy,
    to_rgb8,
)

logger = logging.getLogger(__name__)

#: Depth/CameraInfo messages kept per camera for stamp matching while frames wait.
PAIRING_CAPACITY = 64


class BagError(ValueError):
    """A path that is not a readable recording."""


@dataclass
class RawMessage:
    """One input message kept as recorded (CDR bytes) for ``--copy-inputs``."""

    topic: str
    log_ns: int
    data: bytes


@dataclass
class Frame:
    """One colour frame (or a camera's tail of raw messages: ``tail`` True, no image).

    ``rgb``: ``HxWx3`` uint8 RGB; ``depth``: ``HxW`` float32 metres (NaN invalid) or None;
    ``k``: 3x3 intrinsics or None (no 3D); ``error``: why the frame cannot be processed.
    """

    camera: str
    index: int
    stamp_ns: int = 0
    log_ns: int = 0
    frame_id: str = ""
    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    k: np.ndarray | None = None
    error: str | None = None
    no_3d: str | None = None  # why a frame of a camera with depth has no 3D
    raw: list[RawMessage] = field(default_factory=list)
    tail: bool = False

    @property
    def key(self) -> str:
        return f"{self.camera or '/'}#{'tail' if self.tail else self.index}"


def open_recording(path: str | Path):
    """An opened :class:`~rosbags.highlevel.AnyReader` of ``path``; :class:`BagError` when it
    is not a recording (the message says what was expected)."""
    from rosbags.highlevel import AnyReader, AnyReaderError

    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such file or directory")
    try:
        reader = AnyReader([path])
        reader.open()
    except (AnyReaderError, FileNotFoundError, OSError, ValueError, KeyError) as exc:
        raise BagError(
            f"{path} is not a readable recording (a rosbag2 directory with metadata.yaml, an .mcap "
            f"or .db3 file, or a ROS 1 .bag): {exc}"
        ) from exc
    return reader


def decode_colour(msg, compressed: bool) -> np.ndarray:
    """``HxWx3`` uint8 RGB of a deserialized Image/CompressedImage (the node's conversions)."""
    rgb = compressed_to_rgb8(msg) if compressed else to_rgb8(image_msg_to_numpy(msg), msg.encoding)
    check_image_size(rgb.shape[:2])
    return rgb


@dataclass
class Window:
    """Which frames: log time from ``start_s`` to ``end_s`` seconds after the recording's
    start (None: open), every ``every``-th colour message of each camera."""

    start_s: float | None = None
    end_s: float | None = None
    every: int = 1


class FramePairer:
    """Colour frames waiting for their depth, per camera (see module docstring)."""

    def __init__(self, cameras: list[CameraTopics], slop_s: float, wait_s: float) -> None:
        self.slop_ns = int(round(slop_s * NS_PER_SEC))
        self.slop_s = slop_s
        self.wait_ns = int(round(wait_s * NS_PER_SEC))
        self.with_depth = {c.namespace: c.depth is not None for c in cameras}
        self.depth = StampMatcher(PAIRING_CAPACITY, "depth image")
        self.info = StampMatcher(PAIRING_CAPACITY, "CameraInfo")
        self.last_info: dict[str, tuple] = {}
        self.passed: set[str] = set()  # keys of waiting frames the depth stream has moved past
        self.pending: dict[str, deque[Frame]] = {c.namespace: deque() for c in cameras}

    def add_frame(self, frame: Frame) -> None:
        self.pending[frame.camera].append(frame)

    def add_depth(self, cam: str, stamp_ns: int, depth: np.ndarray) -> None:
        self.depth.put(cam, stamp_ns, depth)
        # only depth logged after a frame says the stream moved past it (a frame stamped out of
        # order, before depth already received, still waits for its own depth)
        for frame in self.pending[cam]:
            if stamp_ns > frame.stamp_ns + self.slop_ns:
                self.passed.add(frame.key)

    def add_info(self, cam: str, stamp_ns: int, k: np.ndarray, hw: tuple[int, int]) -> None:
        self.info.put(cam, stamp_ns, (k, hw))
        self.last_info[cam] = (k, hw)

    def ready(self, now_log_ns: int | None) -> Iterator[Frame]:
        """Frames whose pairing is decided (all of them when ``now_log_ns`` is None: the end)."""
        for waiting in self.pending.values():
            while waiting and (now_log_ns is None or self._decided(waiting[0], now_log_ns)):
                frame = waiting.popleft()
                self.passed.discard(frame.key)
                yield self._paired(frame)

    def _decided(self, frame: Frame, now_log_ns: int) -> bool:
        if not self.with_depth[frame.camera] or frame.rgb is None:
            return True
        return frame.key in self.passed or now_log_ns > frame.log_ns + self.wait_ns

    def _paired(self, frame: Frame) -> Frame:
        if not self.with_depth[frame.camera] or frame.rgb is None:
            return frame
        found = self.depth.match(frame.camera, frame.stamp_ns, self.slop_s, 0.0)
        if found.item is None:
            frame.no_3d = found.reason
            return frame
        if found.item.shape != frame.rgb.shape[:2]:
            frame.no_3d = (
                f"depth is {found.item.shape[1]}x{found.item.shape[0]} but the image is "
                f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]} (register depth to the colour camera)"
            )
            return frame
        info = self.info.match(frame.camera, frame.stamp_ns, self.slop_s, 0.0).item
        info = info or self.last_info.get(frame.camera)
        if info is None:
            frame.no_3d = "no CameraInfo received yet"
            return frame
        problem = intrinsics_problem(info[0], frame.rgb.shape[:2], info[1])
        if problem:
            frame.no_3d = f"CameraInfo refused: {problem}"
            return frame
        frame.depth, frame.k = found.item, info[0]
        return frame


def _colour_frame(reader, conn, log_ns: int, raw: bytes, cam: CameraTopics, index: int) -> Frame:
    frame = Frame(cam.namespace, index, log_ns=log_ns, stamp_ns=log_ns)
    try:
        msg = reader.deserialize(raw, conn.msgtype)
        frame.stamp_ns, frame.frame_id = stamp_to_ns(msg.header.stamp), msg.header.frame_id
        frame.rgb = decode_colour(msg, cam.compressed)
    except (ImageConversionError, PipelineError) as exc:
        frame.error = str(exc)
    except Exception as exc:  # noqa: BLE001  (corrupt CDR: rosbags raises several kinds)
        frame.error = f"cannot deserialize {conn.msgtype}: {type(exc).__name__}: {exc}"
    return frame


def _on_geometry(reader, pairer: FramePairer, conn, raw: bytes, cam: CameraTopics) -> None:
    try:
        msg = reader.deserialize(raw, conn.msgtype)
        stamp = stamp_to_ns(msg.header.stamp)
        if conn.topic == cam.depth:
            depth = depth_to_meters(image_msg_to_numpy(msg), msg.encoding)
            pairer.add_depth(cam.namespace, stamp, depth)
        else:
            k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            pairer.add_info(cam.namespace, stamp, k, (int(msg.height), int(msg.width)))
    except Exception as exc:  # noqa: BLE001  (bad depth/CameraInfo: that message is skipped)
        logger.warning("[%s] %s skipped: %s", cam.namespace or "/", conn.topic, exc)


def read_frames(
    reader,
    cameras: list[CameraTopics],
    window: Window,
    slop_s: float,
    wait_s: float,
    skip: Callable[[str], bool] = lambda key: False,
    keep_raw: bool = False,
) -> Iterator[Frame]:
    """The frames of ``cameras`` in ``window``, paired (see module docstring).

    ``skip(key)``: frames already done (resume) are not decoded, but still yielded (without an
    image) so their raw messages stay with them. ``keep_raw``: hand raw messages over.
    """
    by_topic = {t: cam for cam in cameras for t in cam.topics()}
    conns = [c for c in reader.connections if c.topic in by_topic]
    start = reader.start_time
    lo = None if window.start_s is None else start + int(window.start_s * NS_PER_SEC)
    hi = None if window.end_s is None else start + int(window.end_s * NS_PER_SEC)
    pairer = FramePairer(cameras, slop_s, wait_s)
    counts = {cam.namespace: 0 for cam in cameras}
    raws: dict[str, list[RawMessage]] = {cam.namespace: [] for cam in cameras}
    for conn, log_ns, raw in reader.messages(connections=conns):
        cam = by_topic[conn.topic]
        is_colour = conn.topic == cam.colour
        index = counts[cam.namespace]
        counts[cam.namespace] += is_colour
        if (lo is not None and log_ns < lo) or (hi is not None and log_ns > hi):
            continue
        if keep_raw:
            data = bytes(raw) if reader.is2 else reader.typestore.ros1_to_cdr(raw, conn.msgtype)
            raws[cam.namespace].append(RawMessage(conn.topic, log_ns, data))
        if not is_colour:
            _on_geometry(reader, pairer, conn, raw, cam)
        elif index % max(1, window.every) == 0:
            key = Frame(cam.namespace, index).key
            frame = (
                Frame(cam.namespace, index, log_ns=log_ns, stamp_ns=log_ns)
                if skip(key)
                else _colour_frame(reader, conn, log_ns, raw, cam, index)
            )
            frame.raw, raws[cam.namespace] = raws[cam.namespace], []
            pairer.add_frame(frame)
        yield from pairer.ready(log_ns)
    yield from pairer.ready(None)
    for cam in cameras:
        if raws[cam.namespace]:
            yield Frame(cam.namespace, -1, raw=raws[cam.namespace], tail=True)


class ReadAhead:
    """Frames from a reader thread through a bounded queue (decoding overlaps inference)."""

    _END = object()

    def __init__(self, frames, size: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(frames,), daemon=True)
        self._thread.start()

    def _run(self, frames) -> None:
        try:
            for frame in frames:
                while not self._put(frame):
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer, raised there)
            self._put_final(exc)
            return
        self._put_final(self._END)

    def _put(self, item) -> bool:
        try:
            self._queue.put(item, timeout=0.1)
            return True
        except queue.Full:
            return False

    def _put_final(self, item) -> None:
        while not self._put(item) and not self._stop.is_set():
            pass

    def take(self, n: int) -> list[Frame] | None:
        """The next ``n`` frames (fewer only at the end; None after it). Waits for all ``n``:
        batches are then the same in every run (a batch of the SAM encoder rounds its last bits
        differently from one by one, so the frames in a batch must not depend on timing)."""
        frames = []
        while len(frames) < n:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is self._END:
                self._queue.put(self._END)  # still the end for the next take
                break
            frames.append(item)
        return frames or None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
