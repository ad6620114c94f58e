"""``pn-bench-sam --decoder-only``: SAM's mask decoder alone, restructured vs official.

Same weights, one image embedding, a batch of point prompts (64 by default, one foreground
point + SAM's padding point each, like the segment-everything grid), on torch (CPU/CUDA) and
onnxruntime (CPU). "official" is segment_anything's ``PromptEncoder`` + ``MaskDecoder.forward``
(torch) and the same official modules traced to ONNX (the decoder graph this package exported
before the restructuring); "restructured" is :class:`perception_nodes.core.sam.modules.PromptDecoder`
(torch) and today's ``pn-export-onnx`` decoder graph. Runs alternate implementation by
implementation (a shared machine's load drift hits all alike); the table reports median and min
per batch, the speedup of the medians (of the minima, and the median of the per-pair ratios of
back-to-back runs), and the max differences of the outputs against the
official torch decoder (logits, IoU predictions). All low-res logits of every prompt are
computed here (no ``iou_threshold``), so the comparison is like for like.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from perception_nodes.core.sam.decoder import (
    pad_point_prompts,
    reference_decode_prompts,
)
from perception_nodes.core.sam.export import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    SamDecoderOnnx,
    _optimise_basic,
    _trace_export,
)
from perception_nodes.core.sam.modules import PromptDecoder
from perception_nodes.core.sam.onnx_backend import session_options


class _ReferenceDecoderOnnx(torch.nn.Module):
    """Tracing wrapper of the official modules, step by step (multimask outputs only)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_embeddings, point_coords, point_labels):
        out = reference_decode_prompts(
            self.model, image_embeddings, point_coords, point_labels, True
        )
        return out.low_res_logits, out.iou_predictions, out.mask_tokens


def _export(module: torch.nn.Module, path: Path, example: tuple) -> Path:
    dyn = {
        "point_coords": {0: "num_prompts", 1: "num_points"},
        "point_labels": {0: "num_prompts", 1: "num_points"},
        "low_res_logits": {0: "num_prompts"},
        "iou_predictions": {0: "num_prompts"},
        "mask_tokens": {0: "num_prompts"},
    }
    raw = path.with_suffix(".raw.onnx")
    _trace_export(module, example, raw, DECODER_INPUTS, DECODER_OUTPUTS, dyn, 17)
    _optimise_basic(raw, path)
    return path


def _inputs(model, prompts: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    c = model.prompt_encoder.embed_dim
    h, w = model.prompt_encoder.image_embedding_size
    embedding = torch.randn((1, c, h, w), generator=gen)
    side = model.image_encoder.img_size
    coords = torch.rand((prompts, 1, 2), generator=gen) * side
    labels = torch.ones((prompts, 1))
    return embedding, coords, labels


def _torch_impls(model, embedding, coords, labels):
    """name -> callable returning (logits (P, 3, 4h, 4w), iou (P, 3)) as numpy."""
    pe, md = model.prompt_encoder, model.mask_decoder
    decoder = PromptDecoder.from_sam(model)
    padded = pad_point_prompts(coords, labels)

    @torch.no_grad()
    def official():
        sparse, dense = pe(points=(coords, labels), boxes=None, masks=None)
        masks, iou = md(
            image_embeddings=embedding,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        return masks.numpy(), iou.numpy()

    @torch.no_grad()
    def restructured():  # per-image context built inside: the per-call cost is included
        out = decoder(embedding, *padded, slice(1, None))
        return out.low_res_logits.numpy(), out.iou_predictions.numpy()

    return {"official": official, "restructured": restructured}


def _onnx_impls(model, embedding, coords, labels, tmp: Path):
    import onnxruntime as ort

    padded = pad_point_prompts(coords, labels)
    example = (embedding, padded[0][:3], padded[1][:3])
    paths = {
        "official": _export(_ReferenceDecoderOnnx(model), tmp / "official.onnx", example),
        "restructured": _export(
            SamDecoderOnnx(model, "multimask"), tmp / "restructured.onnx", example
        ),
    }
    feeds = {
        "image_embeddings": embedding.numpy(),
        "point_coords": padded[0].numpy(),
        "point_labels": padded[1].numpy(),
    }

    def runner(path: Path):
        options = session_options(ort)  # the backend's options, for both graphs
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda: tuple(session.run(["low_res_logits", "iou_predictions"], feeds))

    return {name: runner(path) for name, path in paths.items()}


def _alternate(impls: dict, repeats: int, warmup: int) -> dict[str, tuple[list[float], tuple]]:
    outs = {}
    for _ in range(warmup):
        for name, fn in impls.items():
            outs[name] = fn()
    times = {k: [] for k in impls}
    for _ in range(repeats):
        for name, fn in impls.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {k: (times[k], outs[k]) for k in impls}


def run_decoder_bench(
    model, runtimes: list[str], prompts: int = 64, repeats: int = 5, warmup: int = 1
) -> dict:
    """Decoder-alone timings per runtime; see the module docstring. CPU only for onnxruntime."""
    model = model.to("cpu").eval()
    embedding, coords, labels = _inputs(model, prompts)
    ref_logits, ref_iou = _torch_impls(model, embedding, coords, labels)["official"]()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in runtimes:
            impls = (
                _torch_impls(model, embedding, coords, labels)
                if runtime == "torch"
                else _onnx_impls(model, embedding, coords, labels, Path(tmp))
            )
            timed = _alternate(impls, repeats, warmup)
            entry = {}
            for name, (runs, (logits, iou)) in timed.items():
                entry[name] = dict(
                    median_s=statistics.median(runs),
                    min_s=min(runs),
                    runs_s=runs,
                    max_abs_logit_diff=float(np.abs(logits - ref_logits).max()),
                    max_abs_iou_diff=float(np.abs(iou - ref_iou).max()),
                )
            entry["speedup_median"] = (
                entry["official"]["median_s"] / entry["restructured"]["median_s"]
            )
            entry["speedup_min"] = entry["official"]["min_s"] / entry["restructured"]["min_s"]
            pairs = [
                o / r for o, r in zip(entry["official"]["runs_s"], entry["restructured"]["runs_s"])
            ]
            entry["speedup_per_pair"] = pairs  # run i of each, back to back: least load drift
            entry["speedup_pair_median"] = statistics.median(pairs)
            results[runtime] = entry
    return dict(prompts=prompts, repeats=repeats, warmup=warmup, results=results)


def decoder_table(report: dict) -> str:
    """Text table of :func:`run_decoder_bench`'s report."""
    cols = [
        "runtime",
        "impl",
        "median ms",
        "min ms",
        "ms/prompt",
        "speedup",
        "max |dlogit|",
        "max |diou|",
    ]
    rows = [cols]
    for runtime, entry in report["results"].items():
        for name in ("official", "restructured"):
            e = entry[name]
            speed = (
                f"{entry['speedup_median']:.2f}x (min {entry['speedup_min']:.2f}x, pairs "
                f"{entry['speedup_pair_median']:.2f}x)"
                if name == "restructured"
                else ""
            )
            rows.append(
                [
                    runtime,
                    name,
                    f"{e['median_s'] * 1e3:.0f}",
                    f"{e['min_s'] * 1e3:.0f}",
                    f"{e['median_s'] * 1e3 / report['prompts']:.1f}",
                    speed,
                    f"{e['max_abs_logit_diff']:.1e}",
                    f"{e['max_abs_iou_diff']:.1e}",
                ]
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = [" | ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
