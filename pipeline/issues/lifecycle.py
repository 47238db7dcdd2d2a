"""An issue's status over time: new, ongoing, escalating, regressed, resolved, ignored. Pure.

One ``IssueState`` per fingerprint, changed only by ``apply_occurrences`` (errors of that
fingerprint from one raw message) and ``apply_command`` (resolve / ignore / unresolve from a
person). Both return the state and the transitions they caused; the worker keeps the state in a
compacted changelog and sends the alertable transitions (``ALERTABLE``) to a topic.

Rules (event time; thresholds in ``IssueRules``):

* **new** when first seen; **ongoing** once ``new_period`` has passed since then (checked when its
  next error arrives, so a quiet issue keeps showing the status it had).
* **escalating** when one hour holds at least ``escalation_min_events`` errors and at least
  ``escalation_factor`` times the hourly average of the ``baseline_hours`` before it. Only with a
  full baseline (first seen that long ago), from new, ongoing or regressed, or from ignored when it
  was ignored "until escalating". Back to **ongoing** once a complete hour after it is below the
  threshold.
* **resolved** by a person. An error after that regresses it (**regressed**) unless its release was
  already seen before the resolution (old clients still running the old code) or it happened before
  the resolution. "Resolved in release X" treats X itself as the fix: X's errors regress it.
  Without releases, any later error regresses it.
* **ignored** by a person; stays ignored (errors still counted) until unresolved, or until it
  escalates when ignored "until escalating". **unresolve** reopens as new or ongoing by age.

Replays are harmless: an occurrence record carries its raw origin (topic, partition, offset), and
an offset at or below what was applied for that raw partition is skipped. Transition ids are
derived from what caused them, so a replayed transition has the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["new", "ongoing", "escalating", "regressed", "resolved", "ignored"]
STATUSES: tuple[str, ...] = ("new", "ongoing", "escalating", "regressed", "resolved", "ignored")
Action = Literal["resolve", "ignore", "unresolve"]
ACTIONS: tuple[str, ...] = ("resolve", "ignore", "unresolve")
ALERTABLE = frozenset({"new", "regressed", "escalating"})
HOUR_MS = 3_600_000
MAX_RELEASES = 200  # releases remembered per issue (oldest dropped): bounds state size
_NAMESPACE = uuid.UUID("0f4d5a8e-3c59-4f0e-9a1e-5b7c2d8e6f10")


@dataclass(frozen=True)
class IssueRules:
    new_period_ms: int = 7 * 24 * HOUR_MS
    escalation_factor: float = 5.0
    escalation_min_events: int = 20
    baseline_hours: int = 24


@dataclass(frozen=True, slots=True)
class Occurrence:
    event_id: str
    ts_ms: int
    release: str = ""


@dataclass(frozen=True)
class OccurrenceRecord:
    """Errors of one fingerprint from one raw message (its origin makes replays detectable)."""

    project: str
    group_id: str
    title: str
    culprit: str
    source_topic: str
    source_partition: int
    source_offset: int
    occurrences: tuple[Occurrence, ...]

    def to_json(self) -> dict[str, Any]:
        return {"kind": "occurrences", "project": self.project, "group_id": self.group_id, "title": self.title,
                "culprit": self.culprit, "src": [self.source_topic, self.source_partition, self.source_offset],
                "events": [[o.event_id, o.ts_ms, o.release] for o in self.occurrences]}


@dataclass(frozen=True)
class Command:
    """A person's decision about an issue (CLI or HTTP), carried on the same topic as the errors so
    it is ordered with them."""

    command_id: str
    action: Action
    project: str
    group_id: str
    at_ms: int
    in_release: str | None = None
    until_escalating: bool = False
    actor: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": "command", **asdict(self)}


@dataclass(frozen=True)
class Transition:
    transition_id: str
    project: str
    group_id: str
    kind: str  # the status entered
    from_status: str
    at_ms: int
    reason: str
    title: str
    culprit: str
    release: str = ""
    caused_by: str = ""  # event_id or command_id
    actor: str = ""
    events: int = 0

    @property
    def alertable(self) -> bool:
        return self.kind in ALERTABLE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IssueState:
    project: str
    group_id: str
    title: str = ""
    culprit: str = ""
    status: str = "new"
    status_since_ms: int = 0
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    events: int = 0
    first_release: str = ""
    last_release: str = ""
    releases: list[str] = field(default_factory=list)  # seen, oldest first, at most MAX_RELEASES
    resolved_at_ms: int | None = None
    resolved_releases: list[str] = field(default_factory=list)  # their errors do not regress it
    ignored_until_escalating: bool = False
    escalated_hour: int | None = None
    hourly: dict[int, int] = field(default_factory=dict)  # hour -> errors, last baseline_hours + 1
    marks: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> last applied raw offset
    version: int = 0  # records applied: orders rows of ReplacingMergeTree(version)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["hourly"] = [[h, n] for h, n in sorted(self.hourly.items())]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "IssueState":
        doc = dict(doc)
        doc["hourly"] = {int(h): int(n) for h, n in doc.get("hourly", [])}
        return cls(**doc)


def _tid(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(map(str, parts))))


class _Changes:
    def __init__(self, state: IssueState) -> None:
        self.state = state
        self.transitions: list[Transition] = []

    def enter(self, status: str, at_ms: int, reason: str, *, cause: str, release: str = "", actor: str = "",
              id_parts: Sequence[object] = ()) -> None:
        s = self.state
        if s.status == status:
            return
        self.transitions.append(Transition(
            _tid(s.project, s.group_id, status, cause, *id_parts), s.project, s.group_id, status, s.status, at_ms,
            reason, s.title, s.culprit, release, cause, actor, s.events))
        s.status = status
        s.status_since_ms = at_ms


def _age_status(state: IssueState, at_ms: int, rules: IssueRules) -> str:
    return "new" if at_ms - state.first_seen_ms < rules.new_period_ms else "ongoing"


def _threshold(state: IssueState, hour: int, rules: IssueRules) -> float:
    baseline = sum(state.hourly.get(h, 0) for h in range(hour - rules.baseline_hours, hour))
    return max(float(rules.escalation_min_events), rules.escalation_factor * baseline / rules.baseline_hours)


def _has_baseline(state: IssueState, hour: int, rules: IssueRules) -> bool:
    return state.first_seen_ms // HOUR_MS <= hour - rules.baseline_hours


def _regresses(state: IssueState, occ: Occurrence) -> bool:
    if state.resolved_at_ms is None or occ.ts_ms <= state.resolved_at_ms:
        return False
    return not occ.release or occ.release not in state.resolved_releases


def apply_occurrences(state: IssueState | None, record: OccurrenceRecord,
                      rules: IssueRules) -> tuple[IssueState, list[Transition]]:
    """Count one raw message's errors of this issue; returns the new state and its transitions."""
    occs = sorted(record.occurrences, key=lambda o: (o.ts_ms, o.event_id))
    if state is None:
        first = occs[0] if occs else Occurrence("", 0)
        state = IssueState(record.project, record.group_id, record.title, record.culprit, "new", first.ts_ms,
                           first.ts_ms, first.ts_ms, 0, first.release, first.release)
        changes = _Changes(state)
        changes.transitions.append(Transition(
            _tid(state.project, state.group_id, "new"), state.project, state.group_id, "new", "", first.ts_ms,
            "first seen", state.title, state.culprit, first.release, first.event_id, "", len(occs)))
    else:
        changes = _Changes(state)
    mark_key = f"{record.source_topic}:{record.source_partition}"
    if record.source_offset <= state.marks.get(mark_key, -1):
        return state, []  # a replay of a raw message already counted
    state.marks[mark_key] = record.source_offset
    state.version += 1
    if record.title:
        state.title, state.culprit = record.title, record.culprit
    hours: set[int] = set()
    for occ in occs:
        state.events += 1
        if occ.ts_ms < state.first_seen_ms:
            state.first_seen_ms = occ.ts_ms
            state.first_release = occ.release or state.first_release
        if occ.ts_ms >= state.last_seen_ms:
            state.last_seen_ms = occ.ts_ms
            state.last_release = occ.release or state.last_release
        if occ.release and occ.release not in state.releases:
            state.releases.append(occ.release)
            del state.releases[:-MAX_RELEASES]
        hour = occ.ts_ms // HOUR_MS
        state.hourly[hour] = state.hourly.get(hour, 0) + 1
        hours.add(hour)
        if state.status == "resolved" and _regresses(state, occ):
            changes.enter("regressed", occ.ts_ms, f"seen again after it was resolved, in release {occ.release!r}"
                          if occ.release else "seen again after it was resolved",
                          cause=occ.event_id, release=occ.release)
    last = occs[-1] if occs else None
    if last is not None:
        _settle(state, changes, last, hours, rules)
    newest = max(state.hourly)
    for h in [h for h in state.hourly if h < newest - rules.baseline_hours]:
        del state.hourly[h]
    return state, changes.transitions


def _settle(state: IssueState, changes: _Changes, last: Occurrence, hours: Iterable[int], rules: IssueRules) -> None:
    """Escalation and ageing after a record's errors are counted."""
    can_escalate = state.status in ("new", "ongoing", "regressed") or (
        state.status == "ignored" and state.ignored_until_escalating)
    if can_escalate:
        for hour in sorted(hours):
            if _has_baseline(state, hour, rules) and state.hourly.get(hour, 0) >= _threshold(state, hour, rules):
                state.ignored_until_escalating = False
                state.escalated_hour = hour
                changes.enter("escalating", last.ts_ms,
                              f"{state.hourly[hour]} errors in one hour, over {rules.escalation_factor:g}x the "
                              f"hourly average of the {rules.baseline_hours} hours before",
                              cause=f"hour:{hour}", release=last.release, id_parts=(hour,))
                return
    hour = last.ts_ms // HOUR_MS
    if state.status == "escalating" and state.escalated_hour is not None and hour >= state.escalated_hour + 2 \
            and state.hourly.get(hour - 1, 0) < _threshold(state, hour - 1, rules):
        state.status, state.status_since_ms, state.escalated_hour = "ongoing", last.ts_ms, None
    elif state.status in ("new", "regressed") and last.ts_ms - state.status_since_ms >= rules.new_period_ms:
        state.status, state.status_since_ms = "ongoing", last.ts_ms


def apply_command(state: IssueState, command: Command, rules: IssueRules) -> tuple[IssueState, list[Transition]]:
    """Resolve, ignore or unresolve. Applying the same command again changes nothing."""
    changes = _Changes(state)
    state.version += 1
    if command.action == "resolve":
        if state.status != "resolved" or state.resolved_at_ms != command.at_ms:
            state.resolved_at_ms = command.at_ms
            state.resolved_releases = [r for r in state.releases if r != command.in_release]
        changes.enter("resolved", command.at_ms, f"resolved in release {command.in_release!r}" if command.in_release
                      else "resolved", cause=command.command_id, release=command.in_release or "",
                      actor=command.actor)
    elif command.action == "ignore":
        state.ignored_until_escalating = command.until_escalating
        changes.enter("ignored", command.at_ms, "ignored until it escalates" if command.until_escalating
                      else "ignored", cause=command.command_id, actor=command.actor)
    elif command.action == "unresolve":
        state.resolved_at_ms, state.resolved_releases, state.ignored_until_escalating = None, [], False
        changes.enter(_age_status(state, command.at_ms, rules), command.at_ms, "reopened",
                      cause=command.command_id, actor=command.actor)
    else:
        raise ValueError(f"unknown action {command.action!r}; expected one of {', '.join(ACTIONS)}")
    return state, changes.transitions


def parse_record(doc: Any) -> OccurrenceRecord | Command:
    """A record of the issue-events topic; ``ValueError`` naming the problem when it is not one."""
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    kind = doc.get("kind")
    try:
        if kind == "occurrences":
            topic, partition, offset = doc["src"]
            occs = tuple(Occurrence(str(e), int(ts), str(rel or "")) for e, ts, rel in doc["events"])
            if not occs:
                raise ValueError("no events")
            return OccurrenceRecord(str(doc["project"]), str(doc["group_id"]), str(doc.get("title", "")),
                                    str(doc.get("culprit", "")), str(topic), int(partition), int(offset), occs)
        if kind == "command":
            action = doc["action"]
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
            return Command(str(doc["command_id"]), action, str(doc["project"]), str(doc["group_id"]),
                           int(doc["at_ms"]), doc.get("in_release") or None, bool(doc.get("until_escalating")),
                           str(doc.get("actor") or ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad {kind} record: {type(exc).__name__}: {exc}") from None
    raise ValueError(f"unknown record kind {kind!r}; expected 'occurrences' or 'command'")


def record_key(project: str, group_id: str) -> bytes:
    """Kafka key of an issue's records: one issue's errors and commands share a partition, in order."""
    return f"{project}\x1f{group_id}".encode()
