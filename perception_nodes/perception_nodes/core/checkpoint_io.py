"""Checkpoint files written atomically: a crash or a full disk mid-write never leaves a
half-written checkpoint where a good one was (the loaders would refuse it, and the old one is
gone). Used by every head the package trains (RegionSpot, relations)."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_atomic(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file in the same folder, then an atomic
    rename; the parent folder is created. On failure the temporary file is removed and any
    existing ``path`` is left untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
