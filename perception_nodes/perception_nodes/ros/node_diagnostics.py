"""Diagnostics of the perception node: its frame counters and the ``/diagnostics`` status.

:class:`FrameStats` holds what the worker records per processed frame (times in seconds,
``time.monotonic`` clock); :func:`pipeline_status` turns it, the pipeline's state and the
per-camera slot counters into one ``diagnostic_msgs/DiagnosticStatus`` (times shown in ms).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from perception_nodes.core.frame_slots import SlotStats
from perception_nodes.core.pipeline import Pipeline

RATE_WINDOW_S = 5.0  # rate_hz counts the frames finished within this many seconds


class FrameStats:
    """Counters of the frames a node processed: finish times of the last 200 (for the rate),
    the last 100 end-to-end latencies and stage timings (s), the largest encoder batch."""

    def __init__(self) -> None:
        self.latency_total: deque[float] = deque(maxlen=100)  # s, arrival -> published
        self.stages: dict[str, deque[float]] = {}  # stage name -> last 100 durations, s
        self.finished: deque[float] = deque(maxlen=200)  # time.monotonic() at each frame's end
        self.encoder_batch_max = 0  # largest number of frames (cameras) encoded in one batch

    def record_frame(self, received: float, timings: dict[str, float]) -> None:
        """One frame done: ``received`` is its ``time.monotonic()`` at arrival, ``timings`` its
        stage durations in seconds."""
        self.finished.append(time.monotonic())
        self.latency_total.append(time.monotonic() - received)
        for stage, seconds in timings.items():
            self.stages.setdefault(stage, deque(maxlen=100)).append(seconds)

    def record_encoder_batch(self, frames: int) -> None:
        self.encoder_batch_max = max(self.encoder_batch_max, frames)

    def rate_hz(self) -> float:
        """Frames finished per second over the last :data:`RATE_WINDOW_S` seconds."""
        now = time.monotonic()
        return sum(1 for t in self.finished if now - t < RATE_WINDOW_S) / RATE_WINDOW_S

    def mean_ms(self) -> dict[str, str]:
        """``<stage>_ms`` and ``latency_total_ms``: means over the kept values, in ms."""
        values = {}
        for key, vals in list(self.stages.items()) + [("latency_total", self.latency_total)]:
            if vals:
                values[f"{key}_ms"] = f"{1000 * float(np.mean(vals)):.1f}"
        return values


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
                f"{tag}.processed": str(st.processed),
                f"{tag}.refused_3d": str(st.refused_3d),
            }
        )
    return values


def pipeline_status(
    name: str,
    hardware_id: str,
    pipeline: Pipeline | None,
    stats: FrameStats,
    slot_stats: dict[str, SlotStats],
) -> DiagnosticStatus:
    """The node's status: ERROR without models, WARN with generated weights, else OK; values
    are the rate, backend/model, weight state, batch sizes, mean timings and camera counters."""
    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    cfg = pipeline.config if pipeline else None
    values = {
        "rate_hz": f"{stats.rate_hz():.2f}",
        "state": "configured" if pipeline else "unconfigured",
        "backend": f"{pipeline.sam_backend_name}/{cfg.sam_device}/{cfg.sam_precision}"
        if cfg
        else "",
        "model": cfg.sam_model if cfg else "",
        "weights_meaningful": str(bool(pipeline and pipeline.meaningful)),
        "untrained": ", ".join(pipeline.untrained_parts) if pipeline else "",
        "sam_untrained": str(pipeline.sam_untrained) if pipeline else "",
        "encoder_batch_max": str(stats.encoder_batch_max),
        "decoder_batches": str(decoder_batches(pipeline)),
    }
    values.update(stats.mean_ms())
    values.update(_camera_values(slot_stats))
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    if pipeline is None:
        status.level, status.message = DiagnosticStatus.ERROR, "models not loaded"
    elif not pipeline.meaningful:
        status.level, status.message = (
            DiagnosticStatus.WARN,
            "untrained (generated) weights: output not meaningful",
        )
    else:
        status.level, status.message = DiagnosticStatus.OK, "running"
    return status
