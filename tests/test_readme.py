"""The README cannot drift from the code: parameters, commands and make targets it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from perception_nodes.ros.params import all_params

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _table_rows() -> dict[str, str]:
    """``{parameter name: default cell}`` of the README's parameter table."""
    rows = {}
    for line in README.splitlines():
        m = re.match(r"\| `([a-z_.]+)` \| `(.*)` \|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_every_declared_parameter_is_documented_with_its_default():
    rows = _table_rows()
    declared = {p.name: p for p in all_params()}
    assert set(rows) == set(declared), set(rows) ^ set(declared)
    for name, p in declared.items():
        if isinstance(p.default, (bool, int, float)) and not isinstance(p.default, list):
            expected = str(p.default).lower() if isinstance(p.default, bool) else str(p.default)
            assert rows[name] == expected, (name, rows[name], expected)


def test_every_command_the_readme_names_is_installed():
    setup = (ROOT / "perception_nodes" / "setup.py").read_text()
    scripts = set(re.findall(r'"([\w-]+) = perception_nodes', setup))
    named = set(re.findall(r"\b(pn-[a-z0-9-]+)", README)) - {"pn-", "pn-clip-tiny-test"}  # a model
    assert named, "README names no pn-* command"
    assert named <= scripts, named - scripts
    for module in re.findall(r"= (perception_nodes\.[\w.]+):main", setup):
        assert (ROOT / "perception_nodes" / (module.replace(".", "/") + ".py")).is_file(), module


def test_make_targets_the_readme_uses_exist_and_ci_runs_the_test_command():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.M))
    used = set(re.findall(r"`make ([a-z-]+)", README)) | set(
        re.findall(r"^make ([a-z-]+)", README, flags=re.M)
    )
    assert {"demo", "test"} <= used <= targets, (used, targets)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_what_zero_means_is_said_in_the_readme_as_in_the_descriptor():
    """A parameter whose descriptor gives 0 a meaning ("0 = no limit" for relations.top_k, which
    a user read as "relations per frame" and set to 0 to switch relations off) says the same in
    the README's parameter table: one meaning everywhere."""
    rows = {m.group(1): line for line in README.splitlines()
            if (m := re.match(r"\| `([a-z_.]+)` \|", line))}  # fmt: skip
    for p in all_params():
        meaning = re.search(r"\b0 = [^,;()]+", p.description)
        if meaning:
            assert meaning.group(0).strip() in rows[p.name], (
                p.name,
                meaning.group(0),
                rows[p.name],
            )
