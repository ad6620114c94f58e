"""Region tracking across frames (ROS-free): persistent track ids, voted labels, smoothed relations."""

from .stage import TrackedFrame, TrackingStage
from .tracker import RegionTracker, Track, TrackerSettings, TrackIdSource

__all__ = ["RegionTracker", "Track", "TrackIdSource", "TrackedFrame", "TrackerSettings", "TrackingStage"]
