"""TensorRT engines for SAM, split along their seams.

- :mod:`~perception_nodes.core.sam.tensorrt.runtime`: what this system offers
  (:class:`RuntimeInfo`: TensorRT version, GPU, compute capability) and the lazy
  ``import tensorrt`` (:func:`import_tensorrt`).
- :mod:`~perception_nodes.core.sam.tensorrt.metadata`: the ``<name>.engine.json`` sidecar
  (:class:`EngineMetadata`) and :func:`check_engine_compatibility`, run BEFORE TensorRT sees
  an engine; a mismatch raises :class:`EngineMismatchError` with the rebuild command.
- :mod:`~perception_nodes.core.sam.tensorrt.cache`: the engine cache per ``(model, GPU,
  TensorRT version, precision)`` under ``$PERCEPTION_NODES_CACHE/engines``
  (:func:`engine_cache_key`, :func:`find_engines`, :func:`select_engines`).
- :mod:`~perception_nodes.core.sam.tensorrt.build`: :func:`build_engine`, the only part that
  needs TensorRT itself (``pn-build-engine``).
- :mod:`~perception_nodes.core.sam.tensorrt.backend`: :class:`TensorRTSamBackend`, the
  ``tensorrt`` SAM backend.
- :mod:`~perception_nodes.core.sam.tensorrt.first_run`: :func:`ensure_engines`, engines from
  the cache or exported and built on the first run (what ``Pipeline.load`` calls).

Everything except :func:`build_engine` and running :class:`TensorRTSamBackend` works, and is
tested, without TensorRT (``tensorrt`` is imported only by :func:`import_tensorrt`).
"""

from perception_nodes.core.sam.tensorrt.backend import TensorRTSamBackend
from perception_nodes.core.sam.tensorrt.build import (
    BuildRequest,
    ProfileSpec,
    build_engine,
    profile_shapes,
)
from perception_nodes.core.sam.tensorrt.cache import (
    EngineNotFoundError,
    EngineSelection,
    engine_cache_dir,
    engine_cache_key,
    find_engines,
    select_engines,
)
from perception_nodes.core.sam.tensorrt.first_run import (
    EngineSetup,
    EngineSetupError,
    ensure_engines,
    manual_commands,
)
from perception_nodes.core.sam.tensorrt.metadata import (
    COMPONENTS,
    ENGINE_METADATA_FORMAT,
    EngineMetadata,
    EngineMetadataError,
    EngineMismatchError,
    EngineRequirements,
    check_engine_compatibility,
    load_engine_metadata_checked,
    metadata_path,
    rebuild_command,
)
from perception_nodes.core.sam.tensorrt.runtime import (
    TENSORRT_INSTALL_HINT,
    RuntimeInfo,
    TensorRTNotAvailableError,
    gather_runtime_info,
    import_tensorrt,
)

__all__ = [
    "COMPONENTS",
    "ENGINE_METADATA_FORMAT",
    "TENSORRT_INSTALL_HINT",
    "BuildRequest",
    "EngineMetadata",
    "EngineMetadataError",
    "EngineMismatchError",
    "EngineNotFoundError",
    "EngineRequirements",
    "EngineSelection",
    "EngineSetup",
    "EngineSetupError",
    "ProfileSpec",
    "RuntimeInfo",
    "TensorRTNotAvailableError",
    "TensorRTSamBackend",
    "build_engine",
    "check_engine_compatibility",
    "engine_cache_dir",
    "engine_cache_key",
    "ensure_engines",
    "find_engines",
    "gather_runtime_info",
    "import_tensorrt",
    "load_engine_metadata_checked",
    "manual_commands",
    "metadata_path",
    "profile_shapes",
    "rebuild_command",
    "select_engines",
]
