"""Commit concurrent writes in the order they arrived, while their slow parts run in parallel.

A vocabulary change encodes its phrases (slow, no lock held) and then publishes a new version
(fast, under the writers' lock). Concurrent callers may finish encoding in any order; without
a ticket, a caller's second change could be published before its first and the older one would
win. :class:`ArrivalOrder` hands out tickets on arrival and lets ticket ``n`` commit only after
ticket ``n - 1`` has committed (or failed), like a bakery queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ArrivalOrder:
    """Callers commit in the order they entered :meth:`in_turn`, whatever their preparation
    took."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = 0  # next ticket to hand out
        self._serving = 0  # the ticket whose turn it is

    @contextmanager
    def in_turn(self, prepare: Callable[[], object] | None = None) -> Iterator[None]:
        """Take a ticket, run ``prepare()`` (in parallel with other callers), then block until
        every earlier caller has left its turn; the body is this caller's turn.

        The next caller's turn starts when the body exits, also when ``prepare`` or the body
        raises (the exception propagates), so a refused change never stalls the ones behind it.
        """
        with self._cond:
            ticket = self._issued
            self._issued += 1
        failure: BaseException | None = None
        try:
            if prepare is not None:
                prepare()
        except BaseException as exc:  # re-raised in turn: the ticket must still be served
            failure = exc
        with self._cond:
            self._cond.wait_for(lambda: self._serving == ticket)
        try:
            if failure is not None:
                raise failure
            yield
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()
