"""Training loop of the relation head on cached :class:`FrameSample` s (RAM recipe).

Multi-label loss (BCE or sigmoid focal) over every ordered pair of regions of each frame,
normalised by the number of positive labels. Soft labels from a self-distilled EMA copy of the
model: on pairs holding at least one GT predicate the target becomes
``(1 - a) * GT + a * sigmoid(EMA logits)``, so near-synonym predicates ("on" / "parked on") are
not pushed to 0 when the annotator chose the other; ``a`` ramps up linearly over
``distill_warmup`` steps (the EMA model is random at first).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torchvision.ops import sigmoid_focal_loss
from tqdm import tqdm

from perception_nodes.core.relations.base import PAIR_FEATURE_DIM, RegionGeometry, pair_features
from perception_nodes.core.relations.head import RelationHead
from perception_nodes.training.relation_metrics import RecallAccumulator
from perception_nodes.training.relation_samples import FrameSample

logger = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Optimisation settings (model dims live in :class:`RelationHeadConfig`)."""

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    loss: str = "bce"  # "bce" or "focal"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    distill_weight: float = 0.3
    distill_warmup: int = 200
    ema_decay: float = 0.99
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.loss not in ("bce", "focal"):
            raise ValueError(f"loss must be 'bce' or 'focal', got {self.loss!r}")
        if not 0.0 <= self.distill_weight < 1.0:
            raise ValueError(f"distill_weight must be in [0, 1), got {self.distill_weight}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")


def sample_pair_features(sample: FrameSample) -> np.ndarray:
    """``(N, N, G)`` pair features of a cached sample (no depth in PSG)."""
    geom = RegionGeometry(
        boxes=sample.boxes.astype(np.float64), areas=sample.areas.astype(np.float64),
        inter=sample.inter.astype(np.float64), depth=np.full(sample.num_regions, np.nan),
        image_size=sample.image_size,
    )  # fmt: skip
    return pair_features(geom)


def category_rows(sample: FrameSample, unknown: int) -> np.ndarray:
    """Embedding rows: the matched GT category id, ``unknown`` where unmatched."""
    c = sample.categories.astype(np.int64)
    return np.where((c >= 0) & (c < unknown), c, unknown)


def collate(
    samples: list[FrameSample], unknown: int, num_predicates: int, device: torch.device
) -> dict:
    """Pad a batch to the largest N: tokens, categories, pair features, padding, targets, valid."""
    b, n = len(samples), max(max(s.num_regions for s in samples), 1)
    t_dim = samples[0].tokens.shape[1]
    tokens = torch.zeros(b, n, t_dim)
    cats = torch.full((b, n), unknown, dtype=torch.long)
    pairs = torch.zeros(b, n, n, PAIR_FEATURE_DIM)
    padding = torch.ones(b, n, dtype=torch.bool)
    targets = torch.zeros(b, n, n, num_predicates)
    valid = torch.zeros(b, n, n, dtype=torch.bool)
    for i, s in enumerate(samples):
        k = s.num_regions
        tokens[i, :k] = torch.from_numpy(s.tokens)
        cats[i, :k] = torch.from_numpy(category_rows(s, unknown))
        pairs[i, :k, :k] = torch.from_numpy(sample_pair_features(s))
        padding[i, :k] = False
        valid[i, :k, :k] = ~torch.eye(k, dtype=torch.bool)
        if s.triplets.size:
            tr = torch.from_numpy(s.triplets)
            targets[i, tr[:, 0], tr[:, 1], tr[:, 2]] = 1.0
    out = dict(
        tokens=tokens,
        categories=cats,
        pair_feats=pairs,
        padding=padding,
        targets=targets,
        valid=valid,
    )
    return {k: v.to(device) for k, v in out.items()}


def relation_loss(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, s: TrainSettings
) -> torch.Tensor:
    """Multi-label loss over valid pairs, summed and divided by the number of positive labels."""
    v = valid[..., None].expand_as(logits)
    x, y = logits[v], targets[v]
    if s.loss == "focal":
        per = sigmoid_focal_loss(x, y, alpha=s.focal_alpha, gamma=s.focal_gamma, reduction="none")
    else:
        per = nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
    return per.sum() / (targets[v] >= 0.5).sum().clamp(min=1)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def soft_targets(targets: torch.Tensor, ema_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mix GT with EMA predictions on pairs that hold at least one GT predicate."""
    positive_pair = (targets.amax(dim=-1, keepdim=True) > 0).float()
    mixed = (1 - alpha) * targets + alpha * ema_probs
    return positive_pair * mixed + (1 - positive_pair) * targets


@torch.no_grad()
def evaluate(
    head: RelationHead,
    samples: list[FrameSample],
    ks: tuple[int, ...] = (20, 50, 100),
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """R@K, mR@K and chance levels of ``head`` on ``samples`` (see :mod:`metrics`)."""
    head.eval()
    dev = torch.device(device)
    acc = RecallAccumulator(ks, len(head.config.predicates))
    for s in samples:
        if s.num_regions < 2:
            acc.add(
                np.zeros((max(s.num_regions, 1),) * 2 + (len(head.config.predicates),)),
                s.gt_to_pred,
                s.gt_relations,
            )
            continue
        batch = collate([s], head.config.unknown_index, len(head.config.predicates), dev)
        logits = head(batch["tokens"], batch["categories"], batch["pair_feats"], batch["padding"])
        acc.add(torch.sigmoid(logits)[0].cpu().numpy(), s.gt_to_pred, s.gt_relations)
    return acc.summary()


def train_head(
    head: RelationHead,
    train: list[FrameSample],
    settings: TrainSettings,
    val: list[FrameSample] | None = None,
    ks: tuple[int, ...] = (20, 50, 100),
) -> tuple[RelationHead, list[dict]]:
    """Train ``head`` in place; returns ``(ema_head, history)`` (one dict per epoch)."""
    if not train:
        raise ValueError("no training samples")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    dev = torch.device(settings.device)
    head.to(dev).train()
    ema = copy.deepcopy(head).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=total, pct_start=0.1)
    unknown, num_p = head.config.unknown_index, len(head.config.predicates)
    history, step = [], 0
    bar = tqdm(total=total, desc="train relations", unit="step", disable=not settings.progress)
    for epoch in range(settings.epochs):
        head.train()
        order = rng.permutation(len(train))
        losses, t0 = [], time.perf_counter()
        for i in range(0, len(order), settings.batch_size):
            batch = collate(
                [train[j] for j in order[i : i + settings.batch_size]], unknown, num_p, dev
            )
            targets = batch["targets"]
            alpha = settings.distill_weight * min(1.0, step / max(settings.distill_warmup, 1))
            if alpha > 0:
                with torch.no_grad():
                    ema_logits = ema(
                        batch["tokens"], batch["categories"], batch["pair_feats"], batch["padding"]
                    )
                targets = soft_targets(targets, torch.sigmoid(ema_logits), alpha)
            logits = head(
                batch["tokens"], batch["categories"], batch["pair_feats"], batch["padding"]
            )
            loss = relation_loss(logits, targets, batch["valid"], settings)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                nn.utils.clip_grad_norm_(head.parameters(), settings.grad_clip)
            opt.step()
            sched.step()
            ema_update(ema, head, settings.ema_decay)
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses):.4f}")
        record = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "seconds": time.perf_counter() - t0,
        }
        if val:
            record.update({f"val_{k}": v for k, v in evaluate(head, val, ks, dev).items()})
            head.train()
        history.append(record)
        logger.info("epoch %d: %s", epoch, record)
    bar.close()
    head.eval()
    return ema, history


def settings_dict(s: TrainSettings) -> dict:
    return asdict(s)
