"""Building TensorRT engines from SAM ONNX exports (the only part that needs TensorRT).

:func:`build_engine` is what ``pn-build-engine`` and the first-run flow
(:mod:`perception_nodes.core.sam.tensorrt.first_run`) call; the ``tensorrt`` module is passed
in or imported lazily (:func:`~perception_nodes.core.sam.tensorrt.runtime.import_tensorrt`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from perception_nodes.core.config import PRECISIONS
from perception_nodes.core.sam.tensorrt.metadata import COMPONENTS, EngineMetadata, metadata_path
from perception_nodes.core.sam.tensorrt.runtime import (
    RuntimeInfo,
    gather_runtime_info,
    import_tensorrt,
)
from perception_nodes.core.weights.checkpoint_io import write_atomic
from perception_nodes.core.weights.files import sha256_file

logger = logging.getLogger(__name__)


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
        for name in (
            "max_batch",
            "opt_batch",
            "opt_prompts",
            "max_prompts",
            "opt_points",
            "max_points",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.opt_batch > self.max_batch:
            raise ValueError(f"opt_batch {self.opt_batch} exceeds max_batch {self.max_batch}")
        if self.opt_prompts > self.max_prompts:
            raise ValueError(
                f"opt_prompts {self.opt_prompts} exceeds max_prompts {self.max_prompts}"
            )
        if self.opt_points > self.max_points:
            raise ValueError(f"opt_points {self.opt_points} exceeds max_points {self.max_points}")


def profile_shapes(
    component: str,
    input_size: int,
    embedding_shape: list[int] | tuple[int, ...],
    spec: ProfileSpec,
) -> dict[str, dict[str, list[int]]]:
    """min/opt/max shape of every input of the exported SAM encoder or decoder ONNX.

    Input names are those :mod:`perception_nodes.core.sam.export` writes: encoder
    ``images (B,3,S,S)``; decoder ``image_embeddings (1,C,h,w)``, ``point_coords (P,K,2)``,
    ``point_labels (P,K)``.
    """
    s = int(input_size)
    if component == "encoder":
        return {
            "images": {
                "min": [1, 3, s, s],
                "opt": [spec.opt_batch, 3, s, s],
                "max": [spec.max_batch, 3, s, s],
            }
        }
    if component == "decoder":
        emb = [1, *[int(v) for v in embedding_shape]]
        return {
            "image_embeddings": {"min": emb, "opt": emb, "max": emb},
            "point_coords": {
                "min": [1, 1, 2],
                "opt": [spec.opt_prompts, spec.opt_points, 2],
                "max": [spec.max_prompts, spec.max_points, 2],
            },
            "point_labels": {
                "min": [1, 1],
                "opt": [spec.opt_prompts, spec.opt_points],
                "max": [spec.max_prompts, spec.max_points],
            },
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
    # the sidecar goes first and the engine lands by rename: an exit mid-write (SIGINT does not
    # wait for a load) never leaves a truncated engine beside an older engine's valid sidecar
    metadata_path(request.engine_path).unlink(missing_ok=True)
    write_atomic(request.engine_path, lambda tmp: tmp.write_bytes(bytes(serialized)))
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
