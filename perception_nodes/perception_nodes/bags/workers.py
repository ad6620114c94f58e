"""The models of a recording's frames in worker processes, frames in parallel (``--workers``).

Each worker process loads the pipeline once and runs the order-free part of a frame
(:meth:`Pipeline.infer`: SAM encoder and decoder, labels, relations) with ``threads`` compute
threads: torch's, onnxruntime's intra-op threads and OpenCV's (default 1: on a CPU two
one-thread workers do more frames per second than one two-thread pipeline, whose per-frame work
does not keep two cores busy; with onnxruntime's default of one thread per core, two workers ran
four compute threads on two cores: 1.22 against 1.15 CPU s/frame with one, 2-core VM at load
~9, docs/benchmarks.md "Recorded bags"). The calling process
keeps what depends on frame order (tracking, the scene graph, writing:
:func:`~perception_nodes.core.pipeline.finish_frame`), so the outputs are those of
:meth:`Pipeline.process` frame after frame (tests/test_process_bag_workers.py).

Python's :class:`concurrent.futures.ProcessPoolExecutor` runs the processes (spawned, no fork of
a process with threads). Workers ignore SIGINT (the command's own handler decides: the frames in
flight are dropped and redone by ``--resume``) and exit when their parent is gone (a kill -9 of
the command leaves no orphan behind).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace

import numpy as np

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.pipeline_factory import PipelineError

logger = logging.getLogger(__name__)

_PIPELINE = None  # the worker process's pipeline
_LOAD_ERROR: str | None = None
_BARRIER = None


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _init(config: PipelineConfig, threads: int, parent: int, barrier, malloc: str) -> None:
    global _PIPELINE, _LOAD_ERROR, _BARRIER
    from perception_nodes.bags.malloc import tune

    tune(malloc)  # before the models are allocated
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _BARRIER = barrier
    import cv2
    import torch

    from perception_nodes.core.sam import onnx_backend

    torch.set_num_threads(int(threads))
    cv2.setNumThreads(int(threads))
    onnx_backend.DEFAULT_INTRA_OP_THREADS = int(threads)
    try:
        from perception_nodes.core.pipeline import Pipeline

        _PIPELINE = Pipeline.load(config)
    except Exception as exc:  # noqa: BLE001  (handed to the command as a PipelineError)
        _LOAD_ERROR = f"{type(exc).__name__}: {exc}"


def _ready(warm_up: np.ndarray | None) -> int:
    """Wait until every worker is loaded (each takes one of these calls: the barrier); warm up."""
    if _LOAD_ERROR is None and warm_up is not None:
        _PIPELINE.infer(warm_up)
    _BARRIER.wait(timeout=3600)
    if _LOAD_ERROR is not None:
        raise PipelineError(_LOAD_ERROR)
    return os.getpid()


def infer_batch(pipeline, images: list[np.ndarray], depths: list) -> list:
    """:meth:`Pipeline.infer` of frames encoded in one SAM encoder batch (as the in-process
    path does); per frame a :class:`FrameWork` or the error's text. A work's ``image`` is None
    unless the encoder batch converted the frame (the caller's array is then replaced by it, as
    :meth:`RecordingRun._encode` does): images are not sent back for nothing."""
    sent = list(images)
    if len(images) > 1:
        try:
            images = pipeline.encode_together(images)
        except (ValueError, RuntimeError) as exc:
            logger.warning(
                "batched encoding of %d frames failed (%s); one by one", len(images), exc
            )
    out = []
    for rgb, before, depth in zip(images, sent, depths):
        try:
            work = pipeline.infer(rgb, depth)
            out.append(replace(work, image=None if rgb is before else rgb))
        except Exception as exc:  # noqa: BLE001  (the frame is logged and counted as failed)
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def _infer(images: list[np.ndarray], depths: list) -> list:
    if _LOAD_ERROR is not None:
        raise PipelineError(_LOAD_ERROR)
    return infer_batch(_PIPELINE, images, depths)


class FramePool:
    """``workers`` processes with the pipeline of ``config`` loaded (see module docstring),
    each with the allocator ``malloc`` (:mod:`.malloc`: ``throughput`` or ``default``)."""

    def __init__(self, config: PipelineConfig, workers: int, threads: int = 1,
                 warm_up: np.ndarray | None = None, malloc: str = "throughput") -> None:  # fmt: skip
        from perception_nodes.bags.malloc import check_mode

        ctx = multiprocessing.get_context("spawn")
        self.workers, self.threads = int(workers), int(threads)
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init,
            initargs=(config, self.threads, os.getpid(), ctx.Barrier(self.workers),
                      check_mode(malloc)),
        )  # fmt: skip
        # one call per worker, each held at the barrier until all are loaded: every process is
        # started and warmed up before the first frame (no model loading in a frame's time)
        ready = [self._pool.submit(_ready, warm_up) for _ in range(self.workers)]
        try:
            self.pids = [f.result() for f in ready]
        except BaseException:
            self.close()
            raise

    def submit(self, images: list[np.ndarray], depths: list) -> Future:
        """A future of :func:`infer_batch`'s list for these frames."""
        return self._pool.submit(_infer, images, depths)

    def close(self) -> None:
        """Stop the workers now (frames in flight are dropped)."""
        processes = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:  # a frame in flight can take seconds: do not wait for it
            if p.is_alive():
                p.terminate()
        for p in processes:
            p.join(timeout=10)
