"""glibc malloc tuned for throughput in pn-process-bag's model processes (``--malloc``).

With glibc's default settings every large block (above the dynamic mmap threshold, at most
32 MiB) is a fresh ``mmap`` and goes back to the system when freed. The SAM encoder's and
decoder's onnxruntime sessions run without their own memory arena (it kept every batch's
high-water mark: core/sam/onnx_backend.py), so their buffers (64-332 MiB blocks with the test
model) were new pages every frame: ~153,000 of a worker's ~160,000 minor page faults per frame
(``--quick`` models, 256 px, one compute thread: 1.10 CPU-s per frame, 0.78 without them;
docs/benchmarks.md "Recorded bags"). ``throughput`` keeps freed memory in the process for the
next frame: one arena, no mmap below 2 GiB, no trimming of the heap's top. The price is memory:
the heap keeps its high-water mark (a worker's peak RSS about a third higher with the test
models; ``pn-bench-bag`` reports it). Outputs do not change (the allocator decides where numbers
live, not what they are). ``default`` leaves the process as it started (glibc's defaults, or
the ``MALLOC_*`` variables of the user's environment).

The settings are made with ``mallopt`` in the running process (:func:`tune`: the command's
process and each worker as it starts, before its models load), or, for a process started from
here, with glibc's environment variables (:func:`environment`). Under another C library (musl,
macOS) ``throughput`` changes nothing (logged).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

MODES = ("default", "throughput")
DEFAULT_MODE = "throughput"
#: mallopt's int parameters (glibc's malloc.h); values: the largest an int holds (2 GiB - 1)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
_LARGEST = 2**31 - 1
THROUGHPUT_MALLOPT = {M_ARENA_MAX: 1, M_MMAP_THRESHOLD: _LARGEST, M_TRIM_THRESHOLD: _LARGEST}
#: the same settings as glibc reads them from the environment at a process's start
THROUGHPUT_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(_LARGEST),
    "MALLOC_TRIM_THRESHOLD_": str(_LARGEST),
}


class MallocError(ValueError):
    """An unknown ``--malloc`` mode."""


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise MallocError(f"--malloc {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def _glibc():
    """The process's glibc (ctypes), or None under another C library."""
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    return libc


def tune(mode: str) -> bool:
    """Apply ``mode`` to this process's malloc (``mallopt``); True when settings were made.

    ``default``: nothing. ``throughput``: :data:`THROUGHPUT_MALLOPT`; call it before the
    process allocates its models (memory already mapped keeps its place). Raises
    :class:`MallocError` for an unknown mode or when glibc refuses a setting."""
    if check_mode(mode) == "default":
        return False
    libc = _glibc()
    if libc is None:
        logger.info("--malloc throughput: not glibc, left as it is")
        return False
    for param, value in THROUGHPUT_MALLOPT.items():
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
            raise MallocError(f"glibc refused mallopt({param}, {value})")
    return True


@contextmanager
def environment(mode: str) -> Iterator[None]:
    """Processes started inside get ``mode`` from glibc's environment variables (``default``:
    none of them, whatever this process has; ``throughput``: :data:`THROUGHPUT_ENV`)."""
    check_mode(mode)
    saved = {name: os.environ.pop(name) for name in THROUGHPUT_ENV if name in os.environ}
    if mode == "throughput":
        os.environ.update(THROUGHPUT_ENV)
    try:
        yield
    finally:
        for name in THROUGHPUT_ENV:
            os.environ.pop(name, None)
        os.environ.update(saved)


def minor_faults(pid: int | str = "self") -> int:
    """Minor page faults of a process so far (``/proc/<pid>/stat`` field 10)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory of a process (``VmHWM``), MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise OSError(f"no VmHWM in /proc/{pid}/status")


def reset_peak_rss() -> None:
    """Start this process's ``VmHWM`` anew from its current RSS (Linux ``clear_refs`` 5)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
