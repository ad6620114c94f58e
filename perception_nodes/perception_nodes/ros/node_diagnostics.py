"""Diagnostics of the perception node: its frame counters and the ``/diagnostics`` status.

:class:`FrameStats` holds what the worker records per frame (times in seconds,
``time.monotonic`` clock); the diagnostics timer reads it only through
:meth:`FrameStats.snapshot`, an immutable copy taken under the same lock the worker's records
take (the timer and the worker run on different threads: iterating the worker's deques while
it appends raised "deque mutated during iteration" on the timer thread, which the executor
re-raises). :func:`pipeline_status` turns a snapshot, the pipeline's state, the lifecycle
state and a copy of the per-camera slot counters into one ``diagnostic_msgs/DiagnosticStatus``
(times shown in ms).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from perception_nodes.core.pipeline import Pipeline
from perception_nodes.core.stream.frame_slots import SlotStats

#: rate_hz is measured over the last this many finished frames (a CPU takes seconds per frame:
#: a fixed 5 s window held 0 or 1 frame and read 0.00 or 0.20 whatever the true rate).
RATE_FRAMES = 10


def rate_from_finish_times(finished: list[float], now: float) -> float:
    """Frames per second from the ``time.monotonic()`` finish times of the last frames
    (ascending): the mean rate over their intervals; when the time since the last frame is
    longer than the mean interval, that open interval counts too, so a stream that stops reads
    lower and lower (0 without two frames)."""
    if len(finished) < 2:
        return 0.0
    span = finished[-1] - finished[0]
    intervals = len(finished) - 1
    since_last = now - finished[-1]
    if since_last > span / intervals:
        span, intervals = now - finished[0], len(finished)
    return intervals / span if span > 0 else 0.0


@dataclass(frozen=True)
class FrameStatsSnapshot:
    """What :class:`FrameStats` held at one moment (plain values; safe on any thread).

    Attributes:
        rate_hz: frames finished per second (:func:`rate_from_finish_times`).
        mean_ms: ``<stage>_ms`` and ``latency_total_ms`` -> mean over the kept values, in ms.
        encoder_batch_max: largest number of frames (cameras) encoded in one batch.
        failing: camera -> reason, for each camera whose latest frame failed in the worker.
        failed: frames that failed in the worker since start.
    """

    rate_hz: float
    mean_ms: dict[str, float] = field(default_factory=dict)
    encoder_batch_max: int = 0
    failing: dict[str, str] = field(default_factory=dict)
    failed: int = 0


class FrameStats:
    """Counters of the frames a node processed: finish times of the last :data:`RATE_FRAMES`
    (for the rate), the last 100 end-to-end latencies and stage timings (s), the largest encoder
    batch, and which cameras' latest frame failed. Thread-safe: every record and
    :meth:`snapshot` take one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency_total: deque[float] = deque(maxlen=100)  # s, arrival -> published
        self._stages: dict[str, deque[float]] = {}  # stage name -> last 100 durations, s
        self._finished: deque[float] = deque(maxlen=RATE_FRAMES)  # time.monotonic() at ends
        self._encoder_batch_max = 0
        self._failing: dict[str, str] = {}  # camera -> reason its latest frame failed
        self._failed = 0

    def record_frame(self, received: float, timings: dict[str, float], camera: str = "") -> None:
        """One frame of ``camera`` done: ``received`` is its ``time.monotonic()`` at arrival,
        ``timings`` its stage durations in seconds."""
        now = time.monotonic()
        with self._lock:
            self._finished.append(now)
            self._latency_total.append(now - received)
            for stage, seconds in timings.items():
                self._stages.setdefault(stage, deque(maxlen=100)).append(seconds)
            self._failing.pop(camera, None)

    def record_failure(self, camera: str, reason: str) -> None:
        """A frame of ``camera`` failed in the worker (``reason``: what to show)."""
        with self._lock:
            self._failing[camera] = reason
            self._failed += 1

    def record_encoder_batch(self, frames: int) -> None:
        with self._lock:
            self._encoder_batch_max = max(self._encoder_batch_max, frames)

    def snapshot(self, now: float | None = None) -> FrameStatsSnapshot:
        """An immutable copy of the counters (``now``: ``time.monotonic()``, default now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            finished = list(self._finished)
            series = [(k, list(v)) for k, v in self._stages.items()]
            series.append(("latency_total", list(self._latency_total)))
            batch_max, failing, failed = self._encoder_batch_max, dict(self._failing), self._failed
        mean_ms = {f"{k}_ms": 1000 * float(np.mean(v)) for k, v in series if v}
        return FrameStatsSnapshot(
            rate_from_finish_times(finished, now), mean_ms, batch_max, failing, failed
        )


def decoder_batches(pipeline: Pipeline | None) -> int:
    """SAM decoder batches of the latest frame (shows ``amg.points_per_batch`` at work)."""
    timings = getattr(pipeline.generator, "timings", None) if pipeline else None
    return len(getattr(timings, "decoder_batches", ()))


def _camera_values(slot_stats: dict[str, SlotStats]) -> dict[str, str]:
    values = {}
    for cam, st in slot_stats.items():
        tag = cam or "/"
        values.update(
            {
                f"{tag}.received": str(st.received),
                f"{tag}.dropped": str(st.dropped),
                f"{tag}.rejected": str(st.rejected),
                f"{tag}.failed": str(st.failed),
                f"{tag}.processed": str(st.processed),
                f"{tag}.refused_3d": str(st.refused_3d),
            }
        )
    return values


def _level(pipeline: Pipeline | None, frames: FrameStatsSnapshot) -> tuple[bytes, str]:
    if pipeline is None:
        return DiagnosticStatus.ERROR, "models not loaded"
    if frames.failing:
        cams = "; ".join(f"[{c or '/'}] {r}" for c, r in sorted(frames.failing.items()))
        return DiagnosticStatus.ERROR, f"frames failing: {cams}"[:500]
    if not pipeline.meaningful:
        return DiagnosticStatus.WARN, "untrained (generated) weights: output not meaningful"
    return DiagnosticStatus.OK, "running"


def pipeline_status(
    name: str,
    hardware_id: str,
    pipeline: Pipeline | None,
    frames: FrameStatsSnapshot,
    slot_stats: dict[str, SlotStats],
    state: str = "",
) -> DiagnosticStatus:
    """The node's status: ERROR without models or while a camera's latest frame failed, WARN
    with generated weights, else OK; values are the rate, the lifecycle ``state``
    (``unconfigured``/``inactive``/``active``/...), backend/model, weight state, batch sizes,
    mean timings and camera counters (``slot_stats``: a copy, see
    :meth:`~perception_nodes.core.stream.frame_slots.LatestFrameSlots.stats_snapshot`)."""
    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    cfg = pipeline.config if pipeline else None
    values = {
        "rate_hz": f"{frames.rate_hz:.3f}",
        "state": state,
        "backend": f"{pipeline.sam_backend_name}/{cfg.sam_device}/{cfg.sam_precision}"
        if cfg
        else "",
        "model": cfg.sam_model if cfg else "",
        "weights_meaningful": str(bool(pipeline and pipeline.meaningful)),
        "untrained": ", ".join(pipeline.untrained_parts) if pipeline else "",
        "sam_untrained": str(pipeline.sam_untrained) if pipeline else "",
        "encoder_batch_max": str(frames.encoder_batch_max),
        "decoder_batches": str(decoder_batches(pipeline)),
        "failed": str(frames.failed),
    }
    values.update({k: f"{v:.1f}" for k, v in frames.mean_ms.items()})
    values.update(_camera_values(slot_stats))
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    status.level, status.message = _level(pipeline, frames)
    return status
