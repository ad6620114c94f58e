"""Trained-head checkpoints are written atomically: a write that fails half-way (crash, full disk)
leaves the previous checkpoint loadable, for the relation head and the RegionSpot head alike."""

from __future__ import annotations

import os

import pytest
import torch
from ros_helpers.process import dead_pid

from perception_nodes.core.relations.head import (
    RelationHead,
    RelationHeadConfig,
    load_relation_head,
    save_relation_head,
)
from perception_nodes.core.weights.checkpoint_io import save_atomic, writer_tag


def _failing_save(obj, f, *args, **kwargs):
    """torch.save that writes a few bytes, then fails like a full disk would."""
    with open(f, "wb") as out:
        out.write(b"PK\x03\x04 half")
    raise OSError(28, "No space left on device")


def test_failed_write_keeps_the_previous_relation_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "relations.pt"
    head = RelationHead(RelationHeadConfig(num_layers=0))
    save_relation_head(path, head, extra={"step": 1})
    monkeypatch.setattr(torch, "save", _failing_save)
    with pytest.raises(OSError):
        save_relation_head(path, head, extra={"step": 2})
    monkeypatch.undo()
    _, extra = load_relation_head(path)
    assert extra == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relations.pt"]  # no temporary left


def test_save_atomic_creates_the_folder_and_replaces(tmp_path):
    path = tmp_path / "new" / "ckpt.pt"
    save_atomic({"a": 1}, path)
    save_atomic({"a": 2}, path)
    assert torch.load(path, weights_only=True) == {"a": 2}


def test_save_atomic_removes_the_temporary_of_a_stopped_writer_and_keeps_a_running_ones(tmp_path):
    path = tmp_path / "sam_vit_t_seed0.pth"
    stopped = tmp_path / f".{path.name}.{writer_tag(dead_pid())}.tmp"  # SIGINT mid-write
    stopped.write_bytes(b"half a checkpoint")
    running = tmp_path / f".{path.name}.{writer_tag(os.getppid())}.tmp"  # writing now
    running.write_bytes(b"being written")
    elsewhere = tmp_path / f".{path.name}.otherhost-{dead_pid()}.tmp"  # a shared cache volume
    elsewhere.write_bytes(b"another container's")
    other = tmp_path / f".other.pth.{writer_tag(dead_pid())}.tmp"  # another file's
    other.write_bytes(b"x")
    save_atomic({"a": 1}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, running.name, elsewhere.name, other.name]
    )


def test_unknown_config_fields_are_refused_by_name_everywhere(tmp_path):
    """One policy (core.records): stored configs with fields this version does not know are
    refused with their names, for the relation head, RegionSpot and the pipeline settings."""
    from perception_nodes.core.classify.regionspot import (
        CheckpointMismatchError,
        read_regionspot_checkpoint,
    )
    from perception_nodes.core.config import PipelineConfig
    from perception_nodes.core.records import dataclass_from_dict
    from perception_nodes.core.relations.head import RelationCheckpointError

    with pytest.raises(RelationCheckpointError, match="unknown fields .'depth_bins'."):
        RelationHeadConfig.from_dict(
            {**RelationHeadConfig(num_layers=0).to_dict(), "depth_bins": 8}
        )
    with pytest.raises(ValueError, match="unknown fields .'sam.modle'."):
        PipelineConfig.from_flat({"sam.modle": "vit_t"})
    assert (
        PipelineConfig.from_flat({"sam.model": "vit_b", "amg_points_per_side": 8}).sam_model
        == "vit_b"
    )
    from perception_nodes.core.classify.regionspot import RegionSpotConfig

    with pytest.raises(CheckpointMismatchError, match="unknown fields .'future_field'."):
        dataclass_from_dict(
            RegionSpotConfig, {"future_field": 1}, "RegionSpot checkpoint", CheckpointMismatchError
        )
    assert callable(read_regionspot_checkpoint)
