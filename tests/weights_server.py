"""A local HTTP server that serves weight files from a folder under their URL paths.

Stands in for huggingface.co / GitHub in tests (no outside network): ``GET /<path>`` streams
``<root>/<path>`` (``Range: bytes=N-`` honoured), everything else is 404. ``server.requests``
records the paths asked for.
"""

from __future__ import annotations

import re
import shutil
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _FileHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        srv = self.server
        srv.requests.append(self.path)
        path = (srv.root / self.path.lstrip("/")).resolve()
        if srv.root not in path.parents or not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(match.group(1)) if match else 0
        if start >= size > 0:
            self.send_error(416)
            return
        self.send_response(206 if match else 200)
        self.send_header("Content-Length", str(size - start))
        if match:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            shutil.copyfileobj(f, self.wfile, 1 << 20)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@contextmanager
def serve_folder(root: Path):
    """Serve ``root`` on 127.0.0.1 (free port); yields the server (``server_port``, ``requests``)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    srv.root, srv.requests = Path(root).resolve(), []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
