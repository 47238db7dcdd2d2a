"""What goes over the wire for an ``Intent``, per receiver kind, and when to retry a failed send. Pure.

Rendering is separate from deciding (``engine``) and from sending (the notifier process): an intent
in the outbox holds no URL or key, so it is rendered with the config of the moment it is delivered
(``render``), and the request bodies are plain data that tests can compare.

* **Slack** incoming webhook: Block Kit (header, one section per alert with summary, value vs
  threshold, labels and runbook link, a context line with the incident and how to acknowledge), plus
  ``text`` as the notification fallback. Slack limits are respected (header 150 characters, section
  text 3000, 50 blocks): long texts are cut, alerts beyond ``SLACK_MAX_ALERTS`` are counted.
* **PagerDuty** Events API v2: ``trigger`` for firing / repeat / escalation, ``acknowledge`` and
  ``resolve`` for the matching kinds, all with the same ``dedup_key`` (the incident id), so PagerDuty
  folds them into one incident. Severity by escalation level: critical -> critical, high -> error,
  medium -> warning, low -> info.
* **Webhook**: Alertmanager's webhook JSON, version "4" (``receiver``, ``status``, ``alerts[]`` with
  ``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``, ``fingerprint``;
  ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``, ``groupKey``,
  ``truncatedAlerts``), so anything that accepts Alertmanager (SMS/phone gateways, chat bridges)
  works. One extra top-level object, ``pulse``, carries the kind, incident, step and intent id;
  Alertmanager consumers ignore unknown fields.
* **E-mail**: an ``email.message.EmailMessage`` with the severity and summary in the subject and a
  text body; ``Message-ID`` is the intent id and ``References`` the incident, so mail clients thread
  an incident's messages.

``retry_after_seconds`` is the delivery policy: 2xx/3xx are done, 429 waits as long as
``Retry-After`` says (seconds or an HTTP date; 503 too), other 5xx and timeouts back off
exponentially without jitter (deterministic, capped), other 4xx are permanent failures.
"""

from __future__ import annotations

import email.utils
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from pipeline.notify.config import EmailConfig, NotifierConfig, PagerDutyConfig
from pipeline.notify.engine import REMEDIATION_PREFIX, Intent

SLACK_MAX_ALERTS = 10
PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
AM_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
ACK_HINT = "pulse notify ack {incident_id}"
_EMOJI = {"critical": ":red_circle:", "high": ":large_orange_circle:", "medium": ":large_yellow_circle:",
          "low": ":large_blue_circle:"}


def iso(ms: int | None) -> str:
    """RFC 3339 UTC with milliseconds; Alertmanager's zero time for None."""
    if ms is None:
        return AM_ZERO_TIME
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def headline(intent: Intent) -> str:
    """``[CRITICAL] FIRING: checkout errors high (+2 more)``: the subject / header of a notification."""
    word = {
        "firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED", "remediation": "REMEDIATION",
        "escalation": f"ESCALATED (step {intent.step})", "acknowledged": "ACKNOWLEDGED",
    }.get(intent.kind, intent.kind.upper())
    firing = [a for a in intent.alerts if a["status"] == "firing"]
    lead = (firing or list(intent.alerts) or [{}])[0]
    title = lead.get("summary") or lead.get("rule") or ", ".join(f"{k}={v}" for k, v in intent.group_labels.items())
    more = len(intent.alerts) - 1
    tail = f" (+{more} more)" if more > 0 else ""
    by = f" by {intent.by}" if intent.by and intent.kind in ("acknowledged", "resolved") else ""
    return f"[{intent.severity.upper()}] {word}{by}: {title}{tail}"


def _value_line(alert: Mapping[str, Any]) -> str:
    value, threshold = _num(alert.get("value")), _num(alert.get("threshold"))
    if value and threshold:
        return f"value {value} vs threshold {threshold}"
    return f"value {value}" if value else (f"threshold {threshold}" if threshold else "")


def _labels_text(labels: Mapping[str, str], skip: Sequence[str] = ("alertname", "severity")) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip)


# --- Slack ----------------------------------------------------------------------------------------


def _mrkdwn(text: str) -> str:
    """Slack's three control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(intent: Intent, *, ack_hint: str | None = ACK_HINT) -> dict[str, Any]:
    """An incoming-webhook message (Block Kit) for an intent."""
    head = headline(intent)
    emoji = ":white_check_mark:" if intent.status == "resolved" else _EMOJI.get(intent.level, ":bell:")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(head, 150), "emoji": True}}]
    for alert in intent.alerts[:SLACK_MAX_ALERTS]:
        lines = [f"{emoji} *{_mrkdwn(alert.get('summary') or alert['rule'])}*",
                 f"`{_mrkdwn(alert['rule'])}` · {alert['status']} · severity *{_mrkdwn(alert['severity'])}*"
                 f" · since {iso(alert['starts_at'])}"]
        if value := _value_line(alert):
            lines.append(value)
        if labels := _labels_text(alert["labels"]):
            lines.append(f"Labels: `{_mrkdwn(labels)}`")
        if alert.get("runbook_url"):
            lines.append(f"<{alert['runbook_url']}|Runbook>")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), 3000)}})
    if len(intent.alerts) > SLACK_MAX_ALERTS:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"…and {len(intent.alerts) - SLACK_MAX_ALERTS} more alerts"}]})
    context = [f"Incident `{intent.incident_id}`"]
    if intent.kind == "acknowledged":
        context.append(f"acknowledged by *{_mrkdwn(intent.by)}*")
    elif intent.kind == "resolved":
        context.append(f"resolved by *{_mrkdwn(intent.by)}*" if intent.by else "resolved")
    elif ack_hint:
        context.append("acknowledge: `" + _mrkdwn(ack_hint.format(incident_id=intent.incident_id)) + "`")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    return {"text": _cut(head, 3000), "blocks": blocks}


# --- PagerDuty ------------------------------------------------------------------------------------


def dedup_key(intent: Intent) -> str:
    """The same for every event of an incident: its id (the group key's hash without one)."""
    if intent.incident_id:
        return intent.incident_id
    return hashlib.sha256(intent.group_key.encode()).hexdigest()


def pagerduty_event(intent: Intent, cfg: PagerDutyConfig, *, client_url: str = "") -> dict[str, Any]:
    """An Events API v2 event: trigger, acknowledge or resolve, keyed by ``dedup_key``."""
    action = {"acknowledged": "acknowledge", "resolved": "resolve"}.get(intent.kind, "trigger")
    body: dict[str, Any] = {"routing_key": cfg.routing_key.get_secret_value(), "event_action": action,
                            "dedup_key": dedup_key(intent)}
    if action != "trigger":
        return body
    firing = [a for a in intent.alerts if a["status"] == "firing"] or list(intent.alerts)
    lead = firing[0] if firing else {}
    payload: dict[str, Any] = {
        "summary": _cut(headline(intent), 1024),
        "source": cfg.source,
        "severity": PAGERDUTY_SEVERITY.get(intent.level, "error"),
        "timestamp": iso(min((a["starts_at"] for a in firing), default=intent.created_at)),
        "class": lead.get("rule", ""),
        "group": ",".join(f"{k}={v}" for k, v in intent.group_labels.items()),
        "custom_details": {
            "kind": intent.kind, "step": intent.step, "incident_id": intent.incident_id,
            "group_key": intent.group_key,
            "alerts": [{"rule": a["rule"], "status": a["status"], "severity": a["severity"],
                        "summary": a.get("summary", ""), "value": a.get("value"), "threshold": a.get("threshold"),
                        "labels": a["labels"], "starts_at": iso(a["starts_at"]), "fingerprint": a["fingerprint"]}
                       for a in intent.alerts],
        },
    }
    if component := lead.get("labels", {}).get("project"):
        payload["component"] = component
    body["payload"] = payload
    body["client"] = "frontend-pulse"
    if client_url:
        body["client_url"] = client_url
    links = [{"href": a["runbook_url"], "text": f"Runbook: {a['rule']}"} for a in firing if a.get("runbook_url")]
    if links:
        body["links"] = list({link["href"]: link for link in links}.values())
    return body


# --- Alertmanager webhook -------------------------------------------------------------------------


def _annotations(alert: Mapping[str, Any]) -> dict[str, str]:
    out = {**alert.get("annotations", {}), "summary": alert.get("summary") or "",
           "runbook_url": alert.get("runbook_url") or "", "value": _num(alert.get("value")),
           "threshold": _num(alert.get("threshold"))}
    return {k: v for k, v in sorted(out.items()) if v}


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    return {k: v for k, v in sorted(maps[0].items()) if all(m.get(k) == v for m in maps[1:])}


def alertmanager_webhook(intent: Intent, *, receiver: str | None = None, external_url: str = "") -> dict[str, Any]:
    """Alertmanager's webhook body (version 4), plus a ``pulse`` object with what it adds."""
    alerts = [{
        "status": a["status"],
        "labels": dict(sorted(a["labels"].items())),
        "annotations": _annotations(a),
        "startsAt": iso(a["starts_at"]),
        "endsAt": iso(a["ends_at"]) if a["status"] == "resolved" else AM_ZERO_TIME,
        "generatorURL": a.get("generator_url") or external_url,
        "fingerprint": a["fingerprint"],
    } for a in intent.alerts]
    return {
        "version": "4",
        "groupKey": intent.group_key,
        "truncatedAlerts": 0,
        "status": intent.status,
        "receiver": receiver or intent.receiver,
        "groupLabels": dict(sorted(intent.group_labels.items())),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
        "pulse": {"kind": intent.kind, "incident_id": intent.incident_id, "step": intent.step,
                  "intent_id": intent.intent_id, "severity": intent.severity, "level": intent.level, "by": intent.by},
    }


# --- e-mail ---------------------------------------------------------------------------------------


def email_message(intent: Intent, cfg: EmailConfig, *, ack_hint: str | None = ACK_HINT,
                  domain: str = "frontend-pulse") -> EmailMessage:
    """A text e-mail; the SMTP details stay in ``cfg`` for the sender."""
    msg = EmailMessage()
    msg["Subject"] = _cut(headline(intent), 250)
    msg["From"] = cfg.from_
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = email.utils.format_datetime(datetime.fromtimestamp(intent.created_at / 1000, tz=UTC))
    msg["Message-ID"] = f"<{intent.intent_id}@{domain}>"
    msg["References"] = f"<{intent.incident_id}@{domain}>"
    msg["X-Pulse-Incident"] = intent.incident_id
    msg["X-Pulse-Kind"] = intent.kind
    lines = [headline(intent), "", f"Incident: {intent.incident_id}"]
    if intent.group_labels:
        lines.append(f"Group: {_labels_text(intent.group_labels, skip=())}")
    if intent.kind in ("firing", "repeat", "escalation") and ack_hint:
        lines.append(f"Acknowledge: {ack_hint.format(incident_id=intent.incident_id)}")
    lines.append("")
    for a in intent.alerts:
        lines.append(f"- {a['rule']} ({a['status']}, {a['severity']}) since {iso(a['starts_at'])}"
                     + (f", ended {iso(a['ends_at'])}" if a["status"] == "resolved" and a.get("ends_at") else ""))
        for extra in (a.get("summary"), _value_line(a), _labels_text(a["labels"]) and
                      f"labels: {_labels_text(a['labels'])}", a.get("runbook_url") and f"runbook: {a['runbook_url']}"):
            if extra:
                lines.append(f"  {extra}")
    msg.set_content("\n".join(lines) + "\n")
    return msg


# --- one entry point ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A rendered intent: an HTTP POST (``url``, ``headers``, ``json``) or an e-mail (``email``; the
    SMTP settings are ``smtp``)."""

    receiver: str
    transport: str  # http | smtp
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    email: EmailMessage | None = None
    smtp: EmailConfig | None = None


def render(intent: Intent, config: NotifierConfig) -> Outgoing:
    """The request for an intent under the current config; ``LookupError`` when its receiver (or
    remediation rule) is no longer configured."""
    json_headers = {"Content-Type": "application/json"}
    if intent.receiver.startswith(REMEDIATION_PREFIX):
        rule = intent.receiver.removeprefix(REMEDIATION_PREFIX)
        url = config.remediation.get(rule) or next((a.get("remediation_url") for a in intent.alerts
                                                     if a.get("remediation_url")), None)
        if not url:
            raise LookupError(f"no remediation URL for rule {rule!r} (neither in the config nor in the alert)")
        return Outgoing(intent.receiver, "http", url, json_headers,
                        alertmanager_webhook(intent, external_url=config.external_url))
    cfg = config.receiver(intent.receiver)
    if cfg is None:
        raise LookupError(f"receiver {intent.receiver!r} is not in the config")
    if cfg.slack is not None:
        return Outgoing(cfg.name, "http", cfg.slack.webhook_url.get_secret_value(), json_headers, slack_message(intent))
    if cfg.pagerduty is not None:
        return Outgoing(cfg.name, "http", cfg.pagerduty.url, json_headers,
                        pagerduty_event(intent, cfg.pagerduty, client_url=config.external_url))
    if cfg.webhook is not None:
        headers = {**json_headers, **{k: v.get_secret_value() for k, v in cfg.webhook.headers.items()}}
        return Outgoing(cfg.name, "http", cfg.webhook.url, headers,
                        alertmanager_webhook(intent, external_url=config.external_url))
    assert cfg.email is not None
    return Outgoing(cfg.name, "smtp", email=email_message(intent, cfg.email), smtp=cfg.email)


# --- retries --------------------------------------------------------------------------------------


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _retry_after(headers: Mapping[str, str] | None, now_ms: int | None) -> float | None:
    raw = _header(headers, "Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    if now_ms is not None:
        now = now_ms / 1000
    else:  # the response's own Date: no local clock needed, and immune to clock skew
        date = _header(headers, "Date")
        try:
            now_dt = email.utils.parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            now_dt = None
        if now_dt is None or now_dt.tzinfo is None:
            return None
        now = now_dt.timestamp()
    return max(0.0, when.timestamp() - now)


def retry_after_seconds(status: int | None, headers: Mapping[str, str] | None, attempt: int, *,
                        now_ms: int | None = None, base_s: float = 1.0, cap_s: float = 300.0,
                        max_retry_after_s: float = 3600.0) -> float | None:
    """Seconds to wait before the next attempt, or None when not to retry.

    ``status`` is the HTTP status, None for a timeout or connection error; ``attempt`` counts the
    attempts made so far (1 after the first). Backoff is ``base_s * 2**(attempt-1)``, capped at
    ``cap_s``. A ``Retry-After`` (on 429 or 503) wins: delta seconds, or an HTTP date taken relative to
    ``now_ms`` or else to the response's ``Date`` header; at most ``max_retry_after_s``.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if status is not None and status < 400:
        return None  # delivered
    backoff = min(cap_s, base_s * 2 ** (attempt - 1))
    if status in (429, 503):
        wait = _retry_after(headers, now_ms)
        if wait is not None:
            return min(wait, max_retry_after_s)
    if status is None or status == 429 or 500 <= status <= 599:
        return backoff
    return None  # any other 4xx: the request itself is wrong; retrying repeats the failure
