"""Time from the first breaching event to the page at the receiver, through the real processes.

    .venv/bin/python bench/alert_latency_bench.py                     # 10 s windows, 2 s lateness, 3 runs
    .venv/bin/python bench/alert_latency_bench.py --window 60 --lateness 60 --runs 1   # the defaults' shape

Starts its own broker (LocalBroker), the collector, worker, sink and notifier, and a webhook receiver
on loopback. Each run waits for the start of a fresh window, posts traffic that breaches the
error-rate rule (20 % errors per page view > 10 %) through the collector, and measures until the
notifier's webhook arrives. Target (issue 6): <= window + lateness + 5 s. The page cannot come
before the window closes (its end + lateness), so the figure also shows how much of the time is
waiting for the window and how much is the pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RULES = """
rules:
  - name: error-rate
    kind: ratio
    numerator: errors
    denominator: pageviews
    window: {window}s
    thresholds: {{critical: 0.10}}
    min_volume: 5
    group_by: [environment]
"""
NOTIFIER = """
receivers:
  - name: bench
    send_resolved: true
    webhook: {{url: "{url}"}}
route: {{receiver: bench, group_by: [alertname, project], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pages:
    """A webhook receiver: when each firing page arrived."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, dict]] = []
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                pages.arrived.append((time.time(), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def firing_after(self, t: float) -> float | None:
        for at, body in self.arrived:
            if at >= t and body.get("status") == "firing":
                return at
        return None


def post(url: str, events: list[dict]) -> None:
    req = urllib.request.Request(url, data=json.dumps(events).encode(), method="POST",
                                 headers={"X-Pulse-Key": "demo-public-key", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def breach(collector: str, run: int) -> None:
    now = datetime.now(timezone.utc).isoformat()
    base = {"timestamp": now, "route": "/cart", "environment": f"bench-{run}"}
    events = [{**base, "event_id": str(uuid.uuid4()), "type": "action", "session_id": f"r{run}-s{i}",
               "action": {"kind": "pageview"}} for i in range(20)]
    events += [{**base, "event_id": str(uuid.uuid4()), "type": "error", "session_id": f"r{run}-s{i}",
                "error": {"exception_type": "TypeError", "message": "cart is undefined"}} for i in range(4)]
    post(collector + "/api/v1/events", events)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=10, help="rule and rollup window, seconds")
    ap.add_argument("--lateness", type=float, default=2.0, help="allowed lateness, seconds")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from pipeline.kafka_admin import ensure_topics, wait_for_broker
    from pipeline.localbroker import LocalBroker
    from pipeline.settings import Settings
    from pipeline.supervise import ChildProcesses

    pages = Pages()
    with tempfile.TemporaryDirectory(prefix="pulse-alert-bench-") as tmp:
        work = Path(tmp)
        (work / "rules.yaml").write_text(RULES.format(window=args.window))
        (work / "notifier.yaml").write_text(NOTIFIER.format(url=pages.url))
        port = free_port()
        broker = LocalBroker(port=port, data_dir=work / "kafka")
        broker.start()
        env = {**os.environ, "PULSE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "PULSE_DATA_DIR": str(work),
               "PULSE_CLICKHOUSE_PATH": str(work / "chdb"), "PULSE_WORKER_DATA_DIR": str(work / "worker"),
               "PULSE_COLLECTOR_PORT": str(free_port()), "PULSE_SINK_PORT": str(free_port()),
               "PULSE_WORKER_WEB_PORT": str(free_port()), "PULSE_NOTIFIER_PORT": str(free_port()),
               "PULSE_NOTIFIER_STATE_PATH": str(work / "notifier.sqlite3"),
               "PULSE_NOTIFIER_CONFIG_PATH": str(work / "notifier.yaml"), "PULSE_ALERTS_RULES_PATH": str(work / "rules.yaml"),
               "PULSE_ROLLUPS_WINDOW_S": str(args.window), "PULSE_ROLLUPS_ALLOWED_LATENESS_S": str(args.lateness),
               "PULSE_ALERTS_TICK_INTERVAL_S": "0.5", "PULSE_NOTIFIER_TICK_INTERVAL_S": "0.5"}
        os.environ.update(env)
        settings = Settings()
        asyncio.run(wait_for_broker(settings.kafka.bootstrap_servers))
        asyncio.run(ensure_topics(settings.kafka))
        procs = ChildProcesses(work / "logs", env=env)
        try:
            for name in ("sink", "worker", "collector", "notifier"):
                procs.start(name)
            collector = f"http://127.0.0.1:{settings.collector.port}"
            procs.wait_http(collector + "/health")
            procs.wait_http(f"http://127.0.0.1:{settings.notifier.port}/health")
            procs.wait_ready(settings.worker.web_port)
            target = args.window + args.lateness + 5
            print(f"window {args.window} s, lateness {args.lateness} s: target <= {target:.1f} s "
                  f"(the window closes {args.window + args.lateness:.1f} s after its start at the latest)")
            results = []
            for run in range(args.runs):
                while time.time() % args.window > 0.5:  # the start of a fresh window: the worst case
                    time.sleep(0.05)
                t0 = time.time()
                breach(collector, run)
                window_closes = t0 - t0 % args.window + args.window + args.lateness
                deadline = time.monotonic() + args.window + args.lateness + 60
                paged = None
                while paged is None and time.monotonic() < deadline:
                    paged = pages.firing_after(t0)
                    time.sleep(0.05)
                if paged is None:
                    print(f"run {run + 1}: no page within {args.window + args.lateness + 60:.0f} s\n"
                          f"{procs.log('worker')[-1500:]}\n{procs.log('notifier')[-1500:]}")
                    sys.exit(1)
                results.append(paged - t0)
                print(f"run {run + 1}: page after {paged - t0:6.2f} s (window closed after {window_closes - t0:5.2f} s; "
                      f"pipeline {paged - window_closes:5.2f} s after that)  {'✓' if paged - t0 <= target else '✗'}")
            print(f"worst {max(results):.2f} s, best {min(results):.2f} s, target {target:.1f} s: "
                  f"{'met' if max(results) <= target else 'NOT met'}")
        finally:
            procs.stop_all()
            broker.stop()


if __name__ == "__main__":
    main()
