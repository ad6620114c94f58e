"""Many recordings on a Ray cluster: one actor per worker loads the models once and processes
whole recordings (one output folder each, as the single-process run writes it).

Ray's own :class:`ray.util.ActorPool` hands the recordings to the actors (no queue of ours).
Each actor asks Ray for one GPU when the cluster has GPUs (``sam.device: cuda`` then runs on
the GPU Ray assigned it) and ``cpus_per_worker`` CPUs (Ray sets ``OMP_NUM_THREADS`` to that), and
tunes its allocator as ``--malloc`` says (:mod:`.malloc`, as the local workers).
Input recordings and the output folder must be reachable at the same paths from every node
(a shared filesystem). Ray is optional: ``pip install perception_nodes[cluster]``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

from perception_nodes.bags.runner import (
    JobOptions,
    RecordingRun,
    Summary,
    recording_name,
    set_threads,
)
from perception_nodes.bags.settings import BagSettings

logger = logging.getLogger(__name__)


class RayMissing(RuntimeError):
    """``--ray`` without Ray installed."""


class BagWorker:
    """A Ray actor: the pipeline loaded once, then recordings one after another."""

    def __init__(self, settings: BagSettings, opts: JobOptions) -> None:
        from perception_nodes.bags.malloc import tune
        from perception_nodes.bags.output import output_typestore
        from perception_nodes.core.pipeline import Pipeline

        tune(opts.malloc)  # before the models are allocated (as pn-process-bag's workers)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self.settings, self.opts = settings, opts
        set_threads(opts.threads)
        self.pipeline = Pipeline.load(settings.pipeline)
        self.typestore = output_typestore()

    def process(self, path: str, out: str) -> dict:
        run = RecordingRun(self.pipeline, self.settings, self.opts, Path(path), Path(out),
                           threading.Event(), self.typestore)  # fmt: skip
        return run.run().as_dict()


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RayMissing(
            "--ray needs Ray: pip install 'perception_nodes[cluster]' (or pip install ray)"
        ) from exc
    return ray


def run_on_ray(
    inputs: list[Path],
    out_dir: Path,
    settings: BagSettings,
    opts: JobOptions,
    address: str | None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
) -> list[Summary]:
    """Process ``inputs`` on Ray (``address`` None: a local Ray started here, stopped after)."""
    ray = _import_ray()
    from ray.util import ActorPool

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        slots = gpus or int(resources.get("CPU", 1) // cpus_per_worker) or 1
        n = max(1, min(len(inputs), workers or slots))
        threads = opts.threads or max(1, int(cpus_per_worker))
        worker_opts = replace(opts, progress=False, threads=threads)
        actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=cpus_per_worker)(BagWorker)
        actors = [actor.remote(settings, worker_opts) for _ in range(n)]
        logger.info("Ray: %d workers (%d GPUs in the cluster), %d recordings", n, gpus, len(inputs))
        pool = ActorPool(actors)
        jobs = [(str(p), str(out_dir / recording_name(p))) for p in inputs]
        results = pool.map_unordered(lambda a, job: a.process.remote(*job), jobs)
        summaries = []
        for r in results:
            r.pop("frames_per_s", None)
            summaries.append(Summary(**r))
            logger.info("done: %s", r["input"])
        order = {str(p): i for i, p in enumerate(inputs)}
        return sorted(summaries, key=lambda s: order.get(s.input, 0))
    finally:
        if started_here:
            ray.shutdown()
