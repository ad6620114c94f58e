"""Trained-head checkpoints are written atomically: a write that fails half-way (crash, full disk)
leaves the previous checkpoint loadable, for the relation head and the RegionSpot head alike."""

from __future__ import annotations

import pytest
import torch

from perception_nodes.core.checkpoint_io import save_atomic
from perception_nodes.core.relations.head import (
    RelationHead,
    RelationHeadConfig,
    load_relation_head,
    save_relation_head,
)


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
