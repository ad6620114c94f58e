"""``ParamSpec`` -> ``rcl_interfaces/ParameterDescriptor`` (description, ranges, read-only)."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from perception_nodes.ros.params import ParamSpec


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    text = spec.description + (f" (one of: {', '.join(spec.choices)})" if spec.choices else "")
    desc = ParameterDescriptor(description=text, read_only=spec.read_only)
    if spec.low is not None and isinstance(spec.default, bool) is False:
        if isinstance(spec.default, int):
            desc.integer_range = [
                IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)
            ]
        elif isinstance(spec.default, float):
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
            ]
    if isinstance(spec.default, list) and spec.default == []:
        desc.dynamic_typing = True
    return desc
