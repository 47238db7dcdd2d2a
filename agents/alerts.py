"""alert_rules: closed windows of rollups, issue transitions and UX signals -> alert events.

Inputs, all keyed by project so one project's data meets in one partition:
  * ``topic_rollup_partials``: the ingest agent's minute partials (the same rows as
    ``rollups_minute``, JSON arrays built by ``pipeline.rollups.minute.alert_partial_messages``);
  * ``topic_ux_signals``: rage and dead clicks from sessionization;
  * ``topic_issue_transitions``: new / regressed / escalating issues.

The pure rules are ``pipeline/alerts`` (``RuleEvaluator``). A window closes by the wall clock: when
``now - allowed lateness`` has passed its end (``PULSE_ROLLUPS_ALLOWED_LATENESS_S``); a partial for
an already-closed window is late for alerting (still stored, counted in
``pulse_late_events_total{stage="alerts"}``). So a page comes at most window + lateness + a tick
after the first breaching event, and windows without data close too (alerts resolve when traffic
stops). Per batch and per timer tick: evaluate, send alert events to ``topic_alerts`` (key =
fingerprint) and rows to the ``alerts`` table, wait for Kafka, then write the partition's state
(evaluator, buffered windows, input offsets) to the table's changelog. A crash replays input after
the last state write: records at or below the stored offsets are skipped, and re-emitted alert
events carry the same deterministic ids (the notifier drops them).

The state is bounded whatever the traffic (``PartitionAlerts``; bounds ``PULSE_ALERTS_MAX_*``), and a
record above ``PULSE_ALERTS_MAX_STATE_BYTES`` is never produced: an error is logged and counted
(``pulse_alert_state_oversize_total``) instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import faust
import orjson

from agents.state import WorkerState
from agents.delivery import Send, SendAll, dead_letter_send, row_sends
from agents.skips import CompleteBatches, StartPositions
from agents.stage import StageOutput, StageRunner
from pipeline.alerts.buffer import AlertBuffer, AlertLimits
from pipeline.alerts.evaluate import AlertEvent, RuleEvaluator, WindowAggregate, ux_aggregates
from pipeline.alerts.enrich import Context, enrich
from pipeline.alerts.rules import RuleSet, load_rules
from pipeline.alerts.slo import SloEvaluator
from pipeline.contract import reason_kind
from pipeline.ingest.process import RawMessage, dead_letter_for
from pipeline.metrics import (
    ALERT_CONTEXT_EVICTED,
    ALERT_EVENTS,
    ALERT_SERIES_DROPPED,
    ALERT_STATE_BYTES,
    ALERT_STATE_OVERSIZE,
    DEAD_LETTERS,
    LATE_EVENTS,
)
from pipeline.settings import Settings

log = logging.getLogger(__name__)
PROCESS = "worker"
TABLE_NAME = "alert_state"
STEP = "alerts"
MINUTE_MS = 60_000
SLO_CATCH_UP_MS = 3 * 86_400_000


def alert_changelog_topic(settings: Settings) -> str:
    return f"{settings.worker.app_id}-{TABLE_NAME}-changelog"


def alert_row(event: AlertEvent) -> dict[str, Any]:
    """A row of the ``alerts`` table (ReplacingMergeTree by event id: replays collapse)."""
    def dt(ms: int | None) -> datetime | None:
        return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)

    return {"event_id": event.event_id, "fingerprint": event.fingerprint, "rule": event.rule, "status": event.status,
            "severity": event.severity, "project": event.labels.get("project", ""), "labels": event.labels,
            "starts_at": dt(event.starts_at), "ends_at": dt(event.ends_at), "at": dt(event.at),
            "value": event.value if event.value is None or event.value == event.value else None,
            "threshold": event.threshold, "summary": event.summary, "runbook_url": event.runbook_url or "",
            "annotations": orjson.dumps(event.annotations, default=str).decode()}


class PartitionAlerts:
    """One input partition's evaluators (rules and SLOs), the windows they may still need, and the
    offsets applied. Bounded by ``limits`` whatever the traffic (see ``pipeline/alerts/buffer.py``):
    the buffer holds one merged aggregate per rule, open window and series; evaluator and SLO series
    per rule at most ``max_series``; the enrichment context at most ``max_projects`` projects of
    ``recent_issues`` issues; ``offsets`` one per input topic."""

    def __init__(self, rules: RuleSet, doc: dict[str, Any] | None = None, limits: AlertLimits = AlertLimits()) -> None:
        doc = doc or {}
        self.evaluator = RuleEvaluator(rules, doc.get("evaluator"), limits.max_series)
        self.slos = SloEvaluator(rules, doc.get("slos"), limits.max_series) if rules.slos else None
        self.slo_next_ms: int | None = doc.get("slo_next_ms")  # the first minute the SLOs have not seen
        self.context = Context.from_json(doc.get("context"), limits.max_projects, limits.recent_issues)
        stored = doc.get("buffer")
        if isinstance(stored, list):
            # Written before the buffer was bounded: one raw minute partial per input message,
            # duplicates of a series included. Merged into the bounded buffer, then trimmed.
            self.buffer = AlertBuffer(rules, limits.max_series)
            self.buffer.add_all(WindowAggregate(a["project"], a["window_start_ms"], a["window_ms"], a["labels"],
                                                a["counters"],
                                                {k: {int(b): n for b, n in v.items()} for k, v in a["sketches"].items()})
                                for a in stored)
            self._trim()
        elif stored:
            self.buffer = AlertBuffer.from_json(rules, stored, limits.max_series)
        else:
            self.buffer = AlertBuffer(rules, limits.max_series)
        self.offsets: dict[str, int] = dict(doc.get("offsets", {}))
        self.closed_until_ms: int = int(doc.get("closed_until_ms", 0))

    def to_bytes(self) -> bytes:
        return orjson.dumps({"evaluator": self.evaluator.to_json(), "buffer": self.buffer.to_json(),
                             "slos": self.slos.to_json() if self.slos else None, "slo_next_ms": self.slo_next_ms,
                             "context": self.context.to_json(),
                             "offsets": self.offsets, "closed_until_ms": self.closed_until_ms},
                            option=orjson.OPT_NON_STR_KEYS)

    def add(self, aggregates: Sequence[WindowAggregate]) -> int:
        """Merge aggregates of windows still open into the buffer; returns how many were late (already closed)."""
        late = 0
        for agg in aggregates:
            self.context.see_aggregate(agg)
            if agg.window_start_ms + agg.window_ms <= self.closed_until_ms:
                late += 1
            else:
                self.buffer.add(agg)
        return late

    def advance(self, closed_until_ms: int) -> list[AlertEvent]:
        if closed_until_ms <= self.closed_until_ms:
            return []
        self.closed_until_ms = closed_until_ms
        events = self.evaluator.advance(closed_until_ms, self.buffer.by_rule())
        if self.slos is not None:
            events += self._advance_slos(closed_until_ms)
        self._trim()
        return [enrich(e, self.context) for e in events]

    def _trim(self) -> None:
        self.buffer.trim({name: self.evaluator.next_window_ms(name) for name in self.buffer.rules}, self.slo_next_ms)

    def drain_dropped(self) -> tuple[dict[str, int], int]:
        """(rule -> series dropped at ``max_series``, context projects evicted) since the last call."""
        dropped: dict[str, int] = {}
        for counts in (self.evaluator.dropped, self.buffer.dropped, self.slos.dropped if self.slos else {}):
            for rule, n in counts.items():
                dropped[rule] = dropped.get(rule, 0) + n
            counts.clear()
        evicted, self.context.evicted = self.context.evicted, 0
        return dropped, evicted

    def on_transition(self, transition: dict[str, Any]) -> list[AlertEvent]:
        self.context.see_transition(transition)
        return [enrich(e, self.context) for e in self.evaluator.on_transition(transition)]

    def _advance_slos(self, closed_until_ms: int) -> list[AlertEvent]:
        """SLOs count whole minutes: every minute that closed since the last call, in order."""
        assert self.slos is not None
        end = closed_until_ms - closed_until_ms % MINUTE_MS
        start = self.slo_next_ms
        if start is None:
            start = min(self.buffer.slo_minutes(), default=end)
        start = max(start, end - SLO_CATCH_UP_MS)  # after a long outage, only the last 3 days matter
        events: list[AlertEvent] = []
        for minute in range(start, end, MINUTE_MS):
            events += self.slos.evaluate(minute, self.buffer.slo_minute(minute))
        self.slo_next_ms = max(start, end)
        return events


def state_records(parts: Mapping[int, PartitionAlerts], touched: Iterable[int], limit: int
                  ) -> tuple[list[tuple[int, bytes]], list[tuple[int, int]]]:
    """The state records of the touched partitions that fit in ``limit`` bytes, and (partition,
    size) of those that do not. A record that does not fit must never be produced: the broker
    would refuse it and, retried with every batch, it would stop alerting altogether (issue 14)."""
    fit: list[tuple[int, bytes]] = []
    oversize: list[tuple[int, int]] = []
    for p in sorted(touched):
        value = parts[p].to_bytes()
        if len(value) > limit:
            oversize.append((p, len(value)))
        else:
            fit.append((p, value))
    return fit, oversize


class AlertAgent:
    def __init__(self, app: faust.App, settings: Settings, state: WorkerState, send_all: SendAll) -> None:
        self.app = app
        self.settings = settings
        self.worker_state = state
        self.send_all = send_all
        self.rules = load_rules(settings.alerts.rules_path)
        self.limits = settings.alerts.limits()
        # a record also carries its key and batch overhead within a produce request
        self.max_state_bytes = min(settings.alerts.max_state_bytes, settings.kafka.max_request_bytes - 1024)
        self.lateness_ms = int(settings.rollups.allowed_lateness_s * 1000)
        self.window_ms = settings.rollups.window_s * 1000  # the partials' window (a minute by default)
        kafka = settings.kafka
        self.partials_topic, self.ux_topic = kafka.topic_rollup_partials, kafka.topic_ux_signals
        self.transitions_topic, self.alerts_topic = kafka.topic_issue_transitions, kafka.topic_alerts
        self.storage_topic, self.dead_letter_topic = kafka.topic_storage, kafka.topic_dead_letter
        self.parts: dict[int, PartitionAlerts] = {}
        self.lock = asyncio.Lock()
        self.runner = StageRunner("alert agent", send_all, self.step,
                                  reset=self._forget, dead_letter=self._dead_letter, state=state,
                                  complete=CompleteBatches(app, kafka.bootstrap_servers))
        self.start_positions = StartPositions(app)
        self.table = app.Table(TABLE_NAME, key_type=bytes, value_type=bytes, partitions=kafka.partitions,
                               on_recover=self._on_recovered)
        self.changelog = self.table.changelog_topic.get_topic_name()
        if self.changelog != alert_changelog_topic(settings):
            raise RuntimeError(f"Faust names the changelog {self.changelog!r}, expected {alert_changelog_topic(settings)!r}")
        topic = app.topic(self.partials_topic, self.ux_topic, self.transitions_topic, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw", internal=False)
        app.agent(topic, name="alert_rules")(self._run)
        app.timer(settings.alerts.tick_interval_s)(self._tick)
        log.info("alert rules: %s", ", ".join(r.name for r in [*self.rules.windowed, *self.rules.issue_rules]))

    # ------------------------------------------------------------ partitions
    def _owned(self) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.partials_topic}

    def part(self, partition: int) -> PartitionAlerts:
        part = self.parts.get(partition)
        if part is None:
            raw = self.table.data.data.get(str(partition).encode())
            part = self.parts[partition] = PartitionAlerts(self.rules, orjson.loads(raw) if raw else None, self.limits)
        return part

    async def _on_recovered(self) -> None:
        """Partitions moved away are forgotten; new ones are read from the restored table on first use.
        Also the moment (before the streams resume) to put every newly assigned input partition of the
        worker's Faust agents back where it was committed (see ``agents/skips.py``)."""
        await self.start_positions.rewind_new_partitions()
        owned = self._owned()
        for p in [p for p in self.parts if p not in owned]:
            del self.parts[p]

    # ------------------------------------------------------------ input
    async def _run(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=0.2):
            async with self.lock:
                await self.runner.run(events)

    def _dead_letter(self, message: RawMessage, reason: str, now: datetime) -> Send:
        """The record as a dead letter of the worker (the contract's step), the alert agent named in the reason."""
        DEAD_LETTERS.labels(PROCESS, STEP, reason_kind(reason)).inc()
        return dead_letter_send(self.dead_letter_topic, dead_letter_for(message, f"alert agent: {reason}", now))

    def _forget(self) -> None:
        """After a failed step: the partitions' states are read again as last written."""
        self.parts.clear()

    def step(self, messages: list[RawMessage], now: datetime) -> StageOutput:
        events: list[AlertEvent] = []
        dead: list[Send] = []
        touched: set[int] = set()
        late = 0
        for m in messages:
            part = self.part(m.partition)
            mark = f"{m.topic}:{m.partition}"
            if m.offset <= part.offsets.get(mark, -1):
                continue  # applied before a crash
            part.offsets[mark] = m.offset
            touched.add(m.partition)
            try:
                doc = orjson.loads(m.value)
                if m.topic == self.partials_topic:
                    late += part.add([WindowAggregate.from_rollup_row(r, self.window_ms) for r in doc])
                elif m.topic == self.ux_topic:
                    late += part.add(ux_aggregates([doc], self.window_ms))
                else:
                    events += part.on_transition(doc)
            except (ValueError, KeyError, TypeError) as exc:
                dead.append(self._dead_letter(m, f"not an alerting input: {type(exc).__name__}: {exc}", now))
        if late:
            LATE_EVENTS.labels(PROCESS, "alerts").inc(late)
        closed_until = self._closed_until()
        for p in sorted(touched):
            events += self.parts[p].advance(closed_until)
        return self._output(events, dead, touched)

    # ------------------------------------------------------------ clock
    def _closed_until(self) -> int:
        now_ms = int(time.time() * 1000) - self.lateness_ms
        return now_ms - now_ms % self.window_ms

    async def _tick(self) -> None:
        """Windows close by the clock, also when no input arrives (so alerts resolve when traffic stops)."""
        app = self.app
        if self.lock.locked() or app.rebalancing or not app.tables.recovery.completed.is_set():
            return
        try:
            async with self.lock:
                closed_until = self._closed_until()
                owned = self._owned()
                events: list[AlertEvent] = []
                touched = set()
                for p in sorted(owned):
                    part = self.part(p)
                    if closed_until > part.closed_until_ms:
                        events += part.advance(closed_until)
                        touched.add(p)
                if touched:
                    await self.runner.deliver(self._output(events, [], touched))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a failed tick is retried by the next one
            log.exception("alert timer tick failed")
            self._forget()

    # ------------------------------------------------------------ output
    def _output(self, events: list[AlertEvent], dead: list[Send], touched: set[int]) -> StageOutput:
        """Alert rows and events, then the touched partitions' states; metrics and logs once sent."""
        out = StageOutput(outputs=list(dead))
        if events:
            out.outputs += row_sends(self.storage_topic, "alerts",
                                     [orjson.dumps(alert_row(e), default=str) for e in events],
                                     self.settings.worker.max_record_bytes)
            out.outputs += [(self.alerts_topic, e.fingerprint.encode(), orjson.dumps(e.to_json()), None, [])
                            for e in events]
        fit, oversize = state_records(self.parts, touched, self.max_state_bytes)
        out.state = [(self.changelog, str(p).encode(), value, p, []) for p, value in fit]
        drained = {p: self.parts[p].drain_dropped() for p in sorted(touched)}

        def done() -> None:
            store = self.table.data.data
            for p, value in fit:
                store[str(p).encode()] = value
                ALERT_STATE_BYTES.labels(str(p)).set(len(value))
            for p, size in oversize:
                ALERT_STATE_OVERSIZE.labels(str(p)).inc()
                ALERT_STATE_BYTES.labels(str(p)).set(size)
                message = (f"alert state of partition {p} is {size} bytes, above the {self.max_state_bytes} allowed "
                           f"(PULSE_ALERTS_MAX_STATE_BYTES / PULSE_KAFKA_MAX_REQUEST_BYTES): not written; alerting "
                           f"goes on from memory, a restart resumes from the last state written. Lower "
                           f"PULSE_ALERTS_MAX_SERIES or the rules' group_by")
                log.error(message)
                self.worker_state.last_error = message
            for dropped, evicted in drained.values():
                for rule, n in dropped.items():
                    ALERT_SERIES_DROPPED.labels(rule).inc(n)
                    log.warning("alert rule %s: %d aggregates of new series dropped at PULSE_ALERTS_MAX_SERIES=%d",
                                rule, n, self.settings.alerts.max_series)
                if evicted:
                    ALERT_CONTEXT_EVICTED.inc(evicted)
            for e in events:
                ALERT_EVENTS.labels(e.rule, e.status, e.severity).inc()
                log.warning("alert %s %s [%s] %s", e.rule, e.status, e.severity, e.summary)

        out.done.append(done)
        return out
