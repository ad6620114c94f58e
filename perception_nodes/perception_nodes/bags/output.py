"""The output folder of one recording, written in parts so that a stop at any moment leaves it
valid and a later run (``--resume``) does every frame exactly once.

Layout of ``<DIR>/<name>/``::

    bag/metadata.yaml, bag/<name>_<part>.mcap   rosbag2 (MCAP, one file per part; ros2 bag
                                                 reads split bags, rosbags too)
    journal/part_<n>.jsonl                       one line per frame of part n (status, training
                                                 annotations); part_<n>.done when committed
    images/<camera>/<index>.png, panoptic/...    frames and their panoptic PNGs
    instances.json, psg.json                     training data (rebuilt from committed parts)
    run.json                                     the settings of the run (a resume must match)

A part is written by ``rosbags`` into ``bag/.part_<n>/`` and committed by: closing the MCAP
(footer, index), moving it into ``bag/``, writing ``part_<n>.done``, then rewriting
``metadata.yaml`` and the training files (each via a temporary file and a rename). Whatever is
not committed (a kill -9 in the middle of a part) is removed by the next run and redone.
ROS-free: messages arrive serialized.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from perception_nodes.bags.training_data import write_training_files

PART_PREFIX = "part_"


class OutputError(ValueError):
    """The output folder cannot be used (exists, not writable, or from a different run)."""


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def check_writable(folder: Path) -> None:
    """:class:`OutputError` unless ``folder`` (or its nearest existing parent) can be written."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(
            f"output folder {folder} is not writable ({probe} is not a writable folder)"
        )


def prepare(out: Path, run_info: dict, resume: bool, overwrite: bool) -> None:
    """Create ``out`` for a new run, or check it for ``resume`` (same ``run_info``) and remove
    what an interrupted run left uncommitted."""
    check_writable(out.parent)
    if out.exists() and overwrite:
        shutil.rmtree(out)
    if out.exists() and not resume:
        raise OutputError(
            f"output {out} exists already: --resume continues it, --overwrite replaces it"
        )
    if out.exists():
        _check_same_run(out, run_info)
        _remove_uncommitted(out)
    else:
        try:
            for sub in ("bag", "journal", "images", "panoptic"):
                (out / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {out}: {exc}") from exc
        _atomic_write(out / "run.json", json.dumps(run_info, indent=1, sort_keys=True))


def _check_same_run(out: Path, run_info: dict) -> None:
    try:
        before = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputError(f"{out} is not an output of pn-process-bag (run.json: {exc})") from exc
    changed = sorted(k for k in set(before) | set(run_info) if before.get(k) != run_info.get(k))
    if changed:
        raise OutputError(
            f"cannot resume {out}: the run differs in {changed} (resume with the same input, "
            "parameters and options, or use --overwrite)"
        )


def _committed(out: Path) -> list[int]:
    return sorted(int(p.stem[len(PART_PREFIX) :]) for p in (out / "journal").glob("part_*.done"))


def _remove_uncommitted(out: Path) -> None:
    done = set(_committed(out))
    for p in (out / "journal").glob("part_*.jsonl"):
        if int(p.stem[len(PART_PREFIX) :]) not in done:
            p.unlink()
    for p in (out / "bag").iterdir():
        if p.name.startswith(".part_"):
            shutil.rmtree(p)
        elif p.suffix == ".mcap" and int(p.stem.rsplit("_", 1)[1]) not in done:
            p.unlink()
    rebuild(out)  # a stop between a part's marker and its metadata left them behind


def journal(out: Path) -> list[dict]:
    """Every record of the committed parts, in order."""
    records = []
    for n in _committed(out):
        with open(out / "journal" / f"{PART_PREFIX}{n:04d}.jsonl", encoding="utf-8") as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def done_keys(out: Path) -> set[str]:
    return {r["key"] for r in journal(out)}


def last_track_id(records: list[dict]) -> int:
    """The highest track id among journal ``records`` (0: none): a resumed run's ids follow it."""
    return max((int(g["track_id"]) for r in records for g in r.get("regions", ())), default=0)


def _merged_metadata(out: Path) -> dict | None:
    infos = []
    for n in _committed(out):
        path = out / "journal" / f"{PART_PREFIX}{n:04d}.bag.yaml"
        infos.append(
            yaml.safe_load(path.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
        )
    infos = [i for i in infos if i["message_count"] > 0]
    if not infos:
        return None
    merged = dict(infos[0])
    topics: dict[str, dict] = {}
    for info in infos:
        for t in info["topics_with_message_count"]:
            entry = topics.setdefault(t["topic_metadata"]["name"], {**t, "message_count": 0})
            entry["message_count"] += t["message_count"]
    start = min(i["starting_time"]["nanoseconds_since_epoch"] for i in infos)
    end = max(
        i["starting_time"]["nanoseconds_since_epoch"] + i["duration"]["nanoseconds"] for i in infos
    )
    merged.update(
        relative_file_paths=[f for i in infos for f in i["relative_file_paths"]],
        files=[f for i in infos for f in i["files"]],
        topics_with_message_count=list(topics.values()),
        message_count=sum(i["message_count"] for i in infos),
        starting_time={"nanoseconds_since_epoch": start},
        duration={"nanoseconds": end - start},
    )
    return {"rosbag2_bagfile_information": merged}


def rebuild(out: Path) -> None:
    """``bag/metadata.yaml`` and the training files from the committed parts."""
    meta = _merged_metadata(out)
    if meta is not None:
        _atomic_write(out / "bag" / "metadata.yaml", yaml.safe_dump(meta, sort_keys=False))
    write_training_files(out, journal(out))


class PartWriter:
    """One part: an MCAP written with rosbags plus its journal lines (see module docstring).

    ``output_typestore``: rosbags typestore with the output types (perception_msgs registered);
    input topics (``--copy-inputs``) are added with the typestore of the recording they come from.
    """

    def __init__(self, out: Path, name: str, number: int, output_typestore) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.out, self.name, self.number = out, name, number
        self.tmp = out / "bag" / f".part_{number:04d}"
        self.writer = Writer(self.tmp, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.typestore = output_typestore
        self.connections: dict[str, object] = {}
        self.journal_path = out / "journal" / f"{PART_PREFIX}{number:04d}.jsonl"
        self._journal = open(self.journal_path, "a", encoding="utf-8")
        self.records = 0

    def write(self, topic: str, msgtype: str, log_ns: int, data: bytes, typestore=None) -> None:
        conn = self.connections.get(topic)
        if conn is None:
            conn = self.writer.add_connection(topic, msgtype, typestore=typestore or self.typestore)
            self.connections[topic] = conn
        self.writer.write(conn, int(log_ns), data)

    def record(self, entry: dict) -> None:
        """One journal line (flushed: a committed part's journal is complete)."""
        self._journal.write(json.dumps(entry) + "\n")
        self._journal.flush()
        self.records += 1

    def commit(self) -> None:
        """Close the MCAP, move it into ``bag/``, mark the part done, rebuild the folder's files."""
        self._journal.close()
        self.writer.close()
        mcap = self.tmp / f"{self.tmp.name}.mcap"
        final = self.out / "bag" / f"{self.name}_{self.number}.mcap"
        meta = yaml.safe_load((self.tmp / "metadata.yaml").read_text(encoding="utf-8"))
        info = meta["rosbag2_bagfile_information"]
        info["relative_file_paths"] = [final.name]
        for f in info["files"]:
            f["path"] = final.name
        if info["message_count"]:
            os.replace(mcap, final)
        shutil.rmtree(self.tmp)  # an empty part (every frame failed) leaves no MCAP
        part = self.out / "journal" / f"{PART_PREFIX}{self.number:04d}"
        _atomic_write(part.with_suffix(".bag.yaml"), yaml.safe_dump(meta, sort_keys=False))
        _atomic_write(part.with_suffix(".done"), "")
        rebuild(self.out)

    def abort(self) -> None:
        """Drop a part without records (nothing to commit)."""
        self._journal.close()
        self.writer.abort()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.journal_path.unlink(missing_ok=True)


def next_part_number(out: Path) -> int:
    done = _committed(out)
    return (done[-1] + 1) if done else 0


def output_typestore():
    """rosbags typestore of ROS 2 Kilted's standard messages plus ``perception_msgs`` (read from
    its installed ``share/perception_msgs/msg/*.msg``), for the definitions embedded in the bag."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    try:
        share = Path(get_package_share_directory("perception_msgs"))
    except PackageNotFoundError as exc:
        raise OutputError(
            "perception_msgs is not installed (build the workspace or run scripts/setup.sh)"
        ) from exc
    types = {}
    for msg in sorted((share / "msg").glob("*.msg")):
        types.update(
            get_types_from_msg(msg.read_text(encoding="utf-8"), f"perception_msgs/msg/{msg.stem}")
        )
    store.register(types)
    return store
