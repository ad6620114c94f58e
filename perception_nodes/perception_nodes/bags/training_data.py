"""Training data of processed frames: COCO instances (``pn-train-regionspot``) and OpenPSG
relations (``pn-train-relations``), both straight from the output folder.

Per frame (:func:`frame_record`): the image as ``images/<camera>/<index>.png`` and a journal
record with each region's mask (COCO compressed RLE, pycocotools), XYWH box, label and score,
and the relations; a COCO-panoptic PNG ``panoptic/<camera>/<index>.png`` where overlapping
masks are resolved as in the label image (the smaller region on top; a region left without a
pixel is left out of psg.json, with its relations). From the records (:func:`write_training_files`):

- ``instances.json``: ``images``, ``annotations`` (``segmentation`` RLE, ``bbox`` XYWH pixels,
  ``area``, ``score``, ``region_id``, ``track_id``, ``stamp_ns``), ``categories`` = the
  vocabulary (id = label index + 1). Regions labelled ``unknown`` have no category: they are
  left out and counted in ``info.unknown_regions``.
- ``psg.json``: OpenPSG (:mod:`perception_nodes.training.psg`); ``thing_classes`` = the
  vocabulary, ``predicate_classes`` = the relation predictor's predicates.
Paths in both files are relative to the output folder (``--images-dir``/``image_root`` = it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from perception_nodes.core.output.scene_graph import SceneGraph
from perception_nodes.core.types import FrameResult
from perception_nodes.training.psg import write_panoptic_png


def _file_stem(camera: str, index: int) -> str:
    cam = camera.strip("/").replace("/", "_") or "camera"
    return f"{cam}/{index:06d}"


def _xywh(mask: np.ndarray) -> list[float]:
    """Tight XYWH box (pixels) of a non-empty ``HxW`` bool mask (from its row and column
    projections: no coordinate array of every pixel)."""
    xs, ys = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    x0, y0 = int(xs[0]), int(ys[0])
    return [float(x0), float(y0), float(xs[-1] + 1 - x0), float(ys[-1] + 1 - y0)]


def coco_rles(graph: SceneGraph) -> list[dict]:
    """pycocotools' compressed RLE of each region's mask, from the graph's counts (COCO's
    uncompressed RLE, already encoded once by the scene graph): the same bytes as
    ``mask_utils.encode`` of the mask, without reading the masks again. The counts go in as
    they are (lists of ints, or uint32 arrays from messages): pycocotools makes its own uint32
    array of them (a copy of each list here cost more than the encoding: the test models'
    noisy masks have ~20,000 runs each)."""
    h, w = (int(v) for v in graph.image_size)
    raw = [{"size": [h, w], "counts": counts} for counts in graph.mask_counts]
    return mask_utils.frPyObjects(raw, h, w) if raw else []


def _panoptic(masks: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Non-overlapping masks (larger regions painted first, smaller on top) and the indices of
    the regions that keep at least one pixel."""
    order = np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable")
    owner = np.full(masks.shape[1:], -1, dtype=np.int64)
    for i in order:
        owner[masks[i]] = i
    visible = [i for i in range(len(masks)) if bool((owner == i).any())]
    return np.stack([owner == i for i in range(len(masks))]) if len(masks) else masks, visible


def frame_record(
    out: Path, key: str, camera: str, index: int, stamp_ns: int,
    rgb: np.ndarray, result: FrameResult, graph: SceneGraph, predicates: list[str],
) -> dict:  # fmt: skip
    """Write the frame's image and panoptic PNG under ``out``; its journal record."""
    stem = _file_stem(camera, index)
    image_file, pan_file = f"images/{stem}.png", f"panoptic/{stem}.png"
    (out / image_file).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out / image_file), rgb[:, :, ::-1]):
        raise OSError(f"cannot write {out / image_file}")
    masks = result.segmentation.masks.astype(bool)
    rles = coco_rles(graph)
    boxes = mask_utils.toBbox(rles).tolist() if rles else []
    areas = mask_utils.area(rles).tolist() if rles else []
    regions = []
    for i, rle in enumerate(rles):
        regions.append(
            {
                "region_id": int(graph.region_ids[i]),
                "track_id": int(graph.track_ids[i]),
                "label": graph.labels[i],
                "label_index": int(graph.label_index[i]),
                "score": float(graph.label_scores[i]),
                "rle": rle["counts"].decode("ascii"),
                "bbox": [float(v) for v in boxes[i]],
                "area": int(areas[i]),
            }
        )
    pan_masks, visible = _panoptic(masks)
    write_panoptic_png(out / pan_file, pan_masks, [int(r) for r in graph.region_ids])
    relations = [
        [int(s), int(o), int(p), float(sc)]
        for s, o, p, sc in zip(graph.subject, graph.object, graph.predicate_index, graph.relation_scores)
    ]  # fmt: skip
    return {
        "key": key, "status": "ok", "camera": camera, "index": index, "stamp_ns": int(stamp_ns),
        "file_name": image_file, "pan_seg_file_name": pan_file,
        "height": int(rgb.shape[0]), "width": int(rgb.shape[1]),
        "vocabulary": list(result.labels.labels) if result.labels is not None else [],
        "predicates": list(predicates), "regions": regions, "relations": relations,
        "panoptic": [
            {"region": i, "bbox": _xywh(pan_masks[i]), "area": int(pan_masks[i].sum())}
            for i in visible
        ],
    }  # fmt: skip


def _coco(records: list[dict], vocabulary: list[str]) -> dict:
    images, annotations, unknown = [], [], 0
    for image_id, r in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": r["file_name"], "height": r["height"],
                       "width": r["width"], "stamp_ns": r["stamp_ns"], "frame": r["key"]})  # fmt: skip
        for reg in r["regions"]:
            if reg["label_index"] < 0:
                unknown += 1
                continue
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": reg["label_index"] + 1,
                "segmentation": {"size": [r["height"], r["width"]], "counts": reg["rle"]},
                "area": reg["area"], "bbox": reg["bbox"], "iscrowd": 0, "score": reg["score"],
                "region_id": reg["region_id"], "track_id": reg["track_id"],
            })  # fmt: skip
    return {
        "info": {"description": "pn-process-bag auto-labels", "unknown_regions": unknown},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(vocabulary)],
    }


def _psg_entry(r: dict) -> dict | None:
    regions = r["regions"]
    kept = [p for p in r["panoptic"] if regions[p["region"]]["label_index"] >= 0]
    index = {p["region"]: j for j, p in enumerate(kept)}
    if not kept:
        return None
    segs = [{"id": regions[p["region"]]["region_id"], "category_id": regions[p["region"]]["label_index"],
             "isthing": 1, "bbox": p["bbox"], "area": p["area"], "iscrowd": 0} for p in kept]  # fmt: skip
    rels = [[index[s], index[o], p] for s, o, p, _ in r["relations"] if s in index and o in index]
    anns = [{"bbox": [s["bbox"][0], s["bbox"][1], s["bbox"][0] + s["bbox"][2], s["bbox"][1] + s["bbox"][3]],
             "bbox_mode": 0, "category_id": s["category_id"]} for s in segs]  # fmt: skip
    return {"file_name": r["file_name"], "height": r["height"], "width": r["width"],
            "image_id": r["key"], "pan_seg_file_name": r["pan_seg_file_name"],
            "segments_info": segs, "annotations": anns, "relations": rels}  # fmt: skip


def _psg(records: list[dict], vocabulary: list[str], predicates: list[str]) -> dict:
    data = [e for e in (_psg_entry(r) for r in records) if e is not None]
    return {"data": data, "thing_classes": list(vocabulary), "stuff_classes": [],
            "predicate_classes": list(predicates), "test_image_ids": []}  # fmt: skip


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def write_training_files(out: Path, journal: list[dict]) -> None:
    """``instances.json`` and ``psg.json`` of the processed frames among ``journal``'s records."""
    records = [r for r in journal if r.get("status") == "ok"]
    vocabulary = records[0]["vocabulary"] if records else []
    predicates = records[0]["predicates"] if records else []
    _write_json(out / "instances.json", _coco(records, vocabulary))
    _write_json(out / "psg.json", _psg(records, vocabulary, predicates))
