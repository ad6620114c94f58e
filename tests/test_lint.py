"""One linter configuration for the whole repository (ruff.toml): the code passes `ruff check`
and is `ruff format`-clean, as `make lint` checks. A broken copy proves the check can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ruff() -> str:
    """Path of the ruff binary (venv first); fails (not skips) when it is missing."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("ruff", path=search)
    assert found, "ruff not found: pip install -r scripts/requirements-ml.txt (ruff)"
    return found


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([ruff(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_ruff_check_is_clean():
    proc = _run("check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format_is_clean():
    proc = _run("format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_the_check_catches_what_the_config_forbids(tmp_path):
    shutil.copy(REPO / "ruff.toml", tmp_path / "ruff.toml")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text("import sys, os\nfrom . import x\n" + "y = '" + "a" * 120 + "'\n")
    check = _run("check", "--no-cache", ".", cwd=tmp_path)
    assert check.returncode != 0
    for code in ("E401", "F401", "TID252"):
        assert code in check.stdout, check.stdout
    (pkg / "long.py").write_text("z = [" + ", ".join(str(i) for i in range(60)) + "]\n")
    assert _run("format", "--check", "--no-cache", ".", cwd=tmp_path).returncode != 0
