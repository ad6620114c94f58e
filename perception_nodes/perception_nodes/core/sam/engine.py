"""TensorRT engines for SAM: metadata sidecars, compatibility checks, the engine cache, building.

A serialized TensorRT engine only runs on the TensorRT version and the GPU (compute
capability) it was built for; loading it elsewhere fails deep inside TensorRT or, worse,
silently misbehaves. So every engine ``<name>.engine`` travels with a JSON sidecar
``<name>.engine.json`` (:class:`EngineMetadata`) recording how and where it was built, and
:func:`check_engine_compatibility` compares that record with the running system
(:class:`RuntimeInfo`) BEFORE TensorRT ever sees the file. A mismatch raises
:class:`EngineMismatchError`, whose message names each problem and gives the exact
``pn-build-engine`` command that rebuilds the engine for this machine.

Engines are cached per ``(model, GPU, TensorRT version, precision)`` under
``$PERCEPTION_NODES_CACHE/engines`` (default ``~/.cache/perception_nodes/engines``); see
:func:`engine_cache_key` and :func:`find_engines`.

``import tensorrt`` is lazy (:func:`import_tensorrt`): everything here except
:func:`build_engine` works, and is tested, without TensorRT.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import perception_nodes

from ..config import PRECISIONS
from ..weights import default_cache_dir, sha256_file

logger = logging.getLogger(__name__)

ENGINE_METADATA_FORMAT = 1
COMPONENTS = ("encoder", "decoder")

TENSORRT_INSTALL_HINT = (
    "TensorRT is not installed (the Python module 'tensorrt' cannot be imported). "
    "On a Jetson it comes with JetPack (apt install nvidia-jetpack, or python3-libnvinfer); "
    "on a desktop CUDA machine: pip install tensorrt (the builder wheels come from "
    "NVIDIA's index, pypi.nvidia.com). Without TensorRT, use the 'onnxruntime' backend "
    "(CPU or CUDA execution provider) or the 'torch' backend instead."
)


class TensorRTNotAvailableError(ImportError):
    """The ``tensorrt`` module cannot be imported; the message says how to get it."""


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


class EngineNotFoundError(FileNotFoundError):
    """No engine for this (model, GPU, TensorRT version, precision) in the cache."""


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
        """Parse a metadata dict; unknown keys (from newer versions) are ignored."""
        known = set(cls.__dataclass_fields__)
        required = [n for n, f in cls.__dataclass_fields__.items() if _is_required(f)]
        missing = [k for k in required if k not in data]
        if missing:
            raise EngineMetadataError(f"engine metadata lacks the keys {missing}")
        return cls(**{k: v for k, v in data.items() if k in known})

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
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


def metadata_path(engine_path: str | os.PathLike) -> Path:
    """The sidecar of an engine: ``foo.engine`` -> ``foo.engine.json``."""
    return Path(str(engine_path) + ".json")


@dataclass(frozen=True)
class RuntimeInfo:
    """What the running system offers. ``None`` fields mean "not available here"."""

    tensorrt_version: str | None
    gpu_name: str | None
    compute_capability: str | None


def gather_runtime_info(
    trt_module: ModuleType | None | bool = True,
    cuda: Any | None = None,
    device_index: int = 0,
) -> RuntimeInfo:
    """Collect the TensorRT version and the GPU of this machine.

    Args:
        trt_module: the ``tensorrt`` module to ask; ``True`` imports it if possible;
            ``None``/``False`` means "no TensorRT" (tests inject stand-ins here).
        cuda: an object with ``is_available()``, ``get_device_name(i)`` and
            ``get_device_capability(i)`` (default ``torch.cuda``).
        device_index: CUDA device to describe.
    """
    if trt_module is True:
        try:
            trt_module = import_tensorrt()
        except TensorRTNotAvailableError:
            trt_module = None
    trt_version = getattr(trt_module, "__version__", None) if trt_module else None
    if cuda is None:
        import torch

        cuda = torch.cuda
    gpu_name = capability = None
    if cuda.is_available():
        gpu_name = str(cuda.get_device_name(device_index))
        major, minor = cuda.get_device_capability(device_index)
        capability = f"{major}.{minor}"
    return RuntimeInfo(trt_version, gpu_name, capability)


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
        problems.append("TensorRT is not installed here (engine needs TensorRT "
                        f"{metadata.tensorrt_version})")
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
        ("embedding shape",
         list(req.embedding_shape) if req.embedding_shape is not None else None,
         metadata.embedding_shape),
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
            parts += ["--opt-prompts", str(ranges["opt"][0]), "--max-prompts",
                      str(ranges["max"][0]), "--max-points", str(ranges["max"][1])]
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


# ----------------------------------------------------------------------------- engine cache


def cache_root() -> Path:
    """``$PERCEPTION_NODES_CACHE`` or ``~/.cache/perception_nodes`` (shared with the weights)."""
    return default_cache_dir()


def engine_cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Directory holding cached engines (``<cache root>/engines``)."""
    return (Path(root) if root is not None else cache_root()) / "engines"


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
            + (TENSORRT_INSTALL_HINT if runtime_info.tensorrt_version is None else
               "Use the 'onnxruntime' or 'torch' backend on CPU.")
        )
    directory = engine_cache_dir() if cache_dir is None else Path(cache_dir)
    key = engine_cache_key(model, runtime_info.gpu_name, runtime_info.tensorrt_version, precision)
    onnx_base = Path(onnx_dir) if onnx_dir is not None else cache_root() / "onnx" / model
    req = requirements or EngineRequirements()
    problems: list[str] = []
    commands: list[str] = []
    paths = {}
    for component in COMPONENTS:
        path = directory / key / f"{component}.engine"
        paths[component] = path
        comp_req = EngineRequirements(model=model, component=component, precision=precision,
                                      input_size=req.input_size,
                                      embedding_shape=req.embedding_shape,
                                      checkpoint_sha256=req.checkpoint_sha256)
        fresh_cmd = shlex.join(["pn-build-engine", "--onnx",
                                str(onnx_base / f"{component}.onnx"),
                                "--precision", precision, "--out", str(path)])
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
    selection = find_engines(model, precision, runtime_info, cache_dir,
                             requirements=requirements)
    if not selection.found:
        raise EngineNotFoundError(
            f"no usable TensorRT engines for model {model!r}, precision {precision}, "
            f"GPU {runtime_info.gpu_name!r}, TensorRT {runtime_info.tensorrt_version}:\n"
            + "\n".join(f"  - {p}" for p in selection.problems)
            + "\nBuild them with:\n" + "\n".join(f"  {c}" for c in selection.build_commands)
        )
    return selection.encoder_path, selection.decoder_path


# ----------------------------------------------------------------------------- building


def import_tensorrt() -> ModuleType:
    """``import tensorrt`` or :class:`TensorRTNotAvailableError` with install instructions."""
    try:
        import tensorrt  # noqa: PLC0415  (lazy on purpose: optional dependency)
    except ImportError as exc:
        raise TensorRTNotAvailableError(TENSORRT_INSTALL_HINT) from exc
    return tensorrt


@dataclass(frozen=True)
class ProfileSpec:
    """Ranges of the dynamic axes used for the optimization profile.

    ``max_batch``: encoder images per call (1 to this). Decoder: prompts ``P`` from 1 to
    ``max_prompts`` (tuned for ``opt_prompts``), points per prompt ``K`` from 1 to
    ``max_points`` (tuned for ``opt_points``).
    """

    max_batch: int = 1
    opt_batch: int = 1
    opt_prompts: int = 64
    max_prompts: int = 1024
    opt_points: int = 2
    max_points: int = 8

    def __post_init__(self) -> None:
        for name in ("max_batch", "opt_batch", "opt_prompts", "max_prompts", "opt_points",
                     "max_points"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.opt_batch > self.max_batch:
            raise ValueError(f"opt_batch {self.opt_batch} exceeds max_batch {self.max_batch}")
        if self.opt_prompts > self.max_prompts:
            raise ValueError(
                f"opt_prompts {self.opt_prompts} exceeds max_prompts {self.max_prompts}")
        if self.opt_points > self.max_points:
            raise ValueError(f"opt_points {self.opt_points} exceeds max_points {self.max_points}")


def profile_shapes(
    component: str, input_size: int, embedding_shape: list[int] | tuple[int, ...],
    spec: ProfileSpec,
) -> dict[str, dict[str, list[int]]]:
    """min/opt/max shape of every input of the exported SAM encoder or decoder ONNX.

    Input names are those :mod:`perception_nodes.core.sam.export` writes: encoder
    ``images (B,3,S,S)``; decoder ``image_embeddings (1,C,h,w)``, ``point_coords (P,K,2)``,
    ``point_labels (P,K)``.
    """
    s = int(input_size)
    if component == "encoder":
        return {"images": {"min": [1, 3, s, s], "opt": [spec.opt_batch, 3, s, s],
                           "max": [spec.max_batch, 3, s, s]}}
    if component == "decoder":
        emb = [1, *[int(v) for v in embedding_shape]]
        return {
            "image_embeddings": {"min": emb, "opt": emb, "max": emb},
            "point_coords": {"min": [1, 1, 2], "opt": [spec.opt_prompts, spec.opt_points, 2],
                             "max": [spec.max_prompts, spec.max_points, 2]},
            "point_labels": {"min": [1, 1], "opt": [spec.opt_prompts, spec.opt_points],
                             "max": [spec.max_prompts, spec.max_points]},
        }
    raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")


@dataclass
class BuildRequest:
    """One ``pn-build-engine`` job (see :func:`build_engine`)."""

    onnx_path: Path
    engine_path: Path
    precision: str = "fp16"
    workspace_bytes: int = 4 << 30
    timing_cache: Path | None = None
    profile: ProfileSpec = field(default_factory=ProfileSpec)


def build_engine(
    request: BuildRequest,
    onnx_metadata: dict[str, str],
    trt: ModuleType | None = None,
    runtime_info: RuntimeInfo | None = None,
) -> EngineMetadata:
    """Build a TensorRT engine from an exported SAM ONNX file (TensorRT 10 Python API).

    Parses the ONNX, sets the workspace limit, the precision flag, the timing cache (loaded
    from and saved back to ``request.timing_cache``) and one optimization profile over the
    dynamic axes, builds the serialized network and writes ``engine`` + ``engine.json``.

    Args:
        request: paths and builder settings.
        onnx_metadata: the ONNX ``metadata_props`` written by ``pn-export-onnx`` (model,
            component, input size, embedding shape, checkpoint sha256).
        trt: the ``tensorrt`` module (default: imported lazily).
        runtime_info: this system (default: gathered from ``trt`` and ``torch.cuda``).

    Raises:
        TensorRTNotAvailableError: no TensorRT.
        RuntimeError: parsing or building failed (TensorRT's own errors are included).
    """
    trt = trt if trt is not None else import_tensorrt()
    info = runtime_info or gather_runtime_info(trt)
    if info.gpu_name is None:
        raise RuntimeError("building a TensorRT engine needs a CUDA GPU; none is visible")
    component = onnx_metadata.get("component", "")
    input_size = int(onnx_metadata["input_size"])
    embedding_shape = [int(v) for v in json.loads(onnx_metadata["embedding_shape"])]
    profiles = profile_shapes(component, input_size, embedding_shape, request.profile)

    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(request.onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {request.onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(request.workspace_bytes))
    _set_precision(trt, builder, config, request.precision)
    cache = _load_timing_cache(config, request.timing_cache)
    profile = builder.create_optimization_profile()
    for name, r in profiles.items():
        profile.set_shape(name, tuple(r["min"]), tuple(r["opt"]), tuple(r["max"]))
    config.add_optimization_profile(profile)

    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(
            f"TensorRT failed to build an engine from {request.onnx_path} "
            "(see the TensorRT log above; a larger --workspace-gib may help)"
        )
    request.engine_path.parent.mkdir(parents=True, exist_ok=True)
    request.engine_path.write_bytes(bytes(serialized))
    if request.timing_cache is not None and cache is not None:
        request.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        request.timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    logger.info("built %s in %.1f s", request.engine_path, time.monotonic() - started)

    metadata = EngineMetadata(
        model=onnx_metadata.get("model", "unknown"),
        component=component,
        precision=request.precision,
        tensorrt_version=str(trt.__version__),
        gpu_name=str(info.gpu_name),
        compute_capability=str(info.compute_capability),
        input_size=input_size,
        embedding_shape=embedding_shape,
        profiles=profiles,
        source_onnx=str(Path(request.onnx_path).resolve()),
        source_onnx_sha256=sha256_file(request.onnx_path),
        source_checkpoint_sha256=onnx_metadata.get("checkpoint_sha256", ""),
        multimask=onnx_metadata.get("multimask", ""),
        untrained=onnx_metadata.get("untrained") == "true",
        workspace_bytes=int(request.workspace_bytes),
        build_time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    metadata.save(metadata_path(request.engine_path))
    return metadata


def _set_precision(trt: ModuleType, builder: Any, config: Any, precision: str) -> None:
    if precision == "fp32":
        return
    if precision == "fp16":
        if not getattr(builder, "platform_has_fast_fp16", True):
            logger.warning("this GPU has no fast fp16; building fp16 anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    else:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    """Attach a timing cache (read from ``path`` when it exists) to the builder config."""
    if path is None:
        return None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        logger.warning("timing cache %s does not match this TensorRT/GPU; starting a new one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, True)
    return cache

