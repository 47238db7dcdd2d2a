"""What to notify, whom and when: the notifier's decisions as a pure state machine.

The notifier process (Kafka in, HTTP/SMTP out) is a thin shell around this module. Keeping every
decision here, with time passed in as epoch milliseconds, makes the subtle parts (grouping, timers,
muting, escalation, crash recovery) testable without a clock, a broker or a network, and makes a
replay after a crash produce the same decisions: the state is JSON (``NotifierState.to_json``), and
every notification has a deterministic id.

Inputs: alert events (``Notifier.on_alert``), the passage of time (``Notifier.on_tick``) and people
(``silence``, ``expire_silence``, ``Notifier.acknowledge``, ``Notifier.resolve``). Output: ``Intent``\\ s,
one notification each, which the caller writes to a durable outbox (keyed by ``intent_id``, so a
replayed intent is stored once) and delivers; ``mark_delivered`` records delivery in the state.

Semantics follow Prometheus Alertmanager where it has the concept:

* **Routing**: an alert walks the routing tree (``config.Route.match``) and joins one *aggregation
  group* per matched route, keyed by the route and the values of its ``group_by`` labels. An alert's
  labels are its ``labels`` plus ``alertname`` = rule and ``severity``.
* **Timers**: a new group is first flushed ``group_wait`` after its first alert (batching alerts that
  arrive together); after that the group is flushed every ``group_interval``. A flush notifies when the
  group has a firing alert the receiver was not told about, when alerts the receiver was told about
  have resolved (``send_resolved``), or, with nothing new, once ``repeat_interval`` has passed since
  the last notification (repeats stop once the incident is acknowledged).
* **Resolved**: an alert ends with a ``resolved`` event, or when the ``ends_at`` of its firing event
  has passed (Alertmanager's ``endsAt``; ``config.auto_resolve`` gives one to events that never
  resolve, like new-issue alerts, and those end without a resolved notice unless configured). A
  group whose notified alerts have all resolved sends one ``resolved`` notification; resolved alerts
  leave the group after a flush, and an empty group is deleted (closing its incident).
* **Muting**: silenced or inhibited alerts are left out of notifications; a group whose alerts are
  all muted sends nothing. Like Alertmanager's notification log after such a flush, the group then
  forgets which firing alerts it had notified, so an alert that is still firing when its mute ends
  (a silence expires, the inhibiting critical resolves) is notified again at the group's next flush.
  Alerts muted for their whole life are never notified.
* **Inhibition**: a *firing* alert matching a rule's ``source_matchers`` mutes alerts matching its
  ``target_matchers`` whose ``equal`` labels have the same values (missing = ""). An alert matching
  both sides cannot be muted by alerts that also match both sides (nor by itself). Silenced sources
  still inhibit.

Deliberate differences from Alertmanager:

* **Resolved notices are never muted**: when an alert the receiver was told about resolves while it is
  silenced or inhibited, the receiver still gets the resolved notice, so PagerDuty incidents and
  chat threads are not left open (Alertmanager drops it: prometheus/alertmanager#226, #2754).
* **Incidents, acknowledgement and escalation**, which Alertmanager leaves to PagerDuty-like tools.
  The first firing notification of a group opens an *incident* (id derived from the group key and
  the time). Its *level* (``config.level_of`` of the highest severity) picks an escalation policy:
  step 0 is paged with the first notification, and each further step after ``timeout`` without an
  acknowledgement (steps are skipped while all the incident's alerts are muted; a step-0 receiver
  that is also the route's receiver is not paged twice). ``acknowledge`` stops escalation and
  repeats (a new alert joining an acknowledged incident is still notified to the route's receiver,
  as an update, without restarting escalation); the incident resolves with its group's resolved
  notification or by ``resolve``; every receiver that was notified gets the acknowledgement and the
  resolution. A timeline records it all (``{at, what, by}``).
* **Manual resolve** marks the incident's firing alerts resolved and notifies at once. Firing events
  of the same firing episode (same ``starts_at``) that arrive afterwards are ignored (the source is
  still evaluating the condition a person declared over); a new episode notifies normally.
* **Remediation**: a rule listed in ``config.remediation`` (or whose events carry a
  ``remediation_webhook``) has its URL called once per firing episode of an alert, when that alert is
  first notified (so after ``group_wait``, and not while silenced or inhibited: a silence is a
  maintenance window).

Alert events are the dicts of ``pipeline.alerts.AlertEvent.to_json()``: ``event_id``,
``fingerprint``, ``rule``, ``status``, ``severity``, ``labels``, ``starts_at``, ``ends_at`` (epoch ms or
ISO-8601), ``value``, ``threshold``, ``summary``, ``runbook_url``, and optionally ``annotations``,
``remediation_webhook`` and ``generator_url``; other keys are ignored.

Duplicates: an alert event whose ``event_id`` was seen is ignored; events older than what is known
about the alert (earlier ``starts_at``, or a firing event for an episode that already resolved) are
ignored. Intent ids hash the receiver, the group key, the incident, the kind, the escalation step,
the alerts' fingerprints, statuses and start times, and the group's notification sequence number
(Alertmanager re-sends identical content after a mute ends or a repeat interval, so content alone
would collide). The same decision therefore always gets the same id, and no id is emitted twice: the
state's ledger drops any intent whose id it holds, so after a restart the caller can ``mark_delivered``
what its outbox already holds before replaying input.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

from pipeline.notify.config import LEVELS, NotifierConfig, Route
from pipeline.notify.matchers import Matcher, matches_all, parse_matcher, parse_matchers

Kind = Literal["firing", "resolved", "repeat", "escalation", "acknowledged", "remediation"]
KINDS: tuple[str, ...] = ("firing", "resolved", "repeat", "escalation", "acknowledged", "remediation")
REMEDIATION_PREFIX = "remediation:"  # Intent.receiver of a remediation call: "remediation:<rule>"

MAX_SEEN_EVENTS = 50_000  # event ids remembered for deduplication (oldest dropped)
MAX_TIMELINE = 500  # entries per incident (oldest dropped, the opening entry kept)
LEDGER_RETENTION_MS = 7 * 86_400_000  # intent ids remembered after emission
RESOLVED_ALERT_RETENTION_MS = 86_400_000  # resolved alerts outside any group, for stale-event checks
INCIDENT_RETENTION_MS = 7 * 86_400_000  # resolved incidents, for listings and late acks
SILENCE_RETENTION_MS = 5 * 86_400_000  # expired silences (Alertmanager's default retention)
_NAMESPACE = uuid.UUID("7c1e3f52-8d0b-4a8e-b1d4-2f6a9c3e5b71")


def _id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(map(str, parts))))


def _to_ms(value: Any, what: str) -> int | None:
    """Epoch ms from an int/float (ms) or an ISO-8601 string; None for null, 0 or "" (unset)."""
    if value in (None, "", 0):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected epoch ms or an ISO-8601 time, got {value!r}")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what}: expected epoch ms or an ISO-8601 time, got {value!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{what}: ISO-8601 time without a time zone: {value!r}")
        if parsed.year <= 1:
            return None  # Alertmanager's "0001-01-01T00:00:00Z" = unset
        return int(parsed.timestamp() * 1000)
    raise ValueError(f"{what}: expected epoch ms or an ISO-8601 time, got {value!r}")


def _float(value: Any, what: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number, got {value!r}") from None


# --- state ---------------------------------------------------------------------------------------


@dataclass
class Alert:
    """The latest known state of one alert (one fingerprint), from its events."""

    fingerprint: str
    rule: str
    status: str  # firing | resolved
    severity: str
    labels: dict[str, str]
    starts_at: int
    ends_at: int | None
    value: float | None
    threshold: float | None
    summary: str
    runbook_url: str
    event_id: str
    generator_url: str = ""
    remediation_url: str = ""  # from the event (``remediation_webhook``); the config's map wins
    annotations: dict[str, str] = field(default_factory=dict)
    updated_at: int = 0
    resolved_by: str = ""  # set by a manual resolve
    remediated: bool = False  # the remediation URL was called for this firing episode
    quiet_expiry: bool = False  # ends_at came from an auto_resolve rule without send_resolved
    quiet: bool = False  # resolved without a resolved notice

    @classmethod
    def from_event(cls, doc: Any, now_ms: int) -> "Alert":
        """An alert event -> ``Alert``; ``ValueError`` naming the bad field."""
        if not isinstance(doc, Mapping):
            raise ValueError(f"alert event: expected an object, got {type(doc).__name__}")
        missing = [k for k in ("fingerprint", "rule", "status", "severity", "event_id") if not doc.get(k)]
        if missing:
            raise ValueError(f"alert event: missing {', '.join(missing)}")
        status = doc["status"]
        if status not in ("firing", "resolved"):
            raise ValueError(f"alert event: status must be 'firing' or 'resolved', got {status!r}")
        labels = doc.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise ValueError(f"alert event: labels must be an object, got {type(labels).__name__}")
        starts_at = _to_ms(doc.get("starts_at"), "alert event: starts_at")
        annotations = doc.get("annotations") or {}
        if not isinstance(annotations, Mapping):
            raise ValueError(f"alert event: annotations must be an object, got {type(annotations).__name__}")
        return cls(
            fingerprint=str(doc["fingerprint"]), rule=str(doc["rule"]), status=status,
            severity=str(doc["severity"]), labels={str(k): str(v) for k, v in labels.items()},
            starts_at=starts_at if starts_at is not None else now_ms,
            ends_at=_to_ms(doc.get("ends_at"), "alert event: ends_at"),
            value=_float(doc.get("value"), "alert event: value"),
            threshold=_float(doc.get("threshold"), "alert event: threshold"),
            summary=str(doc.get("summary") or ""), runbook_url=str(doc.get("runbook_url") or ""),
            event_id=str(doc["event_id"]), generator_url=str(doc.get("generator_url") or ""),
            remediation_url=str(doc.get("remediation_webhook") or ""),
            annotations={str(k): str(v) for k, v in annotations.items()
                         if isinstance(v, str | int | float | bool) and v != ""},
            updated_at=now_ms)

    @property
    def label_set(self) -> dict[str, str]:
        """What matchers see: the labels plus ``alertname`` (the rule) and ``severity``."""
        return {**self.labels, "alertname": self.rule, "severity": self.severity}

    def snapshot(self) -> dict[str, Any]:
        """The alert as carried by an intent (what payloads render)."""
        return {"fingerprint": self.fingerprint, "rule": self.rule, "status": self.status,
                "severity": self.severity, "labels": self.label_set, "starts_at": self.starts_at,
                "ends_at": self.ends_at, "value": self.value, "threshold": self.threshold,
                "summary": self.summary, "runbook_url": self.runbook_url, "generator_url": self.generator_url,
                "annotations": dict(self.annotations), "remediation_url": self.remediation_url}


@dataclass
class Group:
    """An aggregation group: the alerts one route groups together, and what its receiver was told."""

    key: str
    route_key: str
    receiver: str
    labels: dict[str, str]
    members: list[str] = field(default_factory=list)  # fingerprints, sorted
    created_at: int = 0
    next_flush_at: int = 0
    last_notified_at: int | None = None
    last_firing: list[str] = field(default_factory=list)  # firing alerts of the last notification
    told_firing: list[str] = field(default_factory=list)  # told firing and not yet told resolved
    incident_id: str | None = None
    seq: int = 0  # notifications sent to the receiver


@dataclass
class Silence:
    silence_id: str
    matchers: list[str]
    starts_at: int
    ends_at: int
    created_by: str
    comment: str

    def status(self, now_ms: int) -> str:
        if now_ms < self.starts_at:
            return "pending"
        return "active" if now_ms < self.ends_at else "expired"

    def compiled(self) -> list[Matcher]:
        return [parse_matcher(m) for m in self.matchers]


@dataclass
class Incident:
    """Related alerts (one aggregation group) from their first notification until resolved."""

    incident_id: str
    group_key: str
    receiver: str  # the route's receiver
    opened_at: int
    title: str
    level: str
    severity: str
    group_labels: dict[str, str] = field(default_factory=dict)
    status: str = "open"  # open | acknowledged | resolved
    fingerprints: list[str] = field(default_factory=list)  # every alert notified in it
    acked_by: str = ""
    acked_at: int | None = None
    resolved_by: str = ""
    resolved_at: int | None = None
    step: int = -1  # last escalation step paged
    next_escalation_at: int | None = None
    notified: list[str] = field(default_factory=list)  # receivers told about it, in order
    timeline: list[dict[str, Any]] = field(default_factory=list)  # {at, what, by}

    def log(self, at: int, what: str, by: str = "") -> None:
        self.timeline.append({"at": at, "what": what, "by": by})
        if len(self.timeline) > MAX_TIMELINE:
            del self.timeline[1:len(self.timeline) - MAX_TIMELINE + 1]


@dataclass
class NotifierState:
    """Everything the notifier knows; ``to_json``/``from_json`` round-trip exactly."""

    alerts: dict[str, Alert] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    silences: dict[str, Silence] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    seen_events: dict[str, int] = field(default_factory=dict)  # event_id -> received at, oldest first
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)  # intent_id -> {at, delivered}

    def to_json(self) -> dict[str, Any]:
        return {
            "alerts": [asdict(a) for a in self.alerts.values()],
            "groups": [asdict(g) for g in self.groups.values()],
            "silences": [asdict(s) for s in self.silences.values()],
            "incidents": [asdict(i) for i in self.incidents.values()],
            "seen_events": [[k, v] for k, v in self.seen_events.items()],
            "ledger": [[k, v["at"], v["delivered"]] for k, v in self.ledger.items()],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "NotifierState":
        def build(kind: type, items: Iterable[Mapping[str, Any]], key: str) -> dict[str, Any]:
            names = {f.name for f in fields(kind)}
            return {item[key]: kind(**{k: v for k, v in item.items() if k in names}) for item in items}

        return cls(
            alerts=build(Alert, doc.get("alerts", []), "fingerprint"),
            groups=build(Group, doc.get("groups", []), "key"),
            silences=build(Silence, doc.get("silences", []), "silence_id"),
            incidents=build(Incident, doc.get("incidents", []), "incident_id"),
            seen_events={str(k): int(v) for k, v in doc.get("seen_events", [])},
            ledger={str(k): {"at": at, "delivered": bool(d)} for k, at, d in doc.get("ledger", [])},
        )


@dataclass(frozen=True)
class Intent:
    """One notification to send. ``alerts`` are snapshots (``Alert.snapshot``), so the outbox can
    render and deliver it without the state; receiver details (URLs, keys) come from the config at
    delivery time, so no secret is stored with it."""

    intent_id: str
    kind: str  # one of KINDS
    receiver: str  # a receiver name, or "remediation:<rule>"
    group_key: str
    incident_id: str
    status: str  # firing | resolved: the notification as a whole (Alertmanager's "status")
    severity: str  # the highest severity among the alerts
    level: str  # its escalation level (low | medium | high | critical)
    group_labels: dict[str, str]
    alerts: tuple[dict[str, Any], ...]
    created_at: int
    step: int | None = None  # escalation step
    by: str = ""  # who acknowledged / resolved

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["alerts"] = list(self.alerts)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Intent":
        return cls(**{**doc, "alerts": tuple(doc.get("alerts", ())), "group_labels": dict(doc["group_labels"])})


# --- functions that need no config ----------------------------------------------------------------


def silence(state: NotifierState, matchers: str | Sequence[str], starts_ms: int, ends_ms: int, created_by: str,
            comment: str) -> str:
    """Mute alerts matching every matcher from ``starts_ms`` until ``ends_ms``; returns its id (derived
    from the request, so the same request twice is one silence). Takes effect at the next flush."""
    parsed = parse_matchers(matchers)
    if not parsed:
        raise ValueError("a silence needs at least one matcher")
    if all(m.matches({}) for m in parsed):
        raise ValueError(f"silence {[str(m) for m in parsed]} would match every alert; "
                         "add a matcher that does not match an empty label")
    if ends_ms <= starts_ms:
        raise ValueError(f"a silence must end after it starts (starts {starts_ms}, ends {ends_ms})")
    if not created_by:
        raise ValueError("a silence needs created_by")
    texts = [str(m) for m in parsed]
    silence_id = _id("silence", *texts, starts_ms, ends_ms, created_by, comment)
    state.silences[silence_id] = Silence(silence_id, texts, starts_ms, ends_ms, created_by, comment)
    return silence_id


def expire_silence(state: NotifierState, silence_id: str, now_ms: int) -> None:
    """End a silence now (a pending one never starts). ``KeyError`` when unknown."""
    s = state.silences[silence_id]
    s.ends_at = min(s.ends_at, now_ms)
    s.starts_at = min(s.starts_at, s.ends_at)


def list_silences(state: NotifierState, now_ms: int, *, include_expired: bool = True) -> list[dict[str, Any]]:
    """Silences with their status at ``now_ms`` (pending / active / expired), by start time."""
    out = []
    for s in sorted(state.silences.values(), key=lambda s: (s.starts_at, s.silence_id)):
        status = s.status(now_ms)
        if include_expired or status != "expired":
            out.append({**asdict(s), "status": status})
    return out


def mark_delivered(state: NotifierState, intent_id: str, now_ms: int | None = None) -> None:
    """Record that an intent was delivered. Unknown ids are recorded too: after a restart from an
    older snapshot, marking what the outbox holds keeps a replay from emitting it again. Entries are
    kept ``LEDGER_RETENTION_MS`` from when they were recorded (from the next tick without ``now_ms``)."""
    state.ledger.setdefault(intent_id, {"at": now_ms, "delivered": False})["delivered"] = True


def undelivered(state: NotifierState) -> list[str]:
    """Intent ids emitted and not yet marked delivered (to reconcile with the outbox)."""
    return [k for k, v in state.ledger.items() if not v["delivered"]]


# --- the engine -----------------------------------------------------------------------------------


class Notifier:
    """The decisions, for one config. Methods take the state and ``now_ms`` and return intents; the
    state is changed in place (copy it first to keep the old one)."""

    def __init__(self, config: NotifierConfig) -> None:
        self.config = config
        self._inhibit = [(r.source(), r.target(), list(r.equal)) for r in config.inhibit_rules]
        self._auto_resolve = [(r.compiled(), r.after, r.send_resolved) for r in config.auto_resolve]

    # inputs ----------------------------------------------------------------------------------------

    def on_alert(self, state: NotifierState, event: Mapping[str, Any], now_ms: int) -> list[Intent]:
        """Apply one alert event. Returns the intents of groups that became due (``group_wait: 0``);
        usually none: notifications go out on ``on_tick``."""
        incoming = Alert.from_event(event, now_ms)
        if incoming.event_id in state.seen_events:
            return []
        state.seen_events[incoming.event_id] = now_ms
        if len(state.seen_events) > MAX_SEEN_EVENTS:
            for key in list(state.seen_events)[:len(state.seen_events) - MAX_SEEN_EVENTS]:
                del state.seen_events[key]
        known = state.alerts.get(incoming.fingerprint)
        if known is not None and self._stale(known, incoming):
            return []
        if known is None and incoming.status == "resolved":
            return []  # never seen firing: nobody to tell
        if known is not None and known.starts_at == incoming.starts_at:
            incoming.remediated = known.remediated  # same episode: keep what was done for it
        if incoming.status == "firing" and incoming.ends_at is None:
            labels = incoming.label_set
            rule = next((r for r in self._auto_resolve if matches_all(r[0], labels)), None)
            if rule is not None:
                incoming.ends_at, incoming.quiet_expiry = incoming.starts_at + rule[1], not rule[2]
        state.alerts[incoming.fingerprint] = incoming
        if incoming.status == "firing":  # a resolved alert only updates the groups that hold it
            for route in self.config.root.match(incoming.label_set):
                group = self._group_for(state, route, incoming, now_ms)
                if incoming.fingerprint not in group.members:
                    group.members = sorted([*group.members, incoming.fingerprint])
        changed = known is None or known.status != incoming.status
        for key in sorted(state.groups):
            group = state.groups[key]
            incident = state.incidents.get(group.incident_id or "")
            if changed and incoming.fingerprint in group.members and incident is not None \
                    and incident.status != "resolved":
                incident.log(now_ms, f"alert {incoming.rule} {incoming.status} ({incoming.fingerprint})")
        self._expire_alerts(state, now_ms)
        out: list[Intent] = []
        for key in sorted(state.groups):
            group = state.groups.get(key)
            if group is not None and incoming.fingerprint in group.members and group.next_flush_at <= now_ms:
                out += self._flush(state, group, now_ms)  # due already: group_wait 0, or a late tick
        return self._emit(state, out, now_ms)

    def on_tick(self, state: NotifierState, now_ms: int) -> list[Intent]:
        """Let time pass: end alerts whose ``ends_at`` passed, flush due groups, escalate
        unacknowledged incidents, drop old state."""
        self._expire_alerts(state, now_ms)
        out: list[Intent] = []
        for key in sorted(state.groups):
            group = state.groups.get(key)
            if group is not None and group.next_flush_at <= now_ms:
                out += self._flush(state, group, now_ms)
        for incident_id in sorted(state.incidents):
            out += self._escalate(state, state.incidents[incident_id], now_ms)
        emitted = self._emit(state, out, now_ms)
        self._prune(state, now_ms)
        return emitted

    def acknowledge(self, state: NotifierState, target: str, by: str, now_ms: int) -> list[Intent]:
        """Someone is on it: stops escalation and repeats of the incident (or of every open incident
        holding the alert with this fingerprint) and tells the receivers that were notified.
        ``LookupError`` when nothing open matches."""
        out: list[Intent] = []
        for incident in self._find(state, target, ("open",)):
            incident.status, incident.acked_by, incident.acked_at = "acknowledged", by, now_ms
            incident.next_escalation_at = None
            incident.log(now_ms, "acknowledged", by)
            alerts = self._incident_alerts(state, incident)
            for receiver in incident.notified:
                out.append(self._intent(incident, receiver, "acknowledged", "firing", alerts, now_ms, by=by))
        return self._emit(state, out, now_ms)

    def resolve(self, state: NotifierState, target: str, by: str, now_ms: int) -> list[Intent]:
        """Declare an incident (or every open incident holding this fingerprint) over: its firing
        alerts become resolved and every notified receiver gets the resolved notice now.
        ``LookupError`` when nothing open or acknowledged matches."""
        out: list[Intent] = []
        for incident in self._find(state, target, ("open", "acknowledged")):
            group = state.groups.get(incident.group_key)
            if group is not None and group.incident_id != incident.incident_id:
                group = None  # (the group's alerts belong to a newer incident)
            members = group.members if group is not None else incident.fingerprints
            told = set(group.told_firing) if group is not None else set(incident.fingerprints)
            alerts = [state.alerts[fp] for fp in members if fp in state.alerts]
            for alert in alerts:
                if alert.status == "firing":
                    alert.status, alert.ends_at, alert.resolved_by, alert.updated_at = "resolved", now_ms, by, now_ms
            notice = [a for a in alerts if a.fingerprint in told] or alerts
            out += self._close(incident, tuple(a.snapshot() for a in sorted(notice, key=_order)), now_ms, by=by,
                               what="resolved manually")
            if group is not None:
                del state.groups[group.key]  # every member is resolved now, and its receiver told
        return self._emit(state, out, now_ms)

    # helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def _stale(known: Alert, incoming: Alert) -> bool:
        if incoming.starts_at < known.starts_at:
            return True  # an older episode
        if incoming.starts_at == known.starts_at and known.status == "resolved":
            return True  # this episode already resolved (or was resolved by a person)
        return False

    @staticmethod
    def _expire_alerts(state: NotifierState, now_ms: int) -> None:
        """A firing alert whose ``ends_at`` has passed is resolved (Alertmanager's endsAt)."""
        for fp in sorted(state.alerts):
            alert = state.alerts[fp]
            if alert.status != "firing" or alert.ends_at is None or alert.ends_at > now_ms:
                continue
            alert.status, alert.updated_at, alert.quiet = "resolved", now_ms, alert.quiet_expiry
            for group in state.groups.values():
                incident = state.incidents.get(group.incident_id or "")
                if fp in group.members and incident is not None and incident.status != "resolved":
                    incident.log(now_ms, f"alert {alert.rule} ended ({fp})")

    def _group_for(self, state: NotifierState, route: Route, alert: Alert, now_ms: int) -> Group:
        labels = alert.label_set
        if route.group_all:
            group_labels = dict(sorted(labels.items()))
        else:
            group_labels = {name: labels.get(name, "") for name in sorted(route.group_by)}
        key = route.key + ":{" + ",".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}"
        group = state.groups.get(key)
        if group is None:
            group = Group(key, route.key, route.receiver, group_labels, created_at=now_ms,
                          next_flush_at=now_ms + route.group_wait_ms)
            state.groups[key] = group
        return group

    def muted(self, state: NotifierState, alert: Alert, now_ms: int) -> bool:
        """Silenced (an active silence matches) or inhibited (see the module docstring)."""
        labels = alert.label_set
        for s in state.silences.values():
            if s.status(now_ms) == "active" and matches_all(s.compiled(), labels):
                return True
        return self._inhibited(state, alert, labels)

    def _inhibited(self, state: NotifierState, alert: Alert, labels: Mapping[str, str]) -> bool:
        for source, target, equal in self._inhibit:
            if not matches_all(target, labels):
                continue
            both = matches_all(source, labels)
            for other in state.alerts.values():
                if other.status != "firing" or other.fingerprint == alert.fingerprint:
                    continue
                other_labels = other.label_set
                if not matches_all(source, other_labels):
                    continue
                if both and matches_all(target, other_labels):
                    continue  # matches both sides: cannot mute another that does
                if all(other_labels.get(name, "") == labels.get(name, "") for name in equal):
                    return True
        return False

    def _flush(self, state: NotifierState, group: Group, now_ms: int) -> list[Intent]:
        route = self.config.route_for_key(group.route_key)
        receiver_cfg = self.config.receiver(group.receiver)
        send_resolved = receiver_cfg.send_resolved if receiver_cfg is not None else True
        members = [state.alerts[fp] for fp in group.members if fp in state.alerts]
        firing = [a for a in members if a.status == "firing" and not self.muted(state, a, now_ms)]
        firing_fps = {a.fingerprint for a in firing}
        resolved = [a for a in members if a.status == "resolved"]
        told = set(group.told_firing)
        newly_resolved = [a for a in resolved if a.fingerprint in told and not a.quiet]
        incident = state.incidents.get(group.incident_id or "")
        if incident is not None and incident.status == "resolved":
            incident = None

        kind: str | None = None
        if firing_fps - set(group.last_firing):
            kind = "firing"
        elif not firing_fps and newly_resolved:
            kind = "resolved"
        elif newly_resolved and send_resolved:
            kind = "firing"  # an update: some of the group's alerts resolved
        elif firing_fps and group.last_notified_at is not None and (incident is None or incident.status == "open") \
                and now_ms - group.last_notified_at >= route.repeat_interval_ms:
            kind = "repeat"

        out: list[Intent] = []
        if kind is None and not firing_fps and not newly_resolved:
            group.last_firing = []  # all muted (or nothing left): forget, as Alertmanager's log does
        if kind is not None:
            alerts = tuple(a.snapshot() for a in sorted([*firing, *newly_resolved], key=_order))
            group.seq += 1
            if kind != "resolved" and incident is None:
                incident = self._open(state, group, firing, now_ms)
            if incident is not None:  # (always, as the receiver is told only while an incident is open)
                self._update_incident(incident, firing, now_ms)
                if kind != "resolved" or send_resolved:
                    out.append(self._intent(incident, group.receiver, kind, "resolved" if kind == "resolved" else
                                            "firing", alerts, now_ms, seq=group.seq))
                if kind == "resolved":
                    extra = [r for r in incident.notified if r != group.receiver]
                    out += self._close(incident, alerts, now_ms, receivers=extra, what="resolved")
                    group.incident_id = None
                else:
                    incident.log(now_ms, f"notified {group.receiver} ({kind}, {len(firing)} firing, "
                                         f"{len(newly_resolved)} resolved)")
                    out += self._remediate(state, incident, firing, now_ms)
                    out += self._escalate(state, incident, now_ms)
            group.last_firing = sorted(firing_fps)
            group.last_notified_at = now_ms
            # after the resolved notice the incident is over: alerts still firing but muted now are
            # notified as a new incident when their mute ends
            group.told_firing = [] if kind == "resolved" else sorted(told | firing_fps)
        # resolved alerts leave the group after a flush (whether or not anyone was told)
        gone = {a.fingerprint for a in resolved}
        group.members = [fp for fp in group.members if fp not in gone and fp in state.alerts]
        group.told_firing = [fp for fp in group.told_firing if fp not in gone]
        interval = route.group_interval_ms
        behind = max(0, now_ms - group.next_flush_at)
        group.next_flush_at += interval * (behind // interval + 1)  # keep the cadence after a late tick
        if not group.members:
            if incident is not None and incident.status != "resolved":
                out += self._close(incident, (), now_ms, receivers=[], what="all alerts resolved")
            del state.groups[group.key]
        return out

    def _open(self, state: NotifierState, group: Group, firing: Sequence[Alert], now_ms: int) -> Incident:
        top = max(firing, key=self._rank)
        incident = Incident(_id("incident", group.key, now_ms), group.key, group.receiver, now_ms,
                            title=top.summary or top.rule, level=self.config.level_of(top.severity),
                            severity=top.severity, group_labels=dict(group.labels), notified=[group.receiver],
                            next_escalation_at=now_ms)
        incident.log(now_ms, "opened: " + ", ".join(f"{a.rule} firing ({a.fingerprint})" for a in
                                                    sorted(firing, key=_order)))
        state.incidents[incident.incident_id] = incident
        group.incident_id = incident.incident_id
        return incident

    def _rank(self, alert: Alert) -> tuple[int, str]:
        return LEVELS.index(self.config.level_of(alert.severity)), alert.severity

    def _update_incident(self, incident: Incident, firing: Sequence[Alert], now_ms: int) -> None:
        for a in firing:
            if a.fingerprint not in incident.fingerprints:
                incident.fingerprints.append(a.fingerprint)
        if not firing:
            return
        top = max(firing, key=self._rank)
        level = self.config.level_of(top.severity)
        if LEVELS.index(level) > LEVELS.index(incident.level):
            incident.log(now_ms, f"level raised from {incident.level} to {level} ({top.rule} {top.severity})")
            incident.level, incident.severity = level, top.severity
            if incident.status == "open" and incident.next_escalation_at is None:
                incident.next_escalation_at = now_ms  # the stricter policy may have steps left

    def _escalate(self, state: NotifierState, incident: Incident, now_ms: int) -> list[Intent]:
        if incident.status != "open" or incident.next_escalation_at is None or now_ms < incident.next_escalation_at:
            return []
        policy = self.config.escalation.for_level(incident.level)
        if incident.step + 1 >= len(policy.steps):
            incident.next_escalation_at = None
            return []
        alerts = self._incident_alerts(state, incident, unmuted_at=now_ms)
        if not alerts:
            return []  # all muted (or nothing firing): wait, do not page
        incident.step += 1
        receiver = policy.steps[incident.step]
        incident.next_escalation_at = now_ms + policy.timeout if incident.step + 1 < len(policy.steps) else None
        if incident.step == 0 and receiver == incident.receiver:
            incident.log(now_ms, f"escalation step 0 is {receiver}, already notified")
            return []
        if receiver not in incident.notified:
            incident.notified.append(receiver)
        incident.log(now_ms, f"escalated to step {incident.step}: {receiver}")
        return [self._intent(incident, receiver, "escalation", "firing", alerts, now_ms, step=incident.step)]

    def _remediate(self, state: NotifierState, incident: Incident, firing: Sequence[Alert],
                   now_ms: int) -> list[Intent]:
        out = []
        for alert in sorted(firing, key=_order):
            if alert.remediated or not (alert.rule in self.config.remediation or alert.remediation_url):
                continue
            alert.remediated = True
            receiver = REMEDIATION_PREFIX + alert.rule
            incident.log(now_ms, f"remediation called for {alert.rule} ({alert.fingerprint})")
            out.append(Intent(
                _id("intent", "remediation", alert.rule, alert.fingerprint, alert.starts_at), "remediation", receiver,
                incident.group_key, incident.incident_id, "firing", alert.severity,
                self.config.level_of(alert.severity), dict(incident.group_labels), (alert.snapshot(),), now_ms))
        return out

    def _close(self, incident: Incident, alerts: tuple[dict[str, Any], ...], now_ms: int, *, by: str = "",
               receivers: Sequence[str] | None = None, what: str) -> list[Intent]:
        """Resolve an incident; resolved notices to ``receivers`` (default: every notified one)."""
        incident.status, incident.resolved_at, incident.resolved_by = "resolved", now_ms, by
        incident.next_escalation_at = None
        incident.log(now_ms, what, by)
        out = []
        for receiver in incident.notified if receivers is None else receivers:
            cfg = self.config.receiver(receiver)
            if cfg is None or cfg.send_resolved:
                out.append(self._intent(incident, receiver, "resolved", "resolved", alerts, now_ms, by=by))
        return out

    def _intent(self, incident: Incident, receiver: str, kind: str, status: str,
                alerts: tuple[dict[str, Any], ...], now_ms: int, *, step: int | None = None, seq: int = 0,
                by: str = "") -> Intent:
        signature = ",".join(sorted(f"{a['fingerprint']}:{a['status']}:{a['starts_at']}" for a in alerts))
        intent_id = _id("intent", receiver, incident.group_key, incident.incident_id, kind,
                        "" if step is None else step, seq, signature)
        severities = [a["severity"] for a in alerts] or [incident.severity]
        severity = max(severities, key=lambda s: (LEVELS.index(self.config.level_of(s)), s))
        return Intent(intent_id, kind, receiver, incident.group_key, incident.incident_id, status, severity,
                      self.config.level_of(severity), dict(incident.group_labels), alerts, now_ms, step, by)

    def _incident_alerts(self, state: NotifierState, incident: Incident, *, unmuted_at: int | None = None,
                         ) -> tuple[dict[str, Any], ...]:
        """Snapshots of the incident's alerts; only the firing, unmuted ones when ``unmuted_at``."""
        group = state.groups.get(incident.group_key)
        fps = group.members if group is not None else incident.fingerprints
        alerts = [state.alerts[fp] for fp in fps if fp in state.alerts]
        if unmuted_at is not None:
            alerts = [a for a in alerts if a.status == "firing" and not self.muted(state, a, unmuted_at)]
        return tuple(a.snapshot() for a in sorted(alerts, key=_order))

    @staticmethod
    def _find(state: NotifierState, target: str, statuses: tuple[str, ...]) -> list[Incident]:
        incident = state.incidents.get(target)
        if incident is not None:
            found = [incident] if incident.status in statuses else []
        else:
            found = [i for _, i in sorted(state.incidents.items()) if i.status in statuses and target in i.fingerprints]
        if not found:
            raise LookupError(f"no {' or '.join(statuses)} incident for {target!r}")
        return found

    def _emit(self, state: NotifierState, intents: Iterable[Intent], now_ms: int) -> list[Intent]:
        out = []
        for intent in intents:
            if intent.intent_id in state.ledger:
                continue
            state.ledger[intent.intent_id] = {"at": now_ms, "delivered": False}
            out.append(intent)
        return out

    def _prune(self, state: NotifierState, now_ms: int) -> None:
        grouped = {fp for g in state.groups.values() for fp in g.members}
        for fp, alert in list(state.alerts.items()):
            if alert.status == "resolved" and fp not in grouped and \
                    now_ms - (alert.ends_at or alert.updated_at) > RESOLVED_ALERT_RETENTION_MS:
                del state.alerts[fp]
        for sid, s in list(state.silences.items()):
            if now_ms - s.ends_at > SILENCE_RETENTION_MS:
                del state.silences[sid]
        for iid, incident in list(state.incidents.items()):
            if incident.status == "resolved" and now_ms - (incident.resolved_at or 0) > INCIDENT_RETENTION_MS:
                del state.incidents[iid]
        for intent_id, entry in list(state.ledger.items()):
            if entry["at"] is None:
                entry["at"] = now_ms  # recorded by mark_delivered without a time: keep it from now
            elif now_ms - entry["at"] > LEDGER_RETENTION_MS:
                del state.ledger[intent_id]


def _order(alert: Alert) -> tuple[int, str]:
    return alert.starts_at, alert.fingerprint
