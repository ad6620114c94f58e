"""Track ids over real DDS: a demo photo replayed as a short sequence with small shifts
(this process) -> perception_node + visualization_node (their own processes) -> the same
objects keep their Region.track_id, their marker colour, and relation scores say they are smoothed."""

from __future__ import annotations

import numpy as np
import pytest
from e2e_fixtures import (
    camera_io,
    photo,
    publish_frame,
    start_graph,
    wait_for,
    wait_graph_for,
)

pytestmark = pytest.mark.ros
SHIFTS = [(0, 0), (2, 1), (4, 2), (6, 3)]  # (dx, dy) pixels per frame: a slow camera pan


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    g = start_graph(tmp_path_factory.mktemp("tracking"))
    yield g
    g.stop()


def shifted(rgb: np.ndarray, dx: int, dy: int, margin: int = 8) -> np.ndarray:
    """``rgb`` moved right by ``dx`` and down by ``dy`` pixels (edges repeated), same size."""
    padded = np.pad(rgb, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
    h, w = rgb.shape[:2]
    return np.ascontiguousarray(
        padded[margin - dy : margin - dy + h, margin - dx : margin - dx + w]
    )


def _marker_colours(receiver, stamp) -> dict[int, tuple]:
    """``{Region.id: (r, g, b)}`` of the label markers published for the frame ``stamp``."""
    with receiver.lock:
        arrays = [m for _, m in receiver.data.markers]
    for array in arrays:
        labels = [mk for mk in array.markers if mk.ns == "labels" and mk.header.stamp == stamp]
        if labels:
            return {
                mk.id: (round(mk.color.r, 4), round(mk.color.g, 4), round(mk.color.b, 4))
                for mk in labels
            }
    return {}


def test_shifted_photo_sequence_keeps_track_ids_and_colours(graph, ros_context):
    with camera_io(ros_context, graph) as (pubs, receiver):
        coffee = photo("coffee")
        depth = np.full(coffee.shape[:2], 1.5, np.float32)  # markers at the centroids
        graphs = []
        for k, (dx, dy) in enumerate(SHIFTS):  # one frame at a time: none is dropped
            header = publish_frame(pubs, shifted(coffee, dx, dy), stamp_sec=2000 + k, depth=depth)
            graphs.append(wait_graph_for(receiver, header, graph))
        # frame 0 opens tentative tracks (tracking.birth_hits = 2): no ids yet
        assert all(r.track_id == 0 and r.track_age == 0 for r in graphs[0].regions)
        # the photo's largest region (the cup and table) is one object through the whole pan
        main = [max(sg.regions, key=lambda r: r.area) for sg in graphs]
        ids = [r.track_id for r in main[1:]]
        assert ids[0] >= 1 and len(set(ids)) == 1, ids
        assert [r.track_age for r in main[1:]] == [2, 3, 4]
        for sg in graphs:
            tracked = [r.track_id for r in sg.regions if r.track_id]
            assert len(tracked) == len(set(tracked))  # unique in a frame
            assert sg.relations_smoothed and sg.relation_smoothing == pytest.approx(0.5)
        # its marker keeps its colour frame after frame (visualization_node colours by track id)
        colours = []
        for sg, r in zip(graphs[1:], main[1:]):
            assert wait_for(lambda: r.id in _marker_colours(receiver, sg.header.stamp), 60, graph)
            colours.append(_marker_colours(receiver, sg.header.stamp)[r.id])
        assert len(set(colours)) == 1, colours
