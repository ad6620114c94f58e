"""pn-process-bag on recordings written here with rosbags (MCAP and sqlite3; raw and compressed
colour, depth, CameraInfo, two cameras, a corrupt frame, frames stamped out of order).

One run of the command over three recordings (module fixture) is checked from every side: the
output MCAP read back with rosbags and every message deserialized with rclpy's own
serialization, one output per input frame stamped like it, COCO in pycocotools, OpenPSG in the
project's reader and a relation head trained on it, the same regions and labels as the live node
gives over DDS. Then refusals, SIGINT and resume, and Ray (two workers, the same three
recordings) against the single process.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bag_fixtures import params_file, write_recording, write_ros1_bag
from e2e_fixtures import camera_io, start_graph, wait_for, wait_graph_for

from perception_nodes.tools.process_bag import main

# 4 prompts per frame (the suite's 2 cores); no tracking: relations of unconfirmed tracks are
# held back, and these frames are different photos (no track lasts), so there would be none
FAST = {"amg.points_per_side": 2, "tracking.enabled": False}
OUTPUT_TOPICS = ("scene_graph", "regions", "label_image", "overlay/compressed", "markers")


def read_bag(folder: Path) -> list[tuple[str, str, int, bytes]]:
    """``(topic, type, log_ns, raw)`` of every message of a rosbag2 folder, each message also
    deserialized by rosbags (with the definitions embedded in the bag)."""
    from rosbags.highlevel import AnyReader

    out = []
    with AnyReader([folder]) as reader:
        for c, t, raw in reader.messages():
            reader.deserialize(raw, c.msgtype)
            out.append((c.topic, c.msgtype, t, bytes(raw)))
    return out


def get_message(msgtype: str):
    """The rclpy class of ``pkg/msg/Name``."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def rclpy_messages(folder: Path, topic: str) -> list:
    from rclpy.serialization import deserialize_message

    return [deserialize_message(raw, get_message(typ)) for t, typ, _, raw in read_bag(folder)
            if t == topic]  # fmt: skip


def journal(out: Path) -> list[dict]:
    lines = []
    for part in sorted((out / "journal").glob("part_*.jsonl")):
        if part.with_suffix(".done").exists():
            lines += [json.loads(x) for x in part.read_text().splitlines() if x.strip()]
    return lines


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Three recordings processed in one run (models loaded once)."""
    root = tmp_path_factory.mktemp("bags")
    recs = {
        "mixed": write_recording(
            root / "in" / "mixed", "mcap", n_front=3, n_rear=2, corrupt=True, out_of_order=True
        ),
        "old": write_recording(root / "in" / "old", "sqlite3", n_front=1, n_rear=1, seed=1),
        "single": write_recording(root / "in" / "single", "mcap", n_front=1, n_rear=0, seed=2),
    }
    params = params_file(root, **FAST)
    # one torch thread here and in each Ray worker: the same numbers (test_ray_...)
    argv = [str(root / "in"), "--params", str(params), "--copy-inputs", "--no-progress",
            "--threads", "1"]  # fmt: skip
    # models here (no worker to start): workers write the same (test_process_bag_workers.py)
    assert main([*argv, "--workers", "0", "--output", str(root / "out")]) == 0
    return {"root": root, "recs": recs, "params": params, "argv": argv, "out": root / "out"}


def test_output_bag_reads_back_with_rosbags_and_rclpy(work):
    from rclpy.serialization import deserialize_message

    for name, rec in work["recs"].items():
        messages = read_bag(work["out"] / name / "bag")
        assert messages, name
        for _, typ, _, raw in messages:  # every message with rclpy too (rosbags: read_bag)
            deserialize_message(raw, get_message(typ))
        inputs = read_bag(rec.path)
        for cam, stamps in rec.frames.items():
            good = [s for i, s in enumerate(stamps) if f"{cam}#{i}" not in rec.corrupt]
            for out_name in OUTPUT_TOPICS:
                topic = f"{cam}/perception/{out_name}"
                got = rclpy_messages(work["out"] / name / "bag", topic)
                headers = [m.markers[0].header if out_name == "markers" else m.header for m in got]
                assert sorted(h.stamp.sec * 10**9 + h.stamp.nanosec for h in headers) == (
                    sorted(good)
                ), (name, topic)  # one output per decodable input frame, stamped like it
        copied = {t for t, *_ in messages} & {t for t, *_ in inputs}
        camera_inputs = [m for m in inputs if m[0] != "/other/status"]
        assert sorted(m for m in messages if m[0] in copied) == sorted(camera_inputs)


def test_corrupt_frame_is_logged_and_counted_not_fatal(work):
    summary = json.loads((work["out"] / "mixed" / "summary.json").read_text())
    assert summary["failed"] == 1 and summary["processed"] == 4 and not summary["interrupted"]
    failed = [r for r in journal(work["out"] / "mixed") if r["status"] == "failed"]
    assert [r["key"] for r in failed] == ["/rear#1"] and "decode" in failed[0]["error"]


def test_out_of_order_frame_gets_its_own_depth(work):
    graphs = rclpy_messages(work["out"] / "mixed" / "bag", "/front/perception/scene_graph")
    assert len(graphs) == 3
    for g in graphs:  # every /front frame had its depth (3D centroids), the late-stamped one too
        z = np.array([r.centroid.z for r in g.regions])
        assert len(z) and np.all(np.isfinite(z)) and np.all((z >= 1.0) & (z <= 2.0)), g.header


def test_coco_output_loads_in_pycocotools_and_masks_are_the_regions(work):
    from pycocotools.coco import COCO

    from perception_nodes.core.output.rle import decode_mask
    from perception_nodes.training.coco_dataset import load_coco

    out = work["out"] / "mixed"
    coco = COCO(str(out / "instances.json"))
    graphs = {
        (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec): m
        for cam in ("/front", "/rear")
        for m in rclpy_messages(out / "bag", f"{cam}/perception/scene_graph")
    }
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [
        "person",
        "cup",
        "rocket",
        "cat",
    ]
    assert len(coco.getImgIds()) == 4
    checked = 0
    for image in coco.loadImgs(coco.getImgIds()):
        assert (out / image["file_name"]).is_file()
        graph = graphs[image["stamp_ns"]]
        regions = {r.id: r for r in graph.regions}
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            region = regions[ann["region_id"]]
            expected = decode_mask(region.mask_height, region.mask_width, list(region.mask_counts))
            assert np.array_equal(coco.annToMask(ann).astype(bool), expected)
            assert ann["category_id"] == region.label_index + 1 and ann["score"] == pytest.approx(
                region.label_score
            )
            checked += 1
    assert checked > 0
    assert len(load_coco(out / "instances.json").images) > 0  # the RegionSpot trainer's reader


def test_psg_output_loads_and_a_relation_head_trains_on_it(work, tmp_path):
    from perception_nodes.tools import train_relations
    from perception_nodes.training.psg import load_psg

    out = work["out"] / "mixed"
    dataset = load_psg(out / "psg.json")
    assert dataset.images and dataset.predicate_classes
    for image in dataset.images:
        masks = dataset.load_masks(image)
        assert masks.shape[0] == len(image.segments) and all(m.any() for m in masks)
        assert dataset.load_image(image).shape[:2] == (image.height, image.width)
    assert sum(len(im.relations) for im in dataset.images) > 0
    sam = next((work["root"] / "cache").rglob("sam_sam_tiny_test_seed0.pth"))
    argv = ["--psg-json", str(out / "psg.json"), "--mode", "gt-boxes", "--sam-model",
            "sam_tiny_test", "--sam-checkpoint", str(sam), "--device", "cpu", "--val-split", "none",
            "--width", "32", "--heads", "2", "--ff-dim", "32", "--layers", "1", "--pred-dim", "8",
            "--epochs", "2", "--ks", "5", "--out-dir", str(tmp_path), "--no-progress"]  # fmt: skip
    assert train_relations.main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train_counts"]["kept"] > 0 and metrics["history"]
    assert (tmp_path / "relation_head.pt").is_file()


def _same_graphs(a, b, same_header: bool = True) -> None:
    """Two SceneGraphs of the same frame from two processes: masks, ids, labels and relations
    equal; scores and centroids equal up to float noise (torch's CPU kernels may round the last
    bits differently from one process to another)."""
    assert a.header == b.header or not same_header
    assert len(a.regions) == len(b.regions) > 0
    for p, q in zip(a.regions, b.regions):
        assert (p.id, p.track_id, p.label, p.label_index, list(p.mask_counts)) == (
            q.id, q.track_id, q.label, q.label_index, list(q.mask_counts)
        )  # fmt: skip
        assert p.label_score == pytest.approx(q.label_score, abs=1e-4)
        assert [p.centroid.x, p.centroid.y, p.centroid.z] == pytest.approx(
            [q.centroid.x, q.centroid.y, q.centroid.z], abs=1e-4, nan_ok=True
        )
    assert [(r.subject_id, r.object_id, r.predicate) for r in a.relations] == [
        (r.subject_id, r.object_id, r.predicate) for r in b.relations
    ]
    assert [r.score for r in a.relations] == pytest.approx([r.score for r in b.relations], abs=1e-4)


def test_regionspot_head_trains_on_the_coco_output(work, tmp_path):
    from perception_nodes.tools import train_regionspot

    out, cache = work["out"] / "mixed", work["root"] / "cache"
    argv = ["--annotations", str(out / "instances.json"), "--images-dir", str(out),
            "--sam-model", "sam_tiny_test", "--sam-checkpoint",
            str(next(cache.rglob("sam_sam_tiny_test_seed0.pth"))), "--clip-model",
            "pn-clip-tiny-test", "--clip-checkpoint",
            str(next(cache.rglob("clip_pn-clip-tiny-test_seed0.pt"))), "--cache-dir",
            str(tmp_path / "cache"), "--val-fraction", "0.25", "--batch-size", "2", "--layers", "1",
            "--heads", "2", "--steps", "3", "--no-progress", "--quiet", "--device", "cpu",
            "--out-dir", str(tmp_path / "run")]  # fmt: skip
    assert train_regionspot.main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["final"]["steps"] == 3 and metrics["num_categories"] == 4
    assert (tmp_path / "run" / "last.pt").is_file()


@pytest.mark.ros
def test_same_regions_and_labels_as_the_live_node(work, ros_context, tmp_path_factory):
    """The 'single' recording's frame through the perception node over DDS (same parameter
    file: start_graph writes the e2e small-model overrides into the same cache) and offline."""
    from e2e_fixtures import publish_frame

    rec = work["recs"]["single"]
    offline = rclpy_messages(work["out"] / "single" / "bag", "/front/perception/scene_graph")[0]
    graph = start_graph(work["root"], **FAST)
    try:
        with camera_io(ros_context, graph) as (pubs, receiver):
            header = publish_frame(
                pubs, rec.images["/front#0"], stamp_sec=5, depth=rec.depths["/front#0"]
            )
            live = wait_graph_for(receiver, header, graph)
    finally:
        graph.stop()
    _same_graphs(live, offline, same_header=False)


def test_ros1_bag_is_read_too(work, tmp_path, capsys):
    rec = write_ros1_bag(tmp_path / "legacy.bag")
    # the reading is checked here: models in this process (no worker processes to start)
    argv = [str(rec.path), "--params", str(work["params"]), "--no-progress", "--threads", "1",
            "--workers", "0"]  # fmt: skip
    err = _refusal([*argv, "--copy-inputs", "--output", str(tmp_path / "o")], capsys)
    assert "--copy-inputs needs a rosbag2 recording" in err
    assert main([*argv, "--output", str(tmp_path / "out")]) == 0
    graphs = rclpy_messages(tmp_path / "out" / "legacy" / "bag", "/cam/perception/scene_graph")
    assert [(g.header.stamp.sec, g.header.frame_id) for g in graphs] == [(5, "cam")]
    assert graphs[0].regions


# ---------------------------------------------------------------------- refusals


def _refusal(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_refuses_a_path_that_is_not_a_bag(work, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    err = _refusal([str(text), "--output", str(tmp_path / "o")], capsys)
    assert "not a readable recording" in err
    err = _refusal([str(tmp_path / "missing.mcap"), "--output", str(tmp_path / "o")], capsys)
    assert "no such file" in err


def test_refuses_a_bag_without_image_topics_listing_its_topics(tmp_path, capsys):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    with Writer(tmp_path / "noimg", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        w.write(c, 1, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="x"), c.msgtype))
    err = _refusal([str(tmp_path / "noimg"), "--output", str(tmp_path / "o")], capsys)
    assert "no camera image topics" in err and "/chatter  (std_msgs/msg/String)" in err


def test_refuses_unknown_topics_and_cameras(work, tmp_path, capsys):
    bag = str(work["recs"]["single"].path)
    err = _refusal([bag, "--output", str(tmp_path / "o"), "--image-topic", "/nope"], capsys)
    assert "unknown topic '/nope'" in err and "/front/image_raw  (sensor_msgs/msg/Image)" in err
    err = _refusal([bag, "--output", str(tmp_path / "o"), "--cameras", "/left"], capsys)
    assert "camera '/left'" in err


def test_refuses_unwritable_and_existing_outputs_and_bad_parameters(work, tmp_path, capsys):
    bag = str(work["recs"]["single"].path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = _refusal([bag, "--output", str(blocker / "out")], capsys)
    assert "not writable" in err
    err = _refusal([bag, "--output", str(work["out"])], capsys)
    assert "exists already" in err and "--resume" in err and "--overwrite" in err
    err = _refusal(
        [bag, "--output", str(tmp_path / "o"), "--set", "amg.points_per_side=999"], capsys
    )
    assert "amg.points_per_side" in err
    err = _refusal([bag, "--output", str(tmp_path / "o"), "--set", "sam.modle=vit_b"], capsys)
    assert "unknown perception_node parameters ['sam.modle']" in err


# ---------------------------------------------------------------------- interrupt and resume


def _stop_after_a_part(argv: list[str], out: Path, sig: int) -> int:
    """Run the command in a process, send ``sig`` once it committed a part; its exit code."""
    before = len(list((out / "journal").glob("*.done"))) if out.exists() else 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "perception_nodes.tools.process_bag", *argv],
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(
            lambda: proc.poll() is not None or len(list((out / "journal").glob("*.done"))) > before,
            300,
        )
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert "--resume" in err, err[-3000:]
    return proc.returncode


def test_sigint_then_kill_then_resume_processes_every_frame_exactly_once(work, tmp_path):
    rec = write_recording(tmp_path / "long", "mcap", n_front=3, n_rear=1, seed=3)
    out = tmp_path / "out"
    # one worker process (the default path's stop, kill and resume; one model load per run)
    argv = [str(rec.path), "--output", str(out), "--params", str(work["params"]),
            "--part-frames", "1", "--no-progress", "--workers", "1"]  # fmt: skip
    assert _stop_after_a_part(argv, out / "long", signal.SIGINT) == 130
    first = journal(out / "long")
    assert 1 <= len(first) < 4
    assert len(read_bag(out / "long" / "bag")) == 5 * len(first)  # valid and readable as is
    # a kill -9 in the middle of the resumed run: its part in progress is lost, redone below
    assert _stop_after_a_part([*argv, "--resume"], out / "long", signal.SIGKILL) == -signal.SIGKILL
    # still readable (the killed part is not listed; a kill between a part's marker and the
    # metadata rewrite leaves that part unlisted until the next run rebuilds it)
    assert len(read_bag(out / "long" / "bag")) <= 5 * len(journal(out / "long"))
    assert main([*argv, "--resume"]) == 0
    keys = [r["key"] for r in journal(out / "long") if r["status"] == "ok"]
    assert sorted(keys) == ["/front#0", "/front#1", "/front#2", "/rear#0"]  # each exactly once
    graphs = rclpy_messages(out / "long" / "bag", "/front/perception/scene_graph")
    assert sorted(g.header.stamp.sec * 10**9 + g.header.stamp.nanosec for g in graphs) == sorted(
        rec.frames["/front"]
    )
    assert not [p for p in (out / "long" / "bag").iterdir() if p.name.startswith(".part_")]
    from pycocotools.coco import COCO

    assert len(COCO(str(out / "long" / "instances.json")).getImgIds()) == 4


# ---------------------------------------------------------------------- Ray


def test_ray_two_workers_over_three_recordings_match_one_process(work):
    pytest.importorskip("ray")
    out = work["root"] / "ray_out"
    argv = [
        *work["argv"],
        "--output",
        str(out),
        "--ray",
        "--workers",
        "2",
        "--cpus-per-worker",
        "1",
    ]
    assert main(argv) == 0
    for name, rec in work["recs"].items():
        one, two = work["out"] / name, out / name
        a, b = read_bag(one / "bag"), read_bag(two / "bag")
        assert sorted((t, log) for t, _, log, _ in a) == sorted((t, log) for t, _, log, _ in b)
        for cam in rec.frames:  # the same masks: label images equal pixel for pixel
            # (compared deserialized: the CDR alignment padding bytes are not initialized)
            topic = f"{cam}/perception/label_image"
            assert rclpy_messages(one / "bag", topic) == rclpy_messages(two / "bag", topic)
            topic = f"{cam}/perception/scene_graph"
            for ga, gb in zip(
                rclpy_messages(one / "bag", topic), rclpy_messages(two / "bag", topic)
            ):
                _same_graphs(ga, gb)
        ca, cb = (json.loads((d / "instances.json").read_text()) for d in (one, two))
        for x, y in zip(ca["annotations"], cb["annotations"]):
            assert x["score"] == pytest.approx(y["score"], abs=1e-4)
            assert {**x, "score": 0} == {**y, "score": 0}
        assert len(ca["annotations"]) == len(cb["annotations"]) and ca["images"] == cb["images"]
