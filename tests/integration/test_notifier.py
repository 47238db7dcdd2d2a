"""The notifier as a real process (``pulse notifier``) on a real broker, paging real receivers on
loopback: an aiohttp server with webhook-, Slack- and PagerDuty-shaped endpoints that answer from a
script, and an aiosmtpd SMTP server. Alert events go to the alerts topic with aiokafka, exactly as
the worker sends them (``AlertEvent.to_json()``). Timers are short (group_wait 1s, group_interval
2s, repeat_interval 4s, escalation timeout 3s) and every wait polls against a deadline."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from pipeline.alerts.evaluate import AlertEvent
from pipeline.kafka_admin import ensure_topics
from tests.conftest import free_port, make_settings
from tests.integration.pipeline_procs import PipelineProcs

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------ receivers


@dataclass
class Request:
    path: str
    body: Any
    headers: dict[str, str]
    at: float  # time.time() when it arrived
    status: int  # what we answered

    @property
    def kind(self) -> str:
        """The notification's kind: ``pulse.kind`` (webhook), the PagerDuty action, Slack's headline."""
        if isinstance(self.body, dict):
            if "pulse" in self.body:
                return self.body["pulse"]["kind"]
            if "event_action" in self.body:
                return self.body["event_action"]
            if "text" in self.body:
                return self.body["text"]
        return ""


class Receivers:
    """HTTP endpoints in a thread of their own (so a blocking test never stalls a delivery). Each
    path answers from its script (``answer``), then 200."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Request] = []
        self.scripts: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receivers", daemon=True)

    def start(self) -> "Receivers":
        self._thread.start()
        assert self._ready.wait(10), "receivers did not start"
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        with self.lock:
            script = self.scripts.get(request.path)
            status, headers = script.pop(0) if script else (200, {})
            self.requests.append(Request(request.path, body, dict(request.headers), time.time(), status))
        if request.path == "/slack" and status == 200:
            return web.Response(text="ok", status=200)
        doc = {"status": "success", "message": "Event processed"} if status < 300 else {"error": "scripted failure"}
        return web.json_response(doc, status=202 if request.path == "/pagerduty" and status == 200 else status,
                                 headers=headers)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *responses: tuple[int, dict[str, str]]) -> None:
        with self.lock:
            self.scripts[path] = list(responses)

    def got(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Mailbox:
    """An aiosmtpd SMTP server on loopback; ``messages`` are the parsed e-mails."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    r = Receivers().start()
    yield r
    r.stop()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    m = Mailbox()
    m.controller.start()
    yield m
    m.controller.stop()


# ------------------------------------------------------------------------------ config and events


def config_yaml(r: Receivers, m: Mailbox, *, routes: list[str], group_by: str = "[alertname, project]",
                group_wait: str = "1s", group_interval: str = "2s", repeat_interval: str = "1h",
                extra: str = "") -> str:
    """Every receiver is declared; ``routes`` are child routes matching every alert (each with
    ``continue``, so an alert goes to all of them); with none, the root's receiver (hook) gets it."""
    children = "".join(f"""
    - matchers: ['alertname=~".+"']
      receiver: {name}
      continue: true""" for name in routes)
    return f"""
external_url: http://pulse.test
receivers:
  - name: hook
    webhook: {{url: "{r.url('/hook')}", headers: {{Authorization: "Bearer hook-token"}}}}
  - name: slack
    slack: {{webhook_url: "{r.url('/slack')}"}}
  - name: pagerduty
    pagerduty: {{routing_key: "R0UTINGKEY", url: "{r.url('/pagerduty')}"}}
  - name: email
    email: {{to: [oncall@example.com], from: pulse@example.com, smtp_host: 127.0.0.1, smtp_port: {m.port},
             starttls: false}}
  - name: flaky
    webhook: {{url: "{r.url('/flaky')}"}}
  - name: limited
    webhook: {{url: "{r.url('/limited')}"}}
  - name: broken
    webhook: {{url: "{r.url('/broken')}"}}
route:
  receiver: hook
  group_by: {group_by}
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
  routes:{children or " []"}
{extra}
"""


class Alerts:
    """Alert events as the worker emits them (``AlertEvent.to_json()``)."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}

    @staticmethod
    def fp(rule: str, severity: str, project: str) -> str:
        return hashlib.sha256(f"{rule}|{severity}|{project}".encode()).hexdigest()[:32]

    def _event(self, rule: str, status: str, severity: str, project: str) -> dict[str, Any]:
        fp = self.fp(rule, severity, project)
        now = int(time.time() * 1000)
        if status == "firing":
            self.starts.setdefault(fp, now)
        starts = self.starts[fp] if status == "firing" else self.starts.pop(fp)
        event = AlertEvent(event_id=str(uuid.uuid4()), fingerprint=fp, rule=rule, status=status, severity=severity,  # type: ignore[arg-type]
                           labels={"project": project, "environment": "prod", "severity": severity},
                           starts_at=starts, ends_at=now if status == "resolved" else None, at=now, value=0.12,
                           threshold=0.05, summary=f"{rule} on {project}",
                           runbook_url=f"https://runbooks.example.com/{rule}")
        return event.to_json()

    def fire(self, rule: str, severity: str = "warning", project: str = "shop") -> dict[str, Any]:
        return self._event(rule, "firing", severity, project)

    def resolve(self, rule: str, severity: str = "warning", project: str = "shop") -> dict[str, Any]:
        return self._event(rule, "resolved", severity, project)


# ------------------------------------------------------------------------------ the process


class Notifier:
    def __init__(self, bootstrap: str, tmp: Path, config: str) -> None:
        (tmp / "notifier.yaml").write_text(config)
        self.port = free_port()
        self.settings = make_settings(
            bootstrap, tmp, PULSE_NOTIFIER_CONFIG_PATH=str(tmp / "notifier.yaml"),
            PULSE_NOTIFIER_PORT=str(self.port), PULSE_NOTIFIER_STATE_PATH=str(tmp / "notifier" / "state.sqlite3"),
            PULSE_NOTIFIER_GROUP_ID=f"notifier-{uuid.uuid4().hex[:8]}", PULSE_NOTIFIER_TICK_INTERVAL_S="0.1",
            PULSE_NOTIFIER_DELIVERY_TIMEOUT_S="3")
        asyncio.run(ensure_topics(self.settings.kafka, [self.settings.kafka.topic_alerts]))
        self.procs = PipelineProcs(self.settings, tmp / "logs")
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.procs.start("notifier")
        self.procs.wait_http(self.base + "/health", timeout_s=60)  # 200 once partitions are assigned

    def kill(self) -> None:
        assert self.procs.stop("notifier", signal.SIGKILL) == -signal.SIGKILL

    def stop(self) -> None:
        self.procs.stop_all()

    def produce(self, *events: dict[str, Any]) -> None:
        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap_servers)
            await producer.start()
            try:
                for e in events:
                    await producer.send_and_wait(self.settings.kafka.topic_alerts, orjson.dumps(e),
                                                 key=e["fingerprint"].encode())
            finally:
                await producer.stop()

        asyncio.run(send())

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else orjson.dumps(body)
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())

    def cli_start(self, *args: str) -> subprocess.Popen[str]:
        """``pulse notify <args>`` in a subprocess with the notifier's settings."""
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "notify", *args], env=self.procs.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def cli(self, *args: str, proc: subprocess.Popen[str] | None = None) -> str:
        """Its stdout, once it exited 0."""
        proc = proc or self.cli_start(*args)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"pulse notify {' '.join(args)}: {proc.returncode}\n{out}\n{err}"
        return out

    def outbox(self) -> list[tuple[str, int]]:
        """(status, attempts) of every outbox entry, read from the notifier's SQLite file (WAL: a
        reader does not disturb the running notifier)."""
        db = sqlite3.connect(f"file:{self.settings.notifier.state_path}?mode=ro", uri=True)
        try:
            return sorted(db.execute("SELECT status, attempts FROM outbox").fetchall())
        finally:
            db.close()

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
            if not m:
                continue
            have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def wait_for(self, what: str, check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            self.procs.check_alive()
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n--- notifier log:\n"
                             f"{self.procs.log('notifier')}")

    def holds(self, what: str, check: Callable[[], bool], seconds: float) -> None:
        """``check`` stays true for ``seconds`` (negative checks: nothing more arrives)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert check(), f"{what} no longer holds\n--- notifier log:\n{self.procs.log('notifier')}"
            time.sleep(0.05)


@pytest.fixture
def notifier(kafka_bootstrap: str, tmp_path: Path, receivers: Receivers, mailbox: Mailbox
             ) -> Iterator[Callable[..., Notifier]]:
    made: list[Notifier] = []

    def make(**cfg: Any) -> Notifier:
        n = Notifier(kafka_bootstrap, tmp_path, config_yaml(receivers, mailbox, **cfg))
        made.append(n)
        n.start()
        return n

    yield make
    for n in made:
        n.stop()


def fingerprints(req: Request) -> list[str]:
    """Fingerprints of the alerts in a webhook notification."""
    return [a["fingerprint"] for a in req.body["alerts"]]


# ------------------------------------------------------------------------------ tests


def test_firing_pages_each_receiver_once_and_resolved_follows(notifier: Callable[..., Notifier],
                                                               receivers: Receivers, mailbox: Mailbox) -> None:
    n = notifier(routes=["hook", "slack", "pagerduty", "email"])
    alerts = Alerts()
    fired = alerts.fire("CheckoutErrors", "critical")
    n.produce(fired)
    n.wait_for("a page on every receiver", lambda: receivers.got("/hook") and receivers.got("/slack")
               and receivers.got("/pagerduty") and mailbox.messages)

    [hook] = receivers.got("/hook")
    assert hook.headers["Authorization"] == "Bearer hook-token"
    body = hook.body
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
    assert body["groupLabels"] == {"alertname": "CheckoutErrors", "project": "shop"}
    [alert] = body["alerts"]
    assert alert["status"] == "firing" and alert["fingerprint"] == fired["fingerprint"]
    assert alert["labels"]["alertname"] == "CheckoutErrors" and alert["labels"]["severity"] == "critical"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z" and alert["annotations"]["summary"] == "CheckoutErrors on shop"
    assert body["pulse"]["kind"] == "firing"

    [slack] = receivers.got("/slack")
    assert "FIRING" in slack.body["text"] and "CheckoutErrors on shop" in slack.body["text"]
    assert slack.body["blocks"][0]["type"] == "header"

    [trigger] = receivers.got("/pagerduty")
    assert trigger.body["event_action"] == "trigger" and trigger.body["routing_key"] == "R0UTINGKEY"
    assert trigger.body["payload"]["severity"] == "critical" and trigger.body["dedup_key"]

    [mail] = mailbox.messages
    assert "FIRING" in mail["Subject"] and mail["To"] == "oncall@example.com"
    assert mailbox.envelopes == [("pulse@example.com", ["oncall@example.com"])]
    assert "CheckoutErrors on shop" in mail.get_content()

    n.produce(alerts.resolve("CheckoutErrors", "critical"))
    n.wait_for("the resolved notices", lambda: len(receivers.got("/hook")) == 2 and len(receivers.got("/slack")) == 2
               and len(receivers.got("/pagerduty")) == 2 and len(mailbox.messages) == 2)
    assert [r.body["status"] for r in receivers.got("/hook")] == ["firing", "resolved"]
    assert receivers.got("/hook")[1].body["alerts"][0]["status"] == "resolved"
    resolve = receivers.got("/pagerduty")[1]
    assert resolve.body["event_action"] == "resolve" and resolve.body["dedup_key"] == trigger.body["dedup_key"]
    assert "RESOLVED" in receivers.got("/slack")[1].body["text"]
    assert "RESOLVED" in mailbox.messages[1]["Subject"]
    assert mailbox.messages[1]["References"] == mail["References"]  # one thread per incident
    n.wait_for("eight deliveries recorded", lambda: n.metric("pulse_notifications_total", outcome="delivered") == 8)
    assert n.metric("pulse_notifications_total", outcome="retry") == 0


def test_receiver_failing_twice_gets_the_page_exactly_once(notifier: Callable[..., Notifier],
                                                           receivers: Receivers) -> None:
    receivers.answer("/flaky", (500, {}), (502, {}))
    n = notifier(routes=["flaky"])
    n.produce(Alerts().fire("SlowCheckout"))
    n.wait_for("the third attempt", lambda: len(receivers.got("/flaky")) == 3)
    tries = receivers.got("/flaky")
    assert [t.status for t in tries] == [500, 502, 200]
    assert len({t.body["pulse"]["intent_id"] for t in tries}) == 1  # the same notification each time
    assert tries[1].at - tries[0].at >= 0.95 and tries[2].at - tries[1].at >= 1.95  # backoff 1 s, 2 s
    n.holds("no fourth request", lambda: len(receivers.got("/flaky")) == 3, 1.0)
    assert n.metric("pulse_notifications_total", receiver="flaky", outcome="retry") == 2
    assert n.metric("pulse_notifications_total", receiver="flaky", outcome="delivered") == 1


def test_sigkill_while_a_retry_is_pending_still_pages_once(notifier: Callable[..., Notifier],
                                                           receivers: Receivers) -> None:
    receivers.answer("/flaky", (500, {}), (500, {}))
    n = notifier(routes=["flaky"])
    n.produce(Alerts().fire("SlowCheckout"))
    n.wait_for("the second failed attempt", lambda: len(receivers.got("/flaky")) == 2)
    n.wait_for("the retry stored as pending", lambda: n.outbox() == [("pending", 2)])
    n.kill()
    n.start()
    n.wait_for("the retry after the restart", lambda: len(receivers.got("/flaky")) == 3)
    tries = receivers.got("/flaky")
    assert [t.status for t in tries] == [500, 500, 200]
    assert len({t.body["pulse"]["intent_id"] for t in tries}) == 1
    assert tries[2].at - tries[1].at >= 1.95  # the stored schedule was kept
    n.holds("no fourth request", lambda: len(receivers.got("/flaky")) == 3, 2.5)  # > group_interval
    # the restarted process continued from the offsets in SQLite: it did not read the event again
    assert n.metric("pulse_notifier_records_total", outcome="applied") == 0
    assert n.metric("pulse_notifications_total", receiver="flaky", outcome="delivered") == 1


def test_the_same_alert_event_twice_pages_once(notifier: Callable[..., Notifier], receivers: Receivers) -> None:
    n = notifier(routes=["hook"])
    event = Alerts().fire("HighErrorRate")
    n.produce(event, event)
    n.wait_for("the page", lambda: receivers.got("/hook"))
    n.produce(event)  # a replay long after
    n.holds("one page", lambda: len(receivers.got("/hook")) == 1, 2.5)  # > group_interval
    assert n.metric("pulse_notifier_records_total", outcome="applied") == 3  # read three times, paged once


def test_silences_and_inhibition_mute(notifier: Callable[..., Notifier], receivers: Receivers) -> None:
    n = notifier(routes=["hook"], group_by="[alertname, severity]", extra="""
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alertname, project]
""")
    # bad input is refused with a message naming the problem
    status, doc = n.api("POST", "/api/silences", {"duration": "1h", "created_by": "alice"})
    assert status == 400 and "matchers" in doc["error"]
    status, doc = n.api("POST", "/api/silences", {"matchers": ['alertname="X"'], "duration": "soon", "created_by": "a"})
    assert status == 400 and "duration" in doc["error"]
    status, doc = n.api("POST", "/api/silences", {"matchers": ['alertname=~".*"'], "duration": "1h", "created_by": "a"})
    assert status == 400 and "every alert" in doc["error"]
    status, doc = n.api("DELETE", "/api/silences/nope")
    assert status == 404

    status, doc = n.api("POST", "/api/silences", {"matchers": ['alertname="MutedByApi"'], "duration": "1h",
                                                  "created_by": "alice", "comment": "deploy"})
    assert status == 201
    api_silence = doc["silence_id"]
    cli_silence = n.cli("silence", 'alertname="MutedByCli"', "--duration", "1h", "--by", "bob").strip()
    listed = n.cli("silences")
    assert api_silence in listed and cli_silence in listed and "MutedByCli" in listed
    status, doc = n.api("GET", "/api/silences")
    assert {s["silence_id"]: s["status"] for s in doc} == {api_silence: "active", cli_silence: "active"}

    alerts = Alerts()
    n.produce(alerts.fire("MutedByApi"), alerts.fire("MutedByCli"), alerts.fire("Loud"),
              alerts.fire("Checkout", "critical"), alerts.fire("Checkout", "warning"))
    critical, warning = Alerts.fp("Checkout", "critical", "shop"), Alerts.fp("Checkout", "warning", "shop")
    n.wait_for("Loud and the critical Checkout", lambda: {Alerts.fp("Loud", "warning", "shop"), critical}
               <= {fp for r in receivers.got("/hook") for fp in fingerprints(r)})
    muted = {Alerts.fp("MutedByApi", "warning", "shop"), Alerts.fp("MutedByCli", "warning", "shop"), warning}
    n.holds("nothing muted is notified", lambda: not muted & {fp for r in receivers.got("/hook")
                                                             for fp in fingerprints(r)}, 2.5)
    assert len(receivers.got("/hook")) == 2

    # the API silence ends: its alert, still firing, is notified at its group's next flush
    assert n.cli("expire", api_silence[:8]).startswith(f"{api_silence}: expired")
    n.wait_for("MutedByApi after its silence", lambda: any(
        Alerts.fp("MutedByApi", "warning", "shop") in fingerprints(r) for r in receivers.got("/hook")), 5)
    assert not any(Alerts.fp("MutedByCli", "warning", "shop") in fingerprints(r) for r in receivers.got("/hook"))


def test_group_wait_group_interval_and_repeat_interval(notifier: Callable[..., Notifier],
                                                       receivers: Receivers) -> None:
    n = notifier(routes=["hook"], repeat_interval="4s")
    alerts = Alerts()
    produced = time.time()  # the group's flushes: group_wait (1 s) after the notifier reads this, then every 2 s
    n.produce(alerts.fire("HighErrorRate", project="shop"))
    first = n.wait_for("the first notification", lambda: receivers.got("/hook"))[0]
    assert first.at - produced >= 1.0  # group_wait
    assert len(first.body["alerts"]) == 1
    n.produce(alerts.fire("HighErrorRate", "critical", project="shop"))  # joins the group
    second = n.wait_for("the group's update", lambda: len(receivers.got("/hook")) >= 2 and receivers.got("/hook")[1])
    assert second.at - produced >= 3.0  # at the group's next flush (group_interval), not at once
    assert second.at - produced <= 5.0
    assert second.body["pulse"]["kind"] == "firing" and len(second.body["alerts"]) == 2
    third = n.wait_for("the repeat", lambda: len(receivers.got("/hook")) >= 3 and receivers.got("/hook")[2], 10)
    assert third.body["pulse"]["kind"] == "repeat" and len(third.body["alerts"]) == 2
    # repeat_interval 4 s after the update, checked at the group's flushes (every 2 s): 4 or 6 s later
    assert third.at - produced >= 7.0
    assert third.at - produced <= 11.0
    assert len(receivers.got("/hook")) == 3


def test_escalation_and_acknowledgement(notifier: Callable[..., Notifier], receivers: Receivers) -> None:
    n = notifier(routes=[], group_by="[alertname]", extra="""
escalation:
  critical: {timeout: 3s, steps: [slack, pagerduty]}
""")
    alerts = Alerts()
    produced = time.time()
    n.produce(alerts.fire("AckedByApi", "critical"), alerts.fire("AckedByCli", "critical"),
              alerts.fire("Unacked", "critical"))
    n.wait_for("step 0 (Slack) for the three incidents", lambda: len(receivers.got("/slack")) == 3)
    assert len(receivers.got("/hook")) == 3  # the route's receiver too
    api_fp, cli_fp = Alerts.fp("AckedByApi", "critical", "shop"), Alerts.fp("AckedByCli", "critical", "shop")
    cli_ack = n.cli_start("ack", cli_fp[:10], "--by", "bob")  # (a second to start: runs meanwhile)

    status, doc = n.api("POST", f"/api/alerts/{api_fp}/ack", {})
    assert status == 400 and "by" in doc["error"]
    status, doc = n.api("POST", "/api/alerts/0000nope/ack", {"by": "alice"})
    assert status == 404
    status, doc = n.api("POST", f"/api/alerts/{api_fp}/ack", {"by": "alice"})
    assert status == 200 and len(doc["incidents"]) == 1 and doc["notifications"] == 2  # hook + slack are told
    status, doc = n.api("POST", f"/api/alerts/{api_fp}/ack", {"by": "alice"})
    assert status == 409
    assert "acknowledged by bob" in n.cli("ack", proc=cli_ack)

    page = n.wait_for("step 1 (PagerDuty) for the unacknowledged incident", lambda: receivers.got("/pagerduty"))[0]
    assert page.body["event_action"] == "trigger" and page.body["payload"]["class"] == "Unacked"
    assert page.body["payload"]["custom_details"]["kind"] == "escalation"
    assert page.at - produced >= 1.0 + 3.0  # group_wait, then the escalation timeout
    n.holds("the acknowledged incidents do not escalate", lambda: len(receivers.got("/pagerduty")) == 1, 1.5)

    acks = [r for r in receivers.got("/hook") if r.kind == "acknowledged"]
    assert sorted(r.body["pulse"]["by"] for r in acks) == ["alice", "bob"]
    assert sum("ACKNOWLEDGED" in r.body["text"] for r in receivers.got("/slack")) == 2
    status, incidents = n.api("GET", "/api/incidents")
    by_title = {i["title"]: i for i in incidents}
    assert by_title["AckedByApi on shop"]["status"] == "acknowledged"
    assert by_title["AckedByApi on shop"]["acked_by"] == "alice"
    assert by_title["AckedByCli on shop"]["acked_by"] == "bob"
    assert by_title["Unacked on shop"]["status"] == "open" and by_title["Unacked on shop"]["step"] == 1
    assert any(e["what"] == "acknowledged" and e["by"] == "alice" for e in by_title["AckedByApi on shop"]["timeline"])
    listing = n.cli("incidents", "--timeline")
    assert "acknowledged" in listing and "escalated to step 1: pagerduty" in listing


def test_retry_after_is_honoured_and_other_4xx_fail_for_good(notifier: Callable[..., Notifier],
                                                             receivers: Receivers) -> None:
    receivers.answer("/limited", (429, {"Retry-After": "3"}))
    receivers.answer("/broken", (400, {}))
    n = notifier(routes=["limited", "broken"])
    n.produce(Alerts().fire("HighErrorRate"))
    n.wait_for("the retry after Retry-After", lambda: len(receivers.got("/limited")) == 2, 15)
    first, second = receivers.got("/limited")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 2.95  # not before Retry-After
    assert len(receivers.got("/broken")) == 1  # a 400 is not retried
    n.wait_for("the delivery recorded", lambda: n.outbox() == [("done", 2), ("failed", 1)])
    assert n.metric("pulse_notifications_total", receiver="broken", outcome="failed") == 1
    assert n.metric("pulse_notifications_total", receiver="limited", outcome="retry") == 1
    assert n.metric("pulse_notifications_total", receiver="limited", outcome="delivered") == 1
    status, health = n.api("GET", "/health")
    assert status == 200 and health["outbox"]["failed"] == 1 and health["outbox"]["pending"] == 0


def test_remediation_webhook_is_called_once_and_recorded(notifier: Callable[..., Notifier],
                                                         receivers: Receivers) -> None:
    n = notifier(routes=["hook"])
    event = Alerts().fire("CheckoutFailures", severity="critical")
    event["remediation_webhook"] = receivers.url("/remediate")
    n.produce(event)
    n.wait_for("the remediation call", lambda: receivers.got("/remediate"))
    n.produce({**event, "event_id": str(uuid.uuid4()), "at": event["at"] + 1000})  # the same alert, still firing
    n.holds("one remediation call", lambda: len(receivers.got("/remediate")) == 1, 2.5)
    status, incidents = n.api("GET", "/api/incidents")
    assert status == 200
    timeline = " ".join(str(step) for i in incidents for step in i.get("timeline", []))
    assert "remediation" in timeline.lower(), incidents
