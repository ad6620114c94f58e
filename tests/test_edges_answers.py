"""The perception node's services resend an answer the rmw refused (issue 21, item 2).

rclpy reports a refused answer only as a RuntimeWarning ("failed to send response (timeout)",
raised from its C++ ``service_send_response`` with ``PyErr_WarnFormat``), which Python shows once
per code location: later refusals were silent and their callers waited forever. The stand-in
``send`` below raises that same warning the way rclpy does, a given number of times, on a
real rclpy Service's ``send_response`` slot; the wrapper must resend until it goes through,
from several threads at once, and leave other warnings alone.
"""

from __future__ import annotations

import threading
import warnings

import pytest

from perception_nodes.nodes import perception_services
from perception_nodes.nodes.perception_services import REFUSED_ANSWER, send_response_resending


class Logger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str) -> None:
        self.lines.append(f"W {text}")

    def error(self, text: str) -> None:
        self.lines.append(f"E {text}")


class RefusingService:
    """``send_response`` refuses (warns as rclpy does) the first ``refusals`` sends of each
    answer, then delivers it."""

    srv_name = "/perception_node/get_vocabulary"

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.tries: dict[int, int] = {}
        self.delivered: list[int] = []
        self.lock = threading.Lock()

    def send_response(self, response, header) -> None:
        with self.lock:
            self.tries[header] = self.tries.get(header, 0) + 1
            refuse = self.tries[header] <= self.refusals
        if refuse:
            warnings.warn(
                f"{REFUSED_ANSWER}: client will not receive response", RuntimeWarning, stacklevel=1
            )
            return
        with self.lock:
            self.delivered.append(header)


@pytest.fixture(autouse=True)
def quick_resends(monkeypatch):
    monkeypatch.setattr(perception_services, "ANSWER_RESEND_WAITS_S", (0.001,) * 7)


def test_refused_answers_are_resent_from_many_threads():
    service, logger = RefusingService(refusals=2), Logger()
    send_response_resending(service, logger)
    threads = [
        threading.Thread(target=service.send_response, args=("answer", i)) for i in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(service.delivered) == list(range(16))  # each answer delivered exactly once
    assert all(n == 3 for n in service.tries.values())
    assert sum("answer sent on attempt 3" in line for line in logger.lines) == 16


def test_an_answer_refused_every_time_is_logged_as_lost():
    service, logger = RefusingService(refusals=100), Logger()
    send_response_resending(service, logger)
    service.send_response("answer", 7)
    assert service.delivered == [] and service.tries[7] == 8
    assert logger.lines[-1].startswith("E /perception_node/get_vocabulary: answer refused")


def test_other_warnings_are_still_shown():
    send_response_resending(RefusingService(refusals=0), Logger())
    with pytest.warns(UserWarning, match="something else"):
        warnings.warn("something else", UserWarning, stacklevel=1)
