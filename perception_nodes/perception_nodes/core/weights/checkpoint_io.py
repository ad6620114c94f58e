"""Checkpoint files written atomically: a crash or a full disk mid-write never leaves a
half-written checkpoint where a good one was (the loaders would refuse it, and the old one is
gone). Used by every head the package trains (RegionSpot, relations) and for generated weights.

Temporary files and folders carry the writing process's host name and pid
(:func:`writer_tag`), so what a write stopped mid-way left behind (the node exits on SIGINT
without waiting for a load) is removed by the next write on the same host once that process is
gone (:func:`remove_leftovers_of_dead_processes`); another host's or container's (a shared cache
volume: its pids mean nothing here) are left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
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
