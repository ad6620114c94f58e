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
    # CI: everything, no marker filter, on two test processes unless PYTEST_WORKERS says otherwise
    assert test.endswith("python -m pytest $(XDIST) $(PYTEST_ARGS)")
    assert '-m "not slow"' in fast and "$(XDIST)" in fast
    assert re.search(r"^PYTEST_WORKERS \?= 2$", makefile, flags=re.M)
    assert "-n $(PYTEST_WORKERS) --dist loadfile" in makefile


def test_longest_first_lists_existing_modules_and_keeps_each_module_in_order():
    modules = {p.stem for p in TESTS.glob("test_*.py")}
    assert set(conftest.LONGEST_FIRST) <= modules, set(conftest.LONGEST_FIRST) - modules
    order = [
        "test_vocabulary.py::t1", "test_process_bag.py::t1", "test_vocabulary.py::t2", "test_sam_amg.py::t1",
        "test_process_bag.py::t2",
    ]  # fmt: skip
    items = [_Item(n) for n in order]
    conftest.pytest_collection_modifyitems(None, items)
    assert [i.nodeid for i in items] == [
        "test_process_bag.py::t1", "test_process_bag.py::t2", "test_sam_amg.py::t1",
        "test_vocabulary.py::t1", "test_vocabulary.py::t2",
    ]  # fmt: skip


class _Item:
    """What pytest_collection_modifyitems reads of a collected test."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self.fspath = str(TESTS / nodeid.split("::")[0])
        self.name = nodeid.split("::")[1]

    def add_marker(self, marker) -> None:
        pass


def test_slow_modules_listed_exist_and_every_process_starter_is_slow():
    modules = {p.stem: p for p in TESTS.glob("test_*.py")}
    assert conftest.SLOW_MODULES <= set(modules), conftest.SLOW_MODULES - set(modules)
    for name in ("test_e2e_pipeline", "test_live_params", "test_shutdown_sigint",
                 "test_colcon_workspace", "test_demo"):  # fmt: skip
        assert conftest._starts_processes(modules[name]), name
    for name in ("test_launch_structure", "test_settings_source", "test_vocabulary"):
        assert not conftest._starts_processes(modules[name]), name
