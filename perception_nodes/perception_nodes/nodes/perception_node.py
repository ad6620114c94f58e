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
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from perception_msgs.msg import RegionArray, SceneGraph
from perception_msgs.srv import GetVocabulary, QueryRegions, SetVocabulary
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from perception_nodes.core.cancel import FrameAbandoned
from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.frame_slots import LatestFrameSlots
from perception_nodes.core.generated_policy import describe_changes
from perception_nodes.core.pipeline import Pipeline, PipelineError, check_image_size
from perception_nodes.core.projection import DepthError, intrinsics_problem, label_image
from perception_nodes.core.stamps import ns_to_seconds, set_stamp, stamp_to_ns, stamp_to_seconds
from perception_nodes.core.vocabulary import check_vocabulary
from perception_nodes.core.weights import GENERATED_WEIGHTS
from perception_nodes.ros.graph_conversion import (
    region_array_to_msg,
    regions_to_msgs,
    scene_graph_to_msg,
)
from perception_nodes.ros.image_conversion import (
    ImageConversionError,
    compressed_to_rgb8,
    depth_to_meters,
    image_msg_to_numpy,
    numpy_to_image_msg,
    to_rgb8,
)
from perception_nodes.ros.node_runner import (
    PublishGate,
    join_topic,
    output_base,
    run_node,
    spin_until_shutdown,
)
from perception_nodes.ros.params import all_params, check_choice, pipeline_params
from perception_nodes.ros.qos import SERVICE_QOS
from perception_nodes.ros.ranges import descriptor_for

WORKER_JOIN_ON_SHUTDOWN_S = 1.5  # SIGINT: then exit anyway (the gate is closed); exit within 3 s


class PerceptionNode(LifecycleNode):
    """Lifecycle node wrapping the pipeline (see module docstring for the interface)."""

    def __init__(
        self, pipeline_loader: Callable[[PipelineConfig], Pipeline] = Pipeline.load, **kwargs
    ) -> None:
        """``pipeline_loader`` builds the pipeline in ``on_configure`` (tests pass a stand-in)."""
        super().__init__("perception_node", **kwargs)
        self._specs = {s.name: s for s in all_params()}
        self._pipeline_names = {s.name for s in pipeline_params()}
        for spec in self._specs.values():
            self.declare_parameter(spec.name, spec.default, descriptor_for(spec))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self._pipeline_loader = pipeline_loader
        self.pipeline: Pipeline | None = None
        self.slots = LatestFrameSlots()
        self._depth: dict[str, tuple] = {}
        self._info: dict[
            str, tuple[np.ndarray, tuple[int, int]]
        ] = {}  # cam -> (K 3x3, (height, width))
        self._last_stamp: dict[str, int] = {}  # ns
        self._last_3d_refusal: dict[str, str] = {}  # cam -> reason last logged
        self.gate = PublishGate()  # closed when shutdown begins: nothing is published after
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._subs, self._pubs = [], {}
        self._latency = {k: deque(maxlen=100) for k in ("total",)}
        self._stage = {}
        self._frames_done = deque(maxlen=200)
        self._encoder_batch_max = 0  # largest number of frames (cameras) encoded in one batch
        self._service_group = ReentrantCallbackGroup()
        self._camera_group = MutuallyExclusiveCallbackGroup()
        for srv_type, name, handler in (
            (SetVocabulary, "~/set_vocabulary", self._set_vocabulary),
            (GetVocabulary, "~/get_vocabulary", self._get_vocabulary),
            (QueryRegions, "~/query_regions", self._query_regions),
        ):
            self.create_service(
                srv_type, name, handler, qos_profile=SERVICE_QOS, callback_group=self._service_group
            )
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(
            float(self.get_parameter("diagnostics_period").value), self._publish_diagnostics
        )
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.01, self._autostart)

    # ------------------------------------------------------------------ lifecycle
    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def pipeline_config(self) -> PipelineConfig:
        values = {spec.name: self.get_parameter(spec.name).value for spec in pipeline_params()}
        return PipelineConfig.from_flat(values)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config = self.pipeline_config()
            self.get_logger().info(
                f"loading models: SAM {config.sam_model} ({config.sam_backend}, {config.sam_device}), "
                f"classifier {config.classifier_type} (CLIP {config.clip_model}), relations {config.relations_type}"
            )
            self.pipeline = self._pipeline_loader(config)
        except (PipelineError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._create_output_publishers()
        if not self.pipeline.meaningful:
            self.get_logger().warning(
                f"{GENERATED_WEIGHTS} in use: masks, labels and relations are NOT "
                f"meaningful ({', '.join(self.pipeline.untrained_parts)}). Fetch real weights: pn-fetch-weights"
            )
        if self.pipeline.generated_sam_policy is not None:
            self.get_logger().warning(describe_changes(self.pipeline.generated_sam_policy))
        self.get_logger().info("configured")
        return TransitionCallbackReturn.SUCCESS

    def _cameras(self) -> list[str]:
        return [c.rstrip("/") for c in self.get_parameter("cameras").value] or [""]

    def _create_output_publishers(self) -> None:
        """Lifecycle publishers per camera: created on configure, publishing only while active."""
        out_ns = self.get_parameter("output_namespace").value
        for cam in self._cameras():
            base = output_base(cam, out_ns)
            self._pubs[cam] = {
                "regions": self.create_lifecycle_publisher(RegionArray, f"{base}/regions", 10),
                "scene_graph": self.create_lifecycle_publisher(
                    SceneGraph, f"{base}/scene_graph", 10
                ),
                "label_image": self.create_lifecycle_publisher(Image, f"{base}/label_image", 10),
            }

    def _destroy_output_publishers(self) -> None:
        for pubs in self._pubs.values():
            for pub in pubs.values():
                self.destroy_lifecycle_publisher(pub)
        self._pubs = {}

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cameras = self._cameras()
        for cam in cameras:
            self._subscribe_camera(cam)
        self._stop.clear()
        self.slots = LatestFrameSlots()
        self._worker = threading.Thread(target=self._work, name="perception_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"active: cameras {cameras}")
        return super().on_activate(state)

    def _subscribe_camera(self, cam: str) -> None:
        topic = join_topic(cam, self.get_parameter("image_topic").value)
        qos = qos_profile_sensor_data
        if self.get_parameter("use_compressed").value:
            self._subs.append(
                self.create_subscription(
                    CompressedImage,
                    f"{topic}/compressed",
                    lambda m, c=cam: self._on_image(c, m, True),
                    qos,
                    callback_group=self._camera_group,
                )
            )
        else:
            self._subs.append(
                self.create_subscription(
                    Image,
                    topic,
                    lambda m, c=cam: self._on_image(c, m, False),
                    qos,
                    callback_group=self._camera_group,
                )
            )
        if self.get_parameter("use_depth").value:
            self._subs.append(
                self.create_subscription(
                    Image,
                    join_topic(cam, self.get_parameter("depth_topic").value),
                    lambda m, c=cam: self._on_depth(c, m),
                    qos,
                    callback_group=self._camera_group,
                )
            )
            self._subs.append(
                self.create_subscription(
                    CameraInfo,
                    join_topic(cam, self.get_parameter("camera_info_topic").value),
                    lambda m, c=cam: self._on_info(c, m),
                    qos,
                    callback_group=self._camera_group,
                )
            )

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
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
        """SIGINT/SIGTERM (signal handler: only sets events): stop publishing, abandon the frame."""
        self.gate.close()
        self._stop.set()

    def _stop_worker(self, timeout: float = 30.0) -> None:
        """Stop the worker: the frame in flight is abandoned at its next stop check (between
        stages and SAM decoder batches; an encoder call finishes first)."""
        self._stop.set()
        self.slots.close()
        if self._worker is not None:
            self._worker.join(timeout=timeout)
            if self._worker.is_alive():
                self.get_logger().warning(
                    f"the worker is still in a model call after {timeout:.1f} s; not waiting"
                )
            self._worker = None

    # ------------------------------------------------------------------ inputs
    def _on_image(self, cam: str, msg, compressed: bool) -> None:
        try:
            rgb = (
                compressed_to_rgb8(msg)
                if compressed
                else to_rgb8(image_msg_to_numpy(msg), msg.encoding)
            )
            limit = int(self.get_parameter("max_image_pixels").value)
            if rgb.shape[0] * rgb.shape[1] > limit:
                raise ImageConversionError(
                    f"{rgb.shape[1]}x{rgb.shape[0]} exceeds max_image_pixels={limit}"
                )
            check_image_size(rgb.shape[:2])
        except (ImageConversionError, PipelineError) as exc:
            self.slots.count(cam, "rejected")
            self.get_logger().error(f"[{cam or '/'}] frame refused: {exc}")
            return
        stamp = stamp_to_ns(msg.header.stamp)
        last = self._last_stamp.get(cam)
        if last is not None and stamp < last:
            self.get_logger().warning(
                f"[{cam or '/'}] timestamp went backwards ({ns_to_seconds(stamp):.3f} < {ns_to_seconds(last):.3f}); "
                "processing anyway",
                throttle_duration_sec=2.0,
            )
        self._last_stamp[cam] = stamp
        self.slots.put(cam, (msg.header, rgb, time.monotonic()))

    def _on_depth(self, cam: str, msg: Image) -> None:
        try:
            depth = depth_to_meters(image_msg_to_numpy(msg), msg.encoding)
        except ImageConversionError as exc:
            self.get_logger().error(
                f"[{cam or '/'}] depth refused: {exc}", throttle_duration_sec=2.0
            )
            return
        self._depth[cam] = (msg.header.stamp, depth)

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        """Kept as received; checked against each frame (:meth:`_intrinsics_for`)."""
        self._info[cam] = (
            np.asarray(msg.k, dtype=np.float64).reshape(3, 3),
            (int(msg.height), int(msg.width)),
        )

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            frames = self.slots.take_all(timeout=0.2)
            if self._stop.is_set() or self.pipeline is None:
                return
            frames = self._encode_together(frames)
            for cam, frame in frames.items():
                if self._stop.is_set() or self.pipeline is None:
                    return
                self._process(cam, *frame)

    def _encode_together(self, frames: dict) -> dict:
        """Frames of several cameras that arrived together share one SAM encoder batch."""
        if len(frames) < 2:
            self._encoder_batch_max = max(self._encoder_batch_max, len(frames))
            return frames
        try:
            rgbs = self.pipeline.encode_together([rgb for _, rgb, _ in frames.values()])
        except (
            ValueError,
            RuntimeError,
        ) as exc:  # a bad frame: each one is then tried (and logged) alone
            self.get_logger().warning(
                f"batched encoding of {len(frames)} frames failed ({exc}); one by one"
            )
            return frames
        self._encoder_batch_max = max(self._encoder_batch_max, len(rgbs))
        return {
            cam: (header, rgb, received)
            for (cam, (header, _, received)), rgb in zip(frames.items(), rgbs)
        }

    def _depth_for(self, cam: str, shape: tuple[int, int]) -> np.ndarray | None:
        entry = self._depth.get(cam)
        if entry is None:
            return None
        depth = entry[1]
        if depth.shape != shape:
            self._refuse_3d(
                cam,
                f"depth is {depth.shape[1]}x{depth.shape[0]} but the image is {shape[1]}x{shape[0]}: "
                "depth ignored (register depth to the colour camera)",
            )
            return None
        return depth

    def _refuse_3d(self, cam: str, reason: str) -> None:
        """Count a frame processed without 3D; log a new reason at once, a repeated one throttled."""
        self.slots.count(cam, "refused_3d")
        text = f"[{cam or '/'}] no 3D for this frame: {reason}"
        if self._last_3d_refusal.get(cam) != reason:
            self._last_3d_refusal[cam] = reason
            self.get_logger().warning(text)
        else:
            self.get_logger().warning(text, throttle_duration_sec=5.0)

    def _intrinsics_for(self, cam: str, shape: tuple[int, int]) -> np.ndarray | None:
        """K of the camera's CameraInfo when it fits a frame of ``shape``; else None (no 3D for
        that frame: centroids NaN), counted as ``refused_3d`` and logged (throttled) with why."""
        entry = self._info.get(cam)
        if entry is None:
            return None
        k, info_hw = entry
        problem = intrinsics_problem(k, shape, info_hw)
        if problem is None:
            return k
        self._refuse_3d(cam, f"CameraInfo refused: {problem}")
        return None

    def _process(self, cam: str, header, rgb: np.ndarray, received: float) -> None:
        try:
            depth = self._depth_for(cam, rgb.shape[:2])
            k = self._intrinsics_for(cam, rgb.shape[:2]) if depth is not None else None
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
        except FrameAbandoned:
            self.get_logger().info(f"[{cam or '/'}] frame in flight abandoned (stopping)")
            return
        except (PipelineError, DepthError, ValueError, RuntimeError) as exc:
            self.slots.count(cam, "rejected")
            self.get_logger().error(f"[{cam or '/'}] frame failed: {exc}")
            self.get_logger().debug(traceback.format_exc())
            return
        self.slots.count(cam, "processed")
        self._frames_done.append(time.monotonic())
        self._latency["total"].append(time.monotonic() - received)
        for k, v in result.timings.items():
            self._stage.setdefault(k, deque(maxlen=100)).append(v)

    def _publish(self, cam: str, header, result, graph) -> None:
        pubs = self._pubs.get(cam)
        if pubs is None:
            return
        regions = regions_to_msgs(
            result, graph, bool(self.get_parameter("publish_embeddings").value)
        )
        vocabulary = list(result.labels.labels) if result.labels is not None else []
        if self.get_parameter("publish_regions").value:
            self.gate.publish(
                pubs["regions"], region_array_to_msg(graph, regions, header, vocabulary)
            )
        if self.get_parameter("publish_scene_graph").value:
            self.gate.publish(
                pubs["scene_graph"], scene_graph_to_msg(result, graph, header, regions=regions)
            )
        if self.get_parameter("publish_label_image").value:
            self.gate.publish(
                pubs["label_image"],
                numpy_to_image_msg(
                    label_image(result.segmentation.masks, result.region_ids), "16UC1", header
                ),
            )

    # ------------------------------------------------------------------ services
    def _set_vocabulary(self, request: SetVocabulary.Request, response: SetVocabulary.Response):
        snapshot = self.pipeline.vocabulary_snapshot() if self.pipeline else None
        response.version = int(snapshot.version) if snapshot else 0
        response.labels = list(snapshot.labels) if snapshot else []
        if self.pipeline is None:
            response.success, response.message = False, "node is not configured (models not loaded)"
            return response
        if not request.labels:
            response.success = False
            response.message = (
                "empty label list: the vocabulary needs at least one entry (it is unchanged)"
            )
            return response
        vocabulary = self.pipeline.vocabulary
        limit = vocabulary.limits.max_entries if vocabulary is not None else 0
        if (
            vocabulary is not None and len(request.labels) > limit
        ):  # refused before the request is copied (one limit: the vocabulary's)
            response.success = False
            response.message = f"{len(request.labels)} labels in one request; at most {limit}"
            return response
        try:
            snap = self.pipeline.set_vocabulary(
                list(request.labels), list(request.prompt_templates) or None, request.append
            )
        except (ValueError, PipelineError) as exc:
            response.success, response.message = False, f"vocabulary unchanged: {exc}"
            self.get_logger().warning(f"set_vocabulary refused: {exc}")
            return response
        response.success = True
        response.version, response.labels = int(snap.version), list(snap.labels)
        response.message = (
            f"vocabulary v{snap.version}: {len(snap.labels)} entries (applies from the next frame)"
        )
        self.get_logger().info(response.message)
        return response

    def _get_vocabulary(self, request, response: GetVocabulary.Response):
        snapshot = self.pipeline.vocabulary_snapshot() if self.pipeline else None
        if snapshot is not None:
            response.labels, response.version = list(snapshot.labels), int(snapshot.version)
            response.prompt_templates = list(snapshot.templates)
        return response

    def _query_regions(self, request: QueryRegions.Request, response: QueryRegions.Response):
        if self.pipeline is None:
            response.success, response.message = False, "node is not configured (models not loaded)"
            return response
        try:
            ids, scores, stamp = self.pipeline.query(request.text, int(request.top_k))
        except (ValueError, PipelineError) as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message = (
            True,
            f"{len(ids)} regions scored against {request.text!r}",
        )
        response.region_ids, response.scores = [int(i) for i in ids], [float(s) for s in scores]
        set_stamp(response.stamp, stamp)  # the frame's header stamp, exactly
        return response

    # ------------------------------------------------------------------ parameters, diagnostics
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate a change before it is accepted (ranges and read-only: the descriptors)."""
        for p in params:
            spec = self._specs.get(p.name)
            reason = check_choice(spec, p.value) if spec else None
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        changes = {p.name: p.value for p in params if p.name in self._pipeline_names}
        reason = self._check_pipeline_changes(changes) if changes else None
        if reason:
            self.get_logger().warning(f"parameters refused: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _check_pipeline_changes(self, changes: dict) -> str | None:
        """Why the pipeline would refuse these parameter values, or None (nothing changes)."""
        values = {
            spec.name: self.get_parameter(spec.name).value for spec in pipeline_params()
        } | changes
        try:
            config = PipelineConfig.from_flat(values)
            if self.pipeline is not None:
                self.pipeline.check_settings(config)
            elif {"vocabulary.labels", "vocabulary.templates"} & set(changes):
                check_vocabulary(list(config.vocabulary_labels), list(config.vocabulary_templates))
        except (PipelineError, ValueError) as exc:
            return str(exc)
        return None

    def _after_set_parameters(self, params) -> None:
        """Apply accepted parameters: pipeline settings from the next frame, node settings now."""
        names = {p.name for p in params}
        if "diagnostics_period" in names:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(
                float(self.get_parameter("diagnostics_period").value), self._publish_diagnostics
            )
        pipeline = self.pipeline
        if pipeline is not None and names & self._pipeline_names:
            try:
                pipeline.apply_settings(self.pipeline_config())
            except (
                PipelineError,
                ValueError,
            ) as exc:  # checked before accepting: only a race gets here
                self.get_logger().error(f"parameters accepted but not applied: {exc}")
                return
            self.get_logger().info(
                f"applied from the next frame: {', '.join(sorted(names & self._pipeline_names))}"
            )

    def _decoder_batches(self) -> int:
        """SAM decoder batches of the latest frame (shows ``amg.points_per_batch`` at work)."""
        timings = getattr(self.pipeline.generator, "timings", None) if self.pipeline else None
        return len(getattr(timings, "decoder_batches", ()))

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        rate = sum(1 for t in self._frames_done if now - t < 5.0) / 5.0
        status = DiagnosticStatus(
            name=f"{self.get_name()}: pipeline", hardware_id=self.get_fully_qualified_name()
        )
        cfg = self.pipeline.config if self.pipeline else None
        values = {
            "rate_hz": f"{rate:.2f}",
            "state": "configured" if self.pipeline else "unconfigured",
            "backend": f"{cfg.sam_backend}/{cfg.sam_device}/{cfg.sam_precision}" if cfg else "",
            "model": cfg.sam_model if cfg else "",
            "weights_meaningful": str(bool(self.pipeline and self.pipeline.meaningful)),
            "untrained": ", ".join(self.pipeline.untrained_parts) if self.pipeline else "",
            "sam_untrained": str(self.pipeline.sam_untrained) if self.pipeline else "",
            "encoder_batch_max": str(self._encoder_batch_max),
            "decoder_batches": str(self._decoder_batches()),
        }
        for key, vals in list(self._stage.items()) + [("latency_total", self._latency["total"])]:
            if vals:
                values[f"{key}_ms"] = f"{1000 * float(np.mean(vals)):.1f}"
        for cam, st in self.slots.stats.items():
            tag = cam or "/"
            values.update(
                {
                    f"{tag}.received": str(st.received),
                    f"{tag}.dropped": str(st.dropped),
                    f"{tag}.rejected": str(st.rejected),
                    f"{tag}.processed": str(st.processed),
                    f"{tag}.refused_3d": str(st.refused_3d),
                }
            )
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        if self.pipeline is None:
            status.level, status.message = DiagnosticStatus.ERROR, "models not loaded"
        elif not self.pipeline.meaningful:
            status.level, status.message = (
                DiagnosticStatus.WARN,
                "untrained (generated) weights: output not meaningful",
            )
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
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
        executor.shutdown(timeout_sec=0.3)


def main(args: list[str] | None = None) -> int:
    return run_node(PerceptionNode, _spin, args)


if __name__ == "__main__":
    sys.exit(main())
