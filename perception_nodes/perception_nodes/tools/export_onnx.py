"""pn-export-onnx: export a SAM image encoder and mask decoder (with mask tokens) to ONNX.

Writes ``<out-dir>/encoder.onnx`` and ``<out-dir>/decoder.onnx`` (metadata inside), then
runs both on onnxruntime against PyTorch and prints the differences. See models/EXPORT.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from perception_nodes.core.config import SAM_MODEL_NAMES
from perception_nodes.core.weights.files import (
    GENERATED_WEIGHTS,
    CheckpointError,
    default_cache_dir,
)

EPILOG = """examples:
  pn-export-onnx --model vit_b                       # cached official weights -> ~/.cache/perception_nodes/onnx/vit_b
  pn-export-onnx --model vit_t --checkpoint mobile_sam.pt --out-dir models/onnx/vit_t
  pn-export-onnx --model sam_tiny_test --generated   # random weights, for tests and demos
then: pn-build-engine --onnx <out-dir>/encoder.onnx  (and decoder.onnx) on the target GPU
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pn-export-onnx",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # not argparse choices: main() answers an unknown name with exit status 2 and the registry's list
    parser.add_argument(
        "--model", required=True, help="SAM registry name: " + ", ".join(SAM_MODEL_NAMES)
    )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--checkpoint", type=Path, help="state_dict file (default: the cached official weights)"
    )
    weights.add_argument(
        "--generated",
        action="store_true",
        help="export seeded RANDOM weights (tests/demos; output is meaningless)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --generated weights")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="output folder (default: $PERCEPTION_NODES_CACHE/onnx/<model>)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--both",
        dest="multimask",
        action="store_const",
        const="both",
        help="decoder returns the single AND the 3 multimask outputs (default)",
    )
    mode.add_argument(
        "--multimask",
        dest="multimask",
        action="store_const",
        const="multimask",
        help="decoder returns only the 3 multimask outputs",
    )
    mode.add_argument(
        "--single-mask",
        dest="multimask",
        action="store_const",
        const="single",
        help="decoder returns only the single-mask output",
    )
    parser.set_defaults(multimask="both")
    parser.add_argument(
        "--upscale-gate",
        action="store_true",
        help="decoder for onnxruntime: only prompts above an iou_threshold input are upscaled "
        "(data-dependent output shapes; what sam.backend onnxruntime exports into its cache). "
        "Leave it off for TensorRT and other runtimes",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--device", default="cpu", help="torch device used for tracing")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the onnxruntime-vs-PyTorch smoke run"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.opset < 14:
        print(
            f"error: --opset {args.opset} is too old (SAM needs >= 14; 17 recommended)",
            file=sys.stderr,
        )
        return 2
    from perception_nodes.core.sam.export import export_sam
    from perception_nodes.core.sam.registry import (
        build_sam_model,
        get_spec,
        make_generated_checkpoint,
    )

    try:
        get_spec(args.model)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    out_dir = args.out_dir or default_cache_dir() / "onnx" / args.model
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if args.generated:
            checkpoint = make_generated_checkpoint(
                args.model, Path(tmp) / f"{args.model}.pth", args.seed
            )
            print(
                f"NOTE: exporting {GENERATED_WEIGHTS} (seed {args.seed}) of {args.model}: "
                "the masks will be meaningless; use --checkpoint for real weights"
            )
        try:
            model = build_sam_model(args.model, checkpoint, device=args.device)
            if checkpoint is None:
                from perception_nodes.core.sam.registry import resolve_checkpoint

                checkpoint = resolve_checkpoint(args.model)
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        result = export_sam(
            model,
            args.model,
            checkpoint,
            out_dir,
            args.multimask,
            args.opset,
            verify=not args.no_verify,
            upscale_gate=args.upscale_gate,
        )
    print(f"encoder: {result.encoder_path}")
    gate = ", upscaling gated by iou_threshold" if args.upscale_gate else ""
    print(f"decoder: {result.decoder_path}  (outputs: {args.multimask}{gate})")
    for name, diff in result.max_abs_diff.items():
        print(f"  onnxruntime vs torch, max |diff| {name}: {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
