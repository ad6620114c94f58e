"""A frame in which nothing survives the filters gives an empty scene graph, never an error."""

from __future__ import annotations

import numpy as np

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.output.scene_graph import from_json, to_json
from perception_nodes.core.pipeline import Pipeline
from perception_nodes.nodes.image_folder_publisher import load_image


def test_pipeline_with_no_surviving_region_returns_an_empty_graph(tmp_path):
    config = PipelineConfig(
        sam_model="sam_tiny_test",
        clip_model="pn-clip-tiny-test",
        amg_points_per_side=2,
        amg_pred_iou_thresh=1.0,
        amg_stability_score_thresh=1.0,  # nothing passes
        weights_cache_dir=str(tmp_path),
        vocabulary_labels=["cup", "person"],
    )
    pipeline = Pipeline.load(config)
    image = load_image("coffee", 96)
    depth = np.full(image.shape[:2], 1.5, np.float32)
    result, graph = pipeline.process(
        image, depth, np.array([[80.0, 0, 48], [0, 80.0, 32], [0, 0, 1]])
    )
    assert len(result.segmentation) == 0 and graph.num_regions == 0 and graph.num_relations == 0
    assert result.labels is not None and len(result.labels.label_index) == 0
    back = from_json(to_json(graph))
    assert back.num_regions == 0 and tuple(back.image_size) == image.shape[:2]
    ids, scores, _ = pipeline.query("a cup")
    assert len(ids) == 0 and len(scores) == 0
