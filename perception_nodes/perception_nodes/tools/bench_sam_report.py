"""pn-bench-sam's console report: the per-image table of a ``bench_sam.run`` report (JSON dict,
times in seconds -> table in milliseconds) and the line that says what was measured."""

from __future__ import annotations

from perception_nodes.core.weights.files import GENERATED_WEIGHTS


def report_rows(report: dict) -> list[dict]:
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


def format_table(rows: list[dict]) -> str:
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


def summary_line(report: dict) -> str:
    """What the table measured: model and weights, backend, precision, hardware, column meanings."""
    hw = report["hardware"]
    return (
        f"\n{report['model']} ({GENERATED_WEIGHTS + ': masks not meaningful' if report['generated_weights'] else 'real weights'}), "
        f"backend {report['backend']} {report['dtype']} on {hw['device']} ({hw['cpu']}, {hw['torch_threads']} threads), "
        f"torch {hw['torch']}; speedup = official time / ours; matched = official masks reproduced at IoU >= 0.9"
    )
