"""pn-process-bag's reading side without models: cameras found in a recording's topics, frames
chosen by --start/--end/--every, depth paired by stamp, parameter files mapped like the node's."""

from __future__ import annotations

import numpy as np
import pytest
from bag_fixtures import LOG_STEP_NS, params_file, write_recording

from perception_nodes.bags.frames import Window, open_recording, read_frames
from perception_nodes.bags.settings import SettingsError, load_settings
from perception_nodes.bags.topics import TopicError, find_cameras, named_camera

IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
INFO = "sensor_msgs/msg/CameraInfo"


def test_cameras_found_per_namespace_with_depth_and_info():
    types = {
        "/front/image_raw": IMAGE, "/front/depth/image_raw": IMAGE, "/front/camera_info": INFO,
        "/rear/image_raw/compressed": COMPRESSED, "/rear/image_raw": IMAGE, "/tf": "tf2_msgs/msg/TFMessage",
    }  # fmt: skip
    cams = {c.namespace: c for c in find_cameras(types)}
    assert sorted(cams) == ["/front", "/rear"]  # the depth topic is not a camera of its own
    assert (cams["/front"].depth, cams["/front"].info) == (
        "/front/depth/image_raw",
        "/front/camera_info",
    )
    assert cams["/rear"].colour == "/rear/image_raw" and cams["/rear"].depth is None
    rear = find_cameras(types, prefer_compressed=True, cameras=["/rear"])  # use_compressed: true
    assert [(c.colour, c.compressed) for c in rear] == [("/rear/image_raw/compressed", True)]
    assert find_cameras(types, use_depth=False)[0].depth is None
    cam = named_camera(types, "/rear/image_raw/compressed")
    assert (cam.namespace, cam.compressed) == ("/rear", True)
    with pytest.raises(TopicError, match="is a tf2_msgs/msg/TFMessage"):
        named_camera(types, "/tf")


def test_frames_chosen_by_window_and_every(tmp_path):
    rec = write_recording(tmp_path / "r", "mcap", n_front=5, n_rear=0)
    reader = open_recording(rec.path)
    try:
        cams = find_cameras({t: i.msgtype for t, i in reader.topics.items()})

        def keys(window):
            return [f.key for f in read_frames(reader, cams, window, 0.05, 0.1) if not f.tail]

        assert keys(Window()) == [f"/front#{i}" for i in range(5)]
        assert keys(Window(every=2)) == ["/front#0", "/front#2", "/front#4"]
        step = LOG_STEP_NS / 1e9
        assert keys(Window(start_s=0.5 * step, end_s=3.5 * step)) == [
            "/front#1",
            "/front#2",
            "/front#3",
        ]
        skipped = [f for f in read_frames(reader, cams, Window(), 0.05, 0.1, skip={"/front#1"}.__contains__)
                   if f.key == "/front#1"]  # fmt: skip
        assert skipped and skipped[0].rgb is None  # resume: done frames are not decoded
    finally:
        reader.close()


def test_depth_paired_by_stamp_even_out_of_order_and_raw_messages_kept_once(tmp_path):
    rec = write_recording(tmp_path / "r", "sqlite3", n_front=3, n_rear=2, out_of_order=True)
    reader = open_recording(rec.path)
    try:
        cams = find_cameras({t: i.msgtype for t, i in reader.topics.items()})
        frames = list(read_frames(reader, cams, Window(), 0.05, 0.1, keep_raw=True))
    finally:
        reader.close()
    front = {f.key: f for f in frames if f.camera == "/front" and not f.tail}
    assert [f.stamp_ns for f in front.values()] == rec.frames["/front"]
    for key, f in front.items():
        assert f.no_3d is None and np.array_equal(f.depth, rec.depths[key]), key
        assert f.k is not None and f.k[0, 2] == f.rgb.shape[1] / 2
    raw = [(m.topic, m.log_ns) for f in frames for m in f.raw]
    assert len(raw) == len(set(raw)) == 3 * 3 + 2  # every camera message once: 3 per front frame


def test_parameter_file_maps_like_the_node(tmp_path):
    settings = load_settings(params_file(tmp_path, **{"amg.points_per_side": 3}))
    assert settings.pipeline.amg_points_per_side == 3
    assert settings.pipeline.sam_model == "sam_tiny_test" and settings.get("use_depth") is True
    assert settings.get("depth_slop") == 0.05  # node parameters not in the file: the defaults
    with pytest.raises(SettingsError, match="sam.backend must be one of"):
        load_settings(None, {"sam.backend": "cuda-magic"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("some_node:\n  ros__parameters: {}\n")
    with pytest.raises(SettingsError, match="no 'perception_node: ros__parameters:' section"):
        load_settings(bad)
