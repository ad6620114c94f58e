"""What pn-bench-sam measures: one timed run of our generator and of the official
``SamAutomaticMaskGenerator``, peak memory of a block, the two run alternately, and how many of the
official masks ours reproduces.

Masks are ``(N, H, W)`` bool arrays in image pixels; times are seconds (``time.perf_counter``),
memory MiB. Used by :mod:`perception_nodes.tools.bench_sam` (which loads models and images).
"""

from __future__ import annotations

import resource
import statistics
import time

import numpy as np
import torch

from perception_nodes.core.sam.amg import MaskGenerator


class PeakMemory:
    """Peak memory of a block: CUDA max_memory_allocated, or the process RSS high-water mark."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20
        else:  # ru_maxrss is KiB on Linux; a process-wide high-water mark (never decreases)
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class OursTimed:
    """One timed run of our generator; keeps the per-stage timings of each run."""

    def __init__(self, gen: MaskGenerator) -> None:
        self.gen, self.runs, self.stages, self.seg = gen, [], [], None

    def __call__(self, image: np.ndarray) -> float:
        self.gen.clear_image()  # a fresh embedding each run, like the official generator
        t0 = time.perf_counter()
        self.seg = self.gen.generate(image)
        dt = time.perf_counter() - t0
        st = self.gen.timings
        self.stages.append(
            dict(
                st.as_dict(),
                decoder_per_batch=statistics.mean(st.decoder_batches),
                decoder_batches=len(st.decoder_batches),
            )
        )
        return dt

    def summary(self, runs: list[float], peak_mib: float) -> dict:
        med = {
            k: statistics.median(s[k] for s in self.stages[-len(runs) :]) for k in self.stages[0]
        }
        return dict(
            total_s=statistics.median(runs),
            runs_s=runs,
            stages_s=med,
            masks=len(self.seg),
            peak_mib=peak_mib,
        )


class OfficialTimed:
    """One timed run of ``SamAutomaticMaskGenerator``; times its ``set_image`` (pre + encoder)."""

    def __init__(self, sam, settings: dict, device: torch.device) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        self.gen = SamAutomaticMaskGenerator(sam, **settings)
        self.device, self.encoder, self.out = device, [], []
        set_image = self.gen.predictor.set_image

        def timed_set_image(*a, **k):
            t0 = time.perf_counter()
            set_image(*a, **k)
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.encoder.append(time.perf_counter() - t0)

        self.gen.predictor.set_image = timed_set_image

    def __call__(self, image: np.ndarray) -> float:
        t0 = time.perf_counter()
        self.out = self.gen.generate(image)
        return time.perf_counter() - t0

    def masks(self, hw: tuple[int, int]) -> np.ndarray:
        return (
            np.stack([r["segmentation"] for r in self.out])
            if self.out
            else np.zeros((0, *hw), bool)
        )

    def summary(self, runs: list[float], peak_mib: float) -> dict:
        return dict(
            total_s=statistics.median(runs),
            runs_s=runs,
            preprocess_encoder_s=statistics.median(self.encoder[-len(runs) :]),
            masks=len(self.out),
            peak_mib=peak_mib,
        )


def interleaved(impls: dict, image: np.ndarray, args, device: torch.device) -> dict:
    """Warm up every implementation, then alternate them run by run (load drift on a shared
    machine then hits both alike); a progress bar on stderr (runs take up to a minute each on a
    CPU). Returns ``{name: (run seconds, peak MiB)}``."""
    from tqdm import tqdm

    runs = tqdm(
        total=(args.warmup + args.repeats) * len(impls), desc="runs", unit="run", leave=False
    )
    for _ in range(args.warmup):
        for name, fn in impls.items():
            runs.set_postfix_str(f"warm-up {name}")
            fn(image)
            runs.update()
    times = {k: [] for k in impls}
    peaks = {k: 0.0 for k in impls}
    for _ in range(args.repeats):
        for name, fn in impls.items():
            runs.set_postfix_str(name)
            with PeakMemory(device) as mem:
                times[name].append(fn(image))
            peaks[name] = max(peaks[name], mem.peak_mib)
            runs.update()
    runs.close()
    return {k: (times[k], peaks[k]) for k in impls}


def matched_fraction(reference: np.ndarray, ours: np.ndarray, thresh: float = 0.9) -> float | None:
    """Fraction of ``reference (N, H, W)`` masks with an IoU >= ``thresh`` match in ``ours``."""
    if len(reference) == 0:
        return None
    if len(ours) == 0:
        return 0.0
    b = torch.from_numpy(ours.reshape(len(ours), -1)).float()
    best = []
    for i in range(0, len(reference), 64):
        a = torch.from_numpy(reference[i : i + 64].reshape(-1, b.shape[1])).float()
        inter = a @ b.T
        union = a.sum(1)[:, None] + b.sum(1)[None] - inter
        best.append((inter / union.clamp(min=1)).max(1).values)
    return float((torch.cat(best) >= thresh).float().mean())
