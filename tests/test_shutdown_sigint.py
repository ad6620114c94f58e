"""SIGINT (what `ros2 launch` sends every node) in the middle of a frame: every node process
exits with code 0 within 3 s, publishes nothing after the signal, and the frame in flight is
abandoned (never published). Real node processes over real DDS; the frame is made slow on
the tiny model (100 decoder batches of one point, several seconds on a CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import default_malloc
from e2e_fixtures import CAMERA, Spinner, small_overrides, wait_for
from ros_helpers.process import cpu_seconds, descendant_pids, pid_running

from perception_nodes.tools.graph_runner import NodeGraph, write_params_file

pytestmark = pytest.mark.ros
EXIT_LIMIT_S = 3.0
# CPU seconds the node spends in a frame before the signal. The tiny model's frame (2-core VM):
# preprocess + encoder ~0.75 CPU-s, then 100 one-point decoder batches ~5.5 CPU-s. The count
# starts when diagnostics report the frame received (up to ~1.2 CPU-s after the frame began), so
# the signal lands 1.5-2.7 CPU-s in: past the encoder, among the decoder batches (0.25 with 36
# batches could land in the encoder). Under heavy load the worker was still found in a model
# call 1.5 s after the signal even so (cause not found): the "between batches" case retries.
MID_FRAME_CPU_S = 1.5
SLOW_FRAME = {"amg.points_per_side": 10, "amg.points_per_batch": 1}  # 100 decoder batches per frame
FORBIDDEN_IN_LOGS = ("Traceback", "Failed to publish", "context is invalid")


def _slow_params(tmp_path):
    return write_params_file(small_overrides(tmp_path / "cache", **SLOW_FRAME), folder=tmp_path)


@contextmanager
def _watching(ros_context):
    """GraphReceiver + a camera-image subscriber in this process: arrival times of everything."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Empty

    from perception_nodes.tools.receiver import GraphReceiver

    receiver = GraphReceiver(camera=CAMERA, context=ros_context)
    receiver.data.camera_images = []
    receiver.data.markers = []
    receiver.marker_pub = receiver.create_publisher(Empty, "/shutdown_test_marker", 10)
    receiver.create_subscription(
        Empty, "/shutdown_test_marker", lambda m: receiver._add("markers", m), 10
    )
    receiver.create_subscription(
        Image,
        f"{CAMERA}/image_raw",
        lambda m: receiver._add("camera_images", m),
        qos_profile_sensor_data,
    )
    spinner = Spinner(ros_context, receiver)
    try:
        yield receiver
    finally:
        spinner.stop()
        receiver.destroy_node()


@pytest.fixture
def watcher(ros_context):
    with _watching(ros_context) as receiver:
        yield receiver


def _wait_mid_frame(receiver, graph_or_proc) -> None:
    """Until the node is configured and has received a frame it has not finished, plus 1 s."""

    def check():
        if isinstance(graph_or_proc, NodeGraph):
            graph_or_proc.check_alive()
        elif graph_or_proc.poll() is not None:
            raise RuntimeError(f"pn-run exited early with {graph_or_proc.returncode}")

    def mid_frame():
        check()
        v = receiver.diagnostics_values()
        return v.get("state") == "active" and int(v.get(f"{CAMERA}.received", "0")) >= 1

    assert wait_for(mid_frame, 240), f"no frame reached the node: {receiver.diagnostics_values()}"
    # into the frame: the node has worked on it for MID_FRAME_CPU_S (CPU time, not wall time)
    if isinstance(graph_or_proc, NodeGraph):
        pid = next(p.process.pid for p in graph_or_proc.processes if p.name == "perception_node")
    else:  # pn-run's child
        pid = pid_running("perception_node", descendant_pids(graph_or_proc.pid))
    start = cpu_seconds(pid)
    assert wait_for(lambda: cpu_seconds(pid) - start >= MID_FRAME_CPU_S, 120)
    assert receiver.count("graphs") == 0, (
        "a frame finished before SIGINT: the slow-frame setting is not slow"
    )


def _sigint_and_wait(process: subprocess.Popen, timeout: float) -> tuple[int | None, float]:
    """SIGINT to the process's group; its exit code (None: still running) and the seconds
    from the signal to its exit (or to ``timeout``)."""
    t_signal = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    return process.poll(), time.monotonic() - t_signal


def _arrived_after(receiver, kind: str, t: float) -> int:
    with receiver.lock:
        return sum(1 for arrival, _ in getattr(receiver.data, kind) if arrival > t)


def _assert_silent_after(receiver, t_signal: float) -> None:
    """No scene graph at all after the signal (the frame in flight is abandoned); nothing else
    later than 0.5 s after it (a message already in transport may still land). Called once the
    nodes exited: a marker this process publishes afterwards has come back through DDS first
    (what the nodes sent before they exited had at least as long to arrive)."""
    from std_msgs.msg import Empty

    n = receiver.count("markers")

    def marker_back() -> bool:
        receiver.marker_pub.publish(Empty())
        return receiver.count("markers") > n

    assert wait_for(marker_back, 30, step=0.2), "the marker never came back"
    assert _arrived_after(receiver, "graphs", t_signal) == 0, (
        "the frame in flight was published after SIGINT"
    )
    assert _arrived_after(receiver, "regions", t_signal) == 0
    assert _arrived_after(receiver, "diagnostics", t_signal + 0.5) == 0, (
        "diagnostics published after SIGINT"
    )
    assert _arrived_after(receiver, "label_images", t_signal) == 0
    assert _arrived_after(receiver, "camera_images", t_signal + 0.5) == 0, (
        "camera images published after SIGINT"
    )


# between batches: many short decoder batches (abandoned at the next check);
# one long batch: a single decoder call of 256 prompts on a 640 px frame that runs on past the
# signal (as vit_t's batches of 64 on a CPU): the node exits anyway, publishing nothing.
SLOW_FRAMES = {
    "between batches": (SLOW_FRAME, 128),
    "one long batch": ({"amg.points_per_side": 16, "amg.points_per_batch": 256}, 640),
}


ABANDON_ATTEMPTS = 3  # "between batches": tries to see the frame abandoned at a batch check


@pytest.mark.parametrize("case", list(SLOW_FRAMES))
def test_sigint_mid_frame_every_node_exits_0_within_3_s(tmp_path, ros_context, case):
    """Every attempt: exit 0 within 3 s, no forbidden log line, nothing published after the
    signal. "between batches" also wants the frame abandoned at a batch check; the node waits
    1.5 s for it, and on a loaded CI runner the worker was once still in a model call then
    (the warning says where), so that case tries up to ABANDON_ATTEMPTS times: a node that
    never checks between batches fails every one."""
    tries = ABANDON_ATTEMPTS if case == "between batches" else 1
    logs = []
    for attempt in range(tries):
        with _watching(ros_context) as watcher:
            log = _sigint_mid_frame(tmp_path / f"try{attempt}", watcher, *SLOW_FRAMES[case])
        assert "frame in flight abandoned" in log or "still in a model call after" in log, log
        logs.append(log[-600:])
        if "frame in flight abandoned" in log:
            break
    if case == "between batches":
        assert "frame in flight abandoned" in log, logs


def _sigint_mid_frame(folder: Path, watcher, amg: dict, side: int) -> str:
    """The graph started, SIGINT to every process mid-frame; asserts the exits and the silence
    after the signal; returns perception_node's log."""
    folder.mkdir(parents=True, exist_ok=True)
    params = write_params_file(small_overrides(folder / "cache", **amg), folder=folder)
    graph = NodeGraph(log_dir=folder / "logs")
    try:
        graph.start("perception_node", params)
        graph.start("visualization_node", params)
        graph.start(
            "image_folder_publisher",
            None,
            namespace=CAMERA,
            extra_params={"images": ["astronaut"], "max_side": side, "rate": 5.0, "loops": 0},
        )
        _wait_mid_frame(watcher, graph)
        t_signal = time.monotonic()
        for p in graph.processes:  # all at once, as ros2 launch does
            os.killpg(p.process.pid, signal.SIGINT)
        exits = {}
        for p in graph.processes:
            try:
                p.process.wait(timeout=max(0.1, t_signal + 10 - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            exits[p.name] = (p.process.poll(), time.monotonic() - t_signal)
    finally:
        graph.stop(timeout=5)
    logs = {p.name: p.log_tail(100_000) for p in graph.processes}
    for name, (rc, seconds) in exits.items():
        assert rc == 0 and seconds < EXIT_LIMIT_S, (name, rc, seconds, logs[name][-3000:])
        for bad in FORBIDDEN_IN_LOGS:
            assert bad not in logs[name], (name, bad, logs[name][-3000:])
    _assert_silent_after(watcher, t_signal)
    return logs["perception_node"]


def _started_with_sigint(disposition):
    """``preexec_fn``: the child starts with SIGINT at ``disposition``, whatever this process has
    (a CI job or a script's ``&`` job runs with SIGINT ignored, and children inherit that)."""
    return lambda: signal.signal(signal.SIGINT, disposition)


@pytest.mark.parametrize(
    "sigint_at_start",
    [signal.SIG_DFL, signal.SIG_IGN],
    ids=["from a terminal", "SIGINT ignored at start (a script's background job)"],
)
def test_pn_run_sigint_mid_frame_exits_0_within_3_s_with_its_nodes(
    tmp_path, watcher, sigint_at_start
):
    """As ``ros2 launch`` does, pn-run stops on SIGINT also when started with SIGINT ignored:
    it ignored it then (Python installs no handler), and CI's kill after 15 s left it hanging."""
    params = _slow_params(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "perception_nodes.tools.run_graph",
        "--cameras",
        CAMERA,
        "--model",
        "sam_tiny_test",
        "--config-file",
        str(params),
        "--demo-images",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        start_new_session=True,
        preexec_fn=_started_with_sigint(sigint_at_start),
    )
    try:
        _wait_mid_frame(watcher, proc)
        t_signal = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        seconds = time.monotonic() - t_signal
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = proc.stdout.read()
    assert proc.returncode == 0 and seconds < EXIT_LIMIT_S, (proc.returncode, seconds, out[-3000:])
    for name in ("perception_node", "visualization_node", "image_folder_publisher"):
        assert f"pn-run: {name} exited with 0 after" in out, out[-3000:]
    _assert_silent_after(watcher, t_signal)


def _large_shm_segments() -> set[str]:
    """Fast DDS shared-memory segments of the package's profile (64 MiB + bookkeeping) in
    /dev/shm: a participant's segment, removed when it is destroyed."""
    shm = "/dev/shm"
    if not os.path.isdir(shm):
        pytest.skip("no /dev/shm on this system")
    return {
        e.name
        for e in os.scandir(shm)
        if e.name.startswith("fastdds_") and e.is_file() and e.stat().st_size >= 64 << 20
    }


def _ours(segments: set[str]) -> set[str]:
    """``segments`` less those another live process maps: other ROS processes on this machine
    (tests or benchmarks running meanwhile) create 64 MiB segments of their own. This process
    is not counted: it may map a node's segment it read from, and a segment left behind stays."""
    me = os.getpid()
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        if int(maps.parent.name) == me:
            continue
        try:
            mapped |= {n for n in segments if f"/dev/shm/{n}" in maps.read_text()}
        except OSError:  # the process ended meanwhile, or is not readable
            continue
    return segments - mapped


def test_sigint_leaves_no_shared_memory_segment_behind(tmp_path):
    """Each node's DDS participant is destroyed before the fast exit: its 64 MiB segment leaves
    /dev/shm (rclpy's LifecycleNode kept it alive, one leaked segment per perception-node start)."""
    before = _large_shm_segments()
    params = _slow_params(tmp_path)
    graph = NodeGraph(log_dir=tmp_path / "logs")
    try:
        graph.start("perception_node", params)
        graph.start("visualization_node", params)
        node = graph.processes[0]
        assert wait_for(lambda: "active: cameras" in node.log_tail(100_000), 120, graph)
        assert len(_large_shm_segments() - before) >= 2, "each node has its own segment"
    finally:
        exits = graph.stop(timeout=5)
    assert all(rc == 0 for rc, _ in exits.values()), exits
    left = _ours(_large_shm_segments() - before)
    assert not left, f"segments left in /dev/shm after the nodes exited: {sorted(left)}"


def test_sigint_while_loading_models_exits_0_within_3_s_leaving_no_segment(tmp_path):
    """SIGINT during the first start's model load (vit_t: generated weights written, then the
    ONNX export of ``sam.backend: auto``, several seconds on a CPU): the node exits 0 within
    3 s instead of after the load (it took the whole load and then activated), its participant
    destroyed (no 64 MiB segment left), and a restart on the same cache loads and activates,
    removing what the stopped start left unfinished."""
    before = _large_shm_segments()
    overrides = small_overrides(tmp_path / "cache", **{"sam.backend": "auto", "sam.model": "vit_t"})
    params = write_params_file(overrides, folder=tmp_path)
    graph = NodeGraph(log_dir=tmp_path / "logs")
    try:
        node = graph.start("perception_node", params)
        assert wait_for(lambda: "exporting SAM" in node.log_tail(100_000), 120, graph)
        # into the export (vit_t: several seconds): its unfinished folder exists
        assert wait_for(lambda: list((tmp_path / "cache").glob("onnx/*/.export-*")), 60, graph)
        assert "configured:" not in node.log_tail(100_000), "the load was over before SIGINT"
        rc, seconds = _sigint_and_wait(node.process, timeout=15)
    finally:
        graph.stop(timeout=5)
    log = node.log_tail(100_000)
    assert rc == 0 and seconds < EXIT_LIMIT_S, (rc, seconds, log[-3000:])
    assert "loading abandoned (stopping)" in log and "active: cameras" not in log, log[-3000:]
    for bad in FORBIDDEN_IN_LOGS:
        assert bad not in log, (bad, log[-3000:])
    left = _ours(_large_shm_segments() - before)
    assert not left, f"segments left in /dev/shm after the node exited: {sorted(left)}"

    assert list((tmp_path / "cache").glob("onnx/*/.export-*")), "no unfinished export to clean"
    again = NodeGraph(log_dir=tmp_path / "logs_again")
    try:
        restarted = again.start("perception_node", params)
        assert wait_for(lambda: "active: cameras" in restarted.log_tail(100_000), 240, again)
    finally:
        exits = again.stop(timeout=5)
    assert exits["perception_node"][0] == 0, (exits, restarted.log_tail()[-3000:])
    cache = tmp_path / "cache"
    unfinished = list(cache.glob("onnx/*/.export-*")) + list(cache.glob("**/.*.tmp"))
    assert not unfinished, f"the stopped start's unfinished files are still there: {unfinished}"


def test_sigint_during_a_long_vocabulary_change_exits_0_within_3_s(tmp_path, watcher):
    """SIGINT while ``set_vocabulary`` encodes 10,000 entries (many seconds): the node exits 0
    within 3 s (it waited for the encoding: 24 s here), the change is abandoned between
    text-encoder chunks and never applied, and the participant's segment is gone."""
    from perception_msgs.srv import SetVocabulary

    before = _large_shm_segments()
    params = write_params_file(small_overrides(tmp_path / "cache"), folder=tmp_path)
    graph = NodeGraph(log_dir=tmp_path / "logs")
    try:
        node = graph.start("perception_node", params)
        assert wait_for(lambda: "active: cameras" in node.log_tail(100_000), 240, graph)
        assert watcher.set_vocabulary.wait_for_service(timeout_sec=30)
        labels = [f"thing number {i}" for i in range(10_000)]
        future = watcher.set_vocabulary.call_async(SetVocabulary.Request(labels=labels))
        start = cpu_seconds(node.process.pid)  # the node encodes: 1 CPU-second into it
        assert wait_for(lambda: cpu_seconds(node.process.pid) - start >= 1.0, 60, graph)
        assert not future.done(), "the change was encoded within 1 CPU-s: not a long change"
        rc, seconds = _sigint_and_wait(node.process, timeout=30)
    finally:
        graph.stop(timeout=5)
    log = node.log_tail(100_000)
    assert rc == 0 and seconds < EXIT_LIMIT_S, (rc, seconds, log[-3000:])
    assert "10000 entries" not in log, "the change was applied after the signal"
    for bad in FORBIDDEN_IN_LOGS:
        assert bad not in log, (bad, log[-3000:])
    left = _ours(_large_shm_segments() - before)
    assert not left, f"segments left in /dev/shm after the node exited: {sorted(left)}"


# CPU-seconds into the executable's start: interpreter start-up, and well into its imports (the
# lightest, image_folder_publisher, has imported everything and publishes at about 1.1 CPU-s
# with torch's default threads, already before 0.6 CPU-s with one thread: see `extra` below)
#: (executable, CPU-seconds into its start): visualization_node has imported everything and idles
#: at about 0.36 CPU-s (one thread, quiet 2-core VM; idle it takes 0.005 CPU-s a second, so
#: its 0.6 case waited 45-60 s and then signalled an idle node): its points lie below that
IMPORT_POINTS = [
    ("perception_node", 0.2),
    ("perception_node", 0.6),
    ("visualization_node", 0.1),
    ("visualization_node", 0.25),
    ("image_folder_publisher", 0.2),
    ("image_folder_publisher", 0.6),
]


@pytest.mark.parametrize(("executable", "after_s"), IMPORT_POINTS)
def test_sigint_while_the_executable_still_imports_exits_0_at_once(tmp_path, executable, after_s):
    """Ctrl-C right after ``ros2 launch`` (the node still imports torch/rclpy, seconds on a
    CPU): exit code 0 within 3 s and no traceback (it was a KeyboardInterrupt traceback and
    exit code -2, a crash to ``ros2 launch``). Started as the console scripts are."""
    graph = NodeGraph(log_dir=tmp_path / "logs")
    try:
        # the publisher publishes on and on (loops 0): with its four frames sent it exits by
        # itself, and a SIGINT in its last moments is no longer one during its imports
        extra = {"loops": 0} if executable == "image_folder_publisher" else None
        with default_malloc():  # CPU-seconds of imports as users start it (see conftest)
            node = graph.start(executable, None, extra_params=extra)
        # after_s CPU-seconds into its imports (a wall-clock sleep may end before it ran at all)
        assert wait_for(
            lambda: node.process.poll() is not None or cpu_seconds(node.process.pid) >= after_s, 60
        )
        assert node.process.poll() is None, node.log_tail()
        rc, seconds = _sigint_and_wait(node.process, timeout=15)
    finally:
        graph.stop(timeout=5)
    log = node.log_tail(100_000)
    assert rc == 0 and seconds < EXIT_LIMIT_S, (rc, seconds, log[-3000:])
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
