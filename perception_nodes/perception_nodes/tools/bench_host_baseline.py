"""``pn-bench-host --baseline REV``: the same host steps timed with another git revision's
package, side by side with the working tree's (one child process per configuration and side).

The revision's ``perception_nodes`` package is extracted with ``git archive`` into a temporary
folder; its child process times the working tree's :func:`bench_host.time_steps` on the working
tree's scenes (:mod:`.host_scenes`), but every ``perception_nodes`` module outside ``tools`` (core,
nodes, ros) is imported from the revision. The revision must have the functions the steps call.
"""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "perception_nodes/perception_nodes"  # inside the repository


def extract_revision(rev: str) -> tuple[str, Path]:
    """``(short sha, package folder)`` of ``rev``'s ``perception_nodes`` package, extracted into
    a new temporary folder (left for the OS to clean: the children read it)."""
    repo = Path(__file__).resolve().parents[3]
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", rev],
                         check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    data = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", sha, PACKAGE],
                          check=True, capture_output=True).stdout  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix=f"pn-bench-host-{sha}-"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(root, filter="data")
    return sha, root / PACKAGE


def use_package(folder: str) -> None:
    """In a child: import ``perception_nodes`` modules other than ``tools`` from ``folder`` from
    now on (modules already imported from the working tree are dropped first; the scene module
    is imported again so that its frames are built with the revision's types)."""
    import perception_nodes

    for name in list(sys.modules):
        if name.startswith("perception_nodes.") and not name.startswith("perception_nodes.tools."):
            del sys.modules[name]
    sys.modules.pop("perception_nodes.tools.host_scenes", None)
    perception_nodes.__path__.insert(0, str(folder))
    importlib.import_module("perception_nodes.core")
    assert Path(sys.modules["perception_nodes.core"].__file__).is_relative_to(folder)


def side_by_side(before: list[dict], after: list[dict], rev: str) -> list[dict]:
    """Rows for :func:`bench_host.host_table`: each configuration's ``rev`` column, then the
    working tree's."""
    rows = []
    for b, a in zip(before, after):
        rows.append({**b, "label": f"{rev}"})
        rows.append({**a, "label": "now"})
    return rows
