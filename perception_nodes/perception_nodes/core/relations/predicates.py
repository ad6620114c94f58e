"""Predicate vocabularies: the 56 PSG predicates and the geometric predicates.

``PSG_PREDICATES`` is the exact list and order of OpenPSG's ``predicate_classes`` (the index of a
predicate is its position here, as in ``psg.json`` relations ``[subject, object, predicate]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

PSG_PREDICATES: tuple[str, ...] = (
    "over", "in front of", "beside", "on", "in", "attached to", "hanging from", "on back of",
    "falling off", "going down", "painted on", "walking on", "running on", "crossing",
    "standing on", "lying on", "sitting on", "flying over", "jumping over", "jumping from",
    "wearing", "holding", "carrying", "looking at", "guiding", "kissing", "eating", "drinking",
    "feeding", "biting", "catching", "picking", "playing with", "chasing", "climbing",
    "cleaning", "playing", "touching", "pushing", "pulling", "opening", "cooking", "talking to",
    "throwing", "slicing", "driving", "riding", "parked on", "driving on", "about to hit",
    "kicking", "swinging", "entering", "exiting", "enclosing", "leaning on",
)  # fmt: skip
assert len(PSG_PREDICATES) == 56

#: Predicates of :class:`~perception_nodes.core.relations.geometric.GeometricRelationPredictor`.
#: "part of": the subject's mask lies (almost) inside the object's mask (SAM's nested masks:
#: a sleeve inside a person); "inside": the subject's box lies inside the object's box while the
#: masks barely overlap (a cup inside a shelf opening). "in front of"/"behind" need depth.
GEOMETRIC_PREDICATES: tuple[str, ...] = (
    "left of", "right of", "above", "below", "on", "part of", "inside", "overlapping",
    "next to", "in front of", "behind",
)  # fmt: skip

#: Predicates for which "a p b" implies "b p a" (one of the two is redundant in a graph).
SYMMETRIC_PREDICATES: frozenset[str] = frozenset(
    {"beside", "next to", "overlapping", "touching", "kissing", "talking to", "near", "adjacent to"}
)

#: Near-synonym groups: a specific predicate usually also holds in the general sense (PSG asks
#: annotators for the specific one, e.g. "parked on" rather than "on"). Used for reporting and
#: available to anyone who wants to tie predicates; RAM's EMA soft labels learn such ties instead.
NEAR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "on": ("standing on", "sitting on", "lying on", "parked on", "walking on", "running on",
           "driving on", "leaning on", "on back of", "painted on"),
    "over": ("flying over", "jumping over"),
    "holding": ("carrying",),
}  # fmt: skip


def symmetric_mask(
    predicates: Sequence[str], symmetric: Iterable[str] = SYMMETRIC_PREDICATES
) -> np.ndarray:
    """``(P,)`` bool: which of ``predicates`` are symmetric."""
    sym = set(symmetric)
    return np.array([p in sym for p in predicates], dtype=bool)


def validate_predicates(predicates: Sequence[str]) -> list[str]:
    """Return ``predicates`` as a list; raise ``ValueError`` on empty lists, blanks or duplicates."""
    preds = list(predicates)
    if not preds:
        raise ValueError("the predicate list is empty; expected at least one predicate name")
    bad = [p for p in preds if not isinstance(p, str) or not p.strip()]
    if bad:
        raise ValueError(f"predicate names must be non-empty strings, got {bad!r}")
    dupes = sorted({p for p in preds if preds.count(p) > 1})
    if dupes:
        raise ValueError(f"duplicate predicate names: {dupes}")
    return preds
