"""Which topics of a recording are the cameras: colour, depth and CameraInfo per camera.

The node's naming (its parameters ``image_topic``, ``depth_topic``, ``camera_info_topic``, all
relative to a camera namespace): ``<cam>/image_raw`` (``sensor_msgs/Image``) or
``<cam>/image_raw/compressed`` (``sensor_msgs/CompressedImage``), ``<cam>/depth/image_raw``,
``<cam>/camera_info``. Cameras are found automatically (every namespace with a colour topic of
that name), given by namespace (``cameras``), or given by full topic names (one camera).
ROS-free: works on ``{topic: message type}`` of the recording.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
COLOUR_TYPES = (IMAGE, COMPRESSED)


class TopicError(ValueError):
    """The recording has no usable camera topics, or a named topic is not in it."""


@dataclass(frozen=True)
class CameraTopics:
    """One camera's topics in a recording; ``depth``/``info`` None when not used/not there."""

    namespace: str  # the camera namespace ("" for topics without one), the output's prefix
    colour: str
    compressed: bool
    depth: str | None = None
    info: str | None = None

    def topics(self) -> list[str]:
        return [t for t in (self.colour, self.depth, self.info) if t]


def describe_topics(types: dict[str, str]) -> str:
    """``  /a/b  (sensor_msgs/msg/Image)`` lines for a refusal message."""
    if not types:
        return "  (no topics at all)"
    return "\n".join(f"  {t}  ({types[t]})" for t in sorted(types))


def _join(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else f"/{name}"


def _namespace_of(topic: str, relative: str) -> str | None:
    """``/front/image_raw`` with ``image_raw`` -> ``/front``; None when it does not end so."""
    if topic == f"/{relative}":
        return ""
    suffix = f"/{relative}"
    return topic[: -len(suffix)] if topic.endswith(suffix) else None


def _colour_topic(types: dict[str, str], ns: str, image_topic: str, prefer_compressed: bool):
    raw, comp = _join(ns, image_topic), _join(ns, image_topic) + "/compressed"
    have_raw, have_comp = types.get(raw) == IMAGE, types.get(comp) == COMPRESSED
    if have_comp and (prefer_compressed or not have_raw):
        return comp, True
    if have_raw:
        return raw, False
    return None, False


def _found_namespaces(types: dict[str, str], image_topic: str, depth_topic: str) -> list[str]:
    found = set()
    for topic, msgtype in types.items():
        name = topic[: -len("/compressed")] if msgtype == COMPRESSED else topic
        if msgtype == COMPRESSED and not topic.endswith("/compressed"):
            continue
        if msgtype not in COLOUR_TYPES or _namespace_of(name, depth_topic) is not None:
            continue
        ns = _namespace_of(name, image_topic)
        if ns is not None:
            found.add(ns)
    return sorted(found)


def find_cameras(
    types: dict[str, str],
    image_topic: str = "image_raw",
    depth_topic: str = "depth/image_raw",
    info_topic: str = "camera_info",
    cameras: list[str] | None = None,
    prefer_compressed: bool = False,
    use_depth: bool = True,
) -> list[CameraTopics]:
    """The cameras of a recording whose topics are ``types`` (``{topic: message type}``).

    ``cameras``: namespaces to use (each must have a colour topic), default: every namespace
    found. ``use_depth``: pair depth and CameraInfo when the recording has them.
    Raises :class:`TopicError` (with the recording's topics and types) when nothing fits.
    """
    namespaces = (
        [c.rstrip("/") for c in cameras]
        if cameras
        else _found_namespaces(types, image_topic, depth_topic)
    )
    out = []
    for ns in namespaces:
        colour, compressed = _colour_topic(types, ns, image_topic, prefer_compressed)
        if colour is None:
            raise TopicError(
                f"camera {ns or '/'!r}: no {_join(ns, image_topic)} (sensor_msgs/Image) or "
                f"{_join(ns, image_topic)}/compressed (CompressedImage) in the recording; it has:\n"
                + describe_topics(types)
            )
        depth, info = _join(ns, depth_topic), _join(ns, info_topic)
        out.append(
            CameraTopics(
                ns,
                colour,
                compressed,
                depth if use_depth and types.get(depth) == IMAGE else None,
                info if use_depth and types.get(info) == CAMERA_INFO else None,
            )
        )
    if not out:
        raise TopicError(
            f"no camera image topics (sensor_msgs/Image '<camera>/{image_topic}' or "
            f"CompressedImage '<camera>/{image_topic}/compressed'; --image-topic names another) "
            "in the recording; it has:\n" + describe_topics(types)
        )
    return out


def named_camera(
    types: dict[str, str], colour: str, depth: str | None = None, info: str | None = None
) -> CameraTopics:
    """One camera given by full topic names (``--image-topic``/``--depth-topic``/``--info-topic``)."""
    expected = {colour: COLOUR_TYPES, depth: (IMAGE,), info: (CAMERA_INFO,)}
    for topic, allowed in expected.items():
        if topic is None:
            continue
        if topic not in types:
            raise TopicError(
                f"unknown topic {topic!r}; the recording has:\n" + describe_topics(types)
            )
        if types[topic] not in allowed:
            raise TopicError(f"topic {topic!r} is a {types[topic]}, expected one of {allowed}")
    compressed = types[colour] == COMPRESSED
    base = colour[: -len("/compressed")] if compressed else colour
    namespace = base.rsplit("/", 1)[0]
    return CameraTopics(namespace, colour, compressed, depth, info)
