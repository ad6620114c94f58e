"""Concurrent test runs on one machine never share a ROS domain through pytest-xdist's workers.

Two runs in one domain answer each other's service calls: a test's ``/perception_node`` then gets
the other run's ``set_vocabulary`` changes, which look like changes whose answer was lost
(tests/test_live_params.py's 20-caller test). ``conftest.worker_domain`` gave worker 1 of a run
started in domain 120 and worker 0 of one started in 121 the same domain (22).
"""

from __future__ import annotations

import itertools

from conftest import XDIST_DOMAINS, worker_domain

ENGINEERS = range(100, 136)  # the domains handed to engineers (briefs), each run's own
PID_DEFAULTS = range(1, 101)  # conftest's default without ROS_DOMAIN_ID: 1 + pid % 100


def test_the_workers_of_runs_in_neighbouring_domains_get_domains_of_their_own():
    for workers in (2, 3, 4):
        got = {(b, w): worker_domain(b, w, workers) for b in ENGINEERS for w in range(workers)}
        width = len(XDIST_DOMAINS) // workers  # bases closer than this never share a domain
        for (b1, w1), (b2, w2) in itertools.combinations(got, 2):
            if abs(b1 - b2) < width:
                assert got[b1, w1] != got[b2, w2], (workers, b1, w1, b2, w2)
    assert worker_domain(120, 1, 2) != worker_domain(121, 0, 2)  # the shared domain 22 before


def test_no_worker_takes_a_domain_that_a_run_uses_as_its_own():
    own = set(ENGINEERS) | set(PID_DEFAULTS)
    for base in own:
        for workers in (1, 2, 4):
            for w in range(workers):
                d = worker_domain(base, w, workers)
                assert d not in own and 0 <= d <= 232, (base, w, workers, d)  # Fast DDS: <= 232
