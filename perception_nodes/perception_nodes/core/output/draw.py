"""Overlay drawing for people: masks in colour, labels, relation arrows (OpenCV).

Input image HxWx3 uint8 RGB; output the same. Pixel coordinates (x right, y down).
"""

from __future__ import annotations

import cv2
import numpy as np

from perception_nodes.core.output.rle import decode_crop, tight_box
from perception_nodes.core.output.scene_graph import SceneGraph


def region_colours(ids: np.ndarray) -> np.ndarray:
    """``(N, 3)`` uint8 RGB colours, stable per region id (golden-ratio hue walk); ``(0, 3)`` for none."""
    ids = np.asarray(ids, dtype=np.float64).reshape(-1)
    if ids.size == 0:  # cv2.cvtColor refuses empty images
        return np.zeros((0, 3), dtype=np.uint8)
    hues = ((ids * 0.618033988749895) % 1.0 * 179).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 200), np.full_like(hues, 255)], axis=1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def colour_keys(graph: SceneGraph) -> np.ndarray:
    """``(N,)`` int64 key to colour each region by: its track id when tracked (so an object keeps
    its colour across frames), else its frame region id (moved past 2**32 so it never takes the
    colour key of a track)."""
    tracked = graph.track_ids.astype(np.int64)
    return np.where(tracked > 0, tracked, graph.region_ids.astype(np.int64) + (1 << 32))


def region_text(graph: SceneGraph, i: int) -> str:
    """Overlay caption of region ``i``: ``#track label score`` when tracked, else ``id:label score``."""
    tid = int(graph.track_ids[i])
    who = f"#{tid} " if tid else f"{graph.region_ids[i]}:"
    return f"{who}{graph.labels[i]} {graph.label_scores[i]:.2f}"


def _region_crop(
    graph: SceneGraph, masks: np.ndarray | None, i: int
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Region ``i``'s tight box (exclusive max) and its bool mask inside it: decoded from the
    graph's RLE for the columns it touches, or cut from ``masks[i]``. Blending only there gives
    the same pixels as blending with the full mask at a fraction of the cost."""
    if masks is None:
        return decode_crop(graph.image_size[0], graph.image_size[1], graph.mask_counts[i])
    x0, y0, x1, y1 = tight_box(masks[i])
    return (x0, y0, x1, y1), masks[i, y0:y1, x0:x1].astype(bool, copy=False)


def _centre(box: np.ndarray) -> tuple[int, int]:
    return int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)


def draw_overlay(
    image: np.ndarray,
    graph: SceneGraph,
    masks: np.ndarray | None = None,
    alpha: float = 0.45,
    max_relations: int = 20,
    banner: str | None = None,
) -> np.ndarray:
    """Masks blended over ``image``, each region's label, and the top relations as arrows.

    Regions are coloured by track id when tracked (see :func:`colour_keys`).

    ``masks`` (N, H, W) bool may be passed to avoid decoding the graph's RLE again. Each region
    is blended inside its box only (array operations on the crop, same result).
    """
    out = image.astype(np.float32)
    colours = region_colours(colour_keys(graph))
    for i in range(graph.num_regions):
        (x0, y0, x1, y1), crop = _region_crop(graph, masks, i)
        part = out[y0:y1, x0:x1]  # a view: the blend below writes into ``out``
        # dense over the box, stored where the mask is: the same float32 * float + float64
        # expression per pixel as indexing with the mask, without gathering/scattering pixels
        np.copyto(part, (1 - alpha) * part + alpha * colours[i], where=crop[:, :, None])
    out = out.astype(np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(image.shape[:2]) / 900)
    for s, o, p, sc in zip(
        graph.subject[:max_relations],
        graph.object[:max_relations],
        graph.predicate_index[:max_relations],
        graph.relation_scores[:max_relations],
    ):
        a, b = _centre(graph.boxes_xyxy[s]), _centre(graph.boxes_xyxy[o])
        cv2.arrowedLine(out, a, b, (255, 255, 255), 2, cv2.LINE_AA, tipLength=0.05)
        mid = ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)
        cv2.putText(
            out,
            f"{graph.predicates[p]} {sc:.2f}",
            mid,
            font,
            scale * 0.8,
            (255, 255, 0),
            1,
            cv2.LINE_AA,
        )
    for i in range(graph.num_regions):
        x0, y0 = int(graph.boxes_xyxy[i][0]), int(graph.boxes_xyxy[i][1])
        text = region_text(graph, i)
        (tw, th), _ = cv2.getTextSize(text, font, scale, 1)
        y = max(th + 2, y0)
        cv2.rectangle(
            out, (x0, y - th - 2), (x0 + tw, y + 2), tuple(int(c) for c in colours[i]), -1
        )
        cv2.putText(out, text, (x0, y), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    if banner:  # on a black strip across the bottom, so it reads on any image
        (_, th), base = cv2.getTextSize(banner, font, scale, 2)
        cv2.rectangle(
            out, (0, out.shape[0] - th - base - 10), (out.shape[1], out.shape[0]), (0, 0, 0), -1
        )
        cv2.putText(
            out, banner, (5, out.shape[0] - base - 4), font, scale, (255, 64, 64), 2, cv2.LINE_AA
        )
    return out
