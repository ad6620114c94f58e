"""The two test tiers stay what the README says: `make test` runs everything, `make test-fast`
leaves out the slow tier (modules that start processes, build, export or train)."""

from __future__ import annotations

import re
from pathlib import Path

import conftest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_make_targets_run_the_whole_suite_and_the_fast_tier():
    makefile = (ROOT / "Makefile").read_text()
    test = re.search(r"^test: .*\n\t(.*)$", makefile, flags=re.M).group(1)
    fast = re.search(r"^test-fast: .*\n\t(.*)$", makefile, flags=re.M).group(1)
    assert test.endswith("python -m pytest $(PYTEST_ARGS)")  # CI: everything, no marker filter
    assert '-m "not slow"' in fast


def test_slow_modules_listed_exist_and_every_process_starter_is_slow():
    modules = {p.stem: p for p in TESTS.glob("test_*.py")}
    assert conftest.SLOW_MODULES <= set(modules), conftest.SLOW_MODULES - set(modules)
    for name in ("test_e2e_pipeline", "test_live_params", "test_shutdown_sigint",
                 "test_colcon_workspace", "test_demo"):  # fmt: skip
        assert conftest._starts_processes(modules[name]), name
    for name in ("test_launch_structure", "test_settings_source", "test_vocabulary"):
        assert not conftest._starts_processes(modules[name]), name
