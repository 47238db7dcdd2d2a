"""Shared builders for the notifier tests: a config, alert events with fresh event ids, and time."""

from __future__ import annotations

from typing import Any

from pipeline.notify import Intent, Notifier, NotifierState, load_config
from pipeline.notify.config import NotifierConfig

T0 = 1_700_000_000_000  # epoch ms; every test counts from here
S, M, H = 1000, 60_000, 3_600_000

RECEIVERS = """
receivers:
  - name: hook
    webhook: {url: "https://hooks.example.com/pulse", headers: {Authorization: "Bearer s3cret"}}
  - name: quiet-hook
    send_resolved: false
    webhook: {url: "https://hooks.example.com/quiet"}
  - name: slack-oncall
    slack: {webhook_url: "https://hooks.slack.com/services/T0/B0/XYZ"}
  - name: email-oncall
    email: {to: [oncall@example.com], from: pulse@example.com, smtp_host: smtp.example.com}
  - name: pagerduty-oncall
    pagerduty: {routing_key: "R0UTINGKEY"}
"""

BASIC = RECEIVERS + """
external_url: https://pulse.example.com
route:
  receiver: hook
  group_by: [alertname, project]
"""


def config(text: str = BASIC, env: dict[str, str] | None = None) -> NotifierConfig:
    return load_config(text, env=env or {})


class Alerts:
    """Alert events as the alerting stage would send them: every event has a new id, and an alert
    keeps its ``starts_at`` until it resolves."""

    def __init__(self) -> None:
        self.n = 0
        self.starts: dict[str, int] = {}

    def _event(self, fp: str, status: str, at: int, rule: str, severity: str, labels: dict[str, str] | None,
               **extra: Any) -> dict[str, Any]:
        self.n += 1
        return {"event_id": f"ev-{self.n}", "fingerprint": fp, "rule": rule, "status": status, "severity": severity,
                "labels": {"project": "shop", **(labels or {})}, "starts_at": self.starts[fp],
                "ends_at": at if status == "resolved" else None, "value": 12.5, "threshold": 5.0,
                "summary": f"{rule} on {(labels or {}).get('project', 'shop')}",
                "runbook_url": "https://runbooks.example.com/" + rule, **extra}

    def fire(self, fp: str, at: int, rule: str = "HighErrorRate", severity: str = "warning",
             labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        self.starts.setdefault(fp, at)
        return self._event(fp, "firing", at, rule, severity, labels, **extra)

    def resolve(self, fp: str, at: int, rule: str = "HighErrorRate", severity: str = "warning",
                labels: dict[str, str] | None = None) -> dict[str, Any]:
        event = self._event(fp, "resolved", at, rule, severity, labels)
        del self.starts[fp]
        return event


def kinds(intents: list[Intent]) -> list[tuple[str, str]]:
    return [(i.kind, i.receiver) for i in intents]


def fps(intent: Intent) -> list[tuple[str, str]]:
    return [(a["fingerprint"], a["status"]) for a in intent.alerts]


def ticks(notifier: Notifier, state: NotifierState, start: int, end: int, step: int = 10 * S) -> list[Intent]:
    """Tick every ``step`` from ``start`` to ``end`` inclusive, as the notifier process would."""
    out: list[Intent] = []
    t = start
    while t <= end:
        out += notifier.on_tick(state, t)
        t += step
    return out
