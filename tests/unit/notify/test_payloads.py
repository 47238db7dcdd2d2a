"""Request bodies per receiver kind and the retry policy (pipeline/notify/payloads.py)."""

from __future__ import annotations

import json

import pytest

from pipeline.notify import Intent, Notifier, NotifierState, render, retry_after_seconds
from pipeline.notify.payloads import AM_ZERO_TIME, SLACK_MAX_ALERTS, alertmanager_webhook, email_message, \
    headline, iso, pagerduty_event, slack_message

from .factory import RECEIVERS, T0, Alerts, M, S, config

CONFIG = RECEIVERS + """
external_url: https://pulse.example.com/
route:
  receiver: hook
  group_by: [alertname, project]
escalation:
  critical: {steps: [slack-oncall, pagerduty-oncall]}
remediation:
  CheckoutDown: https://hooks.example.com/rollback
"""


@pytest.fixture(scope="module")
def lifecycle() -> dict[str, list[Intent]]:
    """One incident from firing to resolved, every intent it produced, by receiver."""
    cfg = config(CONFIG)
    notifier, state, alerts = Notifier(cfg), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("fp-1", T0, severity="critical", labels={"page": "/checkout"}), T0)
    notifier.on_alert(state, alerts.fire("fp-2", T0 + S, severity="warning", labels={"page": "/cart"}), T0 + S)
    out = notifier.on_tick(state, T0 + 30 * S)
    out += notifier.on_tick(state, T0 + 5 * M + 30 * S)
    out += notifier.acknowledge(state, "fp-1", "alice", T0 + 6 * M)
    notifier.on_alert(state, alerts.resolve("fp-1", T0 + 7 * M, severity="critical"), T0 + 7 * M)
    notifier.on_alert(state, alerts.resolve("fp-2", T0 + 7 * M, severity="warning"), T0 + 7 * M)
    out += notifier.on_tick(state, T0 + 10 * M + 30 * S)
    by: dict[str, list[Intent]] = {}
    for intent in out:
        by.setdefault(intent.receiver, []).append(intent)
    return by


def test_lifecycle_fixture_shape(lifecycle: dict[str, list[Intent]]) -> None:
    assert [i.kind for i in lifecycle["hook"]] == ["firing", "acknowledged", "resolved"]
    assert [i.kind for i in lifecycle["slack-oncall"]] == ["escalation", "acknowledged", "resolved"]
    assert [i.kind for i in lifecycle["pagerduty-oncall"]] == ["escalation", "acknowledged", "resolved"]


def test_pagerduty_trigger_acknowledge_resolve_share_the_dedup_key(lifecycle: dict[str, list[Intent]]) -> None:
    cfg = config(CONFIG).receiver("pagerduty-oncall").pagerduty
    trigger, ack, resolve = (pagerduty_event(i, cfg, client_url="https://pulse.example.com")
                             for i in lifecycle["pagerduty-oncall"])
    assert [e["event_action"] for e in (trigger, ack, resolve)] == ["trigger", "acknowledge", "resolve"]
    assert len({e["dedup_key"] for e in (trigger, ack, resolve)}) == 1
    assert trigger["dedup_key"] == lifecycle["pagerduty-oncall"][0].incident_id
    assert all(e["routing_key"] == "R0UTINGKEY" for e in (trigger, ack, resolve))
    assert set(ack) == set(resolve) == {"routing_key", "event_action", "dedup_key"}
    payload = trigger["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"].startswith("[CRITICAL] ESCALATED (step 1): HighErrorRate on shop")
    assert payload["source"] == "frontend-pulse" and payload["component"] == "shop"
    assert payload["class"] == "HighErrorRate"
    assert payload["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert [a["fingerprint"] for a in payload["custom_details"]["alerts"]] == ["fp-1", "fp-2"]
    assert trigger["links"] == [{"href": "https://runbooks.example.com/HighErrorRate",
                                 "text": "Runbook: HighErrorRate"}]
    assert trigger["client_url"] == "https://pulse.example.com"
    json.dumps(trigger)


@pytest.mark.parametrize(("severity", "expected"), [("critical", "critical"), ("page", "error"),
                                                    ("warning", "warning"), ("info", "info")])
def test_pagerduty_severity_by_level(severity: str, expected: str) -> None:
    cfg = config(CONFIG)
    notifier, state = Notifier(cfg), NotifierState()
    notifier.on_alert(state, Alerts().fire("a", T0, severity=severity), T0)
    [intent] = [i for i in notifier.on_tick(state, T0 + 30 * S) if i.receiver == "hook"]
    assert pagerduty_event(intent, cfg.receiver("pagerduty-oncall").pagerduty)["payload"]["severity"] == expected


def test_alertmanager_webhook_fields(lifecycle: dict[str, list[Intent]]) -> None:
    firing, _, resolved = lifecycle["hook"]
    body = alertmanager_webhook(firing, external_url="https://pulse.example.com")
    assert body["version"] == "4"
    assert body["groupKey"] == firing.group_key == '{}:{alertname="HighErrorRate",project="shop"}'
    assert (body["status"], body["receiver"], body["truncatedAlerts"]) == ("firing", "hook", 0)
    assert body["groupLabels"] == {"alertname": "HighErrorRate", "project": "shop"}
    assert body["commonLabels"] == {"alertname": "HighErrorRate", "project": "shop"}  # page, severity differ
    assert body["commonAnnotations"] == {"summary": "HighErrorRate on shop", "threshold": "5", "value": "12.5",
                                         "runbook_url": "https://runbooks.example.com/HighErrorRate"}
    assert body["externalURL"] == "https://pulse.example.com"
    first = body["alerts"][0]
    assert set(first) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert first["labels"] == {"alertname": "HighErrorRate", "page": "/checkout", "project": "shop",
                               "severity": "critical"}
    assert first["annotations"] == {"summary": "HighErrorRate on shop", "value": "12.5", "threshold": "5",
                                    "runbook_url": "https://runbooks.example.com/HighErrorRate"}
    assert (first["startsAt"], first["endsAt"], first["fingerprint"]) == (iso(T0), AM_ZERO_TIME, "fp-1")
    assert body["pulse"]["kind"] == "firing" and body["pulse"]["intent_id"] == firing.intent_id
    done = alertmanager_webhook(resolved)
    assert done["status"] == "resolved"
    assert [(a["status"], a["endsAt"]) for a in done["alerts"]] == [("resolved", iso(T0 + 7 * M))] * 2


def test_slack_message(lifecycle: dict[str, list[Intent]]) -> None:
    escalation, ack, resolved = lifecycle["slack-oncall"]
    msg = slack_message(escalation)
    header, first, second, context = msg["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert header["text"]["text"] == "[CRITICAL] ESCALATED (step 0): HighErrorRate on shop (+1 more)"
    text = first["text"]["text"]
    assert first["text"]["type"] == "mrkdwn"
    assert "*HighErrorRate on shop*" in text and "severity *critical*" in text
    assert "value 12.5 vs threshold 5" in text
    assert "Labels: `page=/checkout, project=shop`" in text
    assert "<https://runbooks.example.com/HighErrorRate|Runbook>" in text
    assert "severity *warning*" in second["text"]["text"]
    assert f"acknowledge: `pulse notify ack {escalation.incident_id}`" in context["elements"][0]["text"]
    assert msg["text"] == header["text"]["text"]
    assert "acknowledged by *alice*" in slack_message(ack)["blocks"][-1]["elements"][0]["text"]
    assert slack_message(resolved)["blocks"][0]["text"]["text"].startswith("[CRITICAL] RESOLVED")


def test_slack_escapes_and_limits() -> None:
    alerts = tuple({"fingerprint": f"f{n}", "rule": "R", "status": "firing", "severity": "info",
                    "labels": {"q": "<a&b>"}, "starts_at": T0, "ends_at": None, "value": None, "threshold": None,
                    "summary": "x" * 300 if n == 0 else "<b>", "runbook_url": "", "generator_url": ""}
                   for n in range(SLACK_MAX_ALERTS + 3))
    intent = Intent("i", "firing", "slack-oncall", "g", "inc", "firing", "info", "low", {}, alerts, T0)
    msg = slack_message(intent, ack_hint=None)
    assert len(msg["blocks"][0]["text"]["text"]) == 150
    sections = [b for b in msg["blocks"] if b["type"] == "section"]
    assert len(sections) == SLACK_MAX_ALERTS
    assert "&lt;b&gt;" in sections[1]["text"]["text"] and "`q=&lt;a&amp;b&gt;`" in sections[1]["text"]["text"]
    assert msg["blocks"][-2]["elements"][0]["text"] == "…and 3 more alerts"
    assert "acknowledge" not in msg["blocks"][-1]["elements"][0]["text"]


def test_email_message(lifecycle: dict[str, list[Intent]]) -> None:
    firing = lifecycle["hook"][0]
    cfg = config(CONFIG).receiver("email-oncall").email
    msg = email_message(firing, cfg)
    assert msg["Subject"] == "[CRITICAL] FIRING: HighErrorRate on shop (+1 more)"
    assert (msg["From"], msg["To"]) == ("pulse@example.com", "oncall@example.com")
    assert msg["Message-ID"] == f"<{firing.intent_id}@frontend-pulse>"
    assert msg["References"] == f"<{firing.incident_id}@frontend-pulse>"
    assert msg["Date"] == "Tue, 14 Nov 2023 22:13:50 +0000"
    body = msg.get_content()
    assert f"Acknowledge: pulse notify ack {firing.incident_id}" in body
    assert "- HighErrorRate (firing, critical) since 2023-11-14T22:13:20.000Z" in body
    assert "  value 12.5 vs threshold 5" in body
    assert "  runbook: https://runbooks.example.com/HighErrorRate" in body
    resolved = email_message(lifecycle["hook"][2], cfg)
    assert resolved["Subject"].startswith("[CRITICAL] RESOLVED: ")
    assert "ended 2023-11-14T22:20:20.000Z" in resolved.get_content()


def test_render_per_receiver(lifecycle: dict[str, list[Intent]]) -> None:
    cfg = config(CONFIG)
    hook = render(lifecycle["hook"][0], cfg)
    assert (hook.transport, hook.url) == ("http", "https://hooks.example.com/pulse")
    assert hook.headers == {"Content-Type": "application/json", "Authorization": "Bearer s3cret"}
    assert hook.json["version"] == "4" and hook.json["externalURL"] == "https://pulse.example.com"
    slack = render(lifecycle["slack-oncall"][0], cfg)
    assert slack.url == "https://hooks.slack.com/services/T0/B0/XYZ" and "blocks" in slack.json
    pd = render(lifecycle["pagerduty-oncall"][0], cfg)
    assert pd.url == "https://events.pagerduty.com/v2/enqueue" and pd.json["event_action"] == "trigger"
    email_cfg = CONFIG.replace("receiver: hook\n", "receiver: email-oncall\n")
    notifier, state = Notifier(config(email_cfg)), NotifierState()
    notifier.on_alert(state, Alerts().fire("a", T0, rule="CheckoutDown"), T0)
    firing, remediation = notifier.on_tick(state, T0 + 30 * S)
    mail = render(firing, config(email_cfg))
    assert mail.transport == "smtp" and mail.smtp.smtp_host == "smtp.example.com" and mail.email["Subject"]
    call = render(remediation, cfg)
    assert (call.url, call.json["alerts"][0]["labels"]["alertname"]) == ("https://hooks.example.com/rollback",
                                                                          "CheckoutDown")
    with pytest.raises(LookupError):
        render(Intent("i", "firing", "gone", "g", "inc", "firing", "info", "low", {}, (), T0), cfg)


def test_headline_names_who_acknowledged() -> None:
    intent = Intent("i", "acknowledged", "hook", "g", "inc", "firing", "warning", "medium", {"project": "shop"}, (),
                    T0, by="alice")
    assert headline(intent) == "[WARNING] ACKNOWLEDGED by alice: project=shop"


# --- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 302])
def test_success_is_not_retried(status: int) -> None:
    assert retry_after_seconds(status, {}, 1) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_client_errors_other_than_429_are_permanent(status: int) -> None:
    assert retry_after_seconds(status, {"Retry-After": "5"}, 1) is None


def test_server_errors_and_timeouts_back_off_exponentially_with_a_cap() -> None:
    assert [retry_after_seconds(500, {}, n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert [retry_after_seconds(None, None, n) for n in (1, 2, 3)] == [1, 2, 4]
    assert retry_after_seconds(502, {}, 20) == 300
    assert retry_after_seconds(504, {}, 3, base_s=0.5, cap_s=1.5) == 1.5
    with pytest.raises(ValueError):
        retry_after_seconds(500, {}, 0)


def test_429_honours_retry_after() -> None:
    assert retry_after_seconds(429, {"Retry-After": "30"}, 1) == 30
    assert retry_after_seconds(429, {"retry-after": " 7 "}, 4) == 7  # header names are case-insensitive
    # an HTTP date, against the caller's clock ...
    date = "Tue, 14 Nov 2023 22:14:20 GMT"  # T0 + 60 s
    assert retry_after_seconds(429, {"Retry-After": date}, 1, now_ms=T0) == 60
    # ... or against the response's own Date header
    assert retry_after_seconds(429, {"Retry-After": date, "Date": "Tue, 14 Nov 2023 22:14:00 GMT"}, 1) == 20
    assert retry_after_seconds(429, {"Retry-After": date}, 1, now_ms=T0 + 120 * S) == 0  # already past
    assert retry_after_seconds(429, {"Retry-After": "86400"}, 1) == 3600  # bounded
    # without a usable Retry-After: the backoff
    assert retry_after_seconds(429, {}, 3) == 4
    assert retry_after_seconds(429, {"Retry-After": "soon"}, 2) == 2
    assert retry_after_seconds(429, {"Retry-After": date}, 1) == 1  # a date, but no clock to compare with
    # 503 may carry Retry-After too
    assert retry_after_seconds(503, {"Retry-After": "12"}, 1) == 12
