"""Weight files: download (local http.server, no network) with resume and sha256 refusal, the
offline message, pn-fetch-weights, loader errors, and models/README.md kept in sync with the
registry."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sam_fixtures import TINY

from perception_nodes.core.sam.registry import SAM_MODELS, build_sam_model, get_spec
from perception_nodes.core.weights.files import (
    CheckpointArchitectureError,
    CheckpointCorruptedError,
    CheckpointNotFoundError,
    ChecksumMismatchError,
    DownloadError,
    cached_path,
    fetch,
    sha256_file,
)
from perception_nodes.tools import fetch_weights

REPO = Path(__file__).resolve().parents[1]
FILE = "tiny_dl.pth"


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` only when ``server.ranges``."""

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        data = srv.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        start, status = 0, 200
        rng = self.headers.get("Range")
        if srv.ranges and rng:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_error(416)
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if srv.cut_after is not None:  # simulate a dropped connection once
            body, srv.cut_after = body[: srv.cut_after], None
            self.wfile.write(body)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.ranges, srv.cut_after = {}, [], True, None
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def payload(tiny_checkpoint):
    return Path(tiny_checkpoint).read_bytes()


def _spec(port: int, payload: bytes):
    """A registry entry for the tiny architecture whose URL points at a local port."""
    return dataclasses.replace(
        get_spec(TINY),
        name="tiny_dl",
        url=f"http://127.0.0.1:{port}/{FILE}",
        filename=FILE,
        sha256=hashlib.sha256(payload).hexdigest(),
        size_bytes=len(payload),
        test_only=False,
        license="test",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fetch_verifies_and_loader_uses_it(server, payload, tmp_path, monkeypatch):
    server.files[FILE] = payload
    spec = _spec(server.server_port, payload)
    path = fetch(spec, tmp_path, progress=False)
    assert path == tmp_path / "weights" / FILE and path.read_bytes() == payload
    assert not path.with_name(FILE + ".part").exists()
    assert server.requests == [None]
    # cached + verified: a second fetch makes no request
    assert fetch(spec, tmp_path, progress=False) == path and len(server.requests) == 1
    monkeypatch.setitem(SAM_MODELS, "tiny_dl", spec)
    model = build_sam_model("tiny_dl", cache_dir=tmp_path)  # checks the sha256 again
    assert model.pn_untrained


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "no-range"])
def test_resume_from_part_file(server, payload, tmp_path, ranges):
    server.files[FILE], server.ranges = payload, ranges
    spec = _spec(server.server_port, payload)
    part = tmp_path / "weights" / (FILE + ".part")
    part.parent.mkdir(parents=True)
    half = len(payload) // 2
    part.write_bytes(payload[:half])
    path = fetch(spec, tmp_path, progress=False)
    assert server.requests == [f"bytes={half}-"]
    assert sha256_file(path) == spec.sha256 and not part.exists()


def test_dropped_connection_keeps_part_and_rerun_resumes(server, payload, tmp_path):
    server.files[FILE], server.cut_after = payload, 1 << 20
    spec = _spec(server.server_port, payload)
    with pytest.raises(DownloadError, match="re-run to resume"):
        fetch(spec, tmp_path, progress=False)
    part = tmp_path / "weights" / (FILE + ".part")
    assert part.stat().st_size == 1 << 20 and not (tmp_path / "weights" / FILE).exists()
    path = fetch(spec, tmp_path, progress=False)
    assert server.requests[-1] == f"bytes={1 << 20}-" and sha256_file(path) == spec.sha256


def test_checksum_mismatch_is_refused(server, payload, tmp_path):
    corrupted = bytearray(payload)
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.files[FILE] = bytes(corrupted)
    spec = _spec(server.server_port, payload)  # pins the sha256 of the good bytes
    with pytest.raises(ChecksumMismatchError, match=spec.sha256):
        fetch(spec, tmp_path, progress=False)
    weights = tmp_path / "weights"
    assert not (weights / FILE).exists() and not (weights / (FILE + ".part")).exists()


def test_connection_refused_gives_offline_help(payload, tmp_path, monkeypatch, capsys):
    spec = _spec(_free_port(), payload)  # nothing listens there: connection refused
    url = spec.url
    expected_path = tmp_path / "weights" / FILE
    with pytest.raises(DownloadError) as info:
        fetch(spec, tmp_path, progress=False, timeout=5)
    msg = str(info.value)
    assert str(expected_path) in msg and url in msg and spec.sha256 in msg
    assert "pn-fetch-weights tiny_dl" in msg and "missing" in msg
    # the command: same message on stderr, non-zero exit
    monkeypatch.setitem(SAM_MODELS, "tiny_dl", spec)
    rc = fetch_weights.main(
        ["tiny_dl", "--cache-dir", str(tmp_path), "--no-progress", "--timeout", "5"]
    )
    err = capsys.readouterr().err
    assert rc == 1 and str(expected_path) in err and url in err


def test_command_fetches_and_lists(server, payload, tmp_path, monkeypatch, capsys):
    server.files[FILE] = payload
    monkeypatch.setitem(SAM_MODELS, "tiny_dl", _spec(server.server_port, payload))
    assert fetch_weights.main(["--list", "--cache-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("tiny_dl"))
    assert FILE in row and row.split()[-1] == "no"
    assert all(name in table for name in ("vit_b", "vit_l", "vit_h", "vit_t"))
    assert fetch_weights.main(["tiny_dl", "--cache-dir", str(tmp_path), "--no-progress"]) == 0
    assert "sha256 verified" in capsys.readouterr().out
    fetch_weights.main(["--list", "--cache-dir", str(tmp_path)])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny_dl"))
    assert row.split()[-1] == "yes"


def test_command_usage_errors(capsys):
    for argv in (["no_such_model"], [TINY]):  # no name at all = the defaults (test_clip_weights.py)
        with pytest.raises(SystemExit) as info:
            fetch_weights.main(argv)
        assert info.value.code == 2
    assert "test-only" in capsys.readouterr().err


# ----------------------------------------------------------------------------- loading
def test_missing_file_names_path_and_fetch_command(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as info:
        build_sam_model("vit_t", cache_dir=tmp_path)
    msg = str(info.value)
    assert str(cached_path(get_spec("vit_t"), tmp_path)) in msg
    assert "pn-fetch-weights vit_t" in msg and get_spec("vit_t").url in msg
    with pytest.raises(CheckpointNotFoundError, match="state_dict"):
        build_sam_model(TINY, tmp_path / "nope.pth")


def test_corrupted_file(tiny_checkpoint, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(Path(tiny_checkpoint).read_bytes()[:100_000])
    with pytest.raises(CheckpointCorruptedError, match="truncated or corrupted"):
        build_sam_model(TINY, truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointCorruptedError):
        build_sam_model(TINY, garbage)


def test_checkpoint_of_another_architecture(tiny_checkpoint):
    with pytest.raises(CheckpointArchitectureError) as info:
        build_sam_model("vit_t", tiny_checkpoint)
    msg = str(info.value)
    assert "'vit_t' architecture" in msg and "missing keys" in msg and "shape mismatches" in msg


def test_cached_official_file_with_wrong_bytes(tiny_checkpoint, tmp_path):
    spec = get_spec("vit_t")
    path = cached_path(spec, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(Path(tiny_checkpoint).read_bytes())
    with pytest.raises(ChecksumMismatchError) as info:
        build_sam_model("vit_t", cache_dir=tmp_path)
    assert spec.sha256 in str(info.value) and "pn-fetch-weights vit_t" in str(info.value)


# ----------------------------------------------------------------------------- models/README.md
def _readme_rows() -> dict[str, dict[str, str]]:
    """Rows of the registry table in models/README.md, keyed by the name column."""
    lines = (REPO / "models" / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| name "))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_models_readme_table_matches_registry():
    rows = _readme_rows()
    assert set(rows) == set(SAM_MODELS)
    for name, spec in SAM_MODELS.items():
        row = rows[name]
        assert row["file"] == (spec.filename or "-"), name
        assert row["sha256"] == (spec.sha256 or "-"), name
        assert row["size (bytes)"] == (str(spec.size_bytes) if spec.size_bytes else "-"), name
        assert row["license"] == spec.license, name
        assert row["input size"] == str(spec.input_size), name
