"""Pairwise relations between regions: geometric (no weights) and learned (RAM-style) predictors."""

from perception_nodes.core.relations.base import RelationInputError, RelationPredictor
from perception_nodes.core.relations.geometric import GeometricRelationPredictor
from perception_nodes.core.relations.predicates import (
    GEOMETRIC_PREDICATES,
    PSG_PREDICATES,
    SYMMETRIC_PREDICATES,
)

__all__ = [
    "GEOMETRIC_PREDICATES",
    "PSG_PREDICATES",
    "SYMMETRIC_PREDICATES",
    "GeometricRelationPredictor",
    "RelationInputError",
    "RelationPredictor",
]
