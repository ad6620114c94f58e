"""Training code: what builds checkpoints off the robot, kept apart from the runtime ``core``.

- :mod:`.regionspot`: the RegionSpot head on COCO-format detections (``pn-train-regionspot``).
- :mod:`.psg`: the OpenPSG dataset format; :mod:`.matching`: SAM masks matched to ground truth;
  :mod:`.relation_samples`: per-image training samples; :mod:`.relations`: the relation head's
  training loop; :mod:`.relation_metrics`: R@K / mR@K (``pn-train-relations``).

Nothing in ``perception_nodes.core`` or the nodes imports this package.
"""
