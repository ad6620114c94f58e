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


def test_finds_the_package_calls_when_it_runs_through_a_symlink(tmp_path):
    """``colcon build --symlink-install`` runs the package's modules from build/, a symlink to
    the sources: the running files' paths are not under the resolved package folder. Before,
    the warning then named only the innermost call (seen in a real launch: "at
    activation.py:1434 forward"); a module of the package counts by its name."""
    import importlib.util
    import os

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "plugin.py").write_text(
        "def model_call(release, inside):\n    inside.set()\n    release.wait(30)\n"
    )
    os.symlink(tmp_path / "src", tmp_path / "build")
    spec = importlib.util.spec_from_file_location(
        "perception_nodes.symlinked_plugin", tmp_path / "build" / "plugin.py"
    )
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    release, inside = threading.Event(), threading.Event()
    worker = threading.Thread(target=plugin.model_call, args=(release, inside))
    worker.start()
    try:
        assert inside.wait(10)
        where = where_thread_is(worker)
        assert where.startswith("threading.py:"), where
        assert "plugin.py:3 model_call" in where, where
    finally:
        release.set()
        worker.join()
