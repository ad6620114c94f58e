"""QoS of the perception node's services, for the node and for every client of them.

Keep all, reliable: nothing is overwritten before it is delivered. With the default service QoS
(keep last 10) a burst of more than 10 concurrent calls loses answers: every client's response
reader receives the responses to ALL clients of the service (the rmw discards the others' on
take), so when more than 10 arrive before a client's executor takes them, its own answer is
overwritten -- the call is never answered although the change was applied. Measured with 20
concurrent ``set_vocabulary`` callers (tests/test_live_params.py): half of a burst of 20 first
calls lost with keep-last-10 clients, none with these.
"""

from __future__ import annotations

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
