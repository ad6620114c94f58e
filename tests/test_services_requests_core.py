"""Bad vocabulary templates and failing parameter checks are refused with a reason (in-process).

A template is checked by parsing it, not by formatting it: ``'{:>2000000000}'`` made the check
build a 2 GB string, and ``'{0.__class__.__init__.__globals__}'`` raised an AttributeError that
the parameter check let through into rclpy, whose executor then stopped (the node answered
nothing more). New labels set by parameter are encoded while frames can start. The DDS side
(answers while frames flow) is tests/test_services_bad_requests.py.
"""

from __future__ import annotations

import threading
import tracemalloc
import zlib

import numpy as np
import pytest

from perception_nodes.core.config import DEFAULT_TEMPLATES, PipelineConfig
from perception_nodes.core.vocabulary.checks import (
    VocabularyError,
    VocabularyLimits,
    check_templates,
    fill_template,
)

FIELDS_REFUSED = ["{:>100000000}", "{:.2}", "{0!r}", "{!s:>5}", "{:{}}", "{0[0]}", "{1}",
                  "{x}", "{0.upper}", "{0.__class__.__init__.__globals__}"]  # fmt: skip


@pytest.mark.parametrize("template", FIELDS_REFUSED)
def test_a_field_other_than_a_plain_placeholder_is_refused_without_formatting(template):
    tracemalloc.start()
    try:
        with pytest.raises(VocabularyError, match="exactly once"):
            check_templates([f"a photo of a {template}."])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak  # the 100 MB width is never built


def test_plain_templates_are_accepted_and_filled_as_before():
    accepted = [*DEFAULT_TEMPLATES, "{0}", "{{}} {}", "{}", "x" * 1022 + "{}"]
    assert check_templates(accepted) == tuple(accepted)
    for t in accepted:
        assert fill_template(t, "red cup") == t.format("red cup")


def test_a_template_over_the_length_limit_is_refused():
    with pytest.raises(VocabularyError, match="1025 characters; the limit is 1024"):
        check_templates(["x" * 1023 + "{}"])
    with pytest.raises(VocabularyError, match="10 characters; the limit is 9"):
        check_templates(["a {} here!"], VocabularyLimits(max_template_chars=9))


class _FailingPipeline:
    """A pipeline whose settings check or apply raises what no caller expects."""

    vocabulary = None

    def __init__(self, on: str) -> None:
        self.on, self.applied = on, 0

    def check_settings(self, config):
        if self.on == "check":
            raise RuntimeError("check broke")
        return []

    def apply_settings(self, config):
        self.applied += 1
        raise RuntimeError("apply broke")


def _live_parameters(ros_context, pipeline):
    from rclpy.node import Node

    from perception_nodes.ros.live_params import LiveParameters

    node = Node("live_params_check", context=ros_context)
    LiveParameters(node, lambda: pipeline, lambda names: None)
    return node


def test_a_template_parameter_with_attribute_access_is_refused_not_raised(ros_context):
    from rclpy.parameter import Parameter

    node = _live_parameters(ros_context, None)  # unconfigured: the vocabulary rules check it
    bad = ["{0.__class__.__init__.__globals__}"]
    (result,) = node.set_parameters([Parameter("vocabulary.templates", value=bad)])
    assert not result.successful and "exactly once" in result.reason, result.reason
    assert list(node.get_parameter("vocabulary.templates").value) == list(DEFAULT_TEMPLATES)
    node.destroy_node()


def test_an_unexpected_error_in_a_parameter_check_or_apply_is_answered(ros_context):
    from rclpy.parameter import Parameter

    node = _live_parameters(ros_context, _FailingPipeline("check"))
    (result,) = node.set_parameters([Parameter("amg.max_regions", value=3)])
    assert not result.successful and "RuntimeError: check broke" in result.reason
    assert node.get_parameter("amg.max_regions").value != 3
    node.destroy_node()
    pipeline = _FailingPipeline("apply")
    node = _live_parameters(ros_context, pipeline)
    (result,) = node.set_parameters([Parameter("amg.max_regions", value=3)])
    assert result.successful and pipeline.applied == 1  # accepted; not applied: logged
    node.destroy_node()


class _GatedEmbedder:
    """8-d text embeddings seeded by each prompt; ``encode_text`` waits for ``go`` (if gated)."""

    model_id, embed_dim, context_length = "gated-test", 8, 77

    def __init__(self, gated: bool = True) -> None:
        self.encoding, self.go = threading.Event(), threading.Event()
        if not gated:
            self.go.set()

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        self.encoding.set()
        assert self.go.wait(30), "never released"
        rows = [np.random.default_rng(zlib.crc32(p.encode())).standard_normal(8) for p in prompts]
        return np.asarray(rows, np.float32)


def _gated_pipeline():
    """A pipeline with only a vocabulary, whose text encoder waits for ``embedder.go``."""
    from perception_nodes.core.pipeline import Pipeline
    from perception_nodes.core.vocabulary.runtime import Vocabulary

    embedder = _GatedEmbedder()
    return Pipeline(PipelineConfig(), None, None, Vocabulary(embedder), None, []), embedder


def _assert_frames_could_start_while_encoding(pipeline, embedder, change, labels) -> None:
    """Runs ``change()`` in a thread; while it encodes ``labels``, the lock a frame takes first
    (``Pipeline._infer``) must be free; afterwards ``labels`` are in force with the embeddings a
    fresh vocabulary gives them."""
    from perception_nodes.core.vocabulary.runtime import Vocabulary

    setting = threading.Thread(target=change)
    setting.start()
    assert embedder.encoding.wait(30), "the labels were never encoded"
    free = pipeline._settings_lock.acquire(timeout=2.0)
    if free:
        pipeline._settings_lock.release()
    embedder.go.set()
    setting.join(30)
    assert free, "a frame could not start while the new labels were encoded"
    got = pipeline.vocabulary_snapshot()
    assert list(got.labels) == labels
    reference = Vocabulary(_GatedEmbedder(gated=False)).set(labels)
    assert np.array_equal(got.embeddings, reference.embeddings)


def test_a_vocabulary_parameter_is_encoded_while_frames_can_start(ros_context):
    """The new labels of ``vocabulary.labels`` are encoded before ``apply_settings`` takes the
    lock a frame starts with (3,000 labels stopped the frames for 7.9 s); same embeddings."""
    from rclpy.parameter import Parameter

    pipeline, embedder = _gated_pipeline()
    labels = ["zebra", "yak", "owl"]
    node = _live_parameters(ros_context, pipeline)
    param = Parameter("vocabulary.labels", value=labels)
    _assert_frames_could_start_while_encoding(
        pipeline, embedder, lambda: node.set_parameters([param]), labels
    )
    node.destroy_node()


def test_apply_settings_encodes_new_labels_before_the_frame_lock():
    """Any caller of ``Pipeline.apply_settings`` (not only the node's parameters) gets its new
    labels encoded while frames can still start; same embeddings as a fresh vocabulary."""
    pipeline, embedder = _gated_pipeline()
    labels = ["heron", "ibis"]
    config = PipelineConfig(vocabulary_labels=tuple(labels))
    _assert_frames_could_start_while_encoding(
        pipeline, embedder, lambda: pipeline.apply_settings(config), labels
    )
