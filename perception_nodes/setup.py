"""ament_python package of perception_nodes (also installable with plain pip, editable)."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "perception_nodes"
HERE = os.path.dirname(os.path.abspath(__file__))


def _files(pattern: str) -> list[str]:
    """Files under this package dir matching ``pattern`` (``launch`` links to ../launch)."""
    return sorted(p for p in glob(os.path.join(HERE, pattern)) if os.path.isfile(p))


def _rel(paths: list[str]) -> list[str]:
    return [os.path.relpath(p, HERE) for p in paths]


CONSOLE_SCRIPTS = [
    # ROS 2 nodes (ros2 run perception_nodes <name>): a light entry module (signals during the
    # seconds of imports exit 0; see nodes/executables.py)
    "perception_node = perception_nodes.nodes.executables:perception_node",
    "visualization_node = perception_nodes.nodes.executables:visualization_node",
    "image_folder_publisher = perception_nodes.nodes.executables:image_folder_publisher",
    # commands
    "pn-run = perception_nodes.tools.run_graph:main",
    "pn-demo = perception_nodes.tools.demo:main",
    "pn-fetch-weights = perception_nodes.tools.fetch_weights:main",
    "pn-export-onnx = perception_nodes.tools.export_onnx:main",
    "pn-build-engine = perception_nodes.tools.build_engine:main",
    "pn-train-regionspot = perception_nodes.tools.train_regionspot:main",
    "pn-train-relations = perception_nodes.tools.train_relations:main",
    "pn-bench-sam = perception_nodes.tools.bench_sam:main",
    "pn-bench-classify = perception_nodes.tools.bench_classify:main",
    "pn-bench-relations = perception_nodes.tools.bench_relations:main",
    "pn-bench-e2e = perception_nodes.tools.bench_e2e:main",
    "pn-bench-tracking = perception_nodes.tools.bench_tracking:main",
    "pn-bench-services = perception_nodes.tools.bench_services:main",
    "pn-process-bag = perception_nodes.tools.process_bag:main",
    "pn-bench-bag = perception_nodes.tools.bench_bag:main",
    "pn-bench-host = perception_nodes.tools.bench_host:main",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", _rel(_files("launch/*.launch.py"))),
        (
            "share/" + PACKAGE + "/config",
            _rel(_files("config/*.yaml") + _files("config/*.rviz") + _files("config/*.xml")),
        ),
    ],
    install_requires=["setuptools"],
    # pn-process-bag --ray (Ray actors over many recordings); the pin of the test environment
    extras_require={"cluster": ["ray>=2.60"]},
    zip_safe=True,
    maintainer="perception_nodes maintainers",
    maintainer_email="maintainers@perception-nodes.org",
    description="Segment everything, label it from a runtime vocabulary, relate it: live scene graphs for ROS 2.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
