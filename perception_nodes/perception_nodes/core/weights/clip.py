"""Registry of downloadable open_clip weights (the CLIP half of ``pn-fetch-weights``).

The download source comes from open_clip's own pretrained table
(``open_clip.get_pretrained_cfg(model, tag)["hf_hub"]``): the Hugging Face repository of the
tag, from which open_clip itself would fetch ``open_clip_model.safetensors``. The file is
downloaded by :mod:`perception_nodes.core.weights.files` (progress bar, resume from ``.part``,
sha256 check, the offline message) into the project cache, because open_clip's mechanism
(``huggingface_hub.hf_hub_download`` into its own hub cache layout) can neither be given a
pinned sha256 to verify nor produce the offline message with the exact target path.

The Hugging Face endpoint is ``$HF_ENDPOINT`` (huggingface_hub's convention, e.g. a mirror),
default ``https://huggingface.co``.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perception_nodes.core.weights.files import apply_index_override, cached_path

if TYPE_CHECKING:  # torch and open_clip are imported where a model is built (this stays light)
    import torch

HF_ENDPOINT_ENV = "HF_ENDPOINT"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
OPEN_CLIP_HF_FILE = "open_clip_model.safetensors"  # = open_clip.constants.HF_SAFE_WEIGHTS_NAME

#: The RegionSpot paper's CLIP (ViT-B/16 trained on LAION-2B).
DEFAULT_CLIP_MODEL = "ViT-B-16"
DEFAULT_CLIP_TAG = "laion2b_s34b_b88k"
#: Commit of huggingface.co/laion/CLIP-ViT-B-16-laion2B-s34B-b88K the download is pinned to.
DEFAULT_CLIP_REVISION = "7288da5a0d6f0b51c4a2b27c624837a9236d0112"


@dataclass(frozen=True)
class ClipWeightsSpec:
    """One downloadable open_clip weight file (the fields :mod:`..weights` works with).

    Attributes:
        name: what ``pn-fetch-weights`` accepts (``clip:<model>``; ``clip`` = the default).
        model / tag: open_clip model name and pretrained tag.
        hf_repo: Hugging Face repository (from open_clip's pretrained table).
        url: download URL of the safetensors file at a pinned repository commit (immutable: a
            later change upstream does not change what is downloaded).
        filename: name of the file in the project cache (``weights/``).
        sha256 / size_bytes: pinned checksum and size; None where not knowable offline.
        license / source / description: shown by ``pn-fetch-weights --list``.
    """

    name: str
    model: str
    tag: str
    hf_repo: str
    url: str
    filename: str
    sha256: str | None
    size_bytes: int | None
    license: str
    source: str
    description: str = ""
    test_only: bool = False


def hf_endpoint() -> str:
    return os.environ.get(HF_ENDPOINT_ENV, "").rstrip("/") or HF_DEFAULT_ENDPOINT


def _spec(
    model: str,
    tag: str,
    revision: str,
    sha256: str | None,
    size_bytes: int | None,
    license: str,
    description: str,
) -> ClipWeightsSpec:
    import open_clip

    hub = open_clip.get_pretrained_cfg(model, tag).get("hf_hub", "")
    if not hub:
        raise ValueError(f"open_clip has no Hugging Face source for {model} / {tag}")
    repo = hub.rstrip("/") if hub.endswith("/") else os.path.dirname(hub)
    remote_file = OPEN_CLIP_HF_FILE if hub.endswith("/") else os.path.basename(hub)
    return ClipWeightsSpec(
        name=f"clip:{model}",
        model=model,
        tag=tag,
        hf_repo=repo,
        url=f"{hf_endpoint()}/{repo}/resolve/{revision}/{remote_file}",
        filename=f"open_clip_{model}_{tag}{Path(remote_file).suffix}",
        sha256=sha256,
        size_bytes=size_bytes,
        license=license,
        source=f"huggingface.co/{repo}",
        description=description,
    )


def clip_registry() -> dict[str, ClipWeightsSpec]:
    """``{open_clip model name: spec}`` (built on call: reads ``$HF_ENDPOINT`` and the index)."""
    # The URL is pinned to the repository commit (the snapshot id Hugging Face's own cache
    # stores this model under on users' machines), so the file cannot change under us.
    # sha256 / size: NOT pinned. The Hugging Face LFS checksum of this file could not be
    # obtained offline when this entry was written (no network here, and neither open_clip's
    # table nor its hf-hub metadata carry it); pn-fetch-weights logs the computed sha256 of a
    # download so it can be pinned here. A private mirror can pin one through the weights
    # index ($PERCEPTION_NODES_WEIGHTS_INDEX, see core/weights/files.py).
    default = _spec(
        DEFAULT_CLIP_MODEL,
        DEFAULT_CLIP_TAG,
        revision=DEFAULT_CLIP_REVISION,
        sha256=None,
        size_bytes=None,
        license="MIT",
        description="open_clip ViT-B/16, LAION-2B (RegionSpot's CLIP)",
    )
    return {s.model: apply_index_override(s) for s in (default,)}


def get_clip_weights(model: str = DEFAULT_CLIP_MODEL) -> ClipWeightsSpec:
    """Registry entry of open_clip model ``model``; ``KeyError`` listing the known ones."""
    registry = clip_registry()
    try:
        return registry[model]
    except KeyError:
        raise KeyError(
            f"no downloadable weights registered for CLIP model {model!r}; registered: "
            f"{', '.join(registry)} (or pass clip.checkpoint)"
        ) from None


def cached_clip_checkpoint(model: str, cache_dir: str | Path | None = None) -> Path | None:
    """The cached weight file of CLIP ``model`` (None when absent or not in the registry)."""
    try:
        spec = get_clip_weights(model)
    except KeyError:
        return None
    path = cached_path(spec, cache_dir)
    return path if path.is_file() else None


class _DropRandomInitNotice(logging.Filter):
    """open_clip logs "Model initialized randomly" (root logger) for a model built without
    weights: :func:`create_clip_with_weights` gives it its weights right after."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


def create_clip_with_weights(name: str, path: Path) -> torch.nn.Module:
    """open_clip's model ``name`` on the CPU with the weights of ``path``, held ONCE.

    open_clip's ``create_model(pretrained=path)`` reads the file into memory and copies it into
    the new model: two copies at the peak (+1.1 GB for ViT-B-16), the freed one left in the heap.
    Here a torch zip checkpoint is memory-mapped (:func:`read_weights`) and its tensors become
    the model's (:func:`assign_weights`), when the file holds exactly the model's tensors (our
    generated files, open_clip's own ``.bin``/``.pt``); anything else goes through open_clip's
    ``load_checkpoint`` as before: safetensors files (safetensors maps them itself, and its
    tensors, 8-byte aligned, are copied once into the model), legacy files, state dicts that
    need open_clip's conversions or a cast. The values are the same either way.
    """
    import open_clip

    from perception_nodes.core.weights.checkpoint_io import assign_weights, read_weights

    notice = _DropRandomInitNotice()
    logging.getLogger().addFilter(notice)
    try:
        model = open_clip.create_model(name, pretrained=None, device="cpu")
    finally:
        logging.getLogger().removeFilter(notice)
    try:
        state = read_weights(path) if path.suffix in (".pt", ".pth", ".bin") else None
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError):
        state = None  # open_clip's own loader reads it, or says what is wrong with it
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not (isinstance(state, dict) and assign_weights(model, state)):
        del state  # unmapped before open_clip reads the file again
        open_clip.load_checkpoint(model, str(path))
    return model
