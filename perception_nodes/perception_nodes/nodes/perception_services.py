"""The perception node's services: ``~/set_vocabulary``, ``~/get_vocabulary``, ``~/query_regions``.

They run in their own reentrant callback group, so they answer while the worker infers. A
``set_vocabulary`` call is encoded on a thread of its own (at most :data:`VOCABULARY_WRITERS`
at once) while its service callback awaits it without holding an executor thread: six calls of
2,000 new labels each took all four executor threads for seconds, and ``get_vocabulary``,
``query_regions``, parameter services and the ``/diagnostics`` timer waited behind them. A
vocabulary change applies from the next frame; a query scores the latest frame's regions and
answers with that frame's header stamp. Refusals (unconfigured node, empty or oversized label
list, invalid labels/templates, bad query) answer ``success=False`` with the reason.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections.abc import Callable

from perception_msgs.srv import GetVocabulary, QueryRegions, SetVocabulary
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future

from perception_nodes.core.pipeline import Pipeline, PipelineError
from perception_nodes.core.stream.cancel import WorkAbandoned
from perception_nodes.core.stream.stamps import set_stamp
from perception_nodes.core.vocabulary.arrival_order import ArrivalTurns
from perception_nodes.ros.qos import SERVICE_QOS

NOT_CONFIGURED = "node is not configured (models not loaded)"
#: What rclpy warns (a RuntimeWarning, shown once per code location by Python's default filter,
#: so later ones were silent) when the rmw refused to send an answer: rmw_fastrtps drops a
#: response whose client's response reader the service's response writer has not matched
#: within its max_blocking_time (100 ms), before writing anything
REFUSED_ANSWER = "failed to send response (timeout)"
#: s waited before each resend of a refused answer (the rmw waits 100 ms more each time); then
#: the answer is given up, logged as an error
ANSWER_RESEND_WAITS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
_sending = threading.local()  # .active: in send_response_resending; .refused: rclpy warned

#: set_vocabulary changes encoded at once (the vocabulary orders them by arrival); more wait for
#: a turn on their own threads, not on the executor's
VOCABULARY_WRITERS = 4


def _catch_refused_answers() -> None:
    """Route rclpy's "failed to send response (timeout)" warnings raised while this module sends
    an answer to :func:`send_response_resending` (every one, not once per location); other
    warnings are shown as before. Idempotent."""
    if getattr(warnings.showwarning, "_pn_refused_answers", False):
        return
    warnings.filterwarnings("always", message=re.escape(REFUSED_ANSWER), category=RuntimeWarning)
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if getattr(_sending, "active", False) and REFUSED_ANSWER in str(message):
            _sending.refused = True
            return
        show(message, category, filename, lineno, file, line)

    showwarning._pn_refused_answers = True
    warnings.showwarning = showwarning


def send_response_resending(service, logger) -> None:
    """Make ``service`` resend an answer the rmw refused (see :data:`REFUSED_ANSWER`: nothing
    was sent, so a resend cannot answer twice) after :data:`ANSWER_RESEND_WAITS_S`, logging
    each resend; an answer still refused then is logged as an error (the caller gets none)."""
    _catch_refused_answers()
    send = service.send_response

    def send_response(response, header) -> None:
        for attempt, wait in enumerate((0.0, *ANSWER_RESEND_WAITS_S)):
            if wait:
                time.sleep(wait)  # a back-off: the client's reader gets matched meanwhile
            _sending.active, _sending.refused = True, False
            try:
                send(response, header)
            finally:
                _sending.active = False
            if not _sending.refused:
                if attempt:
                    logger.warning(f"{service.srv_name}: answer sent on attempt {attempt + 1}")
                return
        logger.error(
            f"{service.srv_name}: answer refused by the rmw {attempt + 1} times (its client's "
            "response reader never matched): that call gets no answer"
        )

    service.send_response = send_response


class PerceptionServices:
    """Creates the three services on ``node``; ``pipeline()`` returns the node's pipeline now
    (None while unconfigured); ``stopping()`` is True once shutdown began (a long vocabulary
    change is then abandoned between text-encoder chunks, unapplied)."""

    def __init__(
        self,
        node: Node,
        pipeline: Callable[[], Pipeline | None],
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._node = node
        self._pipeline = pipeline
        self._stopping = stopping
        self.callback_group = ReentrantCallbackGroup()
        self._writers = threading.BoundedSemaphore(VOCABULARY_WRITERS)
        self._turns = ArrivalTurns()
        self._threads: set[threading.Thread] = set()  # set_vocabulary calls being encoded
        self._threads_lock = threading.Lock()
        for srv_type, name, handler in (
            (SetVocabulary, "~/set_vocabulary", self.set_vocabulary_off_executor),
            (GetVocabulary, "~/get_vocabulary", self.get_vocabulary),
            (QueryRegions, "~/query_regions", self.query_regions),
        ):
            service = node.create_service(
                srv_type, name, handler, qos_profile=SERVICE_QOS, callback_group=self.callback_group
            )
            send_response_resending(service, node.get_logger())

    async def set_vocabulary_off_executor(
        self, request: SetVocabulary.Request, response: SetVocabulary.Response
    ):
        """The ``~/set_vocabulary`` service callback: :meth:`set_vocabulary` on a thread of its
        own, awaited (the executor's thread goes back to other callbacks meanwhile)."""
        turn = self._turns.take()  # first: the order in which rclpy took the requests
        done = Future(executor=self._node.executor)
        # a done callback makes the executor schedule a task when the result is set, which
        # wakes it from its wait: it then resumes this coroutine (pending tasks are re-run)
        done.add_done_callback(lambda _future: None)

        def encode() -> None:
            # the vocabulary orders changes by the arrival of its tickets: take them in the
            # order of the calls, not of these threads' start (a later call's thread that ran
            # first made a caller's first change win over its second)
            try:
                self._turns.wait(turn)
                with self._writers:
                    outcome = self.set_vocabulary(request, response, lambda: self._turns.done(turn))
                failed = False
            except BaseException as exc:  # noqa: BLE001 (raised in the awaiting callback)
                outcome, failed = exc, True
            finally:
                self._turns.done(turn)  # refused before taking a ticket: the next call goes on
            try:
                if failed:
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
            except Exception:  # noqa: BLE001 (the executor is gone: shutting down, no answer)
                pass
            finally:
                with self._threads_lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=encode, name="set_vocabulary", daemon=True)
        with self._threads_lock:
            self._threads.add(thread)
        thread.start()
        return await done

    def wait_for_writers(self, timeout: float) -> None:
        """On shutdown: wait up to ``timeout`` s in all for the set_vocabulary threads (a long
        change is abandoned at its next text-encoder chunk once ``stopping()`` holds)."""
        deadline = time.monotonic() + timeout
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def set_vocabulary(
        self,
        request: SetVocabulary.Request,
        response: SetVocabulary.Response,
        on_ticket: Callable[[], object] | None = None,
    ):
        """Replace (or with ``append``, extend) the vocabulary; the response carries the
        vocabulary in force afterwards (unchanged on refusal). ``on_ticket()``: called once the
        change has its place in the vocabulary's arrival order."""
        pipeline = self._pipeline()
        snapshot = pipeline.vocabulary_snapshot() if pipeline else None
        response.version = int(snapshot.version) if snapshot else 0
        response.labels = list(snapshot.labels) if snapshot else []
        if pipeline is None:
            response.success, response.message = False, NOT_CONFIGURED
            return response
        if not request.labels:
            response.success = False
            response.message = (
                "empty label list: the vocabulary needs at least one entry (it is unchanged)"
            )
            return response
        vocabulary = pipeline.vocabulary
        limit = vocabulary.limits.max_entries if vocabulary is not None else 0
        if (
            vocabulary is not None and len(request.labels) > limit
        ):  # refused before the request is copied (one limit: the vocabulary's)
            response.success = False
            response.message = f"{len(request.labels)} labels in one request; at most {limit}"
            return response
        try:
            change = pipeline.set_vocabulary(
                list(request.labels),
                list(request.prompt_templates) or None,
                request.append,
                should_stop=self._stopping,
                on_ticket=on_ticket,
            )
        except WorkAbandoned:
            response.success, response.message = False, "vocabulary unchanged: node shutting down"
            return response
        except (ValueError, PipelineError) as exc:
            response.success, response.message = False, f"vocabulary unchanged: {exc}"
            self._node.get_logger().warning(f"set_vocabulary refused: {exc}")
            return response
        except Exception as exc:  # noqa: BLE001 (every call is answered; the node lives on)
            response.success = False
            response.message = f"vocabulary unchanged: {type(exc).__name__}: {exc}"
            self._node.get_logger().error(f"set_vocabulary failed: {response.message}")
            return response
        snap = change.snapshot
        response.success = True
        response.version, response.labels = int(snap.version), list(snap.labels)
        response.message = (
            f"superseded: a request that arrived after this one was applied first; "
            f"vocabulary v{snap.version} ({len(snap.labels)} entries) stays in force"
            if change.superseded
            else f"vocabulary v{snap.version}: {len(snap.labels)} entries (applies from the next frame)"
        )
        self._node.get_logger().info(response.message)
        return response

    def get_vocabulary(self, request, response: GetVocabulary.Response):
        """Labels, templates and version in force (empty, version 0, while unconfigured)."""
        pipeline = self._pipeline()
        snapshot = pipeline.vocabulary_snapshot() if pipeline else None
        if snapshot is not None:
            response.labels, response.version = list(snapshot.labels), int(snapshot.version)
            response.prompt_templates = list(snapshot.templates)
        return response

    def query_regions(self, request: QueryRegions.Request, response: QueryRegions.Response):
        """Ids and scores of the latest frame's ``top_k`` (0: all) regions that best match
        ``text``, best first, with that frame's header stamp."""
        pipeline = self._pipeline()
        if pipeline is None:
            response.success, response.message = False, NOT_CONFIGURED
            return response
        try:
            ids, scores, stamp = pipeline.query(request.text, int(request.top_k))
        except (ValueError, PipelineError) as exc:
            response.success, response.message = False, str(exc)
            return response
        except Exception as exc:  # noqa: BLE001 (every call is answered; the node lives on)
            response.success, response.message = False, f"{type(exc).__name__}: {exc}"
            self._node.get_logger().error(f"query_regions failed: {response.message}")
            return response
        response.success, response.message = (
            True,
            f"{len(ids)} regions scored against {request.text!r}",
        )
        response.region_ids, response.scores = [int(i) for i in ids], [float(s) for s in scores]
        set_stamp(response.stamp, stamp)  # the frame's header stamp, exactly
        return response
