"""One policy for building a dataclass from stored data (checkpoint configs, engine metadata,
settings): unknown fields are refused with their names and the valid ones, never dropped or
passed through to a ``TypeError``. A file written by a newer version then fails loudly instead
of loading with settings silently ignored."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def unknown_fields(cls: type, data: dict[str, Any]) -> list[str]:
    """Keys of ``data`` that are not fields of the dataclass ``cls`` (sorted)."""
    return sorted(set(data) - {f.name for f in dataclasses.fields(cls)})


def dataclass_from_dict(
    cls: type[T], data: dict[str, Any], what: str, error: type[Exception] = ValueError
) -> T:
    """``cls(**data)``; ``error`` naming ``what``, the unknown fields and the valid ones otherwise."""
    if not isinstance(data, dict):
        raise error(f"{what}: expected a mapping of fields, got {type(data).__name__}")
    unknown = unknown_fields(cls, data)
    if unknown:
        valid = sorted(f.name for f in dataclasses.fields(cls))
        raise error(f"{what} has unknown fields {unknown}; valid: {valid}")
    try:
        return cls(**data)
    except TypeError as exc:  # a required field is missing
        raise error(f"{what}: {exc}") from exc
