"""Structure of launch/scene_graph.launch.py, config/scene_graph.yaml and the `pn-run` runner.

`launch`/`launch_ros` are not installed here (not on PyPI), so the launch file is read with
``ast`` instead of executed: its nodes, executables, files, arguments and parameter overrides are
checked against setup.py, the config folder and the parameters the nodes declare. The checks are
one function over three paths (launch file, YAML, setup.py) so the negative tests can run them on
broken temporary copies.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import importlib
import inspect
import shutil
from pathlib import Path

import pytest
import yaml

from perception_nodes import launch_overrides as launch_args
from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.sam.backends import BACKEND_KINDS
from perception_nodes.core.sam.registry import SAM_MODELS
from perception_nodes.launch_overrides import (
    NOT_GIVEN,
    launch_overrides,
    overrides_from_launch_arguments,
)
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
    out = {k: v for k, v in imported.items() if k.isupper()}  # imported constants (ARGUMENTS)
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
        # (name, default, description, choices): the launch_overrides.LaunchArgument table
        self.arguments = [
            (a.name, a.default, a.description, a.choices) for a in self.consts["ARGUMENTS"]
        ]
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

    def shared_overrides(self, call: ast.AST) -> tuple[str, set[str]] | None:
        """For ``node_parameters(config, overrides, "node")`` where ``overrides`` holds the
        package's :func:`overrides_from_launch_arguments`: (the parameter file's variable, the
        parameters that call can pass: every parameter argument given)."""
        if not (isinstance(call, ast.Call) and _call_name(call) == "node_parameters"):
            return None
        config, overrides, node = call.args
        if self.override_calls.get(overrides.id) != "overrides_from_launch_arguments":
            return None
        given = {a[0]: (a[3][0] if a[3] else "/x") for a in self.arguments}
        given |= {"config_file": "", "rviz": "false", "demo_images": "false"}
        return config.id, set(overrides_from_launch_arguments(given)[ast.literal_eval(node)])

    def _node(self, call: ast.Call, local: dict[str, ast.Dict]) -> dict:
        kw = {k.arg: k.value for k in call.keywords}
        node = {
            k: _value(kw[k], self.consts, local)
            for k in ("package", "executable", "name")
            if k in kw
        }
        node["additional_env"] = "additional_env" in kw
        params, files = set(), []
        shared = self.shared_overrides(kw.get("parameters"))
        if shared is not None:
            files.append(shared[0])
            params |= shared[1]
        for item in getattr(kw.get("parameters"), "elts", []):
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


def argument_problems(arguments: list[tuple]) -> list[str]:
    """Launch arguments ``(name, default, description, choices)`` without a description, with a
    default outside their choices (NOT_GIVEN excepted: it sets nothing) or with choices other
    than the values the code accepts."""
    problems = []
    choices = expected_choices()
    for name, default, description, arg_choices in arguments:
        if not str(description).strip():
            problems.append(f"launch argument {name!r} has no description")
        if arg_choices:
            if default != NOT_GIVEN and default not in arg_choices:
                problems.append(
                    f"launch argument {name!r}: default {default!r} not in its choices {arg_choices}"
                )
            if name in choices and sorted(arg_choices) != sorted(choices[name]):
                problems.append(
                    f"launch argument {name!r} choices {arg_choices} != valid values {choices[name]}"
                )
    return problems


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
    problems += argument_problems(launch.arguments)
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
    every = launch_overrides(["/c"], "i", "torch", "vit_b", "cpu", "fp32", True, "d", "ci")
    by_exe = {n["executable"]: n["parameters"] for n in launch.nodes}
    for node in ("perception_node", "visualization_node"):
        assert set(every[node]) == by_exe[node], node
    # every launch argument that sets a parameter is a pn-run option, and neither sets anything
    # when not given (the config file's values stand: test_yaml_value_survives_...)
    args = run_graph.parse_args([])
    for name, _default, _, _ in launch.arguments:
        assert hasattr(args, name), f"pn-run has no --{name.replace('_', '-')}"
    assert Path(args.config_file) == graph_runner.DEFAULT_CONFIG
    defaults = {a[0]: a[1] for a in launch.arguments}
    assert overrides_from_launch_arguments(defaults) == launch_overrides()
    assert launch_overrides() == {"perception_node": {}, "visualization_node": {}}


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
    shared = 'parameters=node_parameters(config, overrides, "perception_node")'
    assert 'executable="visualization_node"' in text and shared in text
    text = text.replace('executable="visualization_node"', 'executable="visualisation_node"')
    text = text.replace(shared, 'parameters=[config, {"sam.modle": arg["model"]}]')
    launch.write_text(text)
    problems = structure_problems(launch, yml, setup)
    assert any("'visualisation_node'" in p and "console script" in p for p in problems), problems
    assert any("'sam.modle'" in p for p in problems), problems


def test_missing_config_file_is_caught(tmp_path):
    launch, yml, setup = _copies(tmp_path)
    old = '"scene_graph.rviz"'
    assert old in launch.read_text()
    launch.write_text(launch.read_text().replace(old, '"scene_graph_missing.rviz"', 1))
    assert any("does not exist" in p for p in structure_problems(launch, yml, setup))


@pytest.mark.parametrize("name,change,needle", [
    ("backend", {"choices": ("torch", "onnxruntime", "openvino")}, "choices"),
    ("model", {"description": ""}, "no description"),
    ("rviz", {"default": "yes"}, "not in its choices"),
])  # fmt: skip
def test_broken_launch_arguments_are_caught(name, change, needle):
    arguments = [
        dataclasses.replace(a, **change) if a.name == name else a for a in launch_args.ARGUMENTS
    ]
    rows = [(a.name, a.default, a.description, a.choices) for a in arguments]
    assert any(needle in p and name in p for p in argument_problems(rows))


# --------------------------------------------------------------------------- precedence


def _effective(parameters: list, node: str) -> dict:
    """The parameter values a node starts with from a launch ``Node``'s ``parameters`` list
    (files and dicts; a later entry wins, as rcl applies them), dotted names."""
    values: dict = {}
    for entry in parameters:
        if isinstance(entry, dict):
            values |= entry
        else:
            tree = yaml.safe_load(Path(entry).read_text())[node]["ros__parameters"]
            values |= _flatten(tree)
    return values


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out |= _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


USER_VALUES = {
    "cameras": ["/front", "/rear"],
    "use_depth": True,
    "depth_topic": "aligned_depth_to_color/image_raw",
    "image_topic": "color/image_raw",
    "camera_info_topic": "color/camera_info",
    "sam.backend": "torch",
    "sam.model": "vit_b",
    "sam.device": "cuda",
    "sam.precision": "fp16",
}


def _user_yaml(tmp_path: Path) -> Path:
    """The shipped YAML with a user's values for every parameter a launch argument can set."""
    data = yaml.safe_load(YAML.read_text())
    for name, value in USER_VALUES.items():
        graph_runner._set_dotted(data["perception_node"]["ros__parameters"], name, value)
    for name in launch_args.VISUALIZATION_PARAMETERS:
        data["visualization_node"]["ros__parameters"][name] = USER_VALUES[name]
    path = tmp_path / "my_robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_values_survive_a_launch_without_those_arguments(tmp_path):
    """`ros2 launch ... config_file:=my.yaml` (no other argument): every value of the user's file
    reaches the nodes; a launch argument given overrides only its own parameter."""
    user = _user_yaml(tmp_path)
    launch = LaunchFile(LAUNCH)
    not_given = {a[0]: a[1] for a in launch.arguments} | {"config_file": str(user)}
    overrides = overrides_from_launch_arguments(not_given)
    for node in ("perception_node", "visualization_node"):
        got = _effective(launch_args.node_parameters(str(user), overrides, node), node)
        for name in USER_VALUES if node == "perception_node" else ("cameras", "image_topic"):
            assert got[name] == USER_VALUES[name], (node, name)
    assert launch_args.configured_cameras(user, overrides) == ["/front", "/rear"]
    # given: model:=vit_h use_depth:=false; the rest of the file stands
    given = overrides_from_launch_arguments(not_given | {"model": "vit_h", "use_depth": "false"})
    got = _effective(
        launch_args.node_parameters(str(user), given, "perception_node"), "perception_node"
    )
    assert got["sam.model"] == "vit_h" and got["use_depth"] is False
    assert {k: got[k] for k in USER_VALUES if k not in ("sam.model", "use_depth")} == {
        k: v for k, v in USER_VALUES.items() if k not in ("sam.model", "use_depth")
    }
    # pn-run: the same precedence through its parameter file
    params, cameras = run_graph.params_for(
        run_graph.parse_args(["--config-file", str(user), "--model", "vit_h"]), folder=str(tmp_path)
    )
    got = _effective([params], "perception_node")
    assert cameras == ["/front", "/rear"] and got["sam.model"] == "vit_h"
    assert got["depth_topic"] == USER_VALUES["depth_topic"] and got["sam.backend"] == "torch"


def test_a_launch_argument_value_outside_its_choices_is_refused_with_them():
    defaults = {a.name: a.default for a in launch_args.ARGUMENTS}
    with pytest.raises(launch_args.LaunchArgumentError, match="model:='vit_x'.*vit_t"):
        overrides_from_launch_arguments(defaults | {"model": "vit_x"})
    with pytest.raises(launch_args.LaunchArgumentError, match="use_depth:='yes'.*true"):
        overrides_from_launch_arguments(defaults | {"use_depth": "yes"})


# --------------------------------------------------------------------------- rviz:=true


def _launch_function(name: str, namespace: dict):
    """A function of the launch file, compiled from its source with ``namespace`` as globals
    (the launch file itself imports ``launch``, which is not installed here)."""
    tree = ast.parse(LAUNCH.read_text())
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module([func], []), str(LAUNCH), "exec"), namespace)
    return namespace[name]


def test_rviz_without_rviz2_is_refused_before_any_node_starts():
    """`rviz:=true` where rviz2 is not installed: a clear refusal raised in the launch file's
    OpaqueFunction before it returns any action, so no process starts (was: the nodes started,
    rviz2 failed, launch exited and left them running)."""
    from ament_index_python import packages

    installed = _launch_function("_installed", vars(packages).copy())
    assert installed("rclpy")  # the real ament index of this environment
    if installed("rviz2"):
        pytest.skip("rviz2 is installed here")
    defaults = {a.name: a.default for a in launch_args.ARGUMENTS}
    launch_args.refuse_missing_packages(defaults, installed)  # rviz:=false: nothing to refuse
    with pytest.raises(launch_args.LaunchArgumentError, match="rviz2.*not installed.*nothing"):
        launch_args.refuse_missing_packages(defaults | {"rviz": "true"}, installed)
    # in _nodes, the check runs first: before the overrides and before any Node(...)
    nodes_func = next(
        n for n in ast.parse(LAUNCH.read_text()).body
        if isinstance(n, ast.FunctionDef) and n.name == "_nodes"
    )  # fmt: skip
    lines = {_call_name(c): c.lineno for c in ast.walk(nodes_func) if isinstance(c, ast.Call)}
    first_node = min(c.lineno for c in ast.walk(nodes_func)
                     if isinstance(c, ast.Call) and _call_name(c) == "Node")  # fmt: skip
    assert "refuse_missing_packages" in lines, "the launch file does not check for rviz2"
    assert lines["refuse_missing_packages"] < min(
        first_node, lines["overrides_from_launch_arguments"]
    )


def test_pn_run_refuses_rviz_without_rviz2_and_starts_nothing(capsys, monkeypatch):
    if shutil.which("rviz2"):
        pytest.skip("rviz2 is installed here")

    def no_start(*_a, **_k):
        raise AssertionError("a node was started")

    monkeypatch.setattr(graph_runner.NodeGraph, "start", no_start)
    assert run_graph.main(["--rviz"]) == 2
    assert "rviz2" in capsys.readouterr().err
