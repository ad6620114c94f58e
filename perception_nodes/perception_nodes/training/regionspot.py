"""Training of the RegionSpot head on COCO-format detection annotations.

Input: an images folder and an ``instances.json`` with ``images`` (id, file_name),
``annotations`` (image_id, category_id, bbox XYWH pixels, optional iscrowd) and ``categories``
(id, name): the format of COCO, LVIS, Objects365 and V3Det.

Per image, the frozen encoders run ONCE and their outputs are cached to disk (keyed by the model
names and checkpoint hashes): the SAM mask tokens of the ground-truth boxes used as box prompts,
and CLIP's last-block visual tokens of the whole image. The head then trains on the cache with
sigmoid focal loss against the CLIP text embeddings of the category names, AdamW and a linear
warmup + cosine schedule; each epoch ends with top-1 accuracy on a held-out split and a
resumable checkpoint that records the configuration.

This module holds the training loop, its batching, loss, schedule, evaluation and resume; the
annotations are read by :mod:`.coco_dataset` and the encoder cache is :mod:`.regionspot_features`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchvision.ops import sigmoid_focal_loss
from tqdm import tqdm

from perception_nodes.core.classify.clip_model import ClipModel, load_clip_model
from perception_nodes.core.classify.regionspot import (
    CheckpointMismatchError,
    RegionSpotConfig,
    RegionSpotHead,
    read_regionspot_checkpoint,
    save_regionspot_checkpoint,
)
from perception_nodes.core.records import dataclass_from_dict
from perception_nodes.core.vocabulary.runtime import DEFAULT_TEMPLATES, Vocabulary
from perception_nodes.training.coco_dataset import DatasetError, load_coco, split_images
from perception_nodes.training.regionspot_features import BoxTokenFn, FeatureCache, sam_box_token_fn

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Options of :func:`train_regionspot` (see ``pn-train-regionspot --help``)."""

    images_dir: str
    annotations: str
    out_dir: str
    cache_dir: str
    sam_model: str
    sam_checkpoint: str
    clip_model: str
    clip_checkpoint: str
    val_annotations: str | None = None
    val_images_dir: str | None = None
    val_fraction: float = 0.2
    epochs: int = 10
    max_steps: int = 0  # > 0: stop after this many optimizer steps in total (epochs then derived)
    lr: float = 3e-4
    weight_decay: float = 0.05
    batch_size: int = 8
    warmup_fraction: float = 0.05
    max_queries: int = 100
    num_layers: int = 3
    num_heads: int = 8
    ffn_dim: int = 0
    dropout: float = 0.1
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    seed: int = 0
    device: str = "cpu"
    resume: str | None = None
    progress: bool = True


@dataclass
class TrainResult:
    checkpoint: Path
    best_checkpoint: Path
    history: list[
        dict
    ]  # per epoch: epoch, train_loss, val_loss, val_top1, val_mean_class_acc, steps

    @property
    def best_val_top1(self) -> float:
        return max(h["val_top1"] for h in self.history)


def _collate(
    items: list[dict], max_queries: int, rng: np.random.Generator
) -> tuple[torch.Tensor, ...]:
    """Pad a batch: tokens (B,Q,256), visual (B,T,W), labels (B,Q) with -1 padding, pad mask (B,Q)."""
    sel = []
    for it in items:
        n = len(it["labels"])
        sel.append(
            np.sort(rng.choice(n, max_queries, replace=False)) if n > max_queries else np.arange(n)
        )
    q = max(len(s) for s in sel)
    b = len(items)
    tokens = torch.zeros(b, q, items[0]["tokens"].shape[1])
    labels = torch.full((b, q), -1, dtype=torch.long)
    for i, (it, s) in enumerate(zip(items, sel)):
        tokens[i, : len(s)] = it["tokens"][s].float()
        labels[i, : len(s)] = it["labels"][s]
    visual = torch.stack([it["visual"].float() for it in items])
    return tokens, visual, labels, labels < 0


def _focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    valid = labels >= 0
    target = torch.zeros_like(logits)
    target[valid] = torch.nn.functional.one_hot(labels[valid], logits.shape[-1]).to(logits.dtype)
    loss = sigmoid_focal_loss(
        logits[valid], target[valid], alpha=alpha, gamma=gamma, reduction="sum"
    )
    return loss / valid.sum().clamp(min=1)


@torch.no_grad()
def evaluate(head: RegionSpotHead, feats: list[dict], text: torch.Tensor, cfg: TrainConfig) -> dict:
    """Held-out loss, top-1 accuracy and mean per-class accuracy over all boxes."""
    head.eval()
    rng = np.random.default_rng(0)
    preds, gts, losses = [], [], []
    for i in range(0, len(feats), cfg.batch_size):
        tokens, visual, labels, pad = _collate(feats[i : i + cfg.batch_size], 10**9, rng)
        logits = head.logits(head(tokens, visual, pad), text)
        losses.append(float(_focal_loss(logits, labels, cfg.focal_alpha, cfg.focal_gamma)))
        preds.append(logits.argmax(-1)[~pad])
        gts.append(labels[~pad])
    p, g = torch.cat(preds), torch.cat(gts)
    per_class = [float((p[g == c] == c).float().mean()) for c in g.unique()]
    return {
        "val_loss": float(np.mean(losses)),
        "val_top1": float((p == g).float().mean()),
        "val_mean_class_acc": float(np.mean(per_class)),
        "val_boxes": int(len(g)),
    }


def _schedule(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


def train_regionspot(
    cfg: TrainConfig,
    box_tokens: BoxTokenFn | None = None,
    sam_untrained: bool | None = None,
    clip: ClipModel | None = None,
) -> TrainResult:
    """Train (or resume) a head; returns the checkpoints and per-epoch history.

    ``box_tokens`` defaults to :func:`sam_box_token_fn` of ``cfg.sam_model``/``sam_checkpoint``
    (pass another source in tests or to reuse a loaded SAM).
    """
    from perception_nodes.core.weights.files import sha256_file

    torch.manual_seed(cfg.seed)
    clip = clip or load_clip_model(cfg.clip_model, cfg.clip_checkpoint, cfg.device)
    if box_tokens is None:
        box_tokens, sam_untrained = sam_box_token_fn(cfg.sam_model, cfg.sam_checkpoint, cfg.device)
    sam_sha = sha256_file(cfg.sam_checkpoint)

    data = load_coco(cfg.annotations)
    if cfg.val_annotations:
        val_data = load_coco(cfg.val_annotations)
        if val_data.category_names != data.category_names:
            raise DatasetError("validation categories differ from the training categories")
        train_recs, val_recs = data.images, val_data.images
        val_dir = Path(cfg.val_images_dir or cfg.images_dir)
    else:
        train_recs, val_recs = split_images(data.images, cfg.val_fraction, cfg.seed)
        val_dir = Path(cfg.images_dir)
    cache = FeatureCache(cfg.cache_dir, cfg.sam_model, sam_sha, clip)
    train_feats = cache.build(train_recs, Path(cfg.images_dir), box_tokens, clip, cfg.progress)
    val_feats = cache.build(val_recs, val_dir, box_tokens, clip, cfg.progress)

    vocab = Vocabulary(clip, templates=cfg.templates)
    text = torch.from_numpy(np.array(vocab.set(data.category_names).embeddings)).to(cfg.device)

    head_cfg = RegionSpotConfig(
        sam_model=cfg.sam_model,
        clip_model=clip.name,
        clip_width=clip.width,
        embed_dim=clip.embed_dim,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        ffn_dim=cfg.ffn_dim,
        dropout=cfg.dropout,
        templates=list(cfg.templates),
        sam_checkpoint_sha256=sam_sha,
        clip_checkpoint_sha256=clip.checkpoint_sha256,
        encoders_generated=bool(clip.generated or sam_untrained),
    )
    head = RegionSpotHead(head_cfg).to(cfg.device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_feats) / cfg.batch_size)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total_steps, cfg.warmup_fraction))
    history: list[dict] = []
    step = 0
    out = Path(cfg.out_dir)
    last, best = out / "last.pt", out / "best.pt"
    if cfg.resume:
        step, history = _resume(Path(cfg.resume), head, opt, sched, head_cfg, data.category_names)
    logger.info(
        "training %d steps (%d per epoch, %d epochs), starting at step %d",
        total_steps,
        steps_per_epoch,
        epochs,
        step,
    )

    for epoch in range(step // steps_per_epoch, epochs):
        head.train()
        # One generator per epoch: a resumed run sees the same batch order as an uninterrupted one.
        erng = np.random.default_rng([cfg.seed, epoch])
        order = erng.permutation(len(train_feats))
        starts = list(range(0, len(order), cfg.batch_size))
        starts = starts[step - epoch * steps_per_epoch : total_steps - epoch * steps_per_epoch]
        if not starts:
            break
        losses = []
        bar = tqdm(
            starts, desc=f"epoch {epoch + 1}/{epochs}", disable=not cfg.progress, unit="batch"
        )
        for i in bar:
            tokens, visual, labels, pad = _collate(
                [train_feats[j] for j in order[i : i + cfg.batch_size]], cfg.max_queries, erng
            )
            tokens, visual, labels, pad = (t.to(cfg.device) for t in (tokens, visual, labels, pad))
            loss = _focal_loss(
                head.logits(head(tokens, visual, pad), text),
                labels,
                cfg.focal_alpha,
                cfg.focal_gamma,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        metrics = {
            "epoch": epoch + 1,
            "steps": step,
            "train_loss": float(np.mean(losses)),
            **evaluate(head, val_feats, text, cfg),
        }
        history.append(metrics)
        logger.info("epoch %d: %s", epoch + 1, metrics)
        training = {
            "config": asdict(cfg),
            "categories": data.category_names,
            "history": history,
            "epochs_done": step / steps_per_epoch,
            "steps": step,
        }
        extra = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
        save_regionspot_checkpoint(last, head, training, extra)
        if metrics["val_top1"] >= max(h["val_top1"] for h in history):
            save_regionspot_checkpoint(best, head, training)
    return TrainResult(last, best, history)


def _resume(
    path: Path,
    head: RegionSpotHead,
    opt: torch.optim.Optimizer,
    sched,
    head_cfg: RegionSpotConfig,
    categories: list[str],
) -> tuple[int, list[dict]]:
    obj = read_regionspot_checkpoint(path)
    saved = dataclass_from_dict(
        RegionSpotConfig, obj["config"], f"checkpoint {path}", CheckpointMismatchError
    )
    if asdict(saved) != asdict(head_cfg):
        diff = {
            k: (v, getattr(head_cfg, k))
            for k, v in asdict(saved).items()
            if getattr(head_cfg, k) != v
        }
        raise CheckpointMismatchError(
            f"cannot resume {path}: its head/encoder config differs: {diff}"
        )
    tr = obj.get("training", {})
    if tr.get("categories") != categories:
        raise CheckpointMismatchError(f"cannot resume {path}: it was trained on other categories")
    if "optimizer" not in obj:
        raise CheckpointMismatchError(
            f"cannot resume {path}: it has no optimizer state (use last.pt)"
        )
    head.load_state_dict(obj["state_dict"])
    opt.load_state_dict(obj["optimizer"])
    sched.load_state_dict(obj["scheduler"])
    logger.info("resumed %s at step %d (epoch %.2f)", path, tr["steps"], tr["epochs_done"])
    return int(tr["steps"]), list(tr.get("history", []))
