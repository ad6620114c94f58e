"""RAM-style learned relation head and its predictor.

Per region: SAM mask token (``token_dim``, 256) -> Linear -> LayerNorm to ``width``, plus a
learned embedding of the region's category (table over the training category list, plus one
"unknown" row for labels outside it and unlabelled regions). A small transformer encoder runs
over all regions of the frame (global context). Per predicate p, subject and object projections
``S_p, O_p`` (``pred_dim`` each) give ``score(s, o, p) = <S_p x_s, O_p x_o> / sqrt(pred_dim)``,
plus a per-predicate bias from an MLP over the pair's geometry (:func:`base.pair_features`).
Multi-label: a sigmoid per predicate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from perception_nodes.core.records import dataclass_from_dict
from perception_nodes.core.relations.base import (
    PAIR_FEATURE_DIM,
    RelationInputError,
    RelationPredictor,
    check_labels,
    pair_features,
    region_geometry,
    relations_from_scores,
)
from perception_nodes.core.relations.predicates import PSG_PREDICATES, validate_predicates
from perception_nodes.core.types import RegionLabels, Relations, Segmentation
from perception_nodes.core.weights.checkpoint_io import save_atomic

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "perception_nodes.relation_head"
CHECKPOINT_VERSION = 1


class RelationCheckpointError(ValueError):
    """A relation checkpoint is missing, malformed, or does not match the running configuration."""


def normalize_category(name: str) -> str:
    """Canonical form used to map label names to categories: lower case, ``_``/``-`` as spaces,
    PSG's ``-merged``/``-other``/``-stuff`` suffixes dropped ("table-merged" -> "table")."""
    n = name.strip().lower()
    for suffix in ("-merged", "-other", "-stuff"):
        if n.endswith(suffix):
            n = n[: -len(suffix)]
    return " ".join(n.replace("_", " ").replace("-", " ").split())


@dataclass
class RelationHeadConfig:
    """Everything needed to rebuild a :class:`RelationHead`; stored in checkpoints."""

    predicates: list[str] = field(default_factory=lambda: list(PSG_PREDICATES))
    categories: list[str] = field(default_factory=list)
    sam_model: str = "unspecified"
    token_dim: int = 256
    width: int = 256
    num_layers: int = 2
    num_heads: int = 8
    ff_dim: int = 512
    pred_dim: int = 64
    geo_hidden: int = 64
    geo_dim: int = PAIR_FEATURE_DIM
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.predicates = validate_predicates(self.predicates)
        self.categories = list(self.categories)
        if self.width % self.num_heads:
            raise ValueError(
                f"width ({self.width}) must be divisible by num_heads ({self.num_heads})"
            )
        for name in (
            "token_dim",
            "width",
            "num_heads",
            "ff_dim",
            "pred_dim",
            "geo_hidden",
            "geo_dim",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {self.num_layers}")

    @property
    def unknown_index(self) -> int:
        """Row of the "unknown" category embedding (= number of categories)."""
        return len(self.categories)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RelationHeadConfig":
        return dataclass_from_dict(cls, d, "relation head config", RelationCheckpointError)


class RelationHead(nn.Module):
    """Scores every ordered region pair of each frame for every predicate.

    Shapes: B frames, N regions (padded), T token dim, G pair features, P predicates.
    """

    def __init__(self, config: RelationHeadConfig) -> None:
        super().__init__()
        c = self.config = config
        self.token_proj = nn.Sequential(nn.Linear(c.token_dim, c.width), nn.LayerNorm(c.width))
        self.category_embed = nn.Embedding(len(c.categories) + 1, c.width)
        nn.init.normal_(self.category_embed.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            c.width, c.num_heads, c.ff_dim, c.dropout, batch_first=True, norm_first=True
        )
        self.encoder = (
            nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
            if c.num_layers
            else None
        )
        self.norm = nn.LayerNorm(c.width)
        num_p = len(c.predicates)
        self.subject_proj = nn.Linear(c.width, num_p * c.pred_dim)
        self.object_proj = nn.Linear(c.width, num_p * c.pred_dim)
        self.geo_mlp = nn.Sequential(
            nn.Linear(c.geo_dim, c.geo_hidden), nn.GELU(), nn.Linear(c.geo_hidden, num_p)
        )
        self.predicate_bias = nn.Parameter(torch.full((num_p,), -4.0))  # rare positives at start

    def forward(
        self,
        tokens: torch.Tensor,
        categories: torch.Tensor,
        pair_feats: torch.Tensor,
        padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, N, N, P)`` (row = subject, column = object).

        Args:
            tokens: ``(B, N, T)`` float SAM mask tokens.
            categories: ``(B, N)`` long category rows (``config.unknown_index`` = unknown).
            pair_feats: ``(B, N, N, G)`` float pair geometry features.
            padding: ``(B, N)`` bool, True where a slot is padding (ignored as context).
        """
        c = self.config
        if tokens.shape[-1] != c.token_dim:
            raise RelationInputError(
                f"tokens have dim {tokens.shape[-1]}, the head expects {c.token_dim}"
            )
        if pair_feats.shape[-1] != c.geo_dim:
            raise RelationInputError(
                f"pair features have dim {pair_feats.shape[-1]}, expected {c.geo_dim}"
            )
        x = self.token_proj(tokens) + self.category_embed(categories)
        if self.encoder is not None:
            x = self.encoder(x, src_key_padding_mask=padding)
        x = self.norm(x)
        b, n, _ = x.shape
        subj = self.subject_proj(x).view(b, n, -1, c.pred_dim)
        obj = self.object_proj(x).view(b, n, -1, c.pred_dim)
        logits = torch.einsum("bipd,bjpd->bijp", subj, obj) / math.sqrt(c.pred_dim)
        return logits + self.geo_mlp(pair_feats) + self.predicate_bias


def save_relation_head(path: str | Path, head: RelationHead, extra: dict | None = None) -> Path:
    """Write a checkpoint holding the config, the weights and ``extra`` (training info), atomically."""
    return save_atomic(
        {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": head.config.to_dict(),
         "state_dict": head.state_dict(), "extra": extra or {}},
        path,
    )  # fmt: skip


def load_relation_head(
    path: str | Path,
    sam_model: str | None = None,
    predicates: list[str] | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[RelationHead, dict]:
    """Load a checkpoint written by :func:`save_relation_head`; returns ``(head, extra)``.

    Refuses (``RelationCheckpointError``) files of another format and checkpoints trained on
    another SAM model (tokens differ between SAM models) or another predicate list, when given.
    """
    path = Path(path)
    if not path.is_file():
        raise RelationCheckpointError(f"relation checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RelationCheckpointError(
            f"{path} is not a relation-head checkpoint (format {CHECKPOINT_FORMAT!r})"
        )
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise RelationCheckpointError(
            f"{path}: checkpoint version {ckpt.get('version')}, expected {CHECKPOINT_VERSION}"
        )
    config = RelationHeadConfig.from_dict(ckpt["config"])
    if sam_model is not None and config.sam_model != sam_model:
        raise RelationCheckpointError(
            f"{path} was trained on tokens of SAM model {config.sam_model!r}, but the pipeline runs "
            f"{sam_model!r}; retrain the head for this SAM model or configure {config.sam_model!r}"
        )
    if predicates is not None and list(predicates) != config.predicates:
        raise RelationCheckpointError(
            f"{path} predicts {len(config.predicates)} predicates {config.predicates[:5]}..., "
            f"the configuration asks for {len(predicates)} {list(predicates)[:5]}... (names and order must match)"
        )
    head = RelationHead(config)
    try:
        head.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise RelationCheckpointError(f"{path}: weights do not fit the stored config: {e}") from e
    head.eval()
    return head, dict(ckpt.get("extra", {}))


class LearnedRelationPredictor(RelationPredictor):
    """Runs a :class:`RelationHead` on a frame and keeps the best relations.

    Args:
        head: a trained head (see :func:`load_relation_head` / :meth:`from_checkpoint`).
        top_k: at most this many relations per frame (0 = no limit).
        min_score: sigmoid score threshold in [0, 1].
        max_per_subject: at most this many relations per subject (0 = no limit).
        device: torch device to run on.
    """

    source = "learned"

    def __init__(
        self,
        head: RelationHead,
        top_k: int = 100,
        min_score: float = 0.1,
        max_per_subject: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        self.device = torch.device(device)
        self.head = head.to(self.device).eval()
        self.config = head.config
        self.predicates = list(head.config.predicates)
        self.top_k, self.min_score, self.max_per_subject = (
            int(top_k),
            float(min_score),
            int(max_per_subject),
        )
        self._cat_index = {normalize_category(n): i for i, n in enumerate(head.config.categories)}
        self._warned_meaningless = False

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, sam_model: str | None = None, **kwargs
    ) -> "LearnedRelationPredictor":
        head, _ = load_relation_head(path, sam_model=sam_model)
        return cls(head, **kwargs)

    def category_rows(self, labels: RegionLabels | None, n: int) -> np.ndarray:
        """``(N,)`` int64 embedding rows of the regions' labels (unknown row where unmatched)."""
        rows = np.full(n, self.config.unknown_index, dtype=np.int64)
        if labels is None:
            return rows
        if not labels.meaningful:
            if not self._warned_meaningless:
                logger.warning(
                    "region labels come from untrained weights; using the 'unknown' category embedding"
                )
                self._warned_meaningless = True
            return rows
        for i in range(n):
            rows[i] = self._cat_index.get(
                normalize_category(labels.label_text(i)), self.config.unknown_index
            )
        return rows

    @torch.no_grad()
    def score_matrix(
        self,
        segmentation: Segmentation,
        labels: RegionLabels | None,
        depth: np.ndarray | None = None,
    ) -> np.ndarray:
        """``(N, N, P)`` float32 sigmoid scores; the diagonal is 0."""
        geom = region_geometry(segmentation, depth)
        n = len(geom)
        check_labels(labels, n)
        if segmentation.tokens.shape[1] != self.config.token_dim:
            raise RelationInputError(
                f"segmentation tokens have dim {segmentation.tokens.shape[1]}, the relation head "
                f"(trained on {self.config.sam_model!r}) expects {self.config.token_dim}"
            )
        dev = self.device
        tokens = torch.from_numpy(np.ascontiguousarray(segmentation.tokens, dtype=np.float32)).to(
            dev
        )[None]
        cats = torch.from_numpy(self.category_rows(labels, n)).to(dev)[None]
        pairs = torch.from_numpy(pair_features(geom)).to(dev)[None]
        probs = torch.sigmoid(self.head(tokens, cats, pairs))[0].float().cpu().numpy()
        idx = np.arange(n)
        probs[idx, idx, :] = 0.0
        return probs

    def predict(
        self,
        segmentation: Segmentation,
        labels: RegionLabels | None,
        depth: np.ndarray | None = None,
    ) -> Relations:
        """The ``top_k`` best (subject, object, predicate) with score >= ``min_score``."""
        if len(segmentation) < 2:
            region_geometry(segmentation, depth)  # still validate the inputs
            return Relations.empty(self.predicates, self.source)
        scores = self.score_matrix(segmentation, labels, depth)
        return relations_from_scores(
            scores, self.predicates, self.source, self.min_score, self.max_per_subject, self.top_k
        )
