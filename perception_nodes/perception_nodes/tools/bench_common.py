"""What every benchmark records about the machine it ran on (JSON ``hardware``)."""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def hardware_info(device: str | torch.device) -> dict:
    """CPU, core count, torch version and threads, platform, Python, device (+ GPU name on CUDA)."""
    device = torch.device(device)
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def one_compute_thread() -> None:
    """Torch and OpenCV on one thread each: what "one core" means in the host benchmarks.

    ``time.thread_time`` counts only the calling thread, so a step that OpenCV splits over its
    worker threads (the overlay's ``remap``/``LUT`` on large images) would be undercounted.
    """
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
