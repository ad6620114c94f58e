"""Bad service requests and parameter values while frames flow (real DDS, node in its own
process): every one is answered with the reason, nothing in force changes, and the node keeps
publishing scene graphs. The core checks behind them: tests/test_services_requests_core.py.
"""

from __future__ import annotations

import threading

import pytest
from e2e_fixtures import (
    call,
    camera_io,
    first_answer,
    photo,
    publish_frame,
    small_overrides,
    wait_for,
    wait_graph_for,
)

from perception_nodes.tools.graph_runner import NodeGraph, write_params_file

pytestmark = pytest.mark.ros
NODE = "/perception_node"

# (what, labels, templates, append, a part of the refusal message)
REFUSED = [
    ("empty list", [], [], False, "empty label list"),
    ("blank entry", ["cup", " \t\n "], [], False, "entry 1 is empty or whitespace only"),
    ("100,000-character entry", ["x" * 100_000], [], False, "has 100000 characters; the limit"),
    ("entry over CLIP's tokens", ["a " * 120], [], False, "CLIP tokens"),
    ("duplicates (case, spaces)", ["Red cup", "red  CUP"], [], False, "duplicate entry"),
    ("duplicates (NFKC)", ["cup", "\uff43\uff55\uff50"], [], False, "duplicate entry"),
    ("10,001 entries", [f"thing {i}" for i in range(10_001)], [], False, "at most 10000"),
    ("100,000 entries", [f"t{i}" for i in range(100_000)], [], False, "at most 10000"),
    ("a 2 GB field width", ["cup"], ["{:>2000000000}"], False, "exactly once"),
    ("attribute access", ["cup"], ["{0.__class__.__init__.__globals__}"], False, "exactly once"),
    ("65 templates", ["cup"], [f"{i} {{}}" for i in range(65)], False, "exceed the limit of 64"),
    ("5,000-character template", ["cup"], ["y" * 5000 + " {}"], False, "the limit is 1024"),
    ("append a label in force", ["person"], [], True, "duplicate entry"),
]


@pytest.fixture(scope="module")
def node_graph(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_requests")
    overrides = small_overrides(tmp / "cache", **{"amg.points_per_side": 2, "use_depth": False})
    g = NodeGraph(log_dir=tmp)
    g.start("perception_node", write_params_file(overrides, folder=tmp))
    yield g
    g.stop()


@pytest.fixture
def io(node_graph, ros_context):
    with camera_io(ros_context, node_graph, subscribers=1, depth=False) as (pubs, receiver):
        yield pubs, receiver, node_graph


class _Frames:
    """Publishes the next frame once the last one's scene graph came (or after 20 s)."""

    def __init__(self, pubs, receiver) -> None:
        self.stop, self.published = threading.Event(), 0
        self.thread = threading.Thread(target=self._run, args=(pubs, receiver), daemon=True)
        self.thread.start()

    def _run(self, pubs, receiver) -> None:
        while not self.stop.is_set():
            n = receiver.count("graphs")
            publish_frame(pubs, photo("coffee", side=96))
            self.published += 1
            wait_for(lambda: receiver.count("graphs") > n or self.stop.is_set(), 20.0)


def _refused(what: str, answer, reason: str, before) -> None:
    """Refused with ``reason``; the answer names the vocabulary in force (``before``'s)."""
    assert not answer.success and reason in answer.message, (what, answer.message)
    assert answer.version == before.version and list(answer.labels) == list(before.labels)


def test_bad_requests_and_parameters_are_answered_while_frames_flow(io):
    from perception_msgs.srv import GetVocabulary, QueryRegions, SetVocabulary
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    pubs, receiver, graph = io
    client, params = receiver.set_vocabulary, AsyncParameterClient(receiver, NODE)
    assert not first_answer(client, SetVocabulary.Request(labels=[])).success  # matched
    assert params.wait_for_services(timeout_sec=30)
    before = call(receiver.get_vocabulary, GetVocabulary.Request())
    graphs0, frames = receiver.count("graphs"), _Frames(pubs, receiver)
    try:
        assert wait_for(lambda: receiver.count("graphs") > graphs0, 120, graph), "no frame came"
        for what, labels, templates, append, reason in REFUSED:
            req = SetVocabulary.Request(labels=labels, prompt_templates=templates, append=append)
            _refused(what, call(client, req, timeout=60), reason, before)
        for text, top_k, reason in (
            ("", 0, "non-empty"),
            (" \t ", 3, "non-empty"),
            ("cup " * 250_000, 2, "999999 characters; at most 16384"),  # 1 MB: was 4.7 s
        ):
            answer = call(receiver.query_regions, QueryRegions.Request(text=text, top_k=top_k))
            assert not answer.success and reason in answer.message, answer.message
        answer = call(receiver.query_regions, QueryRegions.Request(text="cup", top_k=2**32 - 1))
        assert answer.success and len(answer.region_ids) >= 1, answer.message  # all regions
        for name, value, reason in (
            ("vocabulary.templates", ["{0.__class__.__init__.__globals__}"], "exactly once"),
            ("vocabulary.templates", ["{:>2000000000}"], "exactly once"),
            ("vocabulary.labels", ["x" * 100_000], "has 100000 characters"),
        ):
            future = params.set_parameters([Parameter(name, value=value)])
            assert wait_for(future.done, 60, graph), f"set_parameters({name}) not answered"
            result = future.result().results[0]
            assert not result.successful and reason in result.reason, (name, result.reason)
        got = call(receiver.get_vocabulary, GetVocabulary.Request())
        assert (got.version, list(got.labels)) == (before.version, list(before.labels))
        assert list(got.prompt_templates) == list(before.prompt_templates)
        # text that is odd but valid is taken as it is (bidi override, emoji, combining accent)
        odd = ["\u202ecat", "\U0001f431 cat", "e\u0301clair", "tab\there"]
        answer = call(client, SetVocabulary.Request(labels=odd), timeout=60)
        assert answer.success and answer.version == before.version + 1, answer.message
        assert list(answer.labels) == [*odd[:3], "tab here"]
        during = receiver.count("graphs") - graphs0
    finally:
        frames.stop.set()
        frames.thread.join(30)
    assert during >= 2, f"{during} scene graphs while the requests were answered"
    sg = wait_graph_for(receiver, publish_frame(pubs, photo("coffee", side=96)), graph)
    assert sg.vocabulary_version == before.version + 1 and list(sg.vocabulary)[1] == odd[1]
