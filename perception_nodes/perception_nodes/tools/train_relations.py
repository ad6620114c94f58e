"""pn-train-relations: train the RAM-style relation head on OpenPSG-format data.

Pipeline: load ``psg.json`` -> run SAM on each image (mode ``auto``: segment everything and
match masks to GT by IoU, as RAM; mode ``gt-boxes``: prompt SAM with the GT boxes, 1:1) ->
cache tokens/boxes/matches -> train (multi-label BCE/focal + EMA soft labels) -> evaluate
R@K / mR@K on the test split next to the chance level -> write the checkpoint + metrics JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from perception_nodes.core.relations.head import (
    RelationHead,
    RelationHeadConfig,
    save_relation_head,
)
from perception_nodes.core.weights.files import GENERATED_WEIGHTS
from perception_nodes.training.psg import load_psg
from perception_nodes.training.relation_samples import MODES, SegmentFn, cache_key, extract_samples
from perception_nodes.training.relations import TrainSettings, evaluate, settings_dict, train_head

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pn-train-relations",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--psg-json", required=True, type=Path, help="OpenPSG psg.json")
    d.add_argument(
        "--image-root", type=Path, help="folder of the images (default: next to psg.json)"
    )
    d.add_argument(
        "--seg-root", type=Path, help="folder of the panoptic PNGs (default: next to psg.json)"
    )
    d.add_argument("--train-split", default="train", choices=("train", "test", "all"))
    d.add_argument("--val-split", default="test", choices=("train", "test", "all", "none"))
    d.add_argument(
        "--max-images", type=int, default=0, help="use at most this many images per split (0 = all)"
    )
    s = p.add_argument_group("segmentation")
    s.add_argument("--mode", choices=MODES, default="auto",
                   help="auto: SAM segment-everything + IoU matching (what the pipeline sees at run time; "
                        "use it for real training). gt-boxes: SAM prompted with GT boxes, masks 1:1 with GT "
                        "(fast and clean; use it for quick experiments, tests, or slow CPUs)")  # fmt: skip
    s.add_argument(
        "--sam-model", default="vit_b", help="SAM registry name (recorded in the checkpoint)"
    )
    s.add_argument(
        "--sam-checkpoint", type=Path, help="SAM weights (default: cached official weights)"
    )
    s.add_argument("--points-per-side", type=int, default=16, help="auto mode: point grid side")
    s.add_argument(
        "--pred-iou-thresh", type=float, default=0.88, help="auto mode: SAM predicted-IoU filter"
    )
    s.add_argument(
        "--stability-thresh", type=float, default=0.95, help="auto mode: SAM stability filter"
    )
    s.add_argument(
        "--max-regions", type=int, default=100, help="auto mode: keep at most this many regions"
    )
    s.add_argument(
        "--min-iou", type=float, default=0.5, help="auto mode: minimum IoU to match a GT mask"
    )
    s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    s.add_argument("--cache-dir", type=Path, help="feature cache (default: OUT_DIR/cache)")
    m = p.add_argument_group("model")
    m.add_argument("--width", type=int, default=256)
    m.add_argument("--layers", type=int, default=2, help="transformer encoder layers over regions")
    m.add_argument("--heads", type=int, default=8)
    m.add_argument("--ff-dim", type=int, default=512)
    m.add_argument(
        "--pred-dim", type=int, default=64, help="per-predicate subject/object projection dim"
    )
    m.add_argument(
        "--geo-hidden", type=int, default=64, help="hidden size of the pair-geometry MLP"
    )
    m.add_argument("--dropout", type=float, default=0.1)
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--loss", choices=("bce", "focal"), default="bce")
    t.add_argument(
        "--distill-weight",
        type=float,
        default=0.3,
        help="weight of the EMA model's predictions in the soft targets (0 = off)",
    )
    t.add_argument(
        "--distill-warmup", type=int, default=200, help="steps over which that weight ramps up"
    )
    t.add_argument("--ema-decay", type=float, default=0.99)
    t.add_argument(
        "--save", choices=("model", "ema"), default="model", help="which weights to save"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--ks", type=int, nargs="+", default=[20, 50, 100], help="K of R@K / mR@K")
    o = p.add_argument_group("output")
    o.add_argument("--out-dir", type=Path, default=Path("outputs/relations"))
    o.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def make_segmenter(args: argparse.Namespace) -> tuple[SegmentFn, bool]:
    """SAM-based ``segment(image, gt_boxes)`` for ``args.mode``; also whether weights are untrained."""
    from perception_nodes.core.sam.amg import MaskGenerator
    from perception_nodes.core.sam.backends import create_backend

    backend = create_backend(
        "torch", model=args.sam_model, checkpoint=args.sam_checkpoint, device=args.device
    )
    untrained = bool(getattr(getattr(backend, "model", None), "pn_untrained", False))
    if args.mode == "auto":
        gen = MaskGenerator(
            backend,
            points_per_side=args.points_per_side,
            pred_iou_thresh=args.pred_iou_thresh,
            stability_score_thresh=args.stability_thresh,
            max_regions=args.max_regions,
        )
        return (lambda image, boxes: gen.generate(image)), untrained
    gen = MaskGenerator(backend)
    return (lambda image, boxes: gen.predict_boxes(image, boxes)), untrained


def _print_metrics(title: str, metrics: dict[str, float], ks: list[int]) -> None:
    print(f"\n{title} ({int(metrics.get('images', 0))} images with relations)")
    print(f"{'K':>5} {'R@K':>8} {'mR@K':>8} {'chance R@K':>11} {'chance mR@K':>12}")
    for k in sorted(ks):
        print(f"{k:>5} {100 * metrics[f'R@{k}']:>7.2f}% {100 * metrics[f'mR@{k}']:>7.2f}% "
              f"{100 * metrics[f'chance_R@{k}']:>10.3f}% {100 * metrics[f'chance_mR@{k}']:>11.3f}%")  # fmt: skip


def run(args: argparse.Namespace, segment: SegmentFn | None = None) -> dict:
    """Do the work of the command; returns the summary written to ``OUT_DIR/metrics.json``."""
    dataset = load_psg(args.psg_json, args.image_root, args.seg_root)
    train_images = dataset.split(args.train_split)
    val_images = [] if args.val_split == "none" else dataset.split(args.val_split)
    if args.max_images > 0:
        train_images, val_images = train_images[: args.max_images], val_images[: args.max_images]
    if not train_images:
        raise SystemExit(f"no images in split {args.train_split!r} of {args.psg_json}")
    untrained = False
    if segment is None:
        segment, untrained = make_segmenter(args)
    key = cache_key(psg=str(Path(args.psg_json).resolve()), mode=args.mode, sam=args.sam_model,
                    ckpt=str(args.sam_checkpoint), pps=args.points_per_side, min_iou=args.min_iou,
                    auto=(args.pred_iou_thresh, args.stability_thresh, args.max_regions))  # fmt: skip
    cache = (args.cache_dir or args.out_dir / "cache") / key
    train, train_counts = extract_samples(
        dataset, train_images, segment, args.mode, cache, args.min_iou, "train features"
    )
    val, val_counts = extract_samples(
        dataset, val_images, segment, args.mode, cache, args.min_iou, "val features"
    )
    config = RelationHeadConfig(
        predicates=dataset.predicate_classes, categories=dataset.categories, sam_model=args.sam_model,
        token_dim=int(train[0].tokens.shape[1]), width=args.width, num_layers=args.layers, num_heads=args.heads,
        ff_dim=args.ff_dim, pred_dim=args.pred_dim, geo_hidden=args.geo_hidden, dropout=args.dropout,
    )  # fmt: skip
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, loss=args.loss,
        distill_weight=args.distill_weight, distill_warmup=args.distill_warmup, ema_decay=args.ema_decay,
        seed=args.seed, device=args.device, progress=not args.no_progress,
    )  # fmt: skip
    torch.manual_seed(args.seed)
    head = RelationHead(config)
    ema, history = train_head(head, train, settings)
    ks = tuple(args.ks)
    summary = {"mode": args.mode, "sam_model": args.sam_model, "sam_untrained": untrained,
               "train_images": len(train), "val_images": len(val), "train_counts": train_counts,
               "val_counts": val_counts, "settings": settings_dict(settings), "history": history}  # fmt: skip
    if val:
        summary["val"] = evaluate(head, val, ks, args.device)
        summary["val_ema"] = evaluate(ema, val, ks, args.device)
    summary["train_eval"] = evaluate(head, train, ks, args.device)
    saved = ema if args.save == "ema" else head
    args.out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = args.out_dir / "relation_head.pt"
    save_relation_head(ckpt, saved.cpu(), extra={"metrics": summary.get("val", {}), "mode": args.mode,
                                                   "psg_json": str(args.psg_json), "weights": args.save})  # fmt: skip
    summary["checkpoint"] = str(ckpt)
    (args.out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = run(args)
    c = summary["train_counts"]
    print(f"matching (train): {c.get('gt_matched', 0)}/{c.get('gt_segments', 0)} GT segments matched, "
          f"{c.get('kept', 0)}/{c.get('total', 0)} relations kept ({c.get('dropped_unmatched', 0)} unmatched end, "
          f"{c.get('dropped_self', 0)} same mask, {c.get('merged_duplicates', 0)} duplicates merged)")  # fmt: skip
    if c.get("kept", 0) == 0:
        print("WARNING: no ground-truth relation survived matching: the head had nothing to learn "
              "(segmentation masks do not overlap the GT masks by --min-iou; untrained SAM weights?)")  # fmt: skip
    if summary["sam_untrained"]:
        print(f"NOTE: SAM runs on {GENERATED_WEIGHTS}: tokens carry little meaning; metrics are not "
              "representative of a real model")  # fmt: skip
    _print_metrics("train split", summary["train_eval"], args.ks)
    if "val" in summary:
        _print_metrics("validation split (model)", summary["val"], args.ks)
        _print_metrics("validation split (EMA)", summary["val_ema"], args.ks)
    print(f"\ncheckpoint: {summary['checkpoint']}\nmetrics: {args.out_dir / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
