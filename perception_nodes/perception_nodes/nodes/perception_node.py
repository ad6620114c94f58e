"""perception_node: camera images in, regions + labels + relations (scene graphs) out.

A lifecycle node (configure loads the models, activate subscribes, cleanup frees them) and a
thin adapter over :class:`perception_nodes.core.pipeline.Pipeline`. Camera callbacks only
convert and stash the newest frame; one worker thread runs the pipeline, so services and
parameters stay responsive during inference. Several cameras share one model instance.

Topics (for each camera namespace ``<cam>`` and ``out = <cam>/<output_namespace>``):
  in:  <cam>/<image_topic> (sensor_msgs/Image) or <cam>/<image_topic>/compressed,
       <cam>/<depth_topic> (16UC1 mm / 32FC1 m), <cam>/<camera_info_topic>   [sensor-data QoS, depth 1]
  out: <out>/regions (RegionArray), <out>/scene_graph (SceneGraph), <out>/label_image (16UC1),
       /diagnostics (DiagnosticArray)
Services: ~/set_vocabulary, ~/get_vocabulary, ~/query_regions

This module holds the lifecycle, the worker thread and the executable (``main``); its parts are
:mod:`~perception_nodes.nodes.perception_inputs` (subscriptions, conversion, newest frames),
:mod:`~perception_nodes.nodes.perception_outputs` (publishers, one frame's messages),
:mod:`~perception_nodes.nodes.perception_services` (the services),
:mod:`~perception_nodes.ros.live_params` (declared parameters, checked and applied live) and
:mod:`~perception_nodes.ros.node_diagnostics` (counters, ``/diagnostics`` status).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.pipeline import Pipeline, PipelineError
from perception_nodes.core.stream.cancel import (
    FrameAbandoned,
    WorkAbandoned,
    run_abandonable,
    where_thread_is,
)
from perception_nodes.core.stream.frame_slots import LatestFrameSlots
from perception_nodes.core.stream.stamps import stamp_to_ns, stamp_to_seconds
from perception_nodes.core.weights.files import GENERATED_WEIGHTS
from perception_nodes.core.weights.generated_policy import describe_changes
from perception_nodes.nodes.perception_inputs import CameraInputs
from perception_nodes.nodes.perception_outputs import (
    OutputSwitches,
    create_publishers,
    destroy_publishers,
    publish_frame,
)
from perception_nodes.nodes.perception_services import PerceptionServices
from perception_nodes.ros.live_params import LiveParameters
from perception_nodes.ros.node_diagnostics import FrameStats, pipeline_status
from perception_nodes.ros.node_runner import PublishGate, run_node, spin_until_shutdown

WORKER_JOIN_ON_SHUTDOWN_S = 1.5  # SIGINT: then exit anyway (the gate is closed); exit within 3 s
VOCABULARY_JOIN_ON_SHUTDOWN_S = 0.5  # set_vocabulary threads: abandoned at their next chunk


class PerceptionNode(LifecycleNode):
    """Lifecycle node wrapping the pipeline (see module docstring for the interface)."""

    def __init__(
        self, pipeline_loader: Callable[[PipelineConfig], Pipeline] = Pipeline.load, **kwargs
    ) -> None:
        """``pipeline_loader`` builds the pipeline in ``on_configure`` (tests pass a stand-in)."""
        super().__init__("perception_node", **kwargs)
        self._pipeline_loader = pipeline_loader
        self.pipeline: Pipeline | None = None
        self.live_params = LiveParameters(self, lambda: self.pipeline, self._apply_node_settings)
        self.camera_inputs = CameraInputs(self)
        self.gate = PublishGate()  # closed when shutdown begins: nothing is published after
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._pubs = {}  # cam -> output name -> lifecycle publisher (while configured)
        self.frame_stats = FrameStats()
        self.perception_services = PerceptionServices(
            self, lambda: self.pipeline, self.shutting_down
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self._create_diagnostics_timer()
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.01, self._autostart)

    @property
    def slots(self) -> LatestFrameSlots:
        """The newest frame per camera (and the per-camera counters) of this activation."""
        return self.camera_inputs.slots

    # ------------------------------------------------------------------ lifecycle
    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def lifecycle_state(self) -> str:
        """The lifecycle state's label: ``unconfigured``, ``inactive``, ``active``,
        ``finalized`` (or a transition's, e.g. ``configuring``). rclpy keeps it in its state
        machine (rclpy's own ``trigger_shutdown`` reads it there)."""
        return str(self._state_machine.current_state[1])

    def pipeline_config(self) -> PipelineConfig:
        return self.live_params.pipeline_config()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config = self.pipeline_config()
            self.get_logger().info(
                f"loading models: SAM {config.sam_model} ({config.sam_backend}, {config.sam_device}), "
                f"classifier {config.classifier_type} (CLIP {config.clip_model}), relations {config.relations_type}"
            )
            # on a helper thread: SIGINT during a load of many seconds (first-run ONNX export,
            # TensorRT build, vit_h on a CPU) ends the node within the 3 s, the load left behind
            loader = self._pipeline_loader
            self.pipeline = run_abandonable(lambda: loader(config), self.shutting_down)
        except WorkAbandoned:
            self.get_logger().info("loading abandoned (stopping)")
            return TransitionCallbackReturn.FAILURE
        except (PipelineError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._pubs = create_publishers(
            self, self._cameras(), self.get_parameter("output_namespace").value
        )
        if not self.pipeline.meaningful:
            self.get_logger().warning(
                f"{GENERATED_WEIGHTS} in use: masks, labels and relations are NOT "
                f"meaningful ({', '.join(self.pipeline.untrained_parts)}). Fetch real weights: pn-fetch-weights"
            )
        if self.pipeline.generated_sam_policy is not None:
            self.get_logger().warning(describe_changes(self.pipeline.generated_sam_policy))
        self.get_logger().info(f"configured: SAM on {self.pipeline.sam_backend_name}")
        return TransitionCallbackReturn.SUCCESS

    def _cameras(self) -> list[str]:
        return [c.rstrip("/") for c in self.get_parameter("cameras").value] or [""]

    def _destroy_output_publishers(self) -> None:
        destroy_publishers(self, self._pubs)
        self._pubs = {}

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cameras = self._cameras()
        for cam in cameras:
            self.camera_inputs.subscribe(cam)
        self._stop.clear()
        self.camera_inputs.new_slots()
        self._worker = threading.Thread(target=self._work, name="perception_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"active: cameras {cameras}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self.camera_inputs.unsubscribe_all()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_output_publishers()
        self.pipeline = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._destroy_output_publishers()
        self.pipeline = None
        return TransitionCallbackReturn.SUCCESS

    def begin_shutdown(self) -> None:
        """SIGINT/SIGTERM (signal handler: only sets events): stop publishing, abandon the frame
        or the model load in progress."""
        self.gate.close()
        self._stop.set()

    def shutting_down(self) -> bool:
        """SIGINT/SIGTERM arrived (for good; ``_stop`` is per activation): the gate is closed."""
        return self.gate.closed

    def _stop_worker(self, timeout: float = 30.0) -> None:
        """Stop the worker: the frame in flight is abandoned at its next stop check (between
        stages and SAM decoder batches; an encoder call finishes first)."""
        self._stop.set()
        self.slots.close()
        if self._worker is not None:
            self._worker.join(timeout=timeout)
            if self._worker.is_alive():
                self.get_logger().warning(
                    f"the worker is still in a model call after {timeout:.1f} s; not waiting "
                    f"(at {where_thread_is(self._worker)})"
                )
            self._worker = None

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        """The worker thread's loop: no exception ends it (a frame that fails is logged with its
        camera and the reason, counted, and the next frames are processed)."""
        while not self._stop.is_set():
            frames = self.slots.take_all(timeout=0.2)
            if self._stop.is_set() or self.pipeline is None:
                return
            try:
                self._work_on(frames)
            except Exception as exc:  # noqa: BLE001 (the last guard: the worker must live on)
                for cam in frames:
                    self._frame_failed(cam, exc)

    def _work_on(self, frames: dict) -> None:
        """Process the frames taken together (camera -> (header, rgb, received))."""
        geometry = self._geometry_of(frames)
        frames = self._encode_together(frames)
        for cam, frame in frames.items():
            if self._stop.is_set() or self.pipeline is None:
                return
            self._process(cam, *frame, geometry[cam])

    def _frame_failed(self, cam: str, exc: BaseException) -> None:
        """A frame of ``cam`` failed in the worker: counted (``failed``, and in /diagnostics an
        ERROR until the camera's next frame succeeds) and logged with the reason."""
        reason = f"{type(exc).__name__}: {exc}"
        self.slots.count(cam, "failed")
        self.frame_stats.record_failure(cam, reason)
        self.get_logger().error(f"[{cam or '/'}] frame failed: {reason}")
        self.get_logger().debug(traceback.format_exc())

    def _geometry_of(self, frames: dict) -> dict:
        """cam -> (depth, K, seconds waited for the depth or None without ``use_depth``) of each
        frame, looked up when the frames are taken: a frame's own depth image is among the last
        few kept only until the depth camera sends more."""
        out = {}
        for cam, (header, rgb, _) in frames.items():
            try:
                out[cam] = self.camera_inputs.geometry_for(
                    cam, rgb.shape[:2], stamp_to_ns(header.stamp), self._stop.is_set
                )
            except Exception as exc:  # noqa: BLE001 (the frame is still processed, in 2D)
                self.get_logger().error(f"[{cam or '/'}] no 3D for this frame: {exc}")
                self.slots.count(cam, "refused_3d")
                out[cam] = (None, None, None)
        return out

    def _encode_together(self, frames: dict) -> dict:
        """Frames of several cameras that arrived together share one SAM encoder batch."""
        if len(frames) < 2:
            self.frame_stats.record_encoder_batch(len(frames))
            return frames
        try:
            rgbs = self.pipeline.encode_together([rgb for _, rgb, _ in frames.values()])
        except Exception as exc:  # noqa: BLE001 (each frame is then tried, and logged, alone)
            self.get_logger().warning(
                f"batched encoding of {len(frames)} frames failed ({type(exc).__name__}: {exc}); "
                "one by one"
            )
            return frames
        self.frame_stats.record_encoder_batch(len(rgbs))
        return {
            cam: (header, rgb, received)
            for (cam, (header, _, received)), rgb in zip(frames.items(), rgbs)
        }

    def _process(self, cam: str, header, rgb: np.ndarray, received: float, geometry) -> None:
        """Run the pipeline on one frame (``geometry``: its (depth, K, seconds waited), see
        :meth:`_geometry_of`) and publish the outputs; failures are logged and counted, never
        raised."""
        depth, k, depth_wait = geometry
        try:
            result, graph = self.pipeline.process(
                rgb,
                depth,
                k,
                stamp=stamp_to_seconds(header.stamp),
                stamp_ns=stamp_to_ns(header.stamp),
                should_stop=self._stop.is_set,
                stream=cam,
            )
            t0 = time.perf_counter()
            self._publish(cam, header, result, graph)
            result.timings["publish"] = time.perf_counter() - t0
            if depth_wait is not None:  # (with use_depth only)
                result.timings["depth_wait"] = depth_wait
        except FrameAbandoned:
            self.get_logger().info(f"[{cam or '/'}] frame in flight abandoned (stopping)")
            return
        except Exception as exc:  # noqa: BLE001 (any failure: logged, counted, next frame)
            self._frame_failed(cam, exc)
            return
        self.slots.count(cam, "processed")
        self.frame_stats.record_frame(received, result.timings, cam)

    def _publish(self, cam: str, header, result, graph) -> None:
        pubs = self._pubs.get(cam)
        if pubs is None:
            return
        switches = OutputSwitches(
            regions=bool(self.get_parameter("publish_regions").value),
            scene_graph=bool(self.get_parameter("publish_scene_graph").value),
            label_image=bool(self.get_parameter("publish_label_image").value),
            embeddings=bool(self.get_parameter("publish_embeddings").value),
        )
        publish_frame(self.gate, pubs, header, result, graph, switches)

    # ------------------------------------------------------------------ parameters, diagnostics
    def _apply_node_settings(self, names: set[str]) -> None:
        """Accepted node parameters that need more than a read at the next use."""
        if "diagnostics_period" in names:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self._create_diagnostics_timer()

    def _create_diagnostics_timer(self):
        period = float(self.get_parameter("diagnostics_period").value)
        return self.create_timer(period, self._publish_diagnostics)

    def _publish_diagnostics(self) -> None:
        status = pipeline_status(
            f"{self.get_name()}: pipeline",
            self.get_fully_qualified_name(),
            self.pipeline,
            self.frame_stats.snapshot(),
            self.slots.stats_snapshot(),
            self.lifecycle_state(),
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.gate.publish(self._diag_pub, msg)


def _spin(node: PerceptionNode, shutdown: threading.Event) -> None:
    """Services and subscriptions on 4 executor threads (answers while the worker infers),
    until SIGINT/SIGTERM; then the frame in flight is abandoned (exit within ~2 s, even when a
    model call runs on: the process exits without waiting for it, nothing is published)."""
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        spin_until_shutdown(node, shutdown, executor)
    finally:
        node.begin_shutdown()
        node._stop_worker(timeout=WORKER_JOIN_ON_SHUTDOWN_S)
        node.perception_services.wait_for_writers(timeout=VOCABULARY_JOIN_ON_SHUTDOWN_S)
        # waits for the executor's threads (destroying the node under a running callback
        # crashed rclpy): long callbacks end at their next stop check (a vocabulary change is
        # abandoned between text batches, a model load left to its helper thread)
        executor.shutdown(timeout_sec=0.3)


#: The interpreter's GIL switch interval in the perception node process (Python's default: 5 ms).
#: The worker's pure-Python stages (mask post-processing, RLE, assembly) hold the GIL for whole
#: switch intervals, and a service thread whose text encoding releases and re-takes the GIL at
#: every torch op then waits up to one interval per op (the "convoy" effect): set_vocabulary
#: calls took 0.5-1 s, all four service threads at once, while a frame was in those stages; 20
#: concurrent callers' p99 went 0.9-1.1 s -> 0.3-0.5 s at 1 ms on the 2-core CI machine (2.1 s
#: once on CI at 5 ms), with the demo's frame time unchanged (README "Services").
GIL_SWITCH_INTERVAL_S = 0.001


def main(args: list[str] | None = None) -> int:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    return run_node(PerceptionNode, _spin, args)


if __name__ == "__main__":
    sys.exit(main())
