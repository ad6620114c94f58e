"""Shared pytest set-up: CPU only, an isolated ROS domain per test session, ROS fixtures.

ROS tests use real rclpy over real DDS (Fast DDS from the PyPI wheels); helper processes are
started with the venv's Python so they are separate DDS participants.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# Shared fixtures, registered once for every test module (no per-module fixture imports).
pytest_plugins = ["sam_fixtures", "export_fixtures", "e2e_fixtures"]

# Tests never use a GPU, and keep to the 2 cores CI has; except with PN_TEST_GPU set
# (scripts/device_check.sh), where `pytest -m gpu` runs the tests marked `gpu` on CUDA.
if not os.environ.get("PN_TEST_GPU"):
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# A ROS domain of our own so concurrent test runs on one machine do not see each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
# pytest-xdist workers' domains: no run's own domain is here (pid defaults 1-100, engineers'
# 100-135); Fast DDS takes domains up to 232
XDIST_DOMAINS = range(136, 233)


def worker_domain(base: int, worker: int, workers: int) -> int:
    """The ROS domain of pytest-xdist worker ``worker`` (of ``workers``) in a run started in domain
    ``base``: in :data:`XDIST_DOMAINS`, and another for every worker of runs whose bases are less
    than ``97 // workers`` apart. It was ``(base + worker) % 100 + 1``: worker 1 of a run in 120 and
    worker 0 of one in 121 shared domain 22, where either run's ``/perception_node`` answered and
    changed the other's (test_live_params' 20-caller test then saw changes without an answer)."""
    return XDIST_DOMAINS[(base * workers + worker) % len(XDIST_DOMAINS)]


# Under pytest-xdist (`make test` runs two workers) each worker process inherits the run's
# domain: move it to a domain of its own, or two workers' /perception_node answer each other.
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw"):
    os.environ["ROS_DOMAIN_ID"] = str(
        worker_domain(
            int(os.environ["ROS_DOMAIN_ID"]),
            int(os.environ["PYTEST_XDIST_WORKER"][2:]),
            int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "2")),
        )
    )
    # Two workers share the 2 cores: one compute thread each (torch, OpenMP, onnxruntime's
    # default), inherited by the node processes they start, instead of 2 x 2 threads spinning
    # against each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
# glibc malloc for the test processes (xdist's workers start after this runs) and every process
# they start: one arena, and freed memory kept for reuse instead of returned to the system. With
# glibc's defaults each SAM frame's large tensors (masks upsampled to 1024 px) were fresh mmaps:
# 345,000 page faults and 0.7 CPU-s in the kernel per frame of the tiny test SAM (1.8 CPU-s in
# all; 1.0 with these, on a worker thread as in the node; peak RSS +15 %). Outputs unchanged.
# Tests of memory over time start their nodes without it (see default_malloc).
MALLOC_TUNING = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(1 << 32),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 32),
}
for _name, _value in MALLOC_TUNING.items():
    os.environ.setdefault(_name, _value)


@contextmanager
def default_malloc():
    """Processes started inside run with glibc's default malloc (as users run them)."""
    saved = {name: os.environ.pop(name) for name in MALLOC_TUNING if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)


# Two tiers: `make test` runs everything (what CI runs); `make test-fast` (pytest -m "not slow")
# leaves out the slow tier, for the inner loop: the core, in-process node logic and message
# conversion. Slow: a module that starts node or helper processes, builds packages or runs a
# whole tool. A module is slow when listed here, when its source starts processes (PROCESS_MARKS,
# so a new DDS test lands in the slow tier by itself) or when it marks itself `slow`.
SLOW_MODULES = frozenset(
    {
        "test_onnx_default",  # exports the full-size vit_t to ONNX (minutes on 2 cores)
        "test_export_onnx",  # ONNX exports and onnxruntime parity
        "test_regionspot_training",  # real training loops
        "test_relations_learning",  # real training loops
        "test_lint",  # ruff over the whole tree
        "test_dockerfile_lint",  # hadolint
        "test_tensorrt_pipeline",  # node processes with the TensorRT stand-in
        "test_onnx_backend",  # ONNX exports and parity with the torch backend
        "test_edges_batch_encoding",  # full-size vit_t exported and run on onnxruntime
        "test_batched_encoding",  # full-size encoder batches vs one by one
        "test_bench_sam",  # runs the benchmark tool
    }
)
#: Single slow tests of otherwise fast modules (module::test name prefix): the official
#: segment-anything generator reproduced on full photos, and the decoder's ONNX exports.
SLOW_TESTS = (
    "test_sam_amg.py::test_reproduces_official_automatic_mask_generator",
    "test_sam_amg.py::test_crops_run_and_match_official",
    "test_sam_decoder_restructured.py::test_gated_onnx_export",
    "test_sam_decoder_restructured.py::test_onnx_export_matches_mask_decoder",
)
PROCESS_MARKS = ("NodeGraph(", "start_graph(", "ros_process(", "colcon", "cmake", "pn-demo")
#: Modules that name a process mark without starting processes (checks of launch/run code, of
#: the ROS wheels' CMake files).
FAST_MODULES = frozenset(
    {"test_launch_structure", "test_settings_source", "test_tiers", "test_interfaces_build"}
)


def _starts_processes(path: Path) -> bool:
    return path.stem not in FAST_MODULES and any(m in path.read_text() for m in PROCESS_MARKS)


#: The longest modules, started first so that two workers (`make test`: pytest-xdist, a module
#: per worker at a time) do not end on one of them alone. From test-seconds of a 2-worker run
#: on the 2-core VM and CPU-seconds of each module alone (one compute thread; modules with
#: fixed-pace frames, e.g. test_edges_dds, take longer than their CPU-seconds).
LONGEST_FIRST = (
    "test_process_bag",
    "test_shutdown_sigint",
    "test_colcon_workspace",
    "test_edges_dds",
    "test_relations_learning",
    "test_regionspot_training",
    "test_edges_services",
    "test_sam_amg",
    "test_sam_decoder_restructured",
    "test_host_device_check",
    "test_onnx_default",
    "test_edges_batch_encoding",
    "test_live_params",
    "test_e2e_robustness",
    "test_edges_multicam_default",
    "test_clip_weights",
    "test_node_inputs_dds",
    "test_demo",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow: dict[Path, bool] = {}
    for item in items:
        path = Path(item.fspath)
        if path not in slow:
            slow[path] = path.stem in SLOW_MODULES or _starts_processes(path)
        if slow[path] or f"{path.name}::{item.name}".startswith(SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
    rank = {stem: i for i, stem in enumerate(LONGEST_FIRST)}
    items.sort(
        key=lambda it: rank.get(Path(it.fspath).stem, len(rank))
    )  # stable: module order kept


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: the slow tier (node processes, builds, whole tools, exports, training); "
        "`make test-fast` leaves it out",
    )
    config.addinivalue_line("markers", "ros: needs rclpy and the built perception_msgs")
    config.addinivalue_line("markers", "gpu: needs CUDA (skipped without it; set PN_TEST_GPU=1)")


@pytest.fixture
def ros_context():
    """A fresh rclpy context for one test (init/shutdown around it)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)
