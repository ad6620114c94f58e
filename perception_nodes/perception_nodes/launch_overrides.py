"""The parameter overrides of the scene-graph launch arguments: ONE function, imported by
``launch/scene_graph.launch.py`` (``ros2 launch``) and by ``pn-run`` / the demo / the tests, so
both paths start the nodes with exactly the same parameters. No ROS or launch import here.
"""

from __future__ import annotations

from perception_nodes.core.config import DEFAULT_SAM_BACKEND

#: Environment of every node process (``additional_env`` in the launch file, pn-run's children).
#: torch's OpenMP threads spin after each parallel region by default; in the perception node the
#: worker and the service threads call torch concurrently, and on a small CPU the spinning threads
#: steal the cores (2-core machine: a test frame took 10.8 s instead of 2.2 s, service p99 13 s).
#: Values already in the environment win.
NODE_ENV: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}


def parse_cameras(text: str) -> list[str]:
    """``"/front, /rear"`` -> ``["/front", "/rear"]`` (the ``cameras`` launch argument)."""
    return [c.strip() for c in text.split(",") if c.strip()]


def launch_overrides(
    cameras: list[str],
    image_topic: str = "image_raw",
    backend: str = DEFAULT_SAM_BACKEND,
    model: str = "vit_t",
    device: str = "cpu",
    precision: str = "fp32",
    use_depth: bool = False,
) -> dict[str, dict[str, object]]:
    """``{node name: {parameter: value}}`` applied on top of the parameter file."""
    return {
        "perception_node": {
            "cameras": cameras,
            "image_topic": image_topic,
            "use_depth": use_depth,
            "sam.backend": backend,
            "sam.model": model,
            "sam.device": device,
            "sam.precision": precision,
        },
        "visualization_node": {"cameras": cameras, "image_topic": image_topic},
    }


def overrides_from_launch_arguments(arg: dict[str, str]) -> dict[str, dict[str, object]]:
    """:func:`launch_overrides` of the launch file's string arguments (``"true"``/``"false"``,
    comma-separated ``cameras``)."""
    return launch_overrides(
        parse_cameras(arg["cameras"]),
        arg["image_topic"],
        arg["backend"],
        arg["model"],
        arg["device"],
        arg["precision"],
        arg["use_depth"] == "true",
    )
