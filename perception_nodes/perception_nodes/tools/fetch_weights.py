"""pn-fetch-weights: download SAM and CLIP weight files into the cache, with resume and sha256.

Examples::

    pn-fetch-weights                        # the defaults: SAM vit_t + CLIP ViT-B-16 (what pn-demo uses)
    pn-fetch-weights clip                   # the default CLIP only (= clip:ViT-B-16)
    pn-fetch-weights --list                 # registry table and what is cached
    pn-fetch-weights vit_t vit_b            # fetch two SAM models
    pn-fetch-weights --all --cache-dir /data/pn

Files go to ``<cache>/weights/<file>`` where ``<cache>`` is ``--cache-dir``,
``$PERCEPTION_NODES_CACHE`` or ``~/.cache/perception_nodes``. Interrupted downloads resume from
``<file>.part``; a file is moved into place only after its sha256 matched the registry. Offline,
the command says which file is missing, the exact path to put it at and the URL to fetch it
from on another machine. Exit status: 0 all fetched, 1 any failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.sam.registry import SAM_MODELS, get_spec
from perception_nodes.core.weights.clip import DEFAULT_CLIP_MODEL, clip_registry
from perception_nodes.core.weights.files import (
    CACHE_ENV,
    CheckpointError,
    WeightSpec,
    cache_status,
    fetch,
    weights_dir,
)

CLIP_ALIAS = "clip"  # = clip:<the default CLIP model>


def _human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def all_specs() -> dict[str, WeightSpec]:
    """Every registry entry by its fetch name: the SAM models, then ``clip:<model>``."""
    specs: dict[str, WeightSpec] = {name: get_spec(name) for name in SAM_MODELS}
    specs |= {spec.name: spec for spec in clip_registry().values()}
    return specs


def default_specs() -> list[WeightSpec]:
    """What the node and pn-demo use without configuration: the default SAM and CLIP."""
    defaults = PipelineConfig()
    return [get_spec(defaults.sam_model), clip_registry()[DEFAULT_CLIP_MODEL]]


def registry_rows(cache_dir: str | Path | None = None) -> list[dict[str, str]]:
    """One row per registry entry: name, file, size, sha256 (short), license, cached."""
    rows = []
    for spec in all_specs().values():
        rows.append(
            {
                "name": spec.name,
                "file": spec.filename or "(test only, generated)",
                "size": _human_size(spec.size_bytes),
                "sha256": spec.sha256[:12] if spec.sha256 else "-",
                "license": spec.license,
                "cached": cache_status(spec, cache_dir),
            }
        )
    return rows


def format_table(rows: list[dict[str, str]]) -> str:
    """Plain fixed-width table of ``rows`` (all rows share the same keys)."""
    if not rows:
        return ""
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pn-fetch-weights",
        description="Download SAM and CLIP weights (progress bar, resume, sha256 check) into the cache.",
        epilog=f"Cache: --cache-dir, else ${CACHE_ENV}, else ~/.cache/perception_nodes "
        "(files in its weights/ folder). Valid names: "
        + ", ".join([n for n, s in all_specs().items() if s.url] + [CLIP_ALIAS]),
    )
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="registry names to fetch, e.g. vit_t vit_b clip (none: the default SAM + CLIP)",
    )
    p.add_argument("--all", action="store_true", help="fetch every downloadable model")
    p.add_argument(
        "--list", action="store_true", help="print the registry table and cache state, then exit"
    )
    p.add_argument(
        "--cache-dir", type=Path, default=None, help=f"cache root (default ${CACHE_ENV})"
    )
    p.add_argument(
        "--force", action="store_true", help="download again even if a verified file is cached"
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help="network timeout per request, seconds"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _select(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[WeightSpec]:
    known = all_specs()
    if args.all:
        return [s for s in known.values() if s.url]
    if not args.models:
        return default_specs()
    specs = []
    for name in args.models:
        spec = known.get(f"clip:{DEFAULT_CLIP_MODEL}" if name == CLIP_ALIAS else name)
        if spec is None:
            parser.error(f"unknown model {name!r}; valid: {', '.join([*known, CLIP_ALIAS])}")
        if not spec.url:
            parser.error(f"model {name!r} is test-only (generated weights); nothing to download")
        specs.append(spec)
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        print(format_table(registry_rows(args.cache_dir)))
        print(f"\ncache folder: {weights_dir(args.cache_dir)}")
        return 0
    failures = 0
    for spec in _select(args, parser):
        try:
            path = fetch(
                spec,
                args.cache_dir,
                progress=not args.no_progress,
                force=args.force,
                timeout=args.timeout,
            )
        except CheckpointError as exc:  # DownloadError, ChecksumMismatchError, ...
            failures += 1
            print(f"FAILED {spec.name}: {exc}", file=sys.stderr)
            continue
        print(
            f"ok     {spec.name}: {path} (sha256 verified)"
            if spec.sha256
            else f"ok     {spec.name}: {path}"
        )
    if failures:
        print(
            f"{failures} of the requested models could not be fetched; expected files under "
            f"{weights_dir(args.cache_dir)}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
