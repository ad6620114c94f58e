"""pn-bench-host: the per-frame host work around the models, step by step, and peak memory.

On a GPU the model passes of a frame take milliseconds; what is left on the host then decides
the frame rate. This command times every per-frame step that is not a model forward pass, each
on its own, on ONE thread (``time.thread_time``, best of ``--repeats``), in the order the nodes
run them, on generated frames with realistic masks (:mod:`.host_scenes`: smooth shapes, holes,
touching and nested objects, depth with NaN) at 640x480 and 1280x720 with 10, 50 and 100
regions. Each size/region count runs in a child process of its own, so the peak RSS reported
(``ru_maxrss``) is that configuration's alone.

``--pipeline`` instead runs the whole :class:`Pipeline` (default settings: vit_t, CLIP ViT-B-16,
16x16 grid, unless ``--config-file``/``--device``/``--precision`` say otherwise) on the demo
photos in a child process: per-frame time, scene graphs per second and peak RSS.

Steps that need ROS messages (image conversion, message building, markers) are reported as
``n/a`` where rclpy and perception_msgs are not installed. ``--baseline REV`` times git revision
REV's code too, each configuration side by side (:mod:`.bench_host_baseline`). Prints tables and
writes JSON (default ``outputs/bench/host.json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch

from perception_nodes.tools.bench_common import hardware_info, one_compute_thread
from perception_nodes.tools.host_scenes import HostScene, host_scene

SIZES = ((480, 640), (720, 1280))
REGION_COUNTS = (10, 50, 100)
PERCEPTION_STEPS = (
    "image_in", "to_segmentation", "crop_batch", "relations", "tracking", "centroids",
    "scene_graph", "messages",
)  # fmt: skip
VISUALIZATION_STEPS = (
    "graph_from_msg",
    "overlay_image_in",
    "draw_overlay",
    "overlay_out",
    "markers",
)
PARTS = ("rle", "label_image")
DEMO_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # pn-demo's photos and size
DEMO_MAX_SIDE = 640  # inside scene_graph / messages; shown, not added again


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux ``ru_maxrss`` is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def best_thread_ms(fn: Callable[[], object], repeats: int) -> float:
    """Best per-thread CPU time of ``fn`` over ``repeats`` calls, ms (host work only: a CUDA
    kernel's own time is not counted, the launch and any synchronisation are)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return 1000.0 * best


def _clip_for_crops(device: str):
    """A :class:`ClipModel` with ViT-B-16's input size (224) and a one-layer tower: crop
    building depends on the input size only, not on the tower."""
    import open_clip

    from perception_nodes.core.classify.clip_model import (
        TEST_CLIP_CONFIGS,
        ClipModel,
        register_test_configs,
    )

    register_test_configs()
    name = "pn-clip-tiny-test"
    model = open_clip.create_model(name, pretrained=None, device=device)
    clip = ClipModel(name, model, open_clip.get_tokenizer(name), Path("generated"), "0" * 64,
                     True, torch.device(device))  # fmt: skip
    clip.image_size = 224  # ViT-B-16's crops (the tower's own size does not enter crop_batch)
    assert TEST_CLIP_CONFIGS[name]["vision_cfg"]["image_size"] != 0
    return clip


def _labels(n: int, rng: np.random.Generator):
    from perception_nodes.core.config import DEFAULT_LABELS
    from perception_nodes.core.types import RegionLabels

    v = len(DEFAULT_LABELS)
    topk = np.stack([rng.permutation(v)[:5] for _ in range(n)]) if n else np.zeros((0, 5), int)
    scores = np.sort(rng.uniform(0, 1, (n, 5)), axis=1)[:, ::-1].astype(np.float32)
    return RegionLabels(topk[:, 0].astype(np.int64), scores[:, 0], topk.astype(np.int64), scores,
                        list(DEFAULT_LABELS), 1)  # fmt: skip


def _mask_data(scene: HostScene, device: str):
    """The surviving masks as automatic mask generation hands them to ``to_segmentation``."""
    from segment_anything.utils.amg import MaskData

    from perception_nodes.core.sam.postprocess import crop_to_boxes

    seg = scene.segmentation
    boxes = torch.as_tensor(seg.boxes_xyxy, device=device).long() - torch.tensor(
        [0, 0, 1, 1], device=device
    )
    return MaskData(
        crops=crop_to_boxes(torch.from_numpy(seg.masks).to(device), boxes),
        boxes=boxes,
        iou_preds=torch.as_tensor(seg.predicted_iou, device=device),
        stability_score=torch.as_tensor(seg.stability_score, device=device),
        tokens=torch.as_tensor(seg.tokens, device=device),
        points=torch.as_tensor(seg.point_coords, device=device),
    )


def _ros_available() -> bool:
    try:
        import perception_msgs.msg  # noqa: F401
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


class _Collect:
    """A publisher that keeps what it is given (the messages are built, nothing is sent)."""

    def __init__(self) -> None:
        self.msgs: list = []

    def publish(self, msg) -> None:
        self.msgs.append(msg)


def time_steps(scene: HostScene, device: str, repeats: int) -> dict[str, float | None]:
    """``{step: ms}`` of one frame's host steps (None = needs ROS, not installed)."""
    from perception_nodes.core.classify import clip_crops
    from perception_nodes.core.config import PipelineConfig
    from perception_nodes.core.output.draw import draw_overlay
    from perception_nodes.core.output.projection import label_image, region_centroids
    from perception_nodes.core.output.rle import encode_masks
    from perception_nodes.core.output.scene_graph import build_scene_graph
    from perception_nodes.core.relations.geometric import GeometricRelationPredictor
    from perception_nodes.core.sam.postprocess import to_segmentation
    from perception_nodes.core.tracking import TrackingStage
    from perception_nodes.core.types import FrameResult

    rng = np.random.default_rng(1)
    seg, n = scene.segmentation, len(scene.segmentation)
    h, w = seg.image_size
    cfg = PipelineConfig()
    clip = _clip_for_crops(device)
    labels = _labels(n, rng)
    data = _mask_data(scene, device)
    ms: dict[str, float | None] = {}
    ms["to_segmentation"] = best_thread_ms(lambda: to_segmentation(data, (h, w), 256), repeats)
    reuse = getattr(clip_crops, "reused_crop_buffer", None)  # a --baseline may not have it
    crop_kw = {"out": reuse(n, clip.image_size)} if reuse and device == "cpu" else {}
    ms["crop_batch"] = best_thread_ms(  # on the CPU into the reused buffer, as the node does
        lambda: clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks, **crop_kw), repeats
    )
    predictor = GeometricRelationPredictor()
    relations = predictor.predict(seg, labels, scene.depth_m)
    ms["relations"] = best_thread_ms(lambda: predictor.predict(seg, labels, scene.depth_m), repeats)
    tracking = TrackingStage()
    tracking.apply("cam", seg, labels, relations, cfg)  # a previous frame to match against
    ms["tracking"] = best_thread_ms(
        lambda: tracking.apply("cam", seg, labels, relations, cfg), repeats
    )
    boxes = seg.boxes_xyxy  # as the pipeline and the node pass them
    ms["centroids"] = best_thread_ms(
        lambda: region_centroids(seg.masks, scene.depth_m, scene.k, boxes), repeats
    )
    ids = np.arange(1, n + 1, dtype=np.uint32)
    centroids = region_centroids(seg.masks, scene.depth_m, scene.k, boxes)
    tracked = tracking.apply("cam", seg, labels, relations, cfg)

    def graph_of():
        return build_scene_graph(seg, tracked.labels, tracked.relations, ids, centroids,
                                 top_k=50, top_k_per_subject=5, score_threshold=0.3)  # fmt: skip

    ms["scene_graph"] = best_thread_ms(graph_of, repeats)
    graph = graph_of()
    graph.track_ids, graph.track_ages = tracked.track_ids, tracked.track_ages
    # the RLE part of scene_graph, as build_scene_graph encodes (all masks in one call)
    ms["rle"] = best_thread_ms(lambda: encode_masks(seg.masks, boxes), repeats)
    ms["label_image"] = best_thread_ms(lambda: label_image(seg.masks, ids, boxes), repeats)
    result = FrameResult(seg, tracked.labels, tracked.relations, ids, centroids, {},
                         tracked.track_ids, tracked.track_ages)  # fmt: skip
    if _ros_available():
        ms.update(_ros_steps(scene, result, graph, repeats))
    else:
        ms.update({k: None for k in ("image_in", "messages", "graph_from_msg", "overlay_image_in",
                                     "overlay_out", "markers")})  # fmt: skip
        ms["draw_overlay"] = best_thread_ms(
            lambda: draw_overlay(scene.image, graph, banner="labels are not meaningful"), repeats
        )
    return ms


def _ros_steps(scene: HostScene, result, graph, repeats: int) -> dict[str, float]:
    """The steps that build or read ROS messages, as the nodes run them."""
    from std_msgs.msg import Header

    from perception_nodes.core.output.draw import draw_overlay
    from perception_nodes.nodes.perception_outputs import OutputSwitches, publish_frame
    from perception_nodes.nodes.visualization_node import VisualizationNode
    from perception_nodes.ros.graph_conversion import msg_to_scene_graph
    from perception_nodes.ros.image_conversion import (
        depth_to_meters,
        image_msg_to_numpy,
        numpy_to_image_msg,
        to_rgb8,
    )
    from perception_nodes.ros.node_runner import PublishGate

    header = Header(frame_id="camera")
    rgb_msg = numpy_to_image_msg(scene.image, "rgb8", header)
    depth_msg = numpy_to_image_msg(scene.depth_m, "32FC1", header)
    ms = {}

    def image_in():
        to_rgb8(image_msg_to_numpy(rgb_msg), "rgb8")
        depth_to_meters(image_msg_to_numpy(depth_msg), "32FC1")

    ms["image_in"] = best_thread_ms(image_in, repeats)
    pubs = {"regions": _Collect(), "scene_graph": _Collect(), "label_image": _Collect()}
    switches = OutputSwitches(regions=True, scene_graph=True, label_image=True, embeddings=False)
    gate = PublishGate()
    ms["messages"] = best_thread_ms(
        lambda: publish_frame(gate, pubs, header, result, graph, switches), repeats
    )
    graph_msg = pubs["scene_graph"].msgs[-1]
    ms["graph_from_msg"] = best_thread_ms(lambda: msg_to_scene_graph(graph_msg), repeats)
    ms["overlay_image_in"] = best_thread_ms(
        lambda: to_rgb8(image_msg_to_numpy(rgb_msg), "rgb8"), repeats
    )
    viz_graph = msg_to_scene_graph(graph_msg)
    banner = "labels are not meaningful"
    ms["draw_overlay"] = best_thread_ms(
        lambda: draw_overlay(scene.image, viz_graph, banner=banner), repeats
    )
    overlay = draw_overlay(scene.image, viz_graph, banner=banner)
    ms["overlay_out"] = best_thread_ms(lambda: numpy_to_image_msg(overlay, "rgb8", header), repeats)
    viz = SimpleNamespace(_positions=VisualizationNode._positions,
                          _label_text=VisualizationNode._label_text)  # fmt: skip
    ms["markers"] = best_thread_ms(
        lambda: VisualizationNode.markers(viz, viz_graph, header, scene.k), repeats
    )
    return ms


def with_totals(ms: dict[str, float | None]) -> dict[str, float | None]:
    """Adds ``perception_node``, ``visualization_node`` and ``both_nodes`` (ms; None when a
    step could not run)."""

    def total(steps):
        vals = [ms.get(s) for s in steps]
        return None if any(v is None for v in vals) else float(sum(vals))

    out = dict(ms)
    out["perception_node"] = total(PERCEPTION_STEPS)
    out["visualization_node"] = total(VISUALIZATION_STEPS)
    out["both_nodes"] = total(PERCEPTION_STEPS + VISUALIZATION_STEPS)
    # with CLIP on a GPU the crops are batched device ops (clip_crops_batched), not host work
    out["both_without_crops"] = total(
        tuple(s for s in PERCEPTION_STEPS + VISUALIZATION_STEPS if s != "crop_batch")
    )
    return out


def one_config(height: int, width: int, regions: int, device: str, repeats: int,
               package: str | None = None) -> dict:  # fmt: skip
    """Run in the child: one size and region count, one thread (``package``: a revision's
    package folder, ``--baseline``)."""
    one_compute_thread()
    make_scene = host_scene
    if package:
        from perception_nodes.tools.bench_host_baseline import use_package

        use_package(package)
        from perception_nodes.tools.host_scenes import host_scene as make_scene
    scene = make_scene(height, width, regions, seed=regions)
    ms = with_totals(time_steps(scene, device, repeats))
    return {"height": height, "width": width, "regions": regions, "ms": ms,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _child(args: list[str]) -> dict:
    """Run this module with ``args`` in a child process; its JSON answer (last stdout line)."""
    cmd = [sys.executable, "-m", "perception_nodes.tools.bench_host", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def host_table(rows: list[dict]) -> str:
    """Markdown table: one column per size/region count, one row per step."""
    heads = [f"{r['width']}x{r['height']}, {r['regions']}" + (f" {r['label']}" if r.get("label") else "")
             for r in rows]  # fmt: skip
    lines = ["| host step (ms, one thread) | " + " | ".join(heads) + " |",
             "|---" * (len(rows) + 1) + "|"]  # fmt: skip
    names = (PERCEPTION_STEPS + tuple(f"  ({p})" for p in PARTS) + ("perception_node",)
             + VISUALIZATION_STEPS + ("visualization_node", "both_nodes", "both_without_crops"))  # fmt: skip
    for name in names:
        key = name.strip(" ()")
        lines.append(f"| {name} | " + " | ".join(_fmt(r["ms"].get(key)) for r in rows) + " |")
    lines.append("| peak RSS (MiB) | " + " | ".join(f"{r['peak_rss_mb']:.0f}" for r in rows) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pn-bench-host", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--sizes", nargs="+", default=[f"{w}x{h}" for h, w in SIZES], help="WxH")
    p.add_argument("--regions", nargs="+", type=int, default=list(REGION_COUNTS))
    p.add_argument("--device", default="cpu", help="where masks and crops live: cpu, cuda")
    p.add_argument("--repeats", type=int, default=5, help="best of this many calls per step")
    p.add_argument("--pipeline", action="store_true", help="whole Pipeline on the demo photos")
    p.add_argument("--precision", default="fp32", help="--pipeline: sam.precision")
    p.add_argument("--backend", default=None, help="--pipeline: sam.backend (default: config's)")
    p.add_argument("--config-file", default=None, help="--pipeline: the node's parameter YAML")
    p.add_argument("--quick", action="store_true", help="--pipeline: pn-demo --quick's tiny models")
    p.add_argument("--photos", nargs="+", default=list(DEMO_PHOTOS), help="--pipeline: photos")
    p.add_argument("--max-side", type=int, default=DEMO_MAX_SIDE, help="--pipeline: photo size")
    p.add_argument("--baseline", default=None, metavar="REV",
                   help="also time git revision REV's code, each configuration side by side")  # fmt: skip
    p.add_argument("--out", default="outputs/bench/host.json")
    p.add_argument("--package", default=None, help=argparse.SUPPRESS)
    p.add_argument("--one", nargs=3, type=int, metavar=("H", "W", "N"), help=argparse.SUPPRESS)
    p.add_argument("--pipeline-child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:  # child: one configuration, JSON on the last stdout line
        print(json.dumps(one_config(*args.one, args.device, args.repeats, args.package)))
        return 0
    if args.pipeline_child:
        from perception_nodes.tools.bench_host_pipeline import pipeline_run

        print(json.dumps(pipeline_run(args)))
        return 0
    common = ["--device", args.device, "--repeats", str(args.repeats)]
    report = {"hardware": hardware_info(args.device), "threads": 1}
    if args.pipeline:
        extra = ["--precision", args.precision, "--max-side", str(args.max_side),
                 "--photos", *args.photos]  # fmt: skip
        extra += ["--config-file", args.config_file] if args.config_file else []
        extra += (["--backend", args.backend] if args.backend else []) + (
            ["--quick"] if args.quick else []
        )
        report["pipeline"] = _child(["--pipeline-child", *common, *extra])
        print(json.dumps(report["pipeline"], indent=1))
    else:
        rows, before, rev = [], [], None
        if args.baseline:
            from perception_nodes.tools.bench_host_baseline import extract_revision

            rev, package = extract_revision(args.baseline)
        for size in args.sizes:
            w, h = (int(v) for v in size.lower().split("x"))
            for n in args.regions:
                one = ["--one", str(h), str(w), str(n), *common]
                if rev:  # the revision's run first, then the working tree's, one after the other
                    before.append(_child([*one, "--package", str(package)]))
                rows.append(_child(one))
        report["host"] = rows
        if rev:
            from perception_nodes.tools.bench_host_baseline import side_by_side

            report["baseline"], report["baseline_rev"] = before, rev
            print(host_table(side_by_side(before, rows, rev)))
        else:
            print(host_table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
