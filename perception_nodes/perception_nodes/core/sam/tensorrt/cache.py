"""The engine cache: where engines for one (model, GPU, TensorRT version, precision) live.

Engines are cached per ``(model, GPU, TensorRT version, precision)`` under
``$PERCEPTION_NODES_CACHE/engines`` (default ``~/.cache/perception_nodes/engines``); see
:func:`engine_cache_key` and :func:`find_engines`. No TensorRT needed.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from perception_nodes.core.config import PRECISIONS
from perception_nodes.core.sam.tensorrt.metadata import (
    COMPONENTS,
    EngineMetadata,
    EngineMetadataError,
    EngineRequirements,
    check_engine_compatibility,
    metadata_path,
    rebuild_command,
)
from perception_nodes.core.sam.tensorrt.runtime import TENSORRT_INSTALL_HINT, RuntimeInfo
from perception_nodes.core.weights.files import default_cache_dir


class EngineNotFoundError(FileNotFoundError):
    """No engine for this (model, GPU, TensorRT version, precision) in the cache."""


def engine_cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Directory holding cached engines (``<cache root>/engines``)."""
    return (Path(root) if root is not None else default_cache_dir()) / "engines"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def engine_cache_key(model: str, gpu_name: str, tensorrt_version: str, precision: str) -> str:
    """Directory name of one engine pair, e.g. ``vit_b__nvidia-geforce-rtx-4090__trt10.3.0__fp16``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return f"{_slug(model).replace('-', '_')}__{_slug(gpu_name)}__trt{_slug(tensorrt_version)}__{precision}"


@dataclass
class EngineSelection:
    """Where the engines for one configuration are (or should be built).

    Attributes:
        encoder_path / decoder_path: engine files in the cache (they may not exist yet).
        found: both engines exist and match this system.
        problems: why they cannot be used (missing files, mismatches).
        build_commands: commands that build the missing or mismatched engines.
    """

    encoder_path: Path
    decoder_path: Path
    found: bool
    problems: list[str]
    build_commands: list[str]


def find_engines(
    model: str,
    precision: str,
    runtime_info: RuntimeInfo,
    cache_dir: str | os.PathLike | None = None,
    onnx_dir: str | os.PathLike | None = None,
    requirements: EngineRequirements | None = None,
) -> EngineSelection:
    """Look up the encoder/decoder engines of ``model`` for this GPU and TensorRT version.

    Args:
        model: registry name of the SAM model.
        precision: ``"fp16"``, ``"fp32"`` or ``"bf16"``.
        runtime_info: this system (see :func:`gather_runtime_info`).
        cache_dir: engines directory (default :func:`engine_cache_dir`).
        onnx_dir: where the ONNX exports are, used in the suggested build commands
            (default ``<cache root>/onnx/<model>``, what ``pn-export-onnx`` writes by default).
        requirements: extra checks (input size, checkpoint); model and precision are
            always checked.
    """
    if runtime_info.gpu_name is None or runtime_info.tensorrt_version is None:
        missing = "TensorRT" if runtime_info.tensorrt_version is None else "a CUDA GPU"
        raise EngineNotFoundError(
            f"TensorRT engines need {missing}, which this system lacks. "
            + (
                TENSORRT_INSTALL_HINT
                if runtime_info.tensorrt_version is None
                else "Use the 'onnxruntime' or 'torch' backend on CPU."
            )
        )
    directory = engine_cache_dir() if cache_dir is None else Path(cache_dir)
    key = engine_cache_key(model, runtime_info.gpu_name, runtime_info.tensorrt_version, precision)
    onnx_base = Path(onnx_dir) if onnx_dir is not None else default_cache_dir() / "onnx" / model
    req = requirements or EngineRequirements()
    problems: list[str] = []
    commands: list[str] = []
    paths = {}
    for component in COMPONENTS:
        path = directory / key / f"{component}.engine"
        paths[component] = path
        comp_req = EngineRequirements(
            model=model,
            component=component,
            precision=precision,
            input_size=req.input_size,
            embedding_shape=req.embedding_shape,
            checkpoint_sha256=req.checkpoint_sha256,
        )
        fresh_cmd = shlex.join(
            [
                "pn-build-engine",
                "--onnx",
                str(onnx_base / f"{component}.onnx"),
                "--precision",
                precision,
                "--out",
                str(path),
            ]
        )
        if not path.is_file():
            problems.append(f"{component} engine missing: {path}")
            commands.append(fresh_cmd)
            continue
        try:
            metadata = EngineMetadata.load(metadata_path(path))
        except EngineMetadataError as exc:
            problems.append(f"{component} engine unusable: {exc}")
            commands.append(fresh_cmd)
            continue
        found = check_engine_compatibility(metadata, runtime_info, comp_req)
        if found:
            problems.extend(f"{component} engine: {p}" for p in found)
            commands.append(rebuild_command(metadata, path))
    return EngineSelection(paths["encoder"], paths["decoder"], not problems, problems, commands)


def select_engines(
    model: str,
    precision: str,
    runtime_info: RuntimeInfo,
    cache_dir: str | os.PathLike | None = None,
    requirements: EngineRequirements | None = None,
) -> tuple[Path, Path]:
    """``(encoder_path, decoder_path)`` from the cache, or :class:`EngineNotFoundError`
    naming what is missing and the commands that build it."""
    selection = find_engines(model, precision, runtime_info, cache_dir, requirements=requirements)
    if not selection.found:
        raise EngineNotFoundError(
            f"no usable TensorRT engines for model {model!r}, precision {precision}, "
            f"GPU {runtime_info.gpu_name!r}, TensorRT {runtime_info.tensorrt_version}:\n"
            + "\n".join(f"  - {p}" for p in selection.problems)
            + "\nBuild them with:\n"
            + "\n".join(f"  {c}" for c in selection.build_commands)
        )
    return selection.encoder_path, selection.decoder_path
