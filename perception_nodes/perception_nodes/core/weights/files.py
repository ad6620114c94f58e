"""Model-weight files: cache location, download with resume and sha256 check, lookup.

The cache directory is ``$PERCEPTION_NODES_CACHE`` or ``~/.cache/perception_nodes``; weight
files live in its ``weights/`` folder under their registry file name. Downloads go to
``<file>.part`` first and resume with an HTTP ``Range`` request when interrupted; the file is
moved into place only after its sha256 matched.

Registry entries (SAM in :mod:`perception_nodes.core.sam.registry`, CLIP in :mod:`perception_nodes.core.weights.clip`) are any objects
with ``name``, ``url``, ``filename``, ``sha256`` and ``size_bytes`` (:class:`WeightSpec`).
``$PERCEPTION_NODES_WEIGHTS_INDEX`` names a JSON file ``{name: {"url": ..., "sha256": ...,
"size_bytes": ...}}`` that replaces those fields per entry: a private mirror of the weights
(air-gapped sites, re-hosted files), also what the tests use to serve files locally.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)

#: The one name for seeded random weights of the real architectures, in every message. (Flags
#: that say a model runs on them are called ``untrained``: ``SamBackend.untrained``,
#: ``EngineMetadata.untrained``, the node's ``sam_untrained`` diagnostic.)
GENERATED_WEIGHTS = "GENERATED (seeded random) weights"

CACHE_ENV = "PERCEPTION_NODES_CACHE"
INDEX_ENV = "PERCEPTION_NODES_WEIGHTS_INDEX"
FETCH_COMMAND = "pn-fetch-weights"
_CHUNK = 1 << 20


class WeightSpec(Protocol):
    """What the downloader needs of a registry entry (SAM and CLIP entries have it)."""

    name: str
    url: str | None
    filename: str | None
    sha256: str | None
    size_bytes: int | None


_Spec = TypeVar("_Spec")


class CheckpointError(ValueError):
    """Base class of every problem with a weight file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The weight file is not where it is expected."""


class ChecksumMismatchError(CheckpointError):
    """The file's sha256 differs from the registry's."""


class CheckpointCorruptedError(CheckpointError):
    """The file cannot be read as a torch state_dict."""


class CheckpointArchitectureError(CheckpointError):
    """The state_dict does not fit the model architecture."""


class DownloadError(CheckpointError, OSError):
    """The download failed (network, HTTP status, size)."""


def apply_index_override(spec: _Spec) -> _Spec:
    """``spec`` with url/sha256/size_bytes replaced from ``$PERCEPTION_NODES_WEIGHTS_INDEX``.

    Unset variable: ``spec`` unchanged. A missing or malformed index file raises
    :class:`CheckpointError` (a mirror that silently does nothing would be worse).
    """
    index_path = os.environ.get(INDEX_ENV)
    if not index_path:
        return spec
    try:
        index = json.loads(Path(index_path).expanduser().read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"${INDEX_ENV}={index_path} cannot be read as JSON: {exc}") from exc
    entry = index.get(spec.name) if isinstance(index, dict) else None
    if entry is None:
        return spec
    allowed = {"url", "sha256", "size_bytes"}
    if not isinstance(entry, dict) or set(entry) - allowed:
        raise CheckpointError(
            f"${INDEX_ENV} entry {spec.name!r} must be an object with keys {sorted(allowed)}"
        )
    return dataclasses.replace(spec, **entry)


def default_cache_dir() -> Path:
    """``$PERCEPTION_NODES_CACHE`` or ``~/.cache/perception_nodes``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "perception_nodes"


def weights_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder that holds the downloaded weight files."""
    return (
        Path(cache_dir).expanduser() / "weights" if cache_dir else default_cache_dir() / "weights"
    )


def cached_path(spec: WeightSpec, cache_dir: str | Path | None = None) -> Path:
    """Where the weight file of ``spec`` is (or would be) cached."""
    if not spec.filename:
        raise CheckpointError(f"model {spec.name!r} has no downloadable weight file")
    return weights_dir(cache_dir) / spec.filename


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_file_message(spec: WeightSpec, path: Path, cache_dir: str | Path | None = None) -> str:
    """Offline help: which file is missing, where it goes, how to fetch it elsewhere."""
    custom = cache_dir is not None or path.parent != weights_dir()
    lines = [
        f"Weight file for {spec.name!r} is missing: {path}",
        f"  fetch it here:        {FETCH_COMMAND} {spec.name}"
        f"{' --cache-dir ' + str(cache_dir or path.parent.parent) if custom else ''}",
    ]
    if spec.url:
        lines.append(f"  or on another machine: download {spec.url}")
        check = spec.sha256 or "(not pinned; compare with a trusted source)"
        lines.append(f"    check it with `sha256sum {spec.filename}` -> {check}")
        lines.append(f"    then copy it to {path} (or pass its path as the checkpoint)")
    lines.append(f"  the cache folder is ${CACHE_ENV} or ~/.cache/perception_nodes")
    return "\n".join(lines)


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "perception_nodes"})
    if start > 0:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only)


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest`` with resume and checksum verification.

    Bytes go to ``dest + '.part'``; an existing ``.part`` is resumed with ``Range``. When
    ``sha256`` is given and differs, the partial file is deleted and
    :class:`ChecksumMismatchError` is raised (a re-run starts from scratch).
    """
    from tqdm.auto import tqdm

    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"only http(s) URLs can be fetched, got {url!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    if expected_size is not None and start > expected_size:
        part.unlink()
        start = 0
    if expected_size is None or start < expected_size:
        try:
            _fetch_into(url, part, start, expected_size, progress, timeout, tqdm)
        except DownloadError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            # URLError: no route / refused / DNS; OSError, HTTPException: dropped mid-stream.
            kept = f"; partial data kept in {part} (re-run to resume)" if part.exists() else ""
            raise DownloadError(f"download of {url} failed: {exc}{kept}") from exc
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        raise DownloadError(f"{url}: got {size} bytes, expected {expected_size}; re-run to resume")
    actual = sha256_file(part)
    if sha256 is not None and actual != sha256.lower():
        part.unlink()
        raise ChecksumMismatchError(
            f"sha256 of {url} is {actual}, expected {sha256}; the download was deleted"
        )
    if sha256 is None:
        logger.warning("no pinned sha256 for %s; computed sha256 = %s", dest.name, actual)
    os.replace(part, dest)
    return dest


def _fetch_into(
    url, part: Path, start: int, expected_size, progress: bool, timeout: float, tqdm
) -> None:
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start > 0:  # nothing left to fetch: the .part is complete
            return
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    with response:
        status = getattr(response, "status", 200)
        if start > 0 and status != 206:  # server ignored Range: start over
            logger.info("server does not support resume; restarting %s", url)
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else expected_size
        mode = "ab" if start > 0 else "wb"
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name[: -len(".part")],
                disable=not progress,
            ) as bar,
        ):
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                bar.update(len(block))


def fetch(
    spec: WeightSpec,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
    timeout: float = 30.0,
) -> Path:
    """Make sure the weight file of ``spec`` is in the cache (download if needed); return it.

    Raises:
        DownloadError: network/HTTP failure; its message includes the offline help of
            :func:`missing_file_message` (which file, where to put it, the URL).
        ChecksumMismatchError: the downloaded bytes have the wrong sha256 (nothing is moved
            into place; the partial file is deleted).
    """
    if not spec.url:
        raise CheckpointError(f"{spec.name!r} is test-only and has nothing to download")
    path = cached_path(spec, cache_dir)
    if path.is_file() and not force:
        if spec.sha256 is None or sha256_file(path) == spec.sha256:
            return path
        logger.warning("cached %s has a wrong sha256; downloading again", path)
        path.unlink()
    try:
        return download(
            spec.url, path, spec.sha256, spec.size_bytes, progress=progress, timeout=timeout
        )
    except DownloadError as exc:
        raise DownloadError(f"{exc}\n{missing_file_message(spec, path, cache_dir)}") from exc


def cache_status(spec: WeightSpec, cache_dir: str | Path | None = None) -> str:
    """``"yes"`` (file cached), ``"partial"`` (only a ``.part`` download), ``"no"``, or ``"n/a"``."""
    if not spec.filename:
        return "n/a"
    path = cached_path(spec, cache_dir)
    if path.is_file():
        return "yes"
    return "partial" if path.with_name(path.name + ".part").is_file() else "no"
