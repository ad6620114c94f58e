"""pn-bench-classify: region-labelling latency vs number of regions and vocabulary size.

For every (regions N, vocabulary V) pair and both classifiers (zero-shot crops, RegionSpot head):

- region embedding: once per frame, independent of V (zero-shot: N masked crops through the CLIP
  image tower; RegionSpot: one CLIP pass over the whole image + the head over N SAM mask tokens;
  the SAM stage itself is measured by pn-bench-sam);
- scoring: the ``(N, D) x (D, V)`` product, calibration and top-k (what a frame costs per V);
- naive baseline: what packages that re-encode the text EVERY frame pay (V x templates prompts
  through the text tower + the same scoring).

Plus the one-off cost of a vocabulary change: embedding V new phrases (cold), setting the same
vocabulary again (all cached), and changing one entry. Expensive cells above ``--max-encode``
phrases are measured on ``--max-encode`` phrases and extrapolated linearly (marked ``~`` and
``"estimated": true``). Weights: ``--clip-checkpoint`` or generated (random) weights of the real
architecture (timings are the same; labels would be meaningless, and nothing here labels).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from perception_nodes.core.classify.base import labels_from_scores
from perception_nodes.core.classify.clip_model import (
    ClipModel,
    load_clip_model,
    make_generated_clip_checkpoint,
)
from perception_nodes.core.classify.regionspot import (
    RegionSpotClassifier,
    make_generated_regionspot_checkpoint,
)
from perception_nodes.core.classify.zero_shot import ZeroShotClassifier
from perception_nodes.core.types import Segmentation
from perception_nodes.core.vocabulary.runtime import DEFAULT_TEMPLATES, Vocabulary, VocabularyLimits
from perception_nodes.tools.bench_common import hardware_info

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pn-bench-classify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--clip-model", default="ViT-B-16", help="open_clip model (default ViT-B-16, RegionSpot's)"
    )
    p.add_argument(
        "--clip-checkpoint", type=Path, help="local weights (default: generated random weights)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small test CLIP (pn-clip-tiny-test) and sizes 10/50 x 10/100/1000 for a fast run",
    )
    p.add_argument(
        "--regions", type=int, nargs="+", default=[10, 50, 200], help="regions per frame"
    )
    p.add_argument(
        "--vocab-sizes",
        type=int,
        nargs="+",
        default=[10, 100, 1000, 10000],
        help="vocabulary sizes",
    )
    p.add_argument(
        "--templates",
        type=int,
        default=len(DEFAULT_TEMPLATES),
        help=f"prompt templates per entry (1..{len(DEFAULT_TEMPLATES)}, default all)",
    )
    p.add_argument(
        "--max-encode",
        type=int,
        default=1000,
        help="encode at most this many phrases per measurement; larger V is extrapolated",
    )
    p.add_argument(
        "--repeats", type=int, default=5, help="timed repeats per cell (median reported)"
    )
    p.add_argument(
        "--head-layers", type=int, default=3, help="RegionSpot decoder layers (default 3)"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument(
        "--out", type=Path, default=Path("outputs/bench/classify.json"), help="JSON output path"
    )
    return p


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int, device: str, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def phrases(n: int, offset: int = 0) -> list[str]:
    """``n`` distinct phrases of 2-4 words (like real category names)."""
    adj = ["red", "small", "wooden", "open", "striped", "old", "plastic", "round"]
    nouns = ["cup", "chair", "door", "bottle", "lamp", "book", "plant", "box", "shoe", "bag"]
    return [
        f"{adj[i % len(adj)]} {nouns[(i // len(adj)) % len(nouns)]} {i}"
        for i in range(offset, offset + n)
    ]


def segmentation(image: np.ndarray, n: int, rng: np.random.Generator) -> Segmentation:
    """``n`` random box regions with box masks and random 256-d stand-ins for SAM mask tokens."""
    h, w = image.shape[:2]
    x0, y0 = rng.uniform(0, w * 0.8, n), rng.uniform(0, h * 0.8, n)
    bw, bh = rng.uniform(16, w * 0.4, n), rng.uniform(16, h * 0.4, n)
    boxes = np.stack([x0, y0, np.minimum(x0 + bw, w), np.minimum(y0 + bh, h)], 1).astype(np.float32)
    masks = np.zeros((n, h, w), bool)
    for i, (a, b, c, d) in enumerate(boxes.astype(int)):
        masks[i, b:d, a:c] = True
    return Segmentation(
        masks=masks,
        boxes_xyxy=boxes,
        areas=masks.sum((1, 2)).astype(np.int64),
        predicted_iou=np.ones(n, np.float32),
        stability_score=np.ones(n, np.float32),
        tokens=rng.normal(size=(n, 256)).astype(np.float32),
        point_coords=np.full((n, 2), np.nan, np.float32),
        image_size=(h, w),
    )


def bench_vocab_change(
    clip: ClipModel, templates: tuple[str, ...], sizes: list[int], cap: int
) -> list[dict]:
    """Cold / cached / one-entry-changed cost of ``Vocabulary.set`` per size (ms)."""
    rows = []
    for v in sizes:
        m = min(v, cap)
        vocab = Vocabulary(
            clip, templates=templates, limits=VocabularyLimits(max_entries=max(sizes) + 1)
        )
        t0 = time.perf_counter()
        vocab.set(phrases(m))
        cold = (time.perf_counter() - t0) * 1e3 * v / m
        if (
            m < v
        ):  # the cached and one-changed cases need the full vocabulary: fill the cache by parts
            for k in range(m, v, cap):
                vocab.set(phrases(min(cap, v - k), k), append=True)
        full = phrases(v)
        t0 = time.perf_counter()
        vocab.set(full)
        cached = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        vocab.set(full[:-1] + ["a brand new entry"])
        one = (time.perf_counter() - t0) * 1e3
        rows.append(
            {
                "vocab": v,
                "cold_ms": cold,
                "cold_estimated": m < v,
                "cached_ms": cached,
                "one_changed_ms": one,
                "prompts": v * len(templates),
            }
        )
    return rows


def bench_frames(
    name: str,
    clf,
    image: np.ndarray,
    clip: ClipModel,
    templates: tuple[str, ...],
    regions: list[int],
    sizes: list[int],
    vocab_emb: np.ndarray,
    cap: int,
    repeats: int,
    device: str,
) -> list[dict]:
    """Per-frame latency of one classifier (ms) for every (N, V)."""
    rng = np.random.default_rng(0)
    rows = []
    # per-phrase text-encoding cost for the naive baseline, measured once on up to `cap` phrases
    m = min(max(sizes), cap)
    prompts = [t.format(p) for p in phrases(m) for t in templates]
    encode_per_phrase = timed(lambda: clip.encode_text(prompts), 1, device, warmup=0) / m
    for n in regions:
        seg = segmentation(image, n, rng)
        embed_ms = timed(lambda: clf.region_embeddings(image, seg), repeats, device)
        emb = clf.region_embeddings(image, seg)
        for v in sizes:
            text = vocab_emb[:v]

            def score() -> None:
                labels_from_scores(
                    clf.scores(emb, text), _FakeSnap(v), 5, clf.unknown_threshold, False
                )

            score_ms = timed(score, repeats, device)
            rows.append(
                {
                    "classifier": name,
                    "regions": n,
                    "vocab": v,
                    "region_embed_ms": embed_ms,
                    "score_ms": score_ms,
                    "frame_ms": embed_ms + score_ms,
                    "naive_frame_ms": embed_ms + score_ms + encode_per_phrase * v,
                    "naive_estimated": v > cap,
                }
            )
    return rows


class _FakeSnap:
    """Just enough of a VocabularySnapshot for labels_from_scores (labels, version)."""

    def __init__(self, v: int) -> None:
        self.labels, self.version = [""] * v, 0


def _fmt(ms: float, est: bool = False) -> str:
    s = f"{ms:,.1f}" if ms < 1e4 else f"{ms / 1e3:,.1f}s"
    return ("~" if est else "") + s


def print_tables(frames: list[dict], changes: list[dict]) -> None:
    print("\nper-frame latency, ms (median)  [scoring = matmul + calibration + top-5]")
    print(
        f"{'classifier':<11} {'N':>4} {'V':>6} {'embed regions':>14} {'scoring':>9} {'frame':>9} "
        f"{'naive re-encode':>16} {'naive/ours':>11}"
    )
    for r in frames:
        print(
            f"{r['classifier']:<11} {r['regions']:>4} {r['vocab']:>6} {_fmt(r['region_embed_ms']):>14} "
            f"{_fmt(r['score_ms']):>9} {_fmt(r['frame_ms']):>9} "
            f"{_fmt(r['naive_frame_ms'], r['naive_estimated']):>16} {r['naive_frame_ms'] / r['frame_ms']:>10.1f}x"
        )
    print("\nvocabulary change (one-off), ms")
    print(
        f"{'V':>6} {'prompts':>8} {'cold (embed all)':>17} {'same again (cached)':>20} {'one entry changed':>18}"
    )
    for r in changes:
        print(
            f"{r['vocab']:>6} {r['prompts']:>8} {_fmt(r['cold_ms'], r['cold_estimated']):>17} "
            f"{_fmt(r['cached_ms']):>20} {_fmt(r['one_changed_ms']):>18}"
        )
    print("~ = extrapolated linearly from --max-encode phrases")


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if a.quick:
        a.clip_model = "pn-clip-tiny-test" if a.clip_model == "ViT-B-16" else a.clip_model
        a.regions, a.vocab_sizes = (
            [r for r in a.regions if r <= 50],
            [v for v in a.vocab_sizes if v <= 1000],
        )
    if not 1 <= a.templates <= len(DEFAULT_TEMPLATES):
        raise SystemExit(f"--templates must be in 1..{len(DEFAULT_TEMPLATES)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    templates = DEFAULT_TEMPLATES[: a.templates]
    with tempfile.TemporaryDirectory(prefix="pn_bench_classify_") as tmp:
        ckpt = a.clip_checkpoint
        if ckpt is None:
            print(
                f"NOTE: no --clip-checkpoint: generated (random) {a.clip_model} weights; timings are "
                f"representative, labels would not be.",
                file=sys.stderr,
            )
            ckpt = make_generated_clip_checkpoint(a.clip_model, Path(tmp) / "clip.pt", seed=0)
        clip = load_clip_model(a.clip_model, ckpt, a.device)
        head_path = make_generated_regionspot_checkpoint(
            Path(tmp) / "head.pt", "vit_b", clip, seed=0, num_layers=a.head_layers
        )
        classifiers = {
            "zero_shot": ZeroShotClassifier(clip, meaningful=False),
            "regionspot": RegionSpotClassifier.from_checkpoint(head_path, clip, "vit_b"),
        }
    import skimage.data

    image = skimage.data.astronaut()
    changes = bench_vocab_change(clip, templates, a.vocab_sizes, a.max_encode)
    vocab = Vocabulary(
        clip, templates=templates, limits=VocabularyLimits(max_entries=max(a.vocab_sizes))
    )
    m = min(max(a.vocab_sizes), a.max_encode)
    base = vocab.set(phrases(m)).embeddings  # scoring cost does not depend on the values: tile to V
    vocab_emb = np.ascontiguousarray(np.resize(base, (max(a.vocab_sizes), base.shape[1])))
    frames = []
    for name, clf in classifiers.items():
        frames += bench_frames(
            name,
            clf,
            image,
            clip,
            templates,
            a.regions,
            a.vocab_sizes,
            vocab_emb,
            a.max_encode,
            a.repeats,
            a.device,
        )
    print_tables(frames, changes)
    result = {
        "clip_model": a.clip_model,
        "clip_generated": clip.generated,
        "templates": len(templates),
        "image_size": list(image.shape[:2]),
        "head_layers": a.head_layers,
        "repeats": a.repeats,
        "max_encode": a.max_encode,
        "hardware": hardware_info(a.device),
        "frames": frames,
        "vocabulary_change": changes,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
