"""OpenPSG format: psg.json + COCO-panoptic PNG round trip and error messages."""

import json

import numpy as np
import pytest
from relations_fixtures import CATEGORIES, write_synthetic_psg

from perception_nodes.core.relations.predicates import PSG_PREDICATES
from perception_nodes.training.psg import PsgFormatError, id2rgb, load_psg, rgb2id


def test_rgb_id_round_trip():
    ids = np.array([[0, 1, 255], [256, 65536, 256**3 - 1]])
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    assert id2rgb(np.array([[256 + 2]]))[0, 0].tolist() == [2, 1, 0]  # id = R + 256 G + 256^2 B


def test_written_dataset_loads_back(tmp_path):
    path = write_synthetic_psg(tmp_path, num_train=3, num_test=2, seed=3)
    raw = json.loads(path.read_text())
    assert set(raw) >= {"data", "thing_classes", "stuff_classes", "predicate_classes"}
    assert raw["predicate_classes"] == list(PSG_PREDICATES)
    entry = raw["data"][0]
    assert set(entry) >= {
        "file_name",
        "height",
        "width",
        "pan_seg_file_name",
        "segments_info",
        "annotations",
        "relations",
    }
    ds = load_psg(path)
    assert ds.categories == CATEGORIES
    assert len(ds.split("train")) == 3 and len(ds.split("test")) == 2
    im = ds.images[0]
    masks = ds.load_masks(im)
    assert masks.shape == (len(im.segments), im.height, im.width)
    assert not (masks.sum(0) > 1).any()  # panoptic: no overlap
    for seg, m in zip(im.segments, masks):
        assert seg.area == m.sum()
        ys, xs = np.nonzero(m)
        assert seg.bbox_xywh == (
            xs.min(),
            ys.min(),
            xs.max() + 1 - xs.min(),
            ys.max() + 1 - ys.min(),
        )
    assert ds.load_image(im).shape == (im.height, im.width, 3)
    assert im.relations.shape[1] == 3


def test_format_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": []}))
    with pytest.raises(PsgFormatError, match="thing_classes"):
        load_psg(bad)
    path = write_synthetic_psg(tmp_path / "ok", num_train=1, num_test=0)
    raw = json.loads(path.read_text())
    raw["data"][0]["relations"].append([0, 99, 0])
    path.write_text(json.dumps(raw))
    with pytest.raises(PsgFormatError, match="out of range"):
        load_psg(path)
    with pytest.raises(ValueError, match="unknown split"):
        load_psg(write_synthetic_psg(tmp_path / "ok2", 1, 0)).split("val")
