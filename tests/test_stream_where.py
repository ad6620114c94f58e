"""``core.stream.cancel.where_thread_is``: the call a worker that does not stop in time is in
(the perception node names it in its shutdown warning)."""

from __future__ import annotations

import threading

from perception_nodes.core.stream.cancel import where_thread_is


def _blocked_in_a_model_call(release: threading.Event) -> None:
    release.wait(30)


def test_names_the_package_calls_a_worker_is_in():
    """A thread inside this package's code: those calls are listed after the innermost one."""
    from perception_nodes.core.stream.cancel import run_abandonable

    release, inside = threading.Event(), threading.Event()

    def model_call():
        inside.set()
        release.wait(30)

    worker = threading.Thread(target=run_abandonable, args=(model_call, lambda: False))
    worker.start()
    try:
        assert inside.wait(10)
        where = where_thread_is(worker)
        assert "cancel.py" in where and "run_abandonable" in where, where
    finally:
        release.set()
        worker.join()


def test_names_the_call_a_running_thread_is_in_and_says_when_it_ended():
    release = threading.Event()
    worker = threading.Thread(target=_blocked_in_a_model_call, args=(release,))
    worker.start()
    try:
        where = where_thread_is(worker)
        assert where.startswith("threading.py:"), where  # the innermost call, wherever it is
        assert "test_stream_where.py" not in where, where  # outside the package: not listed
    finally:
        release.set()
        worker.join()
    assert where_thread_is(worker) == "not running"
