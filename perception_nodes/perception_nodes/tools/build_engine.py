"""pn-build-engine: build a TensorRT engine (+ JSON metadata sidecar) from a SAM ONNX export.

Run it on the machine that will run the engine (engines are tied to the GPU and the TensorRT
version). Without --out the engine goes to the engine cache
($PERCEPTION_NODES_CACHE/engines/<model>__<gpu>__trt<version>__<precision>/<component>.engine),
where the tensorrt backend finds it. See models/EXPORT.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from perception_nodes.core.config import PRECISIONS

EPILOG = """examples:
  pn-build-engine --onnx ~/.cache/perception_nodes/onnx/vit_b/encoder.onnx --precision fp16
  pn-build-engine --onnx ~/.cache/perception_nodes/onnx/vit_b/decoder.onnx --max-prompts 1024
  pn-build-engine --onnx decoder.onnx --out /data/engines/decoder.engine --timing-cache /data/trt.cache
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pn-build-engine",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--onnx",
        type=Path,
        required=True,
        help="encoder.onnx or decoder.onnx written by pn-export-onnx",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="engine file (default: the engine cache; a .json sidecar is written next to it)",
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument(
        "--workspace-gib",
        type=float,
        default=4.0,
        help="builder workspace memory limit, GiB (default 4)",
    )
    parser.add_argument(
        "--timing-cache",
        type=Path,
        default=None,
        help="timing cache file, read if present and updated (default: "
        "<engine cache>/timing.cache)",
    )
    parser.add_argument("--max-batch", type=int, default=1, help="encoder: max images per call")
    parser.add_argument(
        "--opt-prompts",
        type=int,
        default=64,
        help="decoder: prompts per call the engine is tuned for (default 64)",
    )
    parser.add_argument(
        "--max-prompts", type=int, default=1024, help="decoder: max prompts per call (default 1024)"
    )
    parser.add_argument("--opt-points", type=int, default=2, help="decoder: tuned points/prompt")
    parser.add_argument("--max-points", type=int, default=8, help="decoder: max points/prompt")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="engine cache directory (default $PERCEPTION_NODES_CACHE/engines)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None, trt=None, runtime_info=None) -> int:
    """Entry point; ``trt`` and ``runtime_info`` can be injected (tests)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from perception_nodes.core.sam import tensorrt as eng
    from perception_nodes.core.sam.export_metadata import (
        REQUIRED_KEYS,
        OnnxModelError,
        read_onnx_metadata,
    )

    try:
        spec = eng.ProfileSpec(
            max_batch=args.max_batch,
            opt_batch=1,
            opt_prompts=args.opt_prompts,
            max_prompts=args.max_prompts,
            opt_points=args.opt_points,
            max_points=args.max_points,
        )
        if args.workspace_gib <= 0:
            raise ValueError(f"--workspace-gib must be > 0, got {args.workspace_gib}")
        meta = read_onnx_metadata(args.onnx)
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise OnnxModelError(
                f"{args.onnx} lacks the metadata {missing}: export it with pn-export-onnx"
            )
    except (ValueError, OnnxModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        trt = trt if trt is not None else eng.import_tensorrt()
    except eng.TensorRTNotAvailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "trtexec equivalent (on a machine with TensorRT): see models/EXPORT.md", file=sys.stderr
        )
        return 3
    info = runtime_info or eng.gather_runtime_info(trt)
    if info.gpu_name is None:
        print(
            "error: no CUDA GPU visible; engines must be built on the GPU that runs them",
            file=sys.stderr,
        )
        return 3
    out = args.out
    if out is None:
        key = eng.engine_cache_key(
            meta["model"], info.gpu_name, str(trt.__version__), args.precision
        )
        cache = eng.engine_cache_dir() if args.cache_dir is None else args.cache_dir
        out = cache / key / f"{meta['component']}.engine"
    timing = args.timing_cache or (
        (eng.engine_cache_dir() if args.cache_dir is None else args.cache_dir) / "timing.cache"
    )
    request = eng.BuildRequest(
        args.onnx, out, args.precision, int(args.workspace_gib * (1 << 30)), timing, spec
    )
    try:
        metadata = eng.build_engine(request, meta, trt=trt, runtime_info=info)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"engine:   {out}")
    print(f"metadata: {eng.metadata_path(out)}")
    print(
        f"  {metadata.model} {metadata.component} {metadata.precision}, TensorRT "
        f"{metadata.tensorrt_version}, {metadata.gpu_name} (sm {metadata.compute_capability})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
