"""Engine metadata sidecars and compatibility checks (no TensorRT needed).

A serialized TensorRT engine only runs on the TensorRT version and the GPU (compute
capability) it was built for; loading it elsewhere fails deep inside TensorRT or, worse,
silently misbehaves. So every engine ``<name>.engine`` travels with a JSON sidecar
``<name>.engine.json`` (:class:`EngineMetadata`) recording how and where it was built, and
:func:`check_engine_compatibility` compares that record with the running system
(:class:`~perception_nodes.core.sam.tensorrt.runtime.RuntimeInfo`) BEFORE TensorRT ever sees
the file. A mismatch raises :class:`EngineMismatchError`, whose message names each problem and
gives the exact ``pn-build-engine`` command that rebuilds the engine for this machine.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

import perception_nodes
from perception_nodes.core.config import PRECISIONS
from perception_nodes.core.records import dataclass_from_dict
from perception_nodes.core.sam.tensorrt.runtime import RuntimeInfo

ENGINE_METADATA_FORMAT = 1
COMPONENTS = ("encoder", "decoder")


class EngineMismatchError(RuntimeError):
    """An engine was built for another system or configuration than the one asked for.

    Attributes:
        problems: one line per mismatch.
        rebuild_command: the shell command that builds a matching engine.
    """

    def __init__(self, engine_path: str | os.PathLike, problems: list[str], rebuild_command: str):
        self.problems = list(problems)
        self.rebuild_command = rebuild_command
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"TensorRT engine {engine_path} does not match this system:\n{lines}\n"
            f"Rebuild it on this machine with:\n  {rebuild_command}"
        )


class EngineMetadataError(ValueError):
    """The metadata sidecar of an engine is missing, unreadable or incomplete."""


@dataclass
class EngineMetadata:
    """Everything needed to decide whether an engine can run here (the ``.engine.json``).

    Attributes:
        model: registry name of the SAM model (``"vit_b"``, ...).
        component: ``"encoder"`` or ``"decoder"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (builder flags; I/O stays float32).
        tensorrt_version: ``tensorrt.__version__`` of the builder, e.g. ``"10.3.0"``.
        gpu_name: CUDA device name of the builder, e.g. ``"NVIDIA GeForce RTX 4090"``.
        compute_capability: ``"major.minor"``, e.g. ``"8.9"``.
        input_size: side of the square encoder input, pixels.
        embedding_shape: ``[C, h, w]`` of one image embedding.
        profiles: optimization profile per dynamic input:
            ``{input_name: {"min": [...], "opt": [...], "max": [...]}}``.
        source_onnx: path of the ONNX file the engine was built from (for the rebuild command).
        source_onnx_sha256: sha256 of that ONNX file.
        source_checkpoint_sha256: sha256 of the PyTorch checkpoint the ONNX was exported from.
        multimask: decoder output mode of the ONNX (``"both"``, ``"multimask"``, ``"single"``;
            empty for encoders).
        untrained: built from GENERATED (seeded random) weights: output is not meaningful
            (from the ONNX metadata written by ``pn-export-onnx``).
        workspace_bytes: builder workspace limit.
        build_time: ISO-8601 UTC time of the build.
        perception_nodes_version: package version that built the engine.
        format_version: version of this metadata layout.
    """

    model: str
    component: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    input_size: int
    embedding_shape: list[int]
    profiles: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    source_onnx: str = ""
    source_onnx_sha256: str = ""
    source_checkpoint_sha256: str = ""
    multimask: str = ""
    untrained: bool = False
    workspace_bytes: int = 0
    build_time: str = ""
    perception_nodes_version: str = perception_nodes.__version__
    format_version: int = ENGINE_METADATA_FORMAT

    def __post_init__(self) -> None:
        if self.component not in COMPONENTS:
            raise EngineMetadataError(
                f"engine component must be one of {COMPONENTS}, got {self.component!r}"
            )
        if self.precision not in PRECISIONS:
            raise EngineMetadataError(
                f"engine precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        self.embedding_shape = [int(v) for v in self.embedding_shape]
        self.input_size = int(self.input_size)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineMetadata":
        """Parse a metadata dict. Unknown keys (an engine of a newer version) are refused like
        every stored config (``core.records``): rebuild the engine with this version."""
        required = [n for n, f in cls.__dataclass_fields__.items() if _is_required(f)]
        missing = [k for k in required if k not in data]
        if missing:
            raise EngineMetadataError(f"engine metadata lacks the keys {missing}")
        return dataclass_from_dict(cls, data, "engine metadata", EngineMetadataError)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EngineMetadata":
        path = Path(path)
        if not path.is_file():
            raise EngineMetadataError(
                f"engine metadata {path} not found: every engine needs its JSON sidecar "
                "(written by pn-build-engine); rebuild the engine with pn-build-engine"
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EngineMetadataError(f"engine metadata {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise EngineMetadataError(f"engine metadata {path} must hold a JSON object")
        return cls.from_dict(data)


def _is_required(f: Any) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def metadata_path(engine_path: str | os.PathLike) -> Path:
    """The sidecar of an engine: ``foo.engine`` -> ``foo.engine.json``."""
    return Path(str(engine_path) + ".json")


@dataclass(frozen=True)
class EngineRequirements:
    """What the caller needs from an engine (``None`` = do not check)."""

    model: str | None = None
    component: str | None = None
    precision: str | None = None
    input_size: int | None = None
    embedding_shape: tuple[int, int, int] | None = None
    checkpoint_sha256: str | None = None


def check_engine_compatibility(
    metadata: EngineMetadata,
    runtime_info: RuntimeInfo,
    requirements: EngineRequirements | None = None,
) -> list[str]:
    """Problems that prevent running the engine described by ``metadata`` here (pure function).

    Checked: TensorRT installed and the same version as the builder (serialized engines are
    tied to the exact version), a CUDA GPU present with the same compute capability and name,
    and, when ``requirements`` are given, model, component, precision, input size,
    embedding shape and source checkpoint. Returns an empty list when everything matches.
    """
    problems: list[str] = []
    if runtime_info.tensorrt_version is None:
        problems.append(
            f"TensorRT is not installed here (engine needs TensorRT {metadata.tensorrt_version})"
        )
    elif runtime_info.tensorrt_version != metadata.tensorrt_version:
        problems.append(
            f"TensorRT version: engine built with {metadata.tensorrt_version}, "
            f"running {runtime_info.tensorrt_version}"
        )
    if runtime_info.gpu_name is None:
        problems.append(f"no CUDA GPU here (engine built for {metadata.gpu_name})")
    else:
        if runtime_info.compute_capability != metadata.compute_capability:
            problems.append(
                f"GPU compute capability: engine built for {metadata.compute_capability} "
                f"({metadata.gpu_name}), this GPU is {runtime_info.compute_capability} "
                f"({runtime_info.gpu_name})"
            )
        elif runtime_info.gpu_name != metadata.gpu_name:
            problems.append(
                f"GPU: engine built on {metadata.gpu_name!r}, running on "
                f"{runtime_info.gpu_name!r} (same compute capability, but TensorRT tunes "
                "kernels per GPU model)"
            )
    if requirements is not None:
        problems.extend(_requirement_problems(metadata, requirements))
    return problems


def _requirement_problems(metadata: EngineMetadata, req: EngineRequirements) -> list[str]:
    checks: list[tuple[str, Any, Any]] = [
        ("model", req.model, metadata.model),
        ("component", req.component, metadata.component),
        ("precision", req.precision, metadata.precision),
        ("input size", req.input_size, metadata.input_size),
        (
            "embedding shape",
            list(req.embedding_shape) if req.embedding_shape is not None else None,
            metadata.embedding_shape,
        ),
        ("source checkpoint sha256", req.checkpoint_sha256, metadata.source_checkpoint_sha256),
    ]
    return [
        f"{what}: engine has {have!r}, expected {want!r}"
        for what, want, have in checks
        if want is not None and want != have
    ]


def rebuild_command(metadata: EngineMetadata, engine_path: str | os.PathLike | None = None) -> str:
    """The ``pn-build-engine`` command that rebuilds this engine on the current machine."""
    onnx = metadata.source_onnx or f"<{metadata.model}_{metadata.component}.onnx>"
    parts = ["pn-build-engine", "--onnx", onnx, "--precision", metadata.precision]
    if engine_path is not None:
        parts += ["--out", str(engine_path)]
    for name, ranges in sorted(metadata.profiles.items()):
        if metadata.component == "encoder" and name == "images":
            parts += ["--max-batch", str(ranges["max"][0])]
        if metadata.component == "decoder" and name == "point_coords":
            parts += [
                "--opt-prompts",
                str(ranges["opt"][0]),
                "--max-prompts",
                str(ranges["max"][0]),
                "--max-points",
                str(ranges["max"][1]),
            ]
    return shlex.join(parts)


def load_engine_metadata_checked(
    engine_path: str | os.PathLike,
    runtime_info: RuntimeInfo,
    requirements: EngineRequirements | None = None,
) -> EngineMetadata:
    """Read the sidecar of ``engine_path`` and raise :class:`EngineMismatchError` on problems."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise FileNotFoundError(
            f"TensorRT engine {engine_path} not found; build it with pn-build-engine "
            "(see models/EXPORT.md)"
        )
    metadata = EngineMetadata.load(metadata_path(engine_path))
    problems = check_engine_compatibility(metadata, runtime_info, requirements)
    if problems:
        raise EngineMismatchError(engine_path, problems, rebuild_command(metadata, engine_path))
    return metadata
