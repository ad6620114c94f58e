"""``import tensorrt`` in a node process started by a test: the FakeTensorRT stand-in.

Put ``tests/trt_standin`` first on ``PYTHONPATH`` of a child process and its ``import tensorrt``
returns :class:`export_fixtures.FakeTensorRT` (onnxruntime underneath, CPU buffers), and
``torch.cuda`` reports the GPU of ``export_fixtures.fake_runtime_info`` so the engine cache key
and compatibility checks see "a GPU". TEST ONLY: this checks the plumbing of the TensorRT path
(selection, export, build, metadata, refusal), not TensorRT.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: export_fixtures

import torch  # noqa: E402
from export_fixtures import FakeTensorRT, fake_runtime_info  # noqa: E402

_INFO = fake_runtime_info()
torch.cuda.is_available = lambda: True
torch.cuda.get_device_name = lambda index=0: _INFO.gpu_name
torch.cuda.get_device_capability = lambda index=0: tuple(
    int(v) for v in _INFO.compute_capability.split(".")
)
sys.modules[__name__] = FakeTensorRT(_INFO.tensorrt_version)
