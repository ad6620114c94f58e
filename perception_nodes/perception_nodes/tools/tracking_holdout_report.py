"""Summary and tables of the held-out tracking benchmark (:mod:`.tracking_holdout`): per family
and token variant, the trackers side by side, plus the mean and the worst family."""

from __future__ import annotations

import sys

import numpy as np

from perception_nodes.tools.tracking_holdout_families import FAMILIES
from perception_nodes.tools.tracking_quality import ORACLE_CONFIRMED

VARIANTS = ("distinct", "untrained")


def summarise(rows: list[dict], keys: list[str]) -> dict:
    """Per family and key: mean IDF1/MOTA over seeds, switches per 100 over all detections,
    fragmentations per sequence; plus ``mean`` and ``worst`` over the families (worst: lowest
    IDF1 and MOTA, most switches and fragmentations, each on its own)."""
    fams = sorted({r["family"] for r in rows}, key=list(FAMILIES).index)
    out = {}
    for f in fams:
        rs = [r for r in rows if r["family"] == f]
        out[f] = {}
        for k in keys:
            objs = sum(r[k]["num_objects"] for r in rs)
            out[f][k] = {
                "idf1": float(np.mean([r[k]["idf1"] for r in rs])),
                "idf1_returned": float(np.mean([r[k]["idf1_returned"] for r in rs])),
                "hota": float(np.mean([r[k]["hota"] for r in rs])),
                "mota": float(np.mean([r[k]["mota"] for r in rs])),
                "switches_per_100": 100 * sum(r[k]["num_switches"] for r in rs) / max(1.0, objs),
                "frag": float(np.mean([r[k]["num_fragmentations"] for r in rs])),
                "cpu_ms": float(np.mean([r[k].get("cpu_ms", 0.0) for r in rs])),
                "no_id_pct": 100
                * sum(r[k]["no_id"] for r in rs)
                / max(1, sum(r[k]["matched"] for r in rs)),
                "blob_id_pct": 100
                * sum(r[k]["blob_ids"] for r in rs)
                / max(1, sum(r[k]["blobs"] for r in rs)),
            }
    worst = {
        "idf1": np.min,
        "idf1_returned": np.min,
        "hota": np.min,
        "mota": np.min,
        "switches_per_100": np.max,
        "frag": np.max,
        "cpu_ms": np.max,
        "no_id_pct": np.max,
        "blob_id_pct": np.max,
    }
    for agg in ("mean", "worst"):
        out[agg] = {
            k: {
                m: float((np.mean if agg == "mean" else fn)([out[f][k][m] for f in fams]))
                for m, fn in worst.items()
            }
            for k in keys
        }
    return out


SCORE_COLUMNS = [
    ("IDF1", "idf1", 5, 3),
    ("ret", "idf1_returned", 5, 3),
    ("HOTA", "hota", 5, 3),
    ("MOTA", "mota", 6, 3),
    ("sw/100", "switches_per_100", 6, 2),
    ("frag", "frag", 5, 1),
]
ERROR_COLUMNS = [("no id %", "no_id_pct", 7, 1), ("blob id %", "blob_id_pct", 9, 1)]


def print_table(summary: dict, names: list[str], columns=SCORE_COLUMNS, file=sys.stdout) -> None:
    """One row per family and token variant: the two oracles' values of the first column (the
    second: ``oracle_2nd``, ids from each object's second sighting on), then each tracker's
    ``columns`` (title, summary key, width, decimals) side by side."""
    cells = " ".join(f"{t:>{w}}" for t, _, w, _ in columns)
    key, dec = columns[0][1], columns[0][3]
    w = max(7, len(columns[0][0]) + 1)  # each oracle's column
    head = f"{'':<28}{'oracle':>{w}}{'2nd':>{w}}" + "".join(
        f" | {n[: len(cells)]:^{len(cells)}}" for n in names
    )
    print(head, file=file)
    print(f"{'family':<18}{'tokens':<10}{columns[0][0]:>{w}}{columns[0][0]:>{w}}"
          + f" | {cells}" * len(names), file=file)  # fmt: skip
    print("-" * len(head), file=file)
    for fam, per in summary.items():
        for v in VARIANTS:
            if not all(f"{n}/{v}" in per for n in names):
                continue
            second = per.get(ORACLE_CONFIRMED, {}).get(key, float("nan"))
            line = f"{fam:<18}{v:<10}{per['oracle'][key]:>{w}.{dec}f}{second:>{w}.{dec}f}"
            for n in names:
                s = per[f"{n}/{v}"]
                line += " | " + " ".join(f"{s[k]:>{w}.{d}f}" for _, k, w, d in columns)
            print(line, file=file)
