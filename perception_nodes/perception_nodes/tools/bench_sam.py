"""pn-bench-sam: segment-everything latency per stage, masks/s and peak memory, side by side with
the official ``segment_anything.SamAutomaticMaskGenerator`` (same process, image, weights and
settings), plus how many of the official masks ours reproduces (IoU >= 0.9).

Examples::

    pn-bench-sam                                     # vit_t, CPU, 32x32 points, astronaut
    pn-bench-sam --model vit_b --device cuda --dtype bf16 --images astronaut coffee
    pn-bench-sam --backend onnxruntime --points-per-side 16 --repeats 2
    pn-bench-sam --decoder-only --repeats 7          # the mask decoder alone, torch + onnxruntime

Without cached real weights a seeded random checkpoint of the real architecture is generated
(announced loudly): timings are still representative of the architecture, masks are not
meaningful, and the mask thresholds default to permissive values so that masks survive.

This module parses the arguments, loads the model and photos and runs the comparison; what is
measured per run is in :mod:`.bench_sam_measure`, the console table in :mod:`.bench_sam_report`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from perception_nodes.core.config import default_setting
from perception_nodes.core.sam.amg import MaskGenerator
from perception_nodes.core.sam.backend import SamBackend
from perception_nodes.core.sam.registry import (
    SAM_MODELS,
    build_sam_model,
    get_spec,
    make_generated_checkpoint,
)
from perception_nodes.core.sam.torch_backend import PRECISIONS, TorchSamBackend
from perception_nodes.core.weights.files import GENERATED_WEIGHTS, cached_path
from perception_nodes.tools.bench_common import hardware_info
from perception_nodes.tools.bench_sam_measure import (
    OfficialTimed,
    OursTimed,
    interleaved,
    matched_fraction,
)
from perception_nodes.tools.bench_sam_report import format_table, report_rows, summary_line

# the first four are also the tests' photos; the others are held out from every test
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "camera",
    "coins",
)
# SAM's own defaults (real weights) and the permissive ones used with generated weights, where
# the untrained decoder's logits stay near 0 and SAM's defaults would filter every mask.
REAL_THRESHOLDS = dict(
    pred_iou_thresh=0.88,
    stability_score_thresh=0.95,
    stability_score_offset=1.0,
    box_nms_thresh=0.7,
)
GENERATED_THRESHOLDS = dict(
    pred_iou_thresh=0.005,
    stability_score_thresh=0.2,
    stability_score_offset=0.05,
    box_nms_thresh=1.0,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pn-bench-sam",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=default_setting("sam_model"),
        choices=list(SAM_MODELS),
        help="registry model (default: sam.model's, %(default)s)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="state_dict file (default: cached real weights if present, else generated weights)",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "onnxruntime"),
        help="our backend; onnxruntime exports the model to a temporary folder first",
    )
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:1"
    )
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=list(PRECISIONS),
        help="our torch backend's precision (the official generator always runs fp32)",
    )
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument(
        "--points-per-batch",
        type=int,
        default=None,
        help="decoder batch for ours (default 64 CPU / 256 CUDA); the official uses 64",
    )
    p.add_argument("--pred-iou-thresh", type=float, default=None)
    p.add_argument("--stability-thresh", type=float, default=None)
    p.add_argument("--stability-offset", type=float, default=None)
    p.add_argument("--box-nms-thresh", type=float, default=None)
    p.add_argument(
        "--images",
        nargs="+",
        default=["astronaut"],
        choices=SKIMAGE_PHOTOS,
        help="scikit-image photos (bundled, offline)",
    )
    p.add_argument(
        "--longest", type=int, default=None, help="downscale photos to this longest side"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-official", action="store_true", help="skip the official generator")
    p.add_argument(
        "--decoder-only",
        action="store_true",
        help="benchmark the mask decoder alone (restructured vs official, torch and onnxruntime "
        "CPU); JSON to outputs/bench/sam_decoder.json unless --out is given",
    )
    p.add_argument(
        "--prompts", type=int, default=64, help="--decoder-only: point prompts per batch"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="JSON report (default outputs/bench/sam.json)"
    )
    return p


def _load_model(args: argparse.Namespace, tmp: Path):
    """The torch Sam both generators share; returns (model, checkpoint path, generated?)."""
    spec = get_spec(args.model)
    ckpt = args.checkpoint
    if ckpt is None and spec.filename and cached_path(spec).is_file():
        ckpt = cached_path(spec)
    generated = ckpt is None
    if generated:
        ckpt = make_generated_checkpoint(args.model, tmp / f"{args.model}_generated.pth", seed=0)
        hint = f" (run `pn-fetch-weights {args.model}`)" if spec.url else " (test-only model)"
        print(
            "="
            * 78
            + f"\nNOTICE: no real weights for {args.model!r}{hint}; using {GENERATED_WEIGHTS}\n"
            "of the real architecture. Timings are representative; masks are NOT\n"
            "meaningful and permissive mask thresholds are used.\n" + "=" * 78,
            file=sys.stderr,
        )
    model = build_sam_model(args.model, ckpt, device=args.device)
    return model, Path(ckpt), generated or bool(getattr(model, "pn_untrained", False))


def _our_backend(args: argparse.Namespace, model, ckpt: Path, tmp: Path) -> SamBackend:
    if args.backend == "torch":
        return TorchSamBackend(model, device=args.device, precision=args.dtype)
    from perception_nodes.core.sam.export import export_sam
    from perception_nodes.core.sam.onnx_backend import OnnxRuntimeSamBackend

    cpu_model = model.to("cpu")
    # the gated decoder, as the backend's cached export (sam.backend auto/onnxruntime)
    result = export_sam(cpu_model, args.model, ckpt, tmp / "onnx", verify=False, upscale_gate=True)
    model.to(args.device)
    return OnnxRuntimeSamBackend(result.encoder_path, result.decoder_path, device=args.device)


def _photo(name: str, longest: int | None) -> np.ndarray:
    import cv2
    import skimage.data

    image = getattr(skimage.data, name)()
    image = np.ascontiguousarray(np.stack([image] * 3, -1) if image.ndim == 2 else image[:, :, :3])
    if longest and max(image.shape[:2]) > longest:
        s = longest / max(image.shape[:2])
        image = cv2.resize(
            image,
            (round(image.shape[1] * s), round(image.shape[0] * s)),
            interpolation=cv2.INTER_AREA,
        )
    return image


def _hardware(device: torch.device) -> dict:
    import segment_anything

    return hardware_info(device) | {
        "segment_anything": getattr(segment_anything, "__version__", "1.0")
    }


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        model, ckpt, generated = _load_model(args, Path(tmp))
        backend = _our_backend(args, model, ckpt, Path(tmp))
        base = GENERATED_THRESHOLDS if generated else REAL_THRESHOLDS
        user = dict(
            pred_iou_thresh=args.pred_iou_thresh,
            stability_score_thresh=args.stability_thresh,
            stability_score_offset=args.stability_offset,
            box_nms_thresh=args.box_nms_thresh,
        )
        settings = {k: (user[k] if user[k] is not None else v) for k, v in base.items()}
        settings["points_per_side"] = args.points_per_side
        gen = MaskGenerator(backend, points_per_batch=args.points_per_batch, **settings)
        results = []
        for name in args.images:
            image = _photo(name, args.longest)
            impls = {"ours": OursTimed(gen)}
            if not args.no_official:
                impls["official"] = OfficialTimed(
                    model, dict(settings, points_per_batch=64), device
                )
            timed = interleaved(impls, image, args, device)
            ours = impls["ours"].summary(*timed["ours"])
            entry = dict(image=name, image_hw=list(image.shape[:2]), ours=ours)
            if not args.no_official:
                off = impls["official"].summary(*timed["official"])
                entry["official"] = off
                entry["speedup_total"] = off["total_s"] / ours["total_s"]
                ours_amg = (
                    ours["total_s"] - ours["stages_s"]["encoder"] - ours["stages_s"]["preprocess"]
                )
                entry["speedup_excluding_encoder"] = (
                    off["total_s"] - off["preprocess_encoder_s"]
                ) / max(ours_amg, 1e-9)
                entry["official_masks_matched_iou0.9"] = matched_fraction(
                    impls["official"].masks(image.shape[:2]), impls["ours"].seg.masks
                )
            results.append(entry)
    return dict(
        model=args.model,
        checkpoint=str(ckpt),
        generated_weights=generated,
        backend=args.backend,
        dtype=args.dtype,
        settings=settings,
        points_per_batch=gen.points_per_batch,
        repeats=args.repeats,
        warmup=args.warmup,
        hardware=_hardware(device),
        results=results,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.points_per_side < 1:
        print(
            "--repeats >= 1, --warmup >= 0 and --points-per-side >= 1 are required", file=sys.stderr
        )
        return 2
    logging.basicConfig(level=logging.WARNING)
    if args.decoder_only:
        return _main_decoder_only(args)
    args.out = args.out or Path("outputs/bench/sam.json")
    report = run(args)
    print(format_table(report_rows(report)))
    print(summary_line(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


def _main_decoder_only(args: argparse.Namespace) -> int:
    from perception_nodes.tools.bench_decoder import decoder_table, run_decoder_bench, write_report

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        args.device = "cpu"
        model, ckpt, generated = _load_model(args, Path(tmp))
    report = run_decoder_bench(
        model, ["torch", "onnxruntime"], args.prompts, args.repeats, args.warmup
    )
    report |= dict(
        model=args.model,
        checkpoint=str(ckpt),
        generated_weights=generated,
        hardware=_hardware(torch.device("cpu")),
    )
    print(decoder_table(report))
    hw = report["hardware"]
    print(
        f"\nmask decoder of {args.model} ({'generated' if generated else 'real'} weights), batch of "
        f"{args.prompts} point prompts, {hw['cpu']} ({hw['cpu_count']} cores, {hw['torch_threads']} torch "
        f"threads); speedup = official / restructured; diffs vs the official torch decoder"
    )
    out = args.out or Path("outputs/bench/sam_decoder.json")
    write_report(report, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
