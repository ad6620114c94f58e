"""The perception node whose mask generator returns the objects drawn in the image, run as its
own process by tests/test_e2e_tracking.py.

The test models' SAM weights are generated (seeded random): their "segment everything" returns
near-copies of the whole image, so no object can be followed through them. Here the real
generator still runs on every frame (image encoder, decoder, filters: its cost and its failures
stay), and its regions are replaced by the saturated-colour blobs of the image (connected
components, ``cv2.connectedComponentsWithStats``) with SAM-like scores and tokens of untrained
weights (all nearly alike, so identity cannot come from appearance). Everything else is the
real node (``perception_node.main``'s lifecycle, executor, worker, classifier, relations,
tracking stage) on real DDS.

Usage: python tests/tracking_objects_node.py --ros-args -r __node:=perception_node --params-file F
"""

from __future__ import annotations

import sys
from dataclasses import replace

import cv2
import numpy as np

from perception_nodes.core.pipeline import Pipeline
from perception_nodes.core.types import Segmentation
from perception_nodes.nodes import perception_node
from perception_nodes.ros.node_runner import run_node

MIN_SATURATION = 100  # max - min channel of an object pixel (the background is grey)
MIN_AREA = 30


def drawn_objects(image: np.ndarray, token_dim: int) -> Segmentation:
    """Regions of the saturated blobs of the ``HxWx3`` RGB ``image`` (tight XYXY boxes, pixel
    areas, predicted IoU 0.95, stability 0.97, tokens alike: one shared direction plus 0.1 of
    a direction per blob colour)."""
    img = image.astype(np.int16)
    saturated = (img.max(axis=2) - img.min(axis=2)) >= MIN_SATURATION
    count, labels, stats, _ = cv2.connectedComponentsWithStats(saturated.astype(np.uint8), 4)
    keep = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= MIN_AREA]
    n = len(keep)
    if not n:
        return Segmentation.empty(image.shape[:2], token_dim)
    masks = np.stack([labels == k for k in keep])
    x, y = stats[keep, cv2.CC_STAT_LEFT], stats[keep, cv2.CC_STAT_TOP]
    w, h = stats[keep, cv2.CC_STAT_WIDTH], stats[keep, cv2.CC_STAT_HEIGHT]
    boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
    common = np.random.default_rng(0).standard_normal(token_dim)
    tokens = []
    for m in masks:
        colour = tuple(int(c) // 32 for c in image[m].mean(axis=0))
        own = np.random.default_rng(colour).standard_normal(token_dim)
        tokens.append(common + 0.1 * own)
    return Segmentation(
        masks=masks,
        boxes_xyxy=boxes,
        areas=stats[keep, cv2.CC_STAT_AREA].astype(np.int64),
        predicted_iou=np.full(n, 0.95, np.float32),
        stability_score=np.full(n, 0.97, np.float32),
        tokens=np.array(tokens, np.float32),
        point_coords=np.full((n, 2), np.nan, np.float32),
        image_size=tuple(image.shape[:2]),
    )


class DrawnObjectsGenerator:
    """The real mask generator, run, with its regions replaced by :func:`drawn_objects`."""

    def __init__(self, sam_generator) -> None:
        self._sam = sam_generator

    def __getattr__(self, name: str):
        return getattr(self._sam, name)

    def generate(self, image: np.ndarray, should_stop=None) -> Segmentation:
        seg = self._sam.generate(image, should_stop=should_stop)
        return drawn_objects(image, seg.tokens.shape[1])


def load(config) -> Pipeline:
    pipeline = Pipeline.load(config)
    pipeline._stages = replace(
        pipeline._stages, generator=DrawnObjectsGenerator(pipeline.generator)
    )
    return pipeline


def main() -> int:
    def make_node():
        return perception_node.PerceptionNode(pipeline_loader=load)

    sys.setswitchinterval(perception_node.GIL_SWITCH_INTERVAL_S)
    return run_node(make_node, perception_node._spin, sys.argv)


if __name__ == "__main__":
    sys.exit(main())
