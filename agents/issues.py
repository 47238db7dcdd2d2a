"""issue_status: errors re-keyed by fingerprint (plus people's commands) -> issue status.

The ingest agent reads errors keyed by session, so one issue's errors are spread over every
partition. It sends one record per fingerprint and raw message to ``topic_issue_events``, keyed by
(project, fingerprint); commands (resolve, ignore, unresolve from ``pulse issues`` or HTTP) go to
the same topic with the same key, so each issue's errors and commands are read in order by one
agent. The pure rules are in ``pipeline/issues/lifecycle.py``.

Per batch, in this order (``agents/stage.py`` runs it, so a SIGKILL anywhere is harmless):

1. apply the records to the issues' states (``IssueAgent.step``, pure);
2. send the new ``issue_state`` and ``issue_transitions`` rows and the alertable transitions, and
   wait until Kafka confirmed them;
3. write each touched issue's state to the table's compacted changelog, with the offset of the last
   input record applied, and wait; then Faust acks the batch.

A replay after a crash between 2 and 3 re-sends identical rows and transitions (same ids; the
tables are ReplacingMergeTree). A replay after 3 is skipped by the stored input offset, and an
occurrence record re-sent by a restarted ingest agent by its raw origin (``IssueState.marks``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime

import faust
import orjson

from agents.state import WorkerState
from agents.delivery import Send, SendAll, dead_letter_send, row_sends
from agents.skips import CompleteBatches
from agents.stage import StageOutput, StageRunner
from pipeline.contract import reason_kind
from pipeline.ingest.process import RawMessage, dead_letter_for
from pipeline.issues import (
    Command,
    IssueState,
    OccurrenceRecord,
    Transition,
    apply_command,
    apply_occurrences,
    parse_record,
    record_key,
    state_row,
    transition_row,
)
from pipeline.metrics import DEAD_LETTERS, ISSUE_TRANSITIONS
from pipeline.settings import Settings

log = logging.getLogger(__name__)
PROCESS = "worker"
TABLE_NAME = "issue_state"
STEP = "issues"


def issue_changelog_topic(settings: Settings) -> str:
    """Faust's name for the table's changelog (created by the worker as a compacted topic)."""
    return f"{settings.worker.app_id}-{TABLE_NAME}-changelog"


def occurrence_sends(records: Sequence[OccurrenceRecord], topic: str) -> list[Send]:
    """The ingest agent's records for this agent, keyed by issue."""
    return [(topic, record_key(r.project, r.group_id), orjson.dumps(r.to_json()), None, []) for r in records]


def _decode_state(value: bytes | None) -> tuple[int, IssueState | None]:
    if value is None:
        return -1, None
    doc = orjson.loads(value)
    return int(doc["input_offset"]), IssueState.from_json(doc["state"])


def _encode_state(input_offset: int, state: IssueState) -> bytes:
    return orjson.dumps({"input_offset": input_offset, "state": state.to_json()})


class IssueAgent:
    """Issue states of this worker's partitions of ``topic_issue_events``, in a Faust table."""

    def __init__(self, app: faust.App, settings: Settings, state: WorkerState, send_all: SendAll) -> None:
        self.app = app
        self.rules = settings.issues.rules()
        self.send_all = send_all
        self.worker_state = state
        kafka = settings.kafka
        self.storage_topic, self.transitions_topic = kafka.topic_storage, kafka.topic_issue_transitions
        self.dead_letter_topic = kafka.topic_dead_letter
        self.storage_partitions = kafka.partitions
        self.max_record_bytes = settings.worker.max_record_bytes
        self.table = app.Table(TABLE_NAME, key_type=bytes, value_type=bytes, partitions=kafka.partitions)
        self.changelog = self.table.changelog_topic.get_topic_name()
        if self.changelog != issue_changelog_topic(settings):
            raise RuntimeError(f"Faust names the changelog {self.changelog!r}, expected {issue_changelog_topic(settings)!r}")
        self.topic = app.topic(kafka.topic_issue_events, key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw", internal=False)
        app.agent(self.topic, name="issue_status")(self._run)
        # the step reads only what was last written, so a failed step leaves nothing to forget
        self.runner = StageRunner("issue agent", send_all, self.step,
                                  reset=lambda: None, dead_letter=self._dead_letter, state=state,
                                  complete=CompleteBatches(app, kafka.bootstrap_servers))

    async def _run(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=0.2):
            await self.runner.run(events)

    def _dead_letter(self, message: RawMessage, reason: str, now: datetime) -> Send:
        """The record as a dead letter of the worker (the contract's step), the issue agent named in the reason."""
        DEAD_LETTERS.labels(PROCESS, STEP, reason_kind(reason)).inc()
        return dead_letter_send(self.dead_letter_topic, dead_letter_for(message, f"issue agent: {reason}", now))

    def step(self, messages: list[RawMessage], now: datetime) -> StageOutput:
        """The batch's records applied to their issues' states as last written (pure but for reading
        the table's store): rows, transitions and state records to send, the store updated once sent."""
        store = self.table.data.data  # the memory store's dict, restored by Faust from the changelog
        working: dict[bytes, tuple[int, int, IssueState | None]] = {}  # key -> (partition, input offset, state)
        touched: dict[bytes, int] = {}  # key -> last input offset applied in this batch
        transitions: list[Transition] = []
        dead: list[Send] = []
        for message in messages:
            try:
                record = parse_record(orjson.loads(message.value))
            except (orjson.JSONDecodeError, ValueError) as exc:
                dead.append(self._dead_letter(message, f"not an issue record: {exc}", now))
                continue
            key = record_key(record.project, record.group_id)
            if key not in working:
                working[key] = (message.partition, *_decode_state(store.get(key)))
            partition, applied_upto, state = working[key]
            if message.offset <= applied_upto:
                continue  # applied before a crash; its state is already in the changelog
            if isinstance(record, Command):
                if state is None:
                    dead.append(self._dead_letter(message, f"{record.action} for unknown issue {record.group_id!r} "
                                                           f"of project {record.project!r}", now))
                    continue
                state, changed = apply_command(state, record, self.rules)
            else:
                state, changed = apply_occurrences(state, record, self.rules)
            working[key] = (partition, message.offset, state)
            touched[key] = message.offset
            transitions += changed
        now_ms = int(now.timestamp() * 1000)
        states: list[tuple[bytes, int, IssueState]] = []
        for key in touched:
            partition, _, state = working[key]
            assert state is not None  # touched = a record was applied, so the issue exists
            states.append((key, partition, state))
        out = StageOutput(outputs=list(dead))
        if states:
            out.outputs += row_sends(self.storage_topic, "issue_state",
                                     [orjson.dumps(state_row(s, now_ms)) for _, _, s in states], self.max_record_bytes)
        if transitions:
            out.outputs += row_sends(self.storage_topic, "issue_transitions",
                                     [orjson.dumps(transition_row(t)) for t in transitions], self.max_record_bytes)
            # keyed by project: alert rules meet them in the partition of the project's rollup partials
            out.outputs += [(self.transitions_topic, t.project.encode(), orjson.dumps(t.to_json()), None, [])
                            for t in transitions if t.alertable]
        values = {key: _encode_state(touched[key], s) for key, _, s in states}
        out.state = [(self.changelog, key, values[key], partition, []) for key, partition, _ in states]

        def done() -> None:
            store.update(values)
            for t in transitions:
                ISSUE_TRANSITIONS.labels(t.kind).inc()
                if t.alertable:
                    log.info("issue %s/%s is %s: %s (%s)", t.project, t.group_id, t.kind, t.title, t.reason)
            self.worker_state.issue_batches += 1
            self.worker_state.last_issue_batch_at = time.time()

        out.done.append(done)
        return out
