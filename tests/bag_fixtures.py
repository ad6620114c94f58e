"""Recordings written in the tests with rosbags (no ROS needed), and the settings to process them.

:func:`write_recording` writes a rosbag2 recording (MCAP or sqlite3) of two cameras:
``/front`` raw ``rgb8`` Images with registered ``32FC1`` depth and CameraInfo (each depth and
CameraInfo logged just after its image, as image_folder_publisher sends them), and ``/rear``
JPEG CompressedImages without depth. Optional: one corrupt ``/rear`` frame (bytes that are not a
JPEG) and ``/front`` stamps out of order (the third frame stamped before the second).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from e2e_fixtures import photo, small_overrides

from perception_nodes.tools.graph_runner import write_params_file

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
SIDE = 64  # pixels: small frames, tiny models (the suite's 2 cores)
LOG_STEP_NS = 200_000_000  # 0.2 s between frames of a camera (above the default depth_wait)


@dataclass
class Recording:
    """What a written recording holds (what the tests expect back)."""

    path: Path
    frames: dict[str, list[int]] = field(default_factory=dict)  # camera -> header stamps (ns)
    corrupt: list[str] = field(default_factory=list)  # frame keys of corrupt frames
    images: dict[str, np.ndarray] = field(default_factory=dict)  # frame key -> RGB as sent
    depths: dict[str, np.ndarray] = field(default_factory=dict)  # frame key -> depth (m)


def _types():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _header(ts, stamp_ns: int, frame_id: str):
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id)


def _image(ts, header, array: np.ndarray, encoding: str):
    arr = np.ascontiguousarray(array)
    h, w = arr.shape[:2]
    data = arr.view(np.uint8).reshape(-1)
    return ts.types["sensor_msgs/msg/Image"](
        header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
        step=data.size // h, data=data,
    )  # fmt: skip


def _info(ts, header, h: int, w: int):
    f = w / 2 / np.tan(np.radians(30.0))
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=header, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([f, 0, w / 2, 0, f, h / 2, 0, 0, 1.0]), r=np.eye(3).reshape(-1),
        p=np.array([f, 0, w / 2, 0, 0, f, h / 2, 0, 0, 0, 1.0, 0]), binning_x=0, binning_y=0,
        roi=roi,
    )  # fmt: skip


def _compressed(ts, header, data: bytes):
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=header, format="jpeg", data=np.frombuffer(data, dtype=np.uint8)
    )


def write_recording(
    path: Path,
    storage: str = "mcap",
    n_front: int = 3,
    n_rear: int = 2,
    corrupt: bool = False,
    out_of_order: bool = False,
    start_ns: int = 1_700_000_000 * 10**9,
    seed: int = 0,
    still: bool = False,
) -> Recording:
    """Write the recording described in the module docstring at ``path`` (a rosbag2 folder).
    ``still``: every frame of a camera shows the same photo (tracks last from frame to frame)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = _types()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    rec = Recording(Path(path), {"/front": [], "/rear": []})
    rng = np.random.default_rng(seed)
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conn = {
            t: w.add_connection(t, m, typestore=ts)
            for t, m in {
                "/front/image_raw": "sensor_msgs/msg/Image",
                "/front/depth/image_raw": "sensor_msgs/msg/Image",
                "/front/camera_info": "sensor_msgs/msg/CameraInfo",
                "/rear/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
                "/other/status": "std_msgs/msg/String",
            }.items()
        }
        status = ts.types["std_msgs/msg/String"](data="not a camera")
        out = [(start_ns, "/other/status", ts.serialize_cdr(status, "std_msgs/msg/String"))]
        for i in range(n_front):
            rgb = photo(PHOTOS[(0 if still else i + seed) % len(PHOTOS)], SIDE)
            h, wd = rgb.shape[:2]
            stamp = start_ns + i * LOG_STEP_NS
            if out_of_order and i == 2:
                stamp = start_ns + LOG_STEP_NS // 2  # before frame 1's stamp
            log = start_ns + i * LOG_STEP_NS + 1_000_000
            header = _header(ts, stamp, "front_optical")
            depth = (1.0 + rng.random((h, wd))).astype(np.float32)
            for dt, topic, msg in (
                (0, "/front/image_raw", _image(ts, header, rgb, "rgb8")),
                (1000, "/front/depth/image_raw", _image(ts, header, depth, "32FC1")),
                (2000, "/front/camera_info", _info(ts, header, h, wd)),
            ):
                out.append((log + dt, topic, ts.serialize_cdr(msg, conn[topic].msgtype)))
            rec.frames["/front"].append(stamp)
            rec.images[f"/front#{i}"] = rgb
            rec.depths[f"/front#{i}"] = depth
        for i in range(n_rear):
            rgb = photo(PHOTOS[(1 if still else i + 1 + seed) % len(PHOTOS)], SIDE)
            stamp = start_ns + i * LOG_STEP_NS + 50_000_000
            ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            data = jpeg.tobytes()
            if corrupt and i == 1:
                data = b"this is not a jpeg" * 4
                rec.corrupt.append(f"/rear#{i}")
            else:
                rec.images[f"/rear#{i}"] = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1]
            msg = _compressed(ts, _header(ts, stamp, "rear_optical"), data)
            topic = "/rear/image_raw/compressed"
            out.append((stamp + 3_000_000, topic, ts.serialize_cdr(msg, conn[topic].msgtype)))
            rec.frames["/rear"].append(stamp)
        for log, topic, data in sorted(out, key=lambda e: e[0]):
            w.write(conn[topic], log, data)
    return rec


def params_file(folder: Path, **extra) -> Path:
    """The node's parameter file (the e2e tests' small models, depth on) for ``pn-process-bag``."""
    ov = small_overrides(folder / "cache", **extra)
    return write_params_file(ov, folder=folder)


def write_ros1_bag(path: Path, seed: int = 0) -> Recording:
    """A ROS 1 ``.bag`` (rosbags' rosbag1 writer) with one rgb8 frame on ``/cam/image_raw``."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    T = ts.types
    rgb = photo(PHOTOS[seed % len(PHOTOS)], SIDE)
    stamp = 5 * 10**9
    rec = Recording(Path(path), {"/cam": [stamp]}, images={"/cam#0": rgb})
    with Writer(path) as w:
        conn = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        header = T["std_msgs/msg/Header"](
            seq=0, stamp=T["builtin_interfaces/msg/Time"](sec=5, nanosec=0), frame_id="cam"
        )
        msg = T["sensor_msgs/msg/Image"](
            header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
            is_bigendian=0, step=rgb.shape[1] * 3, data=np.ascontiguousarray(rgb).reshape(-1),
        )  # fmt: skip
        w.write(conn, stamp, ts.serialize_ros1(msg, conn.msgtype))
    return rec
