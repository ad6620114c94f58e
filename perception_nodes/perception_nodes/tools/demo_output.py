"""pn-demo's outputs: per photo ``<name>.json`` (the scene graph, ``core.scene_graph.to_json``)
and ``<name>_overlay.png``, the strongest relations as text, and the per-stage timing table
(the node's diagnostics, milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class FrameOutcome:
    """One photo's result: end-to-end latency (s), counts, files written, top relations."""

    name: str
    latency_s: float
    regions: int
    relations: int
    files: list[str] = field(default_factory=list)
    top: list[str] = field(default_factory=list)


def write_frame(out_dir: Path, name: str, graph_msg, overlay_msg) -> list[str]:
    """``<name>.json`` (scene graph, with the message's ``labels_meaningful``: False with
    generated weights) and ``<name>_overlay.png``; returns the paths written."""
    import cv2

    from perception_nodes.core.output.scene_graph import to_json
    from perception_nodes.ros.graph_conversion import msg_to_scene_graph
    from perception_nodes.ros.image_conversion import image_msg_to_numpy

    json_path = out_dir / f"{name}.json"
    graph = msg_to_scene_graph(graph_msg)
    json_path.write_text(to_json(graph, indent=1))
    written = [str(json_path)]
    if overlay_msg is not None:
        overlay = image_msg_to_numpy(overlay_msg)
        if overlay_msg.encoding == "rgb8":
            overlay = overlay[:, :, ::-1]
        png = out_dir / f"{name}_overlay.png"
        if not cv2.imwrite(str(png), overlay):
            raise OSError(f"could not write {png}")
        written.append(str(png))
    return written


def top_triplets(graph_msg, n: int = 3) -> list[str]:
    """The ``n`` best-scored relations as ``"label#id predicate label#id (score)"``."""
    labels = {r.id: r.label for r in graph_msg.regions}
    rels = sorted(graph_msg.relations, key=lambda r: -r.score)[:n]
    return [
        f"{labels.get(r.subject_id, '?')}#{r.subject_id} {r.predicate} {labels.get(r.object_id, '?')}#{r.object_id}"
        f" ({r.score:.2f})"
        for r in rels
    ]


def stage_table(frames: list[FrameOutcome], diag: dict[str, str]) -> str:
    """Per-stage mean latencies (the node's diagnostics) and the measured end-to-end latency."""
    rows = [(k.removesuffix("_ms"), float(v)) for k, v in diag.items() if k.endswith("_ms")]
    e2e = 1000 * float(np.mean([f.latency_s for f in frames])) if frames else float("nan")
    rows.append(("end-to-end (publish -> SceneGraph received)", e2e))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'stage':<{width}}  mean ms", f"{'-' * width}  -------"]
    lines += [f"{name:<{width}}  {ms:7.1f}" for name, ms in rows]
    lines.append(
        f"backend: {diag.get('backend', '?')}, model: {diag.get('model', '?')}, "
        f"weights meaningful: {diag.get('weights_meaningful', '?')}"
    )
    return "\n".join(lines)
