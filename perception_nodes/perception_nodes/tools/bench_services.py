"""pn-bench-services: lost service answers under load, counted (issue 21, item 2).

Starts a perception node (its own process, real DDS; small test models by default: the load
here is the services', not the models'), warms up ``--callers`` ``set_vocabulary`` clients (each
gets one answer to an empty list first, resent until answered: the first-call matching race is
not what is counted), then every caller calls ``set_vocabulary`` back to back for
``--duration`` s while frames flow. A call not answered within ``--answer-timeout`` s counts as
lost; the node's log is searched for the answers the rmw refused and the node resent ("answer
sent on attempt", "answer refused by the rmw") and for rclpy's own "failed to send response"
(shown once per process). Prints a table and writes JSON (``--out``).

    pn-bench-services --callers 20 --duration 30
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from perception_nodes.tools.bench_common import hardware_info

NODE = "/perception_node"
CAMERA = "/camera"


@dataclass
class CallerRecord:
    """One caller's calls: latencies (s) of the answered ones, indexes of the lost ones."""

    latencies: list[float] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # call index (0 = first after warm-up)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--callers", type=int, default=20)
    p.add_argument("--duration", type=float, default=30.0, help="s of calls after warm-up")
    p.add_argument("--answer-timeout", type=float, default=30.0, help="s: later = lost")
    p.add_argument("--frame-period", type=float, default=0.5, help="s between frames")
    p.add_argument(
        "--distinct-labels",
        type=int,
        default=0,
        help="each caller cycles through this many label lists (their embeddings are then "
        "cached: cheap calls, a high call rate); 0: a new label in every call",
    )
    p.add_argument("--model", default="sam_tiny_test", help="SAM model (registry name)")
    p.add_argument("--clip", default="pn-clip-tiny-test", help="CLIP model")
    p.add_argument("--cache-dir", default="", help="weights cache (default: a temporary one)")
    p.add_argument("--out", default="outputs/bench/services.json")
    return p.parse_args(argv)


def start_node(args, folder: Path):
    from perception_nodes.launch_overrides import launch_overrides
    from perception_nodes.tools.graph_runner import NodeGraph, write_params_file

    overrides = launch_overrides([CAMERA], backend="torch", model=args.model)
    overrides["perception_node"].update(
        {
            "clip.model": args.clip,
            "amg.points_per_side": 4,
            "weights.cache_dir": args.cache_dir or str(folder / "cache"),
            "vocabulary.labels": ["person", "cup"],
        }
    )
    graph = NodeGraph(log_dir=folder)
    graph.start("perception_node", write_params_file(overrides, folder=folder))
    return graph


def wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def warm_up(client, request_type, timeout: float = 120.0) -> None:
    """One answered call (resent every 5 s while unanswered: Fast DDS drops the answer to a
    client whose response reader the service has not matched yet)."""
    assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        future = client.call_async(request_type.Request(labels=[]))
        if wait_until(future.done, 5.0):
            return
    raise TimeoutError(f"{client.srv_name}: no answer to the warm-up call in {timeout} s")


def run_callers(clients, request_type, duration: float, answer_timeout: float, distinct: int = 0):
    """Every client calls back to back for ``duration`` s; per caller its record. ``distinct``:
    see ``--distinct-labels``."""
    records = [CallerRecord() for _ in clients]
    stop_at = time.monotonic() + duration

    def caller(i: int) -> None:
        n = 0
        while time.monotonic() < stop_at:
            done = threading.Event()
            t0 = time.monotonic()
            future = clients[i].call_async(
                request_type.Request(
                    labels=[f"caller {i} call {n % distinct if distinct else n}", "mug"]
                )
            )
            future.add_done_callback(lambda _f, d=done: d.set())
            if done.wait(answer_timeout):
                records[i].latencies.append(time.monotonic() - t0)
            else:
                records[i].lost.append(n)
            n += 1

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + answer_timeout + 60)
    return records


def frame_loop(publisher, period: float, stop: threading.Event) -> None:
    from perception_nodes.nodes.image_folder_publisher import load_image
    from perception_nodes.ros.image_conversion import numpy_to_image_msg

    rgb = load_image("coffee", 96)
    while not stop.is_set():
        msg = numpy_to_image_msg(rgb, "rgb8")
        msg.header.stamp.sec = int(time.time())
        publisher.publish(msg)
        stop.wait(period)


def summarize(records: list[CallerRecord], node_log: str) -> dict:
    latencies = np.array([x for r in records for x in r.latencies] or [np.nan])
    lost = [(i, n) for i, r in enumerate(records) for n in r.lost]
    return {
        "calls": int(sum(len(r.latencies) + len(r.lost) for r in records)),
        "answered": int(sum(len(r.latencies) for r in records)),
        "lost": len(lost),
        "lost_calls": lost[:50],  # (caller, call index after warm-up)
        "p50_s": float(np.nanmedian(latencies)),
        "p99_s": float(np.nanpercentile(latencies, 99)),
        "max_s": float(np.nanmax(latencies)),
        "node_failed_to_send_response": node_log.count("failed to send response"),
        "node_answers_resent": node_log.count("answer sent on attempt"),
        "node_answers_refused_for_good": node_log.count("answer refused by the rmw"),
    }


def table(args, result: dict) -> str:
    rows = [
        ("callers", args.callers),
        ("duration (s)", args.duration),
        ("distinct label lists per caller (0: all new)", args.distinct_labels),
        ("calls", result["calls"]),
        ("answered", result["answered"]),
        ("lost (no answer in %.0f s)" % args.answer_timeout, result["lost"]),
        ("node log: failed to send response", result["node_failed_to_send_response"]),
        (
            "node log: answers resent / refused for good",
            "%d / %d" % (result["node_answers_resent"], result["node_answers_refused_for_good"]),
        ),
        (
            "latency p50 / p99 / max (s)",
            "%.3f / %.3f / %.3f" % (result["p50_s"], result["p99_s"], result["max_s"]),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import rclpy
    from perception_msgs.srv import SetVocabulary
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from perception_nodes.ros.qos import SERVICE_QOS

    folder = Path(tempfile.mkdtemp(prefix="pn_bench_services_"))
    graph = start_node(args, folder)
    context = Context()
    rclpy.init(context=context)
    node = Node("bench_services", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    stop_frames = threading.Event()
    try:
        clients = [
            node.create_client(SetVocabulary, f"{NODE}/set_vocabulary", qos_profile=SERVICE_QOS)
            for _ in range(args.callers)
        ]
        for client in clients:
            warm_up(client, SetVocabulary, timeout=600.0)
        image_pub = node.create_publisher(Image, f"{CAMERA}/image_raw", qos_profile_sensor_data)
        frames = threading.Thread(
            target=frame_loop, args=(image_pub, args.frame_period, stop_frames), daemon=True
        )
        frames.start()
        records = run_callers(
            clients, SetVocabulary, args.duration, args.answer_timeout, args.distinct_labels
        )
    finally:
        stop_frames.set()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        graph.stop()
    node_log = graph.processes[0].log_tail(50_000_000)
    result = summarize(records, node_log)
    print(table(args, result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"args": vars(args), "result": result, "hardware": hardware_info("cpu")}
    report["per_caller"] = [asdict(r) | {"latencies": len(r.latencies)} for r in records]
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
