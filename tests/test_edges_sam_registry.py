"""The SAM registry builds through segment_anything's public API (issue 21, item 11: it called
the private ``segment_anything.build_sam._build_sam``, whose signature may change unannounced)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import torch

from perception_nodes.core.sam import registry


def test_registry_uses_no_private_name_of_segment_anything():
    tree = ast.parse(Path(registry.__file__).read_text())
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segment_anything")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    private += [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_build")
    ]
    assert not private, f"private segment_anything API used: {private}"


def test_public_builders_take_what_the_registry_passes():
    """What the registry relies on: ``sam_model_registry[name](checkpoint=None)`` for the three
    official models, and ``ImageEncoderViT``'s keyword arguments for the test model."""
    from segment_anything import sam_model_registry
    from segment_anything.modeling import ImageEncoderViT

    for name in ("vit_b", "vit_l", "vit_h"):
        assert "checkpoint" in inspect.signature(sam_model_registry[name]).parameters, name
    params = inspect.signature(ImageEncoderViT).parameters
    for kw in ("depth", "embed_dim", "global_attn_indexes", "use_rel_pos", "window_size"):
        assert kw in params, kw


def test_test_model_has_the_official_layout_with_fewer_blocks():
    """``sam_tiny_test`` (public modules) has vit_b's parameter names, two encoder blocks, and
    the official prompt encoder and mask decoder unchanged."""
    from segment_anything import build_sam_vit_b

    official = build_sam_vit_b(checkpoint=None).state_dict()
    tiny = registry.get_spec("sam_tiny_test").builder().state_dict()
    expected = {
        k
        for k in official
        if not k.startswith("image_encoder.blocks.") or k.split(".")[2] in ("0", "1")
    }
    assert set(tiny) == expected
    for k, v in tiny.items():
        if not k.startswith("image_encoder."):
            assert v.shape == official[k].shape, k
    assert registry.get_spec("vit_b").builder().state_dict().keys() == official.keys()
    assert isinstance(tiny["image_encoder.pos_embed"], torch.Tensor)
