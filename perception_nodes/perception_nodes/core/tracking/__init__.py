"""Region tracking across frames (ROS-free): persistent track ids, voted labels, smoothed relations."""

from perception_nodes.core.tracking.stage import TrackedFrame, TrackingStage
from perception_nodes.core.tracking.tracker import (
    RegionTracker,
    Track,
    TrackerSettings,
    TrackIdSource,
)

__all__ = [
    "RegionTracker",
    "Track",
    "TrackIdSource",
    "TrackedFrame",
    "TrackerSettings",
    "TrackingStage",
]
