"""Fixtures for the export / onnxruntime / TensorRT tests.

- ``tiny_export``: the ``sam_tiny_test`` model (generated checkpoint, loaded through the real
  loader) exported to ONNX once per session.
- ``FakeTensorRT``: a stand-in for the ``tensorrt`` module implementing the subset of the
  TensorRT 10 Python API our builder and runtime call. It records the builder settings and
  "executes" an engine by running its source ONNX on onnxruntime, reading inputs from and
  writing outputs to the raw addresses given with ``set_tensor_address`` (CPU torch buffers
  here). TensorRT itself cannot be installed on these machines; this checks our plumbing
  (names, shapes, profiles, addresses, metadata), not TensorRT.

Its fixtures reach every test module through ``pytest_plugins`` in conftest.py.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest
from sam_fixtures import TINY

from perception_nodes.core.sam.export import export_sam

_EXPORTS: dict = {}


@pytest.fixture(scope="session")
def tiny_export(tiny_sam, tiny_checkpoint, tmp_path_factory):
    """``ExportResult`` of ``sam_tiny_test`` (decoder with both outputs), verified.

    Star-imported fixtures are separate per test module, so the export is memoised here to
    run once per session (keyed by the checkpoint's sha256: the generated weights are seeded,
    so every module's copy of the checkpoint has the same contents).
    """
    from perception_nodes.core.weights.files import sha256_file

    key = sha256_file(tiny_checkpoint)
    if key not in _EXPORTS:
        out = tmp_path_factory.mktemp("onnx")
        _EXPORTS[key] = export_sam(
            tiny_sam, TINY, tiny_checkpoint, out, multimask="both", verify=True
        )
    return _EXPORTS[key]


@pytest.fixture(scope="session")
def tiny_gated_export(tiny_sam, tiny_checkpoint, tmp_path_factory):
    """``ExportResult`` of ``sam_tiny_test`` with the gated decoder (``upscale_gate``: what the
    onnxruntime backend exports into its cache), verified; once per session."""
    from perception_nodes.core.weights.files import sha256_file

    key = ("gated", sha256_file(tiny_checkpoint))
    if key not in _EXPORTS:
        out = tmp_path_factory.mktemp("onnx_gated")
        _EXPORTS[key] = export_sam(
            tiny_sam, TINY, tiny_checkpoint, out, multimask="both", upscale_gate=True
        )
    return _EXPORTS[key]


# ----------------------------------------------------------------------------- fake TensorRT


class _Enum:
    def __init__(self, **values):
        self.__dict__.update(values)


class FakeTensorRT:
    """Module-like stand-in for ``tensorrt`` (see module docstring)."""

    __version__ = "10.3.0"
    Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity=2: None})
    TensorIOMode = _Enum(INPUT="INPUT", OUTPUT="OUTPUT")
    MemoryPoolType = _Enum(WORKSPACE="WORKSPACE")
    BuilderFlag = _Enum(FP16="FP16", BF16="BF16")

    def __init__(self, version: str = "10.3.0"):
        self.__version__ = version
        self.built: list[dict] = []

    def Builder(self, logger):  # noqa: N802  (TensorRT's spelling)
        return _Builder(self)

    def OnnxParser(self, network, logger):  # noqa: N802
        return _Parser(network)

    def Runtime(self, logger):  # noqa: N802
        return _Runtime()


class _Network:
    onnx_path: str | None = None


class _Parser:
    def __init__(self, network):
        self.network = network
        self.errors: list[str] = []

    def parse_from_file(self, path):
        import onnx

        try:
            onnx.checker.check_model(onnx.load(path))
        except Exception as exc:  # noqa: BLE001
            self.errors.append(str(exc))
            return False
        self.network.onnx_path = str(path)
        return True

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]


class _TimingCache:
    def __init__(self, data: bytes):
        self.data = data

    def serialize(self):
        return b"timing-cache:" + self.data


class _Config:
    def __init__(self):
        self.flags: list[str] = []
        self.pools: dict[str, int] = {}
        self.profiles: list[dict] = []
        self.timing_cache = None

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def set_flag(self, flag):
        self.flags.append(flag)

    def create_timing_cache(self, data):
        return _TimingCache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.timing_cache = cache
        return True

    def get_timing_cache(self):
        return self.timing_cache

    def add_optimization_profile(self, profile):
        self.profiles.append(profile.shapes)
        return len(self.profiles) - 1


class _Profile:
    def __init__(self):
        self.shapes: dict[str, list] = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = [list(lo), list(opt), list(hi)]


class _Builder:
    platform_has_fast_fp16 = True

    def __init__(self, trt):
        self.trt = trt

    def create_network(self, flags):
        return _Network()

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        record = {
            "onnx": network.onnx_path,
            "flags": config.flags,
            "pools": config.pools,
            "profiles": config.profiles,
        }
        self.trt.built.append(record)
        return b"FAKEENGINE" + json.dumps(record).encode()


class _Runtime:
    def deserialize_cuda_engine(self, data: bytes):
        if not data.startswith(b"FAKEENGINE"):
            return None
        return _Engine(json.loads(data[len(b"FAKEENGINE") :]))


class _Engine:
    def __init__(self, record):
        import onnxruntime as ort

        self.record = record
        self.session = ort.InferenceSession(record["onnx"], providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()] + [
            o.name for o in self.session.get_outputs()
        ]
        self.n_inputs = len(self.session.get_inputs())

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "INPUT" if self.names.index(name) < self.n_inputs else "OUTPUT"

    def create_execution_context(self):
        return _Context(self)


class _Context:
    def __init__(self, engine):
        self.engine = engine
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.results: dict[str, np.ndarray] | None = None

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        self.results = None
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = int(ptr)
        return True

    def _compute(self):
        feeds = {}
        for name in self.engine.names[: self.engine.n_inputs]:
            shape = self.shapes[name]
            buf = (ctypes.c_float * int(np.prod(shape))).from_address(self.addresses[name])
            feeds[name] = np.frombuffer(buf, dtype=np.float32).reshape(shape).copy()
        outs = self.engine.session.run(None, feeds)
        self.results = dict(zip(self.engine.names[self.engine.n_inputs :], outs))

    def get_tensor_shape(self, name):
        if self.results is None:
            self._compute()
        return self.results[name].shape

    def execute_async_v3(self, stream):
        if self.results is None:
            self._compute()
        for name, value in self.results.items():
            buf = (ctypes.c_float * value.size).from_address(self.addresses[name])
            np.frombuffer(buf, dtype=np.float32)[:] = value.ravel()
        self.results = None
        return True


def fake_runtime_info(version="10.3.0", gpu="NVIDIA GeForce RTX 4090", cc="8.9"):
    from perception_nodes.core.sam.tensorrt.runtime import RuntimeInfo

    return RuntimeInfo(version, gpu, cc)


def onnx_paths(export) -> tuple[Path, Path]:
    return Path(export.encoder_path), Path(export.decoder_path)
