"""Checkpoint files written atomically: a crash or a full disk mid-write never leaves a
half-written checkpoint where a good one was (the loaders would refuse it, and the old one is
gone). Used by every head the package trains (RegionSpot, relations) and for generated weights.

Temporary files and folders carry the writing process's pid, so what a write stopped mid-way
left behind (the node exits on SIGINT without waiting for a load) is removed by the next write
once that process is gone (:func:`remove_leftovers_of_dead_processes`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable

import torch


def save_atomic(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda tmp: torch.save(obj, tmp))


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` into a temporary file in the same folder, then an atomic rename to
    ``path``; the parent folder is created. On failure the temporary file is removed and any
    existing ``path`` is left untouched; the temporaries of this ``path`` left by stopped
    processes are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers_of_dead_processes(
        path.parent, re.compile(rf"^\.{re.escape(path.name)}\.(?P<pid>\d+)\.tmp$")
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs on this machine (any user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user
        return True
    except OverflowError:  # not a pid at all
        return False
    return True


def remove_leftovers_of_dead_processes(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Remove the files and folders in ``folder`` whose name matches ``pattern`` when the
    process named by its ``pid`` group no longer runs; returns what was removed. Entries of
    running processes (a concurrent writer) are left alone."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or process_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
