"""Region classifiers: label SAM regions against a runtime :class:`~..vocabulary.Vocabulary`.

- :class:`~.zero_shot.ZeroShotClassifier`: CLIP embeddings of masked region crops, no training.
- :class:`~.regionspot.RegionSpotClassifier`: the RegionSpot head (SAM mask tokens attend to
  CLIP's visual tokens), trained with :mod:`perception_nodes.training.regionspot`.
"""

from perception_nodes.core.classify.base import (
    ClassifierError,
    RegionClassifier,
    labels_from_scores,
)

__all__ = ["ClassifierError", "RegionClassifier", "labels_from_scores"]
