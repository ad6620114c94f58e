"""pn-train-regionspot: train the RegionSpot head on COCO-format detection annotations.

Pipeline: read ``instances.json`` (COCO / LVIS / Objects365 / V3Det format) -> per image, run the
FROZEN encoders once (SAM mask tokens of the ground-truth boxes used as box prompts, CLIP's
last-block visual tokens) and cache them under ``--cache-dir`` -> train the head with focal loss
against the CLIP text embeddings of the category names (AdamW, warmup + cosine) -> after every
epoch: held-out top-1 accuracy and a resumable checkpoint -> ``OUT_DIR/last.pt``, ``best.pt``
and ``metrics.json``.

Generated (random) SAM or CLIP weights are accepted for smoke tests and benchmarks only: the
command says so loudly, and the checkpoint records it (labels from such a head are flagged as
not meaningful at inference).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from perception_nodes.core.classify.clip_model import (
    DEFAULT_CLIP_MODEL,
    ClipModelError,
    load_clip_model,
)
from perception_nodes.core.vocabulary.runtime import DEFAULT_TEMPLATES
from perception_nodes.training.regionspot import TrainConfig, TrainResult, train_regionspot

logger = logging.getLogger(__name__)

GENERATED_NOTICE = """
##########################################################################################
#  WARNING: {what} uses GENERATED (random, untrained) weights.
#  The head will learn whatever the random features carry; its labels mean NOTHING on real
#  images. Use this only for smoke tests and benchmarks. The checkpoint records it.
##########################################################################################
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pn-train-regionspot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = p.add_argument_group("data (COCO instances format)")
    d.add_argument(
        "--annotations",
        required=True,
        type=Path,
        help="instances.json (images, annotations, categories)",
    )
    d.add_argument(
        "--images-dir", required=True, type=Path, help="folder holding the images' file_name paths"
    )
    d.add_argument(
        "--val-annotations",
        type=Path,
        help="separate validation instances.json (else --val-fraction)",
    )
    d.add_argument(
        "--val-images-dir", type=Path, help="images of --val-annotations (default: --images-dir)"
    )
    d.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="fraction of images held out for validation when no --val-annotations (default 0.2)",
    )
    e = p.add_argument_group("frozen encoders")
    e.add_argument(
        "--sam-model", default="vit_b", help="SAM registry name (default vit_b, as the paper)"
    )
    e.add_argument(
        "--sam-checkpoint",
        type=Path,
        help="SAM weights file (default: the cached official weights)",
    )
    e.add_argument(
        "--clip-model",
        default=DEFAULT_CLIP_MODEL,
        help=f"open_clip model name (default {DEFAULT_CLIP_MODEL})",
    )
    e.add_argument(
        "--clip-checkpoint",
        "--clip-pretrained",
        dest="clip_checkpoint",
        type=Path,
        required=True,
        help="local open_clip weights file for --clip-model (nothing is downloaded)",
    )
    e.add_argument(
        "--cache-dir", type=Path, help="frozen-encoder feature cache (default OUT_DIR/cache)"
    )
    e.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device (default: cuda when available)",
    )
    m = p.add_argument_group("head")
    m.add_argument("--layers", type=int, default=3, help="transformer decoder layers (default 3)")
    m.add_argument("--heads", type=int, default=8, help="attention heads (default 8)")
    m.add_argument("--ffn-dim", type=int, default=0, help="feed-forward width (0 = 4 x CLIP width)")
    m.add_argument("--dropout", type=float, default=0.1)
    m.add_argument(
        "--template",
        dest="templates",
        action="append",
        help="prompt template with '{}' (repeatable; default: the vocabulary's 6 templates)",
    )
    t = p.add_argument_group("training")
    t.add_argument(
        "--epochs", type=int, default=10, help="epochs over the training images (default 10)"
    )
    t.add_argument(
        "--steps", type=int, default=0, help="total optimizer steps; overrides --epochs when > 0"
    )
    t.add_argument("--lr", type=float, default=3e-4, help="peak AdamW learning rate (default 3e-4)")
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument(
        "--warmup-fraction", type=float, default=0.05, help="linear warmup share of all steps"
    )
    t.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    t.add_argument(
        "--max-queries",
        type=int,
        default=100,
        help="boxes per image per step, sampled (default 100)",
    )
    t.add_argument("--focal-alpha", type=float, default=0.25)
    t.add_argument("--focal-gamma", type=float, default=2.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", type=Path, help="continue from a last.pt of the same configuration")
    o = p.add_argument_group("output")
    o.add_argument(
        "--out-dir",
        type=Path,
        default=Path("outputs/regionspot"),
        help="default outputs/regionspot",
    )
    o.add_argument("--no-progress", action="store_true", help="hide progress bars")
    o.add_argument("--quiet", action="store_true", help="only warnings in the log")
    return p


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if not 0.0 <= a.val_fraction < 1.0:
        p.error(f"--val-fraction must be in [0, 1), got {a.val_fraction}")
    for name in ("epochs", "batch_size", "max_queries", "layers", "heads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.steps < 0 or a.lr <= 0:
        p.error("--steps must be >= 0 and --lr > 0")
    for path, flag in ((a.annotations, "--annotations"), (a.images_dir, "--images-dir")):
        if not path.exists():
            p.error(f"{flag} {path} does not exist")
    if a.resume is not None and not a.resume.is_file():
        p.error(f"--resume {a.resume} is not a file")


def _sam_checkpoint(model: str, given: Path | None) -> Path:
    """The given SAM weights, or the cached official ones (the error says how to fetch them)."""
    from perception_nodes.core.sam.registry import resolve_checkpoint
    from perception_nodes.core.weights.files import CheckpointError

    try:
        return resolve_checkpoint(model, given)
    except (CheckpointError, KeyError) as exc:
        raise SystemExit(f"error: {exc}") from exc


def to_config(a: argparse.Namespace, sam_checkpoint: Path) -> TrainConfig:
    return TrainConfig(
        images_dir=str(a.images_dir),
        annotations=str(a.annotations),
        out_dir=str(a.out_dir),
        cache_dir=str(a.cache_dir or a.out_dir / "cache"),
        sam_model=a.sam_model,
        sam_checkpoint=str(sam_checkpoint),
        clip_model=a.clip_model,
        clip_checkpoint=str(a.clip_checkpoint),
        val_annotations=str(a.val_annotations) if a.val_annotations else None,
        val_images_dir=str(a.val_images_dir) if a.val_images_dir else None,
        val_fraction=a.val_fraction,
        epochs=a.epochs,
        max_steps=a.steps,
        lr=a.lr,
        weight_decay=a.weight_decay,
        batch_size=a.batch_size,
        warmup_fraction=a.warmup_fraction,
        max_queries=a.max_queries,
        num_layers=a.layers,
        num_heads=a.heads,
        ffn_dim=a.ffn_dim,
        dropout=a.dropout,
        focal_alpha=a.focal_alpha,
        focal_gamma=a.focal_gamma,
        templates=list(a.templates or DEFAULT_TEMPLATES),
        seed=a.seed,
        device=a.device,
        resume=str(a.resume) if a.resume else None,
        progress=not a.no_progress,
    )


def _print_history(result: TrainResult, chance: float) -> None:
    print(
        f"\n{'epoch':>5} {'steps':>6} {'train loss':>11} {'val loss':>9} {'val top-1':>10} {'val mean-class':>15}"
    )
    for h in result.history:
        print(
            f"{h['epoch']:>5} {h['steps']:>6} {h['train_loss']:>11.4f} {h['val_loss']:>9.4f} "
            f"{100 * h['val_top1']:>9.1f}% {100 * h['val_mean_class_acc']:>14.1f}%"
        )
    print(f"chance level (uniform over categories): {100 * chance:.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    _check_args(parser, a)
    logging.basicConfig(
        level=logging.WARNING if a.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    sam_ckpt = _sam_checkpoint(a.sam_model, a.sam_checkpoint)
    try:
        clip = load_clip_model(a.clip_model, a.clip_checkpoint, a.device)
    except ClipModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from perception_nodes.training.regionspot_features import sam_box_token_fn

    box_tokens, sam_untrained = sam_box_token_fn(a.sam_model, sam_ckpt, a.device)
    for what, generated in (
        (f"SAM {a.sam_model}", sam_untrained),
        (f"CLIP {a.clip_model}", clip.generated),
    ):
        if generated:
            print(GENERATED_NOTICE.format(what=what), file=sys.stderr)
    cfg = to_config(a, sam_ckpt)
    result = train_regionspot(cfg, box_tokens=box_tokens, sam_untrained=sam_untrained, clip=clip)
    if not result.history:
        print(
            "nothing to do: the resumed checkpoint already reached the requested steps",
            file=sys.stderr,
        )
        return 0
    from perception_nodes.training.coco_dataset import load_coco

    n_cats = len(load_coco(cfg.annotations).category_names)
    summary = {
        "checkpoint": str(result.checkpoint),
        "best_checkpoint": str(result.best_checkpoint),
        "best_val_top1": result.best_val_top1,
        "final": result.history[-1],
        "history": result.history,
        "chance_top1": 1.0 / n_cats,
        "num_categories": n_cats,
        "encoders_generated": bool(sam_untrained or clip.generated),
        "config": asdict(cfg),
    }
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    _print_history(result, 1.0 / n_cats)
    print(
        f"checkpoints: {result.checkpoint} (resumable), {result.best_checkpoint} (best val top-1 "
        f"{100 * result.best_val_top1:.1f}%); metrics: {out / 'metrics.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
