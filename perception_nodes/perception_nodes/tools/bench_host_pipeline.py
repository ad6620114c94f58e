"""``pn-bench-host --pipeline``: the whole :class:`Pipeline` on the demo photos (frame time, scene
graphs per second, peak RSS and GPU memory), run in a child process of its own."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from perception_nodes.tools.bench_host import peak_rss_mb


def pipeline_config_for(args: argparse.Namespace):
    """The :class:`PipelineConfig` of ``--pipeline``: the parameter file's (or the defaults),
    with ``--device``, ``--precision``, ``--backend`` and ``--quick`` applied."""
    from perception_nodes.core.config import PipelineConfig
    from perception_nodes.tools.demo import QUICK_OVERRIDES

    if args.config_file:  # the node's YAML (bench_e2e reads it; it needs ROS launch helpers)
        from perception_nodes.tools.bench_e2e import pipeline_config

        config = pipeline_config(Path(args.config_file))
    else:
        config = PipelineConfig()
    if args.quick:
        config = PipelineConfig.from_flat({**config.__dict__, **QUICK_OVERRIDES})
    config.sam_device, config.sam_precision = args.device, args.precision
    if args.backend:
        config.sam_backend = args.backend
    return config


def pipeline_run(args: argparse.Namespace) -> dict:
    """Run in the child: ``Pipeline.load`` + the demo photos, ``--repeats`` passes."""
    from perception_nodes.core.pipeline import Pipeline
    from perception_nodes.tools.bench_sam import _photo

    config = pipeline_config_for(args)
    pipeline = Pipeline.load(config)
    after_load = peak_rss_mb()
    photos = [_photo(name, args.max_side) for name in args.photos]
    pipeline.process(photos[0])  # warm-up
    frame_s, regions, stages = [], [], {}
    for _ in range(max(1, args.repeats)):
        for rgb in photos:
            t0 = time.perf_counter()
            result, _graph = pipeline.process(rgb)
            frame_s.append(time.perf_counter() - t0)
            regions.append(len(result.segmentation))
            for k, v in result.timings.items():
                stages.setdefault(k, []).append(1000 * v)
    cuda = args.device.startswith("cuda")
    return {
        "device": args.device, "precision": args.precision, "backend": pipeline.sam_backend_name,
        "sam_model": config.sam_model, "clip_model": config.clip_model,
        "points_per_side": config.amg_points_per_side, "photos": list(args.photos),
        "max_side": args.max_side, "frame_ms_mean": 1000 * float(np.mean(frame_s)),
        "frame_ms_p50": 1000 * float(np.median(frame_s)),
        "graphs_per_s": float(len(frame_s) / np.sum(frame_s)), "regions_mean": float(np.mean(regions)),
        "stage_ms_mean": {k: float(np.mean(v)) for k, v in stages.items()},
        "rss_after_load_mb": after_load, "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "meaningful": pipeline.meaningful,
    }  # fmt: skip
