"""pn-process-bag's worker processes, track ids across a resume, and the output MCAP checked as
``ros2 bag info`` reads it (without ROS's own tools: rosbags' MCAP reader).

One recording of still cameras (tracks last from frame to frame) is processed frame after frame
in this process (``--workers 0``: :meth:`Pipeline.process`, the node's path) and by two worker
processes (models in the workers, tracking and writing here in frame order): the outputs must be
equal, message for message, with the same track ids.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import yaml
from bag_fixtures import params_file, write_recording
from test_process_bag import OUTPUT_TOPICS, journal, rclpy_messages, read_bag

from perception_nodes.tools.process_bag import main

SMALL = {"amg.points_per_side": 2}  # 4 prompts per frame (the suite's 2 cores); tracking on


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    rec = write_recording(root / "in" / "still", "mcap", n_front=3, n_rear=1, still=True)
    params = params_file(root, **SMALL)
    argv = [str(rec.path), "--params", str(params), "--no-progress", "--threads", "1",
            "--batch", "2"]  # fmt: skip
    for workers in ("0", "2"):
        assert main([*argv, "--workers", workers, "--output", str(root / workers)]) == 0
    return {"rec": rec, "params": params, "root": root}


def _plain(value):
    """A message as nested lists/dicts, NaN as a string: equal messages compare equal (NaN
    centroids of frames without depth too)."""
    if hasattr(value, "get_fields_and_field_types"):
        return {f: _plain(getattr(value, f)) for f in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        value = value.tolist() if hasattr(value, "tolist") else value
        return [_plain(v) for v in value] if isinstance(value, list) else _plain(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def test_workers_write_what_frame_after_frame_writes(runs):
    one, two = runs["root"] / "0" / "still", runs["root"] / "2" / "still"
    a, b = read_bag(one / "bag"), read_bag(two / "bag")
    assert sorted((t, log) for t, _, log, _ in a) == sorted((t, log) for t, _, log, _ in b)
    for cam in runs["rec"].frames:
        for name in OUTPUT_TOPICS:  # compared deserialized (CDR padding bytes are not set)
            topic = f"{cam}/perception/{name}"
            got = [_plain(m) for m in rclpy_messages(two / "bag", topic)]
            assert got == [_plain(m) for m in rclpy_messages(one / "bag", topic)], topic
    for name in ("instances.json", "psg.json"):
        assert json.loads((one / name).read_text()) == json.loads((two / name).read_text())
    graphs = rclpy_messages(two / "bag", "/front/perception/scene_graph")
    assert any(r.track_id > 0 for g in graphs for r in g.regions)  # tracking was exercised


def _mcap_info(path: Path) -> dict:
    """What ``ros2 bag info`` shows of one MCAP file, from its summary section (statistics,
    schemas, channels), each count checked against the messages actually read."""
    from rosbags.rosbag2.storage_mcap import McapReader

    reader = McapReader(path)
    reader.open()
    try:
        stats = reader.statistics
        counts: dict[str, int] = {}
        times = []
        for conn, log_ns, _ in reader.messages(reader.connections):
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            times.append(log_ns)
        topic_of = {c.id: c.topic for c in reader.channels.values()}
        assert {topic_of[i]: n for i, n in stats.channel_message_counts.items()} == counts
        assert stats.message_count == len(times) > 0
        assert (stats.start_time, stats.end_time) == (min(times), max(times))
        assert {s.encoding for s in reader.schemas.values()} == {"ros2msg"}
        assert {c.message_encoding for c in reader.channels.values()} == {"cdr"}
        types = {c.topic: c.schema for c in reader.channels.values()}
        return {"counts": counts, "start": min(times), "end": max(times), "types": types}
    finally:
        reader.close()


def test_output_bag_info_as_ros2_bag_info_reads_it(runs):
    """``ros2 bag info`` reads metadata.yaml (files, counts per topic, types, serialization,
    start, duration); the MCAP files' own summaries must agree with it and with their messages.
    (``ros2 bag info`` itself needs a ROS install with rosbag2's MCAP plugin: not here.)"""
    bag = runs["root"] / "2" / "still" / "bag"
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == "mcap" and info["relative_file_paths"]
    files = [_mcap_info(bag / name) for name in info["relative_file_paths"]]
    counts: dict[str, int] = {}
    for f in files:
        for topic, n in f["counts"].items():
            counts[topic] = counts.get(topic, 0) + n
    listed = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert {name: t["message_count"] for name, t in listed.items()} == counts
    assert info["message_count"] == sum(counts.values())
    for f in files:
        for topic, msgtype in f["types"].items():
            assert listed[topic]["topic_metadata"]["type"] == msgtype
            assert listed[topic]["topic_metadata"]["serialization_format"] == "cdr"
    start, end = min(f["start"] for f in files), max(f["end"] for f in files)
    assert info["starting_time"]["nanoseconds_since_epoch"] == start
    assert info["duration"]["nanoseconds"] in (end - start, end - start + 1)
    for cam, stamps in runs["rec"].frames.items():  # one message per frame per output topic
        for name in OUTPUT_TOPICS:
            assert counts[f"{cam}/perception/{name}"] == len(stamps)


def test_resumed_run_never_reuses_a_track_id(tmp_path, monkeypatch):
    """Stopped after three committed parts (one frame each), then resumed: the resumed part's
    track ids all come after the ids written before the stop."""
    from perception_nodes.bags import output
    from perception_nodes.bags.runner import JobOptions
    from perception_nodes.bags.settings import load_settings
    from perception_nodes.tools.process_bag import load_engine, run_local

    rec = write_recording(tmp_path / "in" / "long", "mcap", n_front=5, n_rear=1, still=True)
    settings = load_settings(params_file(tmp_path, **SMALL))
    opts = JobOptions(part_frames=1, progress=False, threads=1)
    engine = load_engine(settings, opts)
    stop, commit = threading.Event(), output.PartWriter.commit

    def commit_then_stop(self) -> None:
        commit(self)
        if output.next_part_number(self.out) >= 3:
            stop.set()

    monkeypatch.setattr(output.PartWriter, "commit", commit_then_stop)
    (first,) = run_local([rec.path], tmp_path / "out", settings, opts, stop, engine)
    assert first.interrupted and first.processed == 3
    before = journal(tmp_path / "out" / "long")
    monkeypatch.setattr(output.PartWriter, "commit", commit)
    opts.resume = True
    (second,) = run_local([rec.path], tmp_path / "out", settings, opts, threading.Event(), engine)
    assert not second.interrupted and second.processed == 3
    after = journal(tmp_path / "out" / "long")[len(before) :]
    ids_before = {g["track_id"] for r in before for g in r["regions"]} - {0}
    ids_after = {g["track_id"] for r in after for g in r["regions"]} - {0}
    assert ids_before and ids_after  # confirmed tracks on both sides of the resume point
    assert min(ids_after) > max(ids_before)
