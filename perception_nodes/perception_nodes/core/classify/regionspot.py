"""The RegionSpot head: SAM mask tokens attend to CLIP's visual tokens; dot product with text.

Architecture (Yang et al., "RegionSpot"; frozen SAM and CLIP, only this head is trained):

- queries: SAM mask-decoder output tokens ``(Q, 256)`` -> ``Linear(256, W)`` (W = CLIP width);
- keys/values: all tokens of CLIP's last visual block, before ``ln_post`` and the projection,
  ``(T, W)`` (a learned LayerNorm first: the pre-``ln_post`` residual stream is unnormalised);
- a 3-layer ``nn.TransformerDecoder`` (8 heads; self-attention among the regions of a frame,
  cross-attention to the CLIP tokens), then LayerNorm + ``Linear(W, D)`` into the text space;
- logit = ``exp(s) * <region, text> + b`` with learned ``s`` and ``b`` (b starts at the focal-loss
  prior -log((1-p)/p), p=0.01); score = ``sigmoid(logit)``, one calibrated probability per entry.

Checkpoints record the configuration (which SAM, which CLIP, dims, templates, training info) and
loading refuses a checkpoint made for other encoders.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception_nodes.core.classify.base import ClassifierError, RegionClassifier
from perception_nodes.core.classify.clip_model import ClipModel
from perception_nodes.core.classify.zero_shot import TemplatedQueryEmbedder
from perception_nodes.core.records import dataclass_from_dict
from perception_nodes.core.types import Segmentation
from perception_nodes.core.vocabulary.runtime import DEFAULT_TEMPLATES
from perception_nodes.core.weights.checkpoint_io import save_atomic

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "perception_nodes.regionspot/1"
SAM_TOKEN_DIM = 256


class CheckpointMismatchError(ClassifierError):
    """A RegionSpot checkpoint was made for other encoders (or is not a RegionSpot checkpoint)."""


@dataclass
class RegionSpotConfig:
    """Everything needed to rebuild a head and to know which encoders it belongs to."""

    sam_model: str
    clip_model: str
    clip_width: int
    embed_dim: int
    token_dim: int = SAM_TOKEN_DIM
    num_layers: int = 3
    num_heads: int = 8
    ffn_dim: int = 0  # 0 -> 4 * clip_width
    dropout: float = 0.1
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    sam_checkpoint_sha256: str = ""
    clip_checkpoint_sha256: str = ""
    encoders_generated: bool = False  # trained on generated (random) SAM/CLIP weights

    def __post_init__(self) -> None:
        if self.clip_width % self.num_heads:
            raise ClassifierError(
                f"clip_width {self.clip_width} must be divisible by num_heads {self.num_heads}"
            )
        self.templates = list(self.templates)


class RegionSpotHead(nn.Module):
    """The trainable head; see the module docstring for the architecture."""

    def __init__(self, cfg: RegionSpotConfig, prior_prob: float = 0.01) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.clip_width
        self.query_proj = nn.Linear(cfg.token_dim, w)
        self.memory_norm = nn.LayerNorm(w)
        layer = nn.TransformerDecoderLayer(
            w,
            cfg.num_heads,
            cfg.ffn_dim or 4 * w,
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, cfg.num_layers, norm=nn.LayerNorm(w))
        self.out_proj = nn.Linear(w, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.logit_bias = nn.Parameter(torch.tensor(-math.log((1 - prior_prob) / prior_prob)))

    def forward(
        self,
        mask_tokens: torch.Tensor,
        visual_tokens: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Region embeddings.

        Args:
            mask_tokens: ``(B, Q, 256)`` SAM mask tokens (Q regions per image).
            visual_tokens: ``(B, T, W)`` CLIP last-block tokens of each whole image.
            padding_mask: ``(B, Q)`` bool, True where a query is padding.
        Returns:
            ``(B, Q, D)`` L2-normalised embeddings in the CLIP text space.
        """
        q = self.query_proj(mask_tokens)
        x = self.decoder(q, self.memory_norm(visual_tokens), tgt_key_padding_mask=padding_mask)
        return F.normalize(self.out_proj(x), dim=-1)

    def logits(self, region_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """``(..., V)`` logits of region embeddings ``(..., D)`` vs text embeddings ``(V, D)``."""
        return (
            self.logit_scale.clamp(max=math.log(100.0)).exp() * region_emb @ text_emb.T
            + self.logit_bias
        )


def save_regionspot_checkpoint(
    path: str | Path, head: RegionSpotHead, training: dict | None = None, extra: dict | None = None
) -> Path:
    """Write ``{format, config, state_dict, training, **extra}`` (``torch.load(weights_only=True)``-safe)."""
    obj = {
        "format": CHECKPOINT_FORMAT,
        "config": asdict(head.cfg),
        "state_dict": head.state_dict(),
        "training": dict(training or {}),
        **(extra or {}),
    }
    return save_atomic(obj, path)


def make_generated_regionspot_checkpoint(
    path: str | Path,
    sam_model: str,
    clip: ClipModel,
    seed: int = 0,
    sam_checkpoint_sha256: str = "",
    sam_generated: bool = True,
    **config,
) -> Path:
    """Save a seeded RANDOM head for ``sam_model`` + ``clip`` (tests, demos, benchmarks).

    The checkpoint records ``training["generated"] = True``; :meth:`RegionSpotClassifier.from_checkpoint`
    then always flags its labels as not meaningful. ``config`` overrides :class:`RegionSpotConfig`
    fields (e.g. ``num_layers``).
    """
    cfg = RegionSpotConfig(
        sam_model=sam_model,
        clip_model=clip.name,
        clip_width=clip.width,
        embed_dim=clip.embed_dim,
        sam_checkpoint_sha256=sam_checkpoint_sha256,
        clip_checkpoint_sha256=clip.checkpoint_sha256,
        encoders_generated=bool(clip.generated or sam_generated),
        **config,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = RegionSpotHead(cfg)
    return save_regionspot_checkpoint(path, head, training={"generated": True, "seed": int(seed)})


def read_regionspot_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict; :class:`CheckpointMismatchError` if it is not a RegionSpot one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointMismatchError(
            f"RegionSpot checkpoint not found: {path} (train one with pn-train-regionspot)"
        )
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{path} is not a RegionSpot head checkpoint (format {CHECKPOINT_FORMAT})"
        )
    return obj


def check_encoders(
    cfg: RegionSpotConfig,
    sam_model: str,
    clip: ClipModel,
    sam_checkpoint_sha256: str | None = None,
    allow_weight_mismatch: bool = False,
    source: str = "checkpoint",
) -> None:
    """Refuse (:class:`CheckpointMismatchError`) a head made for other encoders.

    Names and dimensions must match; weight hashes must match too when both are known, unless
    ``allow_weight_mismatch`` (e.g. the same official weights re-saved in another format).
    """
    problems = []
    if cfg.sam_model != sam_model:
        problems.append(f"SAM model: head {cfg.sam_model!r}, pipeline {sam_model!r}")
    if cfg.clip_model != clip.name:
        problems.append(f"CLIP model: head {cfg.clip_model!r}, pipeline {clip.name!r}")
    if (cfg.clip_width, cfg.embed_dim) != (clip.width, clip.embed_dim):
        problems.append(
            f"CLIP dims (width, embed): head {(cfg.clip_width, cfg.embed_dim)}, "
            f"pipeline {(clip.width, clip.embed_dim)}"
        )
    if not allow_weight_mismatch:
        if cfg.clip_checkpoint_sha256 and cfg.clip_checkpoint_sha256 != clip.checkpoint_sha256:
            problems.append(
                f"CLIP weights: head trained with sha256 {cfg.clip_checkpoint_sha256[:12]}..., "
                f"pipeline loads {clip.checkpoint_sha256[:12]}... ({clip.checkpoint})"
            )
        if (
            cfg.sam_checkpoint_sha256
            and sam_checkpoint_sha256
            and cfg.sam_checkpoint_sha256 != sam_checkpoint_sha256
        ):
            problems.append(
                f"SAM weights: head trained with sha256 {cfg.sam_checkpoint_sha256[:12]}..., "
                f"pipeline loads {sam_checkpoint_sha256[:12]}..."
            )
    if problems:
        raise CheckpointMismatchError(
            f"RegionSpot {source} was made for other encoders; refusing it:\n  "
            + "\n  ".join(problems)
        )


def load_regionspot_head(
    path: str | Path,
    sam_model: str,
    clip: ClipModel,
    sam_checkpoint_sha256: str | None = None,
    allow_weight_mismatch: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[RegionSpotHead, dict]:
    """Load a head checkpoint after checking it fits ``sam_model`` and ``clip``; returns (head, training info)."""
    obj = read_regionspot_checkpoint(path)
    cfg = dataclass_from_dict(
        RegionSpotConfig, obj["config"], f"RegionSpot checkpoint {path}", CheckpointMismatchError
    )
    check_encoders(
        cfg,
        sam_model,
        clip,
        sam_checkpoint_sha256,
        allow_weight_mismatch,
        source=f"checkpoint {path}",
    )
    head = RegionSpotHead(cfg)
    head.load_state_dict(obj["state_dict"])
    return head.to(device).eval(), dict(obj.get("training", {}))


class RegionSpotClassifier(RegionClassifier):
    """Labels regions with a trained :class:`RegionSpotHead`.

    Args:
        head: the head (eval mode).
        clip: the CLIP model the head was trained with (its visual tokens are the keys/values;
            its text tower embeds the vocabulary).
        meaningful: False when the head or the encoders are untrained/generated.
        unknown_threshold: sigmoid score below which a region is "unknown".
    """

    def __init__(
        self,
        head: RegionSpotHead,
        clip: ClipModel,
        meaningful: bool,
        unknown_threshold: float = 0.05,
        query_cache_size: int = 256,
    ) -> None:
        super().__init__(meaningful, unknown_threshold)
        self.head = head.eval()
        self.clip = clip
        self.device = next(head.parameters()).device
        self._queries = TemplatedQueryEmbedder(clip, tuple(head.cfg.templates), query_cache_size)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        clip: ClipModel,
        sam_model: str,
        sam_checkpoint_sha256: str | None = None,
        meaningful: bool | None = None,
        allow_weight_mismatch: bool = False,
        **kwargs,
    ) -> "RegionSpotClassifier":
        """Load a checkpoint (refusing other encoders); ``meaningful`` defaults to "no generated weights"."""
        head, training = load_regionspot_head(
            path, sam_model, clip, sam_checkpoint_sha256, allow_weight_mismatch, device=clip.device
        )
        if meaningful is None:
            meaningful = not (clip.generated or head.cfg.encoders_generated)
        if training.get("generated", False):
            logger.warning(
                "RegionSpot head %s is GENERATED (random, untrained): labels are not meaningful",
                path,
            )
            meaningful = (
                False  # an untrained head never gives meaningful labels, whatever the caller says
            )
        return cls(head, clip, meaningful, **kwargs)

    @property
    def embed_dim(self) -> int:
        return self.head.cfg.embed_dim

    @torch.no_grad()
    def region_embeddings(self, image: np.ndarray, segmentation: Segmentation) -> np.ndarray:
        tokens = np.asarray(segmentation.tokens, dtype=np.float32)
        if tokens.ndim != 2 or tokens.shape[1] != self.head.cfg.token_dim:
            raise ClassifierError(
                f"segmentation.tokens must be (N, {self.head.cfg.token_dim}) SAM mask tokens, "
                f"got {tokens.shape}"
            )
        vt, _ = self.clip.visual_tokens(self.clip.preprocess_full_image(image))
        q = torch.from_numpy(tokens).to(self.device)[None]
        return self.head(q, vt.to(self.device))[0].float().cpu().numpy()

    def _sigmoid_logits(self, region_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        scale = float(self.head.logit_scale.detach().clamp(max=math.log(100.0)).exp())
        z = scale * (region_emb @ text_emb.T) + float(self.head.logit_bias.detach())
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def scores(self, region_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        return self._sigmoid_logits(region_emb, text_emb)

    def query_scores(self, region_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        return self._sigmoid_logits(region_emb, text_emb)

    def embed_query(self, text: str) -> np.ndarray:
        return self._queries(text)
