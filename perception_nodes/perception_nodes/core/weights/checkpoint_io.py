"""Checkpoint files written atomically: a crash or a full disk mid-write never leaves a
half-written checkpoint where a good one was (the loaders would refuse it, and the old one is
gone). Used by every head the package trains (RegionSpot, relations) and for generated weights.

Temporary files and folders carry the writing process's host name and pid
(:func:`writer_tag`), so what a write stopped mid-way left behind (the node exits on SIGINT
without waiting for a load) is removed by the next write on the same host once that process is
gone (:func:`remove_leftovers_of_dead_processes`); another host's or container's (a shared cache
volume: its pids mean nothing here) are left alone.

Loading without a second copy (:func:`read_weights`, :func:`assign_weights`): a checkpoint is
memory-mapped and its tensors become the module's parameters, instead of being read into
memory and then copied into a randomly initialised module (two copies of the weights at the
peak, and the freed one left in the heap).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import zipfile
from collections.abc import Mapping
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
        path.parent, re.compile(rf"^\.{re.escape(path.name)}\.{WRITER_TAG_PATTERN}\.tmp$")
    )
    tmp = path.with_name(f".{path.name}.{writer_tag()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


WRITER_TAG_PATTERN = r"(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)"  # matches writer_tag()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def writer_tag(pid: int | None = None) -> str:
    """``<host>-<pid>`` of this process (or of process ``pid`` on this host), for the names of
    temporary files and folders."""
    return f"{_host()}-{os.getpid() if pid is None else pid}"


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
    """Remove the files and folders in ``folder`` whose name matches ``pattern`` (with the
    groups of :data:`WRITER_TAG_PATTERN`) when they were made on this host by a process that no
    longer runs; returns what was removed. Entries of running processes (a concurrent writer)
    and of other hosts are left alone."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or match["host"] != _host() or process_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


TENSOR_ALIGNMENT = 64
"""Bytes: torch's CPU allocator aligns every tensor to 64, and so do torch's zip checkpoints; the
BLAS kernels may round differently for other alignments, so other tensors are copied."""


def read_weights(path: str | os.PathLike) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, memory-mapped (``mmap=True``) when the
    file is in torch's zip format (every ``torch.save`` since torch 1.6): the tensors' bytes stay
    in the page cache (read when first used, shared, never copied) instead of a private copy.
    Legacy (non-zip) files are read into memory as before. Errors are torch's."""
    mmap = zipfile.is_zipfile(path)
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def assign_weights(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> bool:
    """Make ``state``'s tensors ``module``'s parameters and buffers, without copying
    (``load_state_dict(strict=True, assign=True)``), when that gives exactly what a copying
    ``load_state_dict`` would: the same keys, and each tensor of the same shape, dtype and device
    as the module's, at a 64-byte aligned address (a dtype or device cast, or tied parameters that
    an assignment would untie, need the copying load; so do other strides and alignments: the
    kernels could read the weights in another order and round differently). Returns False and leaves ``module`` untouched otherwise.

    The module's previous tensors are freed (if nothing else holds them); with
    :func:`read_weights`' memory-mapped tensors the weights are then held once, in the page cache.
    """
    own = module.state_dict(keep_vars=True)
    if set(own) != set(state):
        return False
    seen: set[int] = set()
    for key, mine in own.items():
        theirs = state[key]
        if not isinstance(theirs, torch.Tensor):
            return False
        if (theirs.shape, theirs.stride(), theirs.dtype, theirs.device) != (
            mine.shape,
            mine.stride(),
            mine.dtype,
            mine.device,
        ):
            return False
        if mine.numel() and mine.data_ptr() in seen:  # tied: one tensor under two names
            return False
        if theirs.data_ptr() % TENSOR_ALIGNMENT:  # e.g. safetensors' 8-byte aligned data
            return False
        seen.add(mine.data_ptr())
    module.load_state_dict(state, strict=True, assign=True)
    return True
