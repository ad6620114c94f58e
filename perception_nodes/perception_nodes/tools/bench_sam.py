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
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from perception_nodes.core.sam.amg import MaskGenerator
from perception_nodes.core.sam.backend import SamBackend
from perception_nodes.core.sam.registry import (
    SAM_MODELS,
    build_sam_model,
    get_spec,
    make_generated_checkpoint,
)
from perception_nodes.core.sam.torch_backend import PRECISIONS, TorchSamBackend
from perception_nodes.core.weights import GENERATED_WEIGHTS, cached_path
from perception_nodes.tools.bench_common import hardware_info

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
        "--model", default="vit_t", choices=list(SAM_MODELS), help="registry model (default vit_t)"
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
    result = export_sam(cpu_model, args.model, ckpt, tmp / "onnx", verify=False)
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


class _Memory:
    """Peak memory of a block: CUDA max_memory_allocated, or the process RSS high-water mark."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> "_Memory":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20
        else:  # ru_maxrss is KiB on Linux; a process-wide high-water mark (never decreases)
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Ours:
    """One timed run of our generator; keeps the per-stage timings of each run."""

    def __init__(self, gen: MaskGenerator) -> None:
        self.gen, self.runs, self.stages, self.seg = gen, [], [], None

    def __call__(self, image: np.ndarray) -> float:
        self.gen.clear_image()  # a fresh embedding each run, like the official generator
        t0 = time.perf_counter()
        self.seg = self.gen.generate(image)
        dt = time.perf_counter() - t0
        st = self.gen.timings
        self.stages.append(
            dict(
                st.as_dict(),
                decoder_per_batch=statistics.mean(st.decoder_batches),
                decoder_batches=len(st.decoder_batches),
            )
        )
        return dt

    def summary(self, runs: list[float], peak_mib: float) -> dict:
        med = {
            k: statistics.median(s[k] for s in self.stages[-len(runs) :]) for k in self.stages[0]
        }
        return dict(
            total_s=statistics.median(runs),
            runs_s=runs,
            stages_s=med,
            masks=len(self.seg),
            peak_mib=peak_mib,
        )


class _Official:
    """One timed run of ``SamAutomaticMaskGenerator``; times its ``set_image`` (pre + encoder)."""

    def __init__(self, sam, settings: dict, device: torch.device) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        self.gen = SamAutomaticMaskGenerator(sam, **settings)
        self.device, self.encoder, self.out = device, [], []
        set_image = self.gen.predictor.set_image

        def timed_set_image(*a, **k):
            t0 = time.perf_counter()
            set_image(*a, **k)
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.encoder.append(time.perf_counter() - t0)

        self.gen.predictor.set_image = timed_set_image

    def __call__(self, image: np.ndarray) -> float:
        t0 = time.perf_counter()
        self.out = self.gen.generate(image)
        return time.perf_counter() - t0

    def masks(self, hw: tuple[int, int]) -> np.ndarray:
        return (
            np.stack([r["segmentation"] for r in self.out])
            if self.out
            else np.zeros((0, *hw), bool)
        )

    def summary(self, runs: list[float], peak_mib: float) -> dict:
        return dict(
            total_s=statistics.median(runs),
            runs_s=runs,
            preprocess_encoder_s=statistics.median(self.encoder[-len(runs) :]),
            masks=len(self.out),
            peak_mib=peak_mib,
        )


def _interleaved(impls: dict, image: np.ndarray, args, device: torch.device) -> dict:
    """Warm up every implementation, then alternate them run by run (load drift on a shared
    machine then hits both alike). Returns ``{name: (run seconds, peak MiB)}``."""
    for _ in range(args.warmup):
        for fn in impls.values():
            fn(image)
    times = {k: [] for k in impls}
    peaks = {k: 0.0 for k in impls}
    for _ in range(args.repeats):
        for name, fn in impls.items():
            with _Memory(device) as mem:
                times[name].append(fn(image))
            peaks[name] = max(peaks[name], mem.peak_mib)
    return {k: (times[k], peaks[k]) for k in impls}


def matched_fraction(reference: np.ndarray, ours: np.ndarray, thresh: float = 0.9) -> float | None:
    """Fraction of ``reference (N, H, W)`` masks with an IoU >= ``thresh`` match in ``ours``."""
    if len(reference) == 0:
        return None
    if len(ours) == 0:
        return 0.0
    b = torch.from_numpy(ours.reshape(len(ours), -1)).float()
    best = []
    for i in range(0, len(reference), 64):
        a = torch.from_numpy(reference[i : i + 64].reshape(-1, b.shape[1])).float()
        inter = a @ b.T
        union = a.sum(1)[:, None] + b.sum(1)[None] - inter
        best.append((inter / union.clamp(min=1)).max(1).values)
    return float((torch.cat(best) >= thresh).float().mean())


def _hardware(device: torch.device) -> dict:
    import segment_anything

    return hardware_info(device) | {
        "segment_anything": getattr(segment_anything, "__version__", "1.0")
    }


def _table(rows: list[dict]) -> str:
    cols = [
        "image",
        "impl",
        "total ms",
        "pre ms",
        "enc ms",
        "dec ms",
        "dec/batch ms",
        "post ms",
        "masks",
        "masks/s",
        "peak MiB",
        "speedup",
        "matched",
    ]
    lines = [" | ".join(cols)]
    for r in rows:
        lines.append(" | ".join(str(r.get(c, "")) for c in cols))
    widths = [max(len(line.split(" | ")[i]) for line in lines) for i in range(len(cols))]
    out = [" | ".join(v.rjust(w) for v, w in zip(line.split(" | "), widths)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


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
            impls = {"ours": _Ours(gen)}
            if not args.no_official:
                impls["official"] = _Official(model, dict(settings, points_per_batch=64), device)
            timed = _interleaved(impls, image, args, device)
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


def _rows(report: dict) -> list[dict]:
    rows = []
    for e in report["results"]:
        o, st = e["ours"], e["ours"]["stages_s"]
        rows.append(
            {
                "image": e["image"],
                "impl": "ours",
                "total ms": f"{o['total_s'] * 1e3:.0f}",
                "pre ms": f"{st['preprocess'] * 1e3:.0f}",
                "enc ms": f"{st['encoder'] * 1e3:.0f}",
                "dec ms": f"{st['decoder'] * 1e3:.0f}",
                "dec/batch ms": f"{st['decoder_per_batch'] * 1e3:.0f}",
                "post ms": f"{st['postprocess'] * 1e3:.0f}",
                "masks": str(o["masks"]),
                "masks/s": f"{o['masks'] / o['total_s']:.1f}",
                "peak MiB": f"{o['peak_mib']:.0f}",
            }
        )
        if "official" in e:
            f = e["official"]
            matched = e["official_masks_matched_iou0.9"]
            rows.append(
                {
                    "image": e["image"],
                    "impl": "official",
                    "total ms": f"{f['total_s'] * 1e3:.0f}",
                    "enc ms": f"{f['preprocess_encoder_s'] * 1e3:.0f} (+pre)",
                    "masks": str(f["masks"]),
                    "masks/s": f"{f['masks'] / f['total_s']:.1f}",
                    "peak MiB": f"{f['peak_mib']:.0f}",
                    "speedup": f"{e['speedup_total']:.2f}x ({e['speedup_excluding_encoder']:.2f}x w/o enc)",
                    "matched": "-" if matched is None else f"{matched:.1%}",
                }
            )
    return rows


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
    print(_table(_rows(report)))
    hw = report["hardware"]
    print(
        f"\n{args.model} ({GENERATED_WEIGHTS + ': masks not meaningful' if report['generated_weights'] else 'real weights'}), "
        f"backend {args.backend} {args.dtype} on {hw['device']} ({hw['cpu']}, {hw['torch_threads']} threads), "
        f"torch {hw['torch']}; speedup = official time / ours; matched = official masks reproduced at IoU >= 0.9"
    )
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
