"""Structure of launch/scene_graph.launch.py, config/scene_graph.yaml and the `pn-run` runner.

`launch`/`launch_ros` are not installed here (not on PyPI), so the launch file is read with
``ast`` instead of executed: its nodes, executables, files, arguments and parameter overrides are
checked against setup.py, the config folder and the parameters the nodes declare. The checks are
one function over three paths (launch file, YAML, setup.py) so the negative tests can run them on
broken temporary copies.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import shutil
from pathlib import Path

import pytest
import yaml

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.sam.backends import BACKEND_KINDS
from perception_nodes.core.sam.registry import SAM_MODELS
from perception_nodes.launch_overrides import launch_overrides, overrides_from_launch_arguments
from perception_nodes.ros.params import all_params
from perception_nodes.tools import graph_runner, run_graph

REPO = Path(__file__).resolve().parents[1]
PKG_DIR = REPO / "perception_nodes"
LAUNCH = REPO / "launch" / "scene_graph.launch.py"
YAML = PKG_DIR / "config" / "scene_graph.yaml"
SETUP = PKG_DIR / "setup.py"
NODES_DIR = PKG_DIR / "perception_nodes" / "nodes"
PACKAGE = "perception_nodes"
EXTERNAL_NODES = {("rviz2", "rviz2")}  # (package, executable) started from other ROS packages

# --------------------------------------------------------------------------- parsing helpers


def _module_constants(tree: ast.Module) -> dict[str, object]:
    """Module-level ``NAME = <literal>`` assignments.

    Names the launch file imports from this package (``from perception_nodes.core.config import
    SAM_BACKENDS``: the allowed values are declared once there) resolve to their values.
    """
    imported: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
            module = importlib.import_module(node.module)
            imported |= {a.asname or a.name: getattr(module, a.name) for a in node.names}
    out = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            try:
                out[node.targets[0].id] = _literal(node.value, imported)
            except ValueError:
                pass
    return out


def _literal(node: ast.AST, names: dict[str, object]) -> object:
    """``ast.literal_eval`` that also resolves ``names`` (imported package constants)."""
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, names) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    return ast.literal_eval(node)


def _value(node: ast.AST, consts: dict[str, object], local_dicts: dict[str, ast.Dict]) -> object:
    """Literal value of ``node``; names resolve to module constants; unknown -> the ast node."""
    if isinstance(node, ast.Name):
        if node.id in local_dicts:
            return local_dicts[node.id]
        return consts.get(node.id, node)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return node


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def declared_parameters(node_file: Path) -> set[str]:
    """Names passed as literal first argument to ``self.declare_parameter`` in ``node_file``."""
    names = set()
    for call in ast.walk(ast.parse(node_file.read_text())):
        if isinstance(call, ast.Call) and _call_name(call) == "declare_parameter" and call.args:
            if isinstance(call.args[0], ast.Constant):
                names.add(call.args[0].value)
    return names


def node_declarations() -> dict[str, set[str]]:
    """Executable -> parameter names its node declares (perception_node: the ParamSpec table)."""
    return {
        "perception_node": {s.name for s in all_params()},
        "visualization_node": declared_parameters(NODES_DIR / "visualization_node.py"),
        "image_folder_publisher": declared_parameters(NODES_DIR / "image_folder_publisher.py"),
    }


def _concat(node: ast.AST, consts: dict[str, object]) -> str:
    """Value of a string expression like ``"share/" + PACKAGE + "/config"``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _concat(node.left, consts) + _concat(node.right, consts)
    if isinstance(node, ast.Name):
        return str(consts.get(node.id, f"<{node.id}>"))
    return str(ast.literal_eval(node))


def setup_info(setup_path: Path) -> tuple[dict[str, str], list[tuple[str, list[str]]]]:
    """From setup.py (parsed, not run): console scripts ``{name: module:function}`` and
    ``[(install dir, [glob patterns passed to _files()])]`` of data_files."""
    tree = ast.parse(setup_path.read_text())
    consts = _module_constants(tree)
    scripts = {}
    for entry in consts["CONSOLE_SCRIPTS"]:
        name, _, target = (s.strip() for s in entry.partition("="))
        scripts[name] = target
    data = []
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and _call_name(call) == "setup":
            files_kw = next(k.value for k in call.keywords if k.arg == "data_files")
            for entry in files_kw.elts:
                dest_text = _concat(entry.elts[0], consts)
                patterns = [c.args[0].value for c in ast.walk(entry.elts[1])
                            if isinstance(c, ast.Call) and _call_name(c) == "_files"]  # fmt: skip
                data.append((dest_text, patterns))
    return scripts, data


class LaunchFile:
    """What ``scene_graph.launch.py`` declares: arguments, Node actions and their parameters."""

    def __init__(self, path: Path) -> None:
        self.tree = ast.parse(path.read_text())
        self.consts = _module_constants(self.tree)
        self.arguments = [
            tuple(a) for a in self.consts["ARGUMENTS"]
        ]  # (name, default, description, choices)
        self.nodes: list[dict] = []
        self.override_calls: dict[str, str] = {}  # local name -> the function whose result it holds
        for func in ast.walk(self.tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            assigns = [a for a in ast.walk(func) if isinstance(a, ast.Assign)]
            local = {
                t.id: a.value
                for a in assigns
                for t in a.targets
                if isinstance(t, ast.Name) and isinstance(a.value, ast.Dict)
            }
            self.override_calls.update(
                {
                    t.id: _call_name(a.value)
                    for a in assigns
                    for t in a.targets
                    if isinstance(t, ast.Name) and isinstance(a.value, ast.Call)
                }
            )
            for call in ast.walk(func):
                if isinstance(call, ast.Call) and _call_name(call) == "Node":
                    self.nodes.append(self._node(call, local))

    def shared_overrides(self, item: ast.AST) -> set[str] | None:
        """Parameter names of ``overrides["node"]`` where ``overrides`` holds the package's
        :func:`overrides_from_launch_arguments` (called here with the launch defaults)."""
        if not (isinstance(item, ast.Subscript) and isinstance(item.value, ast.Name)):
            return None
        if self.override_calls.get(item.value.id) != "overrides_from_launch_arguments":
            return None
        defaults = {a[0]: a[1] for a in self.arguments}
        return set(overrides_from_launch_arguments(defaults)[ast.literal_eval(item.slice)])

    def _node(self, call: ast.Call, local: dict[str, ast.Dict]) -> dict:
        kw = {k.arg: k.value for k in call.keywords}
        node = {
            k: _value(kw[k], self.consts, local)
            for k in ("package", "executable", "name")
            if k in kw
        }
        node["additional_env"] = "additional_env" in kw
        params, files = set(), []
        for item in getattr(kw.get("parameters"), "elts", []):
            shared = self.shared_overrides(item)
            if shared is not None:
                params |= shared
                continue
            v = _value(item, self.consts, local)
            if isinstance(v, ast.Dict):
                params |= {ast.literal_eval(k) for k in v.keys}
            elif isinstance(v, dict):
                params |= set(v)
            elif isinstance(v, ast.Name):
                files.append(v.id)
        node["parameters"], node["parameter_files"] = params, files
        return node

    def referenced_files(self) -> list[str]:
        """Module constants naming files (``*_FILE``)."""
        return [v for k, v in self.consts.items() if k.endswith("_FILE") and isinstance(v, str)]


def _yaml_names(tree: dict, prefix: str = "") -> set[str]:
    """Dotted parameter names of a ``ros__parameters`` mapping (nested groups -> ``a.b``)."""
    out = set()
    for k, v in tree.items():
        name = f"{prefix}{k}"
        out |= _yaml_names(v, name + ".") if isinstance(v, dict) else {name}
    return out


def expected_choices() -> dict[str, list[str]]:
    """Allowed values of the launch arguments that have choices, from the code that uses them."""
    specs = {s.name: s for s in all_params()}
    return {
        "backend": ["auto", *BACKEND_KINDS],  # auto: resolved by the pipeline factory
        "model": [m for m, spec in SAM_MODELS.items() if not spec.test_only],
        "precision": list(specs["sam.precision"].choices),
        "use_depth": ["true", "false"],
        "rviz": ["true", "false"],
        "demo_images": ["true", "false"],
    }


# --------------------------------------------------------------------------- the checks


def structure_problems(
    launch_path: Path = LAUNCH, yaml_path: Path = YAML, setup_path: Path = SETUP
) -> list[str]:
    """Every inconsistency between the launch file, the YAML, setup.py and the nodes ([] = none)."""
    problems: list[str] = []
    launch = LaunchFile(launch_path)
    scripts, data_files = setup_info(setup_path)
    declared = node_declarations()
    if not launch.nodes:
        problems.append("no Node(...) actions found in the launch file")
    for n in launch.nodes:
        pkg, exe = n.get("package"), n.get("executable")
        if pkg == PACKAGE:
            if exe not in scripts:
                problems.append(
                    f"launch starts executable {exe!r}, not a console script in setup.py {sorted(scripts)}"
                )
            for p in sorted(n["parameters"] - declared.get(exe, set())):
                problems.append(
                    f"launch passes parameter {p!r} to {exe}, which does not declare it"
                )
        elif (pkg, exe) not in EXTERNAL_NODES:
            problems.append(
                f"launch starts ({pkg!r}, {exe!r}): neither {PACKAGE} nor a known external node"
            )
    config_dir = setup_path.parent / "config"
    installed = [p for dest, pats in data_files if dest.endswith("/config") for p in pats]
    for f in launch.referenced_files():
        if not (config_dir / f).is_file():
            problems.append(f"launch references config/{f}, which does not exist")
        if not any(fnmatch.fnmatch(f"config/{f}", pat) for pat in installed):
            problems.append(f"config/{f} is not installed by setup.py data_files {installed}")
    launch_pats = [p for dest, pats in data_files if dest.endswith("/launch") for p in pats]
    if not any(fnmatch.fnmatch(f"launch/{launch_path.name}", pat) for pat in launch_pats):
        problems.append(f"launch/{launch_path.name} is not installed by setup.py data_files")
    choices = expected_choices()
    for name, default, description, arg_choices in launch.arguments:
        if not str(description).strip():
            problems.append(f"launch argument {name!r} has no description")
        if arg_choices:
            if default not in arg_choices:
                problems.append(
                    f"launch argument {name!r}: default {default!r} not in its choices {arg_choices}"
                )
            if name in choices and sorted(arg_choices) != sorted(choices[name]):
                problems.append(
                    f"launch argument {name!r} choices {arg_choices} != valid values {choices[name]}"
                )
    config = yaml.safe_load(yaml_path.read_text()) or {}
    for node_name, section in config.items():
        if node_name not in declared:
            problems.append(
                f"YAML section {node_name!r} is not a node of this package {sorted(declared)}"
            )
            continue
        for p in sorted(
            _yaml_names((section or {}).get("ros__parameters", {})) - declared[node_name]
        ):
            problems.append(f"YAML sets {node_name}.{p}, which the node does not declare")
    return problems


# --------------------------------------------------------------------------- tests


def test_launch_yaml_setup_and_nodes_agree():
    assert structure_problems() == []


def test_launch_file_is_what_we_think_it_is():
    """Guards the parser itself: it must see the nodes, arguments and overrides that are there."""
    launch = LaunchFile(LAUNCH)
    exes = {n["executable"] for n in launch.nodes}
    assert exes == {"perception_node", "visualization_node", "image_folder_publisher", "rviz2"}
    perception = next(n for n in launch.nodes if n["executable"] == "perception_node")
    assert {"sam.backend", "sam.model", "cameras", "use_depth"} <= perception["parameters"]
    assert perception["parameter_files"] == ["config"]
    assert {a[0] for a in launch.arguments} >= {
        "backend",
        "model",
        "cameras",
        "rviz",
        "config_file",
    }
    assert set(launch.referenced_files()) == {"scene_graph.yaml", "scene_graph.rviz"}


def test_yaml_documents_every_declared_parameter():
    """The shipped YAML lists every parameter of both nodes (it is the reference config)."""
    config = yaml.safe_load(YAML.read_text())
    declared = node_declarations()
    for node in ("perception_node", "visualization_node"):
        assert _yaml_names(config[node]["ros__parameters"]) == declared[node], node
    assert (
        set(PipelineConfig.ros_name(f) for f in PipelineConfig.field_names())
        <= declared["perception_node"]
    )


def test_graph_runner_matches_launch_file():
    """`pn-run` starts the same executables, with the same config file and the same overrides."""
    launch = LaunchFile(LAUNCH)
    scripts, _ = setup_info(SETUP)
    ours = {n["executable"] for n in launch.nodes if n["package"] == PACKAGE}
    assert set(graph_runner.NODE_MODULES) == ours
    for exe, module in graph_runner.NODE_MODULES.items():
        # the console script and pn-run's `python -m` go through the same light entry function
        assert scripts[exe] == f"{graph_runner.NODE_ENTRY_MODULE}:{exe}", exe
        assert callable(importlib.import_module(module).main), module
    assert graph_runner.DEFAULT_CONFIG == PKG_DIR / "config" / launch.consts["CONFIG_FILE"]
    calls = [
        c for c in ast.walk(ast.parse(inspect.getsource(run_graph))) if isinstance(c, ast.Call)
    ]
    started = {
        c.args[0].value
        for c in calls
        if _call_name(c) == "start" and c.args and isinstance(c.args[0], ast.Constant)
    }
    assert started == ours
    # our nodes get pn-run's process environment (launch_overrides.NODE_ENV) under ros2 launch too
    assert all(n["additional_env"] for n in launch.nodes if n["package"] == PACKAGE)
    # the launch file takes its overrides from the package's one function (pn-run calls it too)
    assert "overrides_from_launch_arguments" in launch.override_calls.values()
    overrides = launch_overrides(["/camera"])
    by_exe = {n["executable"]: n["parameters"] for n in launch.nodes}
    for node in ("perception_node", "visualization_node"):
        assert set(overrides[node]) == by_exe[node], node
    # same defaults as the launch arguments
    launch_defaults = {a[0]: a[1] for a in launch.arguments}
    args = run_graph.parse_args([])
    for name in ("cameras", "image_topic", "backend", "model", "device", "precision"):
        assert getattr(args, name) == launch_defaults[name], name
    assert args.use_depth is (launch_defaults["use_depth"] == "true")
    assert Path(args.config_file) == graph_runner.DEFAULT_CONFIG
    sig = inspect.signature(launch_overrides).parameters
    for name in ("image_topic", "backend", "model", "device", "precision"):
        assert sig[name].default == launch_defaults[name], name


def _copies(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Launch file, YAML and setup.py copied with the layout the checks expect."""
    pkg = tmp_path / "perception_nodes"
    (pkg / "config").mkdir(parents=True)
    (tmp_path / "launch").mkdir()
    shutil.copy(SETUP, pkg / "setup.py")
    for f in (PKG_DIR / "config").iterdir():
        shutil.copy(f, pkg / "config" / f.name)
    shutil.copy(LAUNCH, tmp_path / "launch" / LAUNCH.name)
    assert (
        structure_problems(
            tmp_path / "launch" / LAUNCH.name, pkg / "config" / YAML.name, pkg / "setup.py"
        )
        == []
    )
    return tmp_path / "launch" / LAUNCH.name, pkg / "config" / YAML.name, pkg / "setup.py"


def test_unknown_yaml_parameter_is_caught(tmp_path):
    launch, yml, setup = _copies(tmp_path)
    data = yaml.safe_load(yml.read_text())
    data["perception_node"]["ros__parameters"]["amg"]["points_per_sidee"] = 8
    data["visualization_node"]["ros__parameters"]["colour"] = "red"
    yml.write_text(yaml.safe_dump(data))
    problems = structure_problems(launch, yml, setup)
    assert any("perception_node.amg.points_per_sidee" in p for p in problems), problems
    assert any("visualization_node.colour" in p for p in problems), problems


def test_unknown_executable_and_override_are_caught(tmp_path):
    launch, yml, setup = _copies(tmp_path)
    text = launch.read_text()
    shared = 'parameters=[config, overrides["perception_node"]]'
    assert 'executable="visualization_node"' in text and shared in text
    text = text.replace('executable="visualization_node"', 'executable="visualisation_node"')
    text = text.replace(
        shared, 'parameters=[config, overrides["perception_node"], {"sam.modle": arg["model"]}]'
    )
    launch.write_text(text)
    problems = structure_problems(launch, yml, setup)
    assert any("'visualisation_node'" in p and "console script" in p for p in problems), problems
    assert any("'sam.modle'" in p for p in problems), problems


@pytest.mark.parametrize("old,new,needle", [
    ('"scene_graph.rviz"', '"scene_graph_missing.rviz"', "does not exist"),
    ("        SAM_BACKENDS,\n    ),",
     '        ["torch", "onnxruntime", "openvino"],\n    ),', "choices"),
    ('"SAM model from the registry"', '""', "no description"),
])  # fmt: skip
def test_broken_launch_arguments_and_files_are_caught(tmp_path, old, new, needle):
    launch, yml, setup = _copies(tmp_path)
    assert old in launch.read_text()
    launch.write_text(launch.read_text().replace(old, new, 1))
    assert any(needle in p for p in structure_problems(launch, yml, setup))
