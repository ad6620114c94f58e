"""First run of the ``tensorrt`` backend: find engines in the cache, or export + build them.

``backend: tensorrt`` with empty engine paths goes through :func:`ensure_engines`:

1. look up ``<cache>/engines/<model>__<gpu>__trt<version>__<precision>/{encoder,decoder}.engine``
   for this GPU, TensorRT version and precision, built from THIS SAM checkpoint (its sha256
   is a requirement, so engines made from generated weights are rebuilt once real weights
   are fetched);
2. otherwise export the checkpoint to ONNX (``<cache>/onnx/<model>/``, as ``pn-export-onnx``)
   unless a matching export is there, and build both engines with the shared timing cache
   ``<cache>/engines/timing.cache`` (as ``pn-build-engine``), logging each step and its time;
3. without TensorRT or a CUDA GPU, or when a step fails, refuse with
   :class:`EngineSetupError`: what is missing and the exact commands that prepare the engines.

ROS-free; ``trt`` and ``runtime_info`` can be injected (tests use a TensorRT stand-in).
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from perception_nodes.core.sam.onnx_cache import onnx_cache_dir
from perception_nodes.core.sam.tensorrt.build import BuildRequest, build_engine
from perception_nodes.core.sam.tensorrt.cache import engine_cache_dir, find_engines
from perception_nodes.core.sam.tensorrt.metadata import COMPONENTS, EngineRequirements
from perception_nodes.core.sam.tensorrt.runtime import (
    RuntimeInfo,
    TensorRTNotAvailableError,
    gather_runtime_info,
    import_tensorrt,
)
from perception_nodes.core.weights.files import sha256_file

logger = logging.getLogger(__name__)


class EngineSetupError(RuntimeError):
    """Engines can be neither found nor built here; the message has the commands to run."""


@dataclass(frozen=True)
class EngineSetup:
    """What :func:`ensure_engines` needs.

    Attributes:
        model: SAM registry name.
        precision: engine precision (``PRECISIONS``).
        checkpoint: the SAM state_dict the engines must be built from.
        cache_root: cache folder (``engines/`` and ``onnx/`` live in it).
    """

    model: str
    precision: str
    checkpoint: Path
    cache_root: Path

    @property
    def engines_dir(self) -> Path:
        return engine_cache_dir(self.cache_root)

    @property
    def onnx_dir(self) -> Path:
        return onnx_cache_dir(self.cache_root, self.model)

    @property
    def timing_cache(self) -> Path:
        return self.engines_dir / "timing.cache"


def manual_commands(setup: EngineSetup) -> list[str]:
    """The shell commands that prepare the engines by hand (run them on the target GPU)."""
    cmds = [
        shlex.join(
            [
                "pn-export-onnx",
                "--model",
                setup.model,
                "--checkpoint",
                str(setup.checkpoint),
                "--out-dir",
                str(setup.onnx_dir),
            ]
        )
    ]
    for component in COMPONENTS:
        cmds.append(
            shlex.join(
                [
                    "pn-build-engine",
                    "--onnx",
                    str(setup.onnx_dir / f"{component}.onnx"),
                    "--precision",
                    setup.precision,
                    "--cache-dir",
                    str(setup.engines_dir),
                ]
            )
        )
    return cmds


def _refusal(reason: str, setup: EngineSetup) -> EngineSetupError:
    lines = "\n".join(f"  {c}" for c in manual_commands(setup))
    return EngineSetupError(
        f"{reason}\nPrepare the engines on the machine that runs them with:\n{lines}\n"
        "or set sam.encoder_path / sam.decoder_path to existing engines."
    )


def ensure_engines(
    setup: EngineSetup, trt: ModuleType | None = None, runtime_info: RuntimeInfo | None = None
) -> tuple[Path, Path]:
    """``(encoder_path, decoder_path)`` of engines matching ``setup`` on this system.

    Found in the cache, or exported and built now (minutes for the large models; progress is
    logged). Raises :class:`EngineSetupError` (no TensorRT, no GPU, export or build failure)
    with the commands that prepare them by hand.
    """
    try:
        trt = trt if trt is not None else import_tensorrt()
    except TensorRTNotAvailableError as exc:
        raise _refusal(str(exc), setup) from exc
    info = runtime_info or gather_runtime_info(trt)
    if info.gpu_name is None:
        raise _refusal("TensorRT engines need a CUDA GPU, and none is visible here.", setup)
    checkpoint_sha = sha256_file(setup.checkpoint)
    requirements = EngineRequirements(checkpoint_sha256=checkpoint_sha)
    selection = find_engines(
        setup.model,
        setup.precision,
        info,
        setup.engines_dir,
        onnx_dir=setup.onnx_dir,
        requirements=requirements,
    )
    if selection.found:
        logger.info("TensorRT engines found in the cache: %s", selection.encoder_path.parent)
        return selection.encoder_path, selection.decoder_path
    logger.warning(
        "no usable TensorRT engines for %s %s on %s (%s); building them now (first run only; "
        "minutes for the large models)",
        setup.model,
        setup.precision,
        info.gpu_name,
        "; ".join(selection.problems),
    )
    onnx_paths = _ensure_onnx(setup, checkpoint_sha)
    targets = {"encoder": selection.encoder_path, "decoder": selection.decoder_path}
    for component, onnx_path in zip(COMPONENTS, onnx_paths):
        _build(setup, component, onnx_path, targets[component], trt, info)
    return targets["encoder"], targets["decoder"]


def _ensure_onnx(setup: EngineSetup, checkpoint_sha: str) -> tuple[Path, Path]:
    """ONNX exports of ``setup.checkpoint`` (``core.sam.onnx_cache``: reused or exported now)."""
    from perception_nodes.core.sam.onnx_cache import OnnxExportError, ensure_onnx_export

    logger.warning("[1/3] ONNX export of SAM %s in %s", setup.model, setup.onnx_dir)
    try:
        return ensure_onnx_export(setup.model, setup.checkpoint, setup.onnx_dir, checkpoint_sha)
    except OnnxExportError as exc:
        raise _refusal(str(exc), setup) from exc


def _build(
    setup: EngineSetup,
    component: str,
    onnx_path: Path,
    engine_path: Path,
    trt: ModuleType,
    info: RuntimeInfo,
) -> None:
    from perception_nodes.core.sam.export_metadata import read_onnx_metadata

    step = 2 if component == "encoder" else 3
    started = time.monotonic()
    logger.warning(
        "[%d/3] building the TensorRT %s engine %s (timing cache %s) ...",
        step,
        component,
        engine_path,
        setup.timing_cache,
    )
    request = BuildRequest(onnx_path, engine_path, setup.precision, timing_cache=setup.timing_cache)
    try:
        build_engine(request, read_onnx_metadata(onnx_path), trt=trt, runtime_info=info)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _refusal(f"building the TensorRT {component} engine failed: {exc}", setup) from exc
    logger.warning("[%d/3] %s engine built in %.1f s", step, component, time.monotonic() - started)
