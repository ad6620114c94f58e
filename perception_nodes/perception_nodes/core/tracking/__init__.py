"""Region tracking across frames (ROS-free): persistent track ids, voted labels, smoothed relations."""

from perception_nodes.core.tracking.stage import TrackedFrame, TrackingStage
from perception_nodes.core.tracking.tracker import (
    FrameCues,
    RegionTracker,
    Track,
    TrackerSettings,
    TrackIdSource,
)

__all__ = [
    "FrameCues",
    "RegionTracker",
    "Track",
    "TrackIdSource",
    "TrackedFrame",
    "TrackerSettings",
    "TrackingStage",
]
