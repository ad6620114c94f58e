"""The model loaders hold each weight once: a checkpoint's tensors become the model's parameters
(memory-mapped from the file, no second copy in memory), with exactly the values and results of
the copying loaders they replace (open_clip's ``create_model_and_transforms(pretrained=...)``,
``load_state_dict`` into a fresh SAM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import torch

from perception_nodes.core.classify.clip_model import (
    load_clip_model,
    make_generated_clip_checkpoint,
    register_test_configs,
)
from perception_nodes.core.sam.registry import build_sam_model, get_spec
from perception_nodes.core.weights.checkpoint_io import assign_weights, read_weights, save_atomic

CLIP = "pn-clip-tiny-test"


def _file_ranges() -> list[tuple[int, int, str | None]]:
    """``(start, end, path)`` of this process's memory mappings (path None: anonymous)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        path = fields[5] if len(fields) == 6 and fields[5].startswith("/") else None
        ranges.append((start, end, path))
    return ranges


def _mapped_from(tensors) -> set[str | None]:
    """Files the tensors' memory is mapped from (None: private memory: heap or anonymous)."""
    ranges = _file_ranges()

    def where(t: torch.Tensor) -> str | None:
        ptr = t.data_ptr()
        return next((p for s, e, p in ranges if s <= ptr < e), None)

    return {where(t) for t in tensors if t.numel()}


def _storage_files(module: torch.nn.Module) -> set[str | None]:
    return _mapped_from([*module.parameters(), *module.buffers()])


def _persistent_files(module: torch.nn.Module) -> set[str | None]:
    return _mapped_from(module.state_dict().values())


def test_read_weights_maps_a_zip_checkpoint_and_reads_a_legacy_one(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    zipped, legacy = tmp_path / "new.pt", tmp_path / "old.pt"
    torch.save(state, zipped)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    mapped, read = read_weights(zipped), read_weights(legacy)
    assert _mapped_from([mapped["w"]]) == {str(zipped)}
    assert _mapped_from([read["w"]]) == {None}
    assert torch.equal(mapped["w"], state["w"]) and torch.equal(read["w"], state["w"])


def test_assign_weights_takes_the_tensors_only_when_a_copy_would_give_the_same():
    lin = torch.nn.Linear(3, 2)
    good = {"weight": torch.randn(2, 3), "bias": torch.randn(2)}
    assert assign_weights(lin, good)
    assert lin.weight.data_ptr() == good["weight"].data_ptr()  # the same memory: no copy
    assert isinstance(lin.weight, torch.nn.Parameter) and lin.weight.requires_grad
    refused = [
        {"weight": torch.randn(2, 3)},  # a key missing
        {**good, "extra": torch.zeros(1)},  # a key too many
        {"weight": torch.randn(2, 3, dtype=torch.float16), "bias": torch.randn(2)},  # a cast
        {"weight": torch.randn(3, 2).t(), "bias": torch.randn(2)},  # other strides
        {"weight": torch.randn(3, 3), "bias": torch.randn(2)},  # another shape
    ]
    for state in refused:
        before = {k: v.clone() for k, v in lin.state_dict().items()}
        ptr = lin.weight.data_ptr()
        assert not assign_weights(lin, state)
        assert lin.weight.data_ptr() == ptr  # untouched
        assert all(torch.equal(before[k], v) for k, v in lin.state_dict().items())


def test_assign_weights_refuses_tied_parameters():
    tied = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
    tied[1].weight = tied[0].weight
    state = {"0.weight": torch.randn(2, 2), "1.weight": torch.randn(2, 2)}
    assert not assign_weights(tied, state)
    assert tied[0].weight is tied[1].weight


def test_sam_weights_are_the_checkpoints_mapped_tensors(tiny_checkpoint):
    sam = build_sam_model("sam_tiny_test", tiny_checkpoint)
    assert _persistent_files(sam) == {str(Path(tiny_checkpoint))}  # no private copy
    reference = get_spec("sam_tiny_test").builder()  # the copying load it replaces
    state = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("__")}
    reference.load_state_dict(state)
    theirs = reference.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in sam.state_dict().items())
    image = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        assert torch.equal(sam.image_encoder(image), reference.image_encoder(image))


def test_clip_weights_are_the_checkpoints_mapped_tensors_with_open_clips_results(tmp_path):
    register_test_configs()
    path = make_generated_clip_checkpoint(CLIP, tmp_path / "clip.pt", seed=3)
    clip = load_clip_model(CLIP, path)
    assert _persistent_files(clip.model) == {str(path)}
    # non-persistent buffers (the text causal mask) are open_clip's own, in private memory
    assert _storage_files(clip.model) == {str(path), None}
    # the copying load it replaces (frozen like load_clip_model's: attention's fast path)
    reference, _, _ = open_clip.create_model_and_transforms(CLIP, pretrained=str(path))
    reference.eval().requires_grad_(False)
    theirs = reference.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in clip.model.state_dict().items())
    assert not any(p.requires_grad for p in clip.model.parameters())
    tokens = clip.tokenizer(["a photo of a cat", "a chair"])
    image = torch.rand(2, 3, clip.image_size, clip.image_size)
    with torch.no_grad():
        assert torch.equal(clip.model.encode_text(tokens), reference.encode_text(tokens))
        assert torch.equal(clip.model.encode_image(image), reference.encode_image(image))


def test_clip_checkpoint_that_needs_a_cast_is_copied_by_open_clip(tmp_path):
    """A half-precision file (as some published weights are) cannot be assigned: open_clip's
    loader copies it into the fp32 model, as before."""
    register_test_configs()
    full = make_generated_clip_checkpoint(CLIP, tmp_path / "clip.pt", seed=4)
    state = torch.load(full, weights_only=True)["state_dict"]
    half = save_atomic({"state_dict": {k: v.half() for k, v in state.items()}}, tmp_path / "h.pt")
    clip = load_clip_model(CLIP, half)
    assert _persistent_files(clip.model) == {None}
    params = clip.model.state_dict()
    assert all(params[k].dtype == torch.float32 for k in state)
    assert all(torch.equal(params[k], v.half().float()) for k, v in state.items())
    emb = clip.encode_text(["a cat"])
    assert emb.dtype == np.float32 and np.isfinite(emb).all()
