"""agents/stage.py: the order of a batch's effects and the error boundary, without Kafka (the sends
are recorded; the ingest runner, the issue and alert agents run it for real in
tests/integration/test_worker.py, test_crash_safety.py, test_issues.py and test_alerts.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from agents.stage import StageOutput, StageRunner
from agents.state import WorkerState
from pipeline.ingest.process import RawMessage


class Given:
    """``complete`` hands the messages over as they are (faust skipped nothing)."""

    async def complete(self, events: list[RawMessage]) -> list[RawMessage]:
        return list(events)


class Counter:
    """A stage that sums the integers it reads; a message that is not an integer makes the step raise.
    Its memory is changed during the step (as the alert agent's is) and read back by ``reset``."""

    def __init__(self) -> None:
        self.written = 0  # what the changelog holds
        self.memory = 0
        self.resets = 0
        self.log: list[str] = []

    def step(self, messages: list[RawMessage], now: datetime) -> StageOutput:
        for m in messages:
            self.memory += int(m.value)  # raises ValueError on a bad record, after its neighbours changed memory
        total = self.memory
        out = StageOutput(outputs=[("rows", None, str(total).encode(), None, [])],
                          state=[("changelog", b"k", str(total).encode(), 0, [])])
        out.done.append(lambda: (setattr(self, "written", total), self.log.append(f"done {total}")))
        return out

    def reset(self) -> None:
        self.resets += 1
        self.memory = self.written

    def dead_letter(self, m: RawMessage, reason: str, now: datetime) -> tuple:
        return ("dead", None, f"{m.offset}: {reason}".encode(), None, [])


def run(values: list[bytes], commits: list[int] | None = None) -> tuple[Counter, list[tuple], WorkerState]:
    stage, sent, state = Counter(), [], WorkerState()

    async def send_all(sends: list[tuple]) -> list[None]:
        for s in sends:
            stage.log.append(f"send {s[0]} {s[2].decode()}")
        sent.extend(sends)
        return [None] * len(sends)

    async def commit(messages: list[RawMessage]) -> None:
        stage.log.append(f"commit {messages[-1].offset + 1}")
        assert commits is not None
        commits.append(messages[-1].offset + 1)

    runner = StageRunner("counter", send_all, stage.step, stage.reset, stage.dead_letter, state,  # type: ignore[arg-type]
                         complete=Given(), commit=commit if commits is not None else None)  # type: ignore[arg-type]
    messages = [RawMessage("in", 0, offset, None, v, None) for offset, v in enumerate(values)]
    asyncio.run(runner.run(messages))
    return stage, sent, state


def test_outputs_then_state_then_memory() -> None:
    stage, _, state = run([b"1", b"2", b"3"])
    assert stage.log == ["send rows 6", "send changelog 6", "done 6"]
    assert stage.written == 6 and stage.resets == 0 and state.last_error is None


def test_the_commit_comes_after_the_state_and_before_the_memory() -> None:
    commits: list[int] = []
    stage, _, _ = run([b"1", b"2", b"3"], commits)
    assert stage.log == ["send rows 6", "send changelog 6", "commit 3", "done 6"]
    assert commits == [3]


def test_a_bad_record_is_dead_lettered_alone_and_its_neighbours_count_once() -> None:
    commits: list[int] = []
    stage, sent, state = run([b"1", b"2", b"oops", b"4"], commits)
    dead = [s[2].decode() for s in sent if s[0] == "dead"]
    assert len(dead) == 1 and dead[0].startswith("2: failed: ValueError")
    # the batch's partial change was forgotten, then each record was applied once, in order: the
    # batch in halves ([1, 2] | [oops, 4]), the failing half in halves again ([oops] | [4])
    assert stage.written == 7 and stage.memory == 7
    assert [s[2] for s in sent if s[0] == "changelog"] == [b"3", b"7"]
    assert stage.resets == 3  # the batch, the half [oops, 4], the record oops
    assert commits == [2, 3, 4]  # every record's offset is committed once its outputs are written, in order
    assert state.last_error is not None and "ValueError" in state.last_error


def test_every_bad_record_of_a_large_batch_is_found_with_few_steps() -> None:
    values = [str(i).encode() for i in range(1000)]
    values[17] = values[640] = values[641] = b"bad"
    commits: list[int] = []
    stage, sent, _ = run(values, commits)
    dead = sorted(int(s[2].split(b":")[0]) for s in sent if s[0] == "dead")
    assert dead == [17, 640, 641]
    assert stage.written == sum(range(1000)) - 17 - 640 - 641  # every good record counted exactly once
    assert commits == sorted(commits) and commits[-1] == 1000
    assert len(commits) < 60  # bisection: ~2 log2(n) deliveries per bad record, not one per record


def test_a_reset_may_be_a_coroutine() -> None:
    """The ingest stage's reset reads session state back from the changelog (I/O)."""
    stage, sent, state = Counter(), [], WorkerState()

    async def reset() -> None:
        await asyncio.sleep(0)
        stage.reset()

    async def send_all(sends: list[tuple]) -> list[None]:
        sent.extend(sends)
        return [None] * len(sends)

    runner = StageRunner("counter", send_all, stage.step, reset, stage.dead_letter, state)  # type: ignore[arg-type]
    messages = [RawMessage("in", 0, offset, None, v, None) for offset, v in enumerate([b"5", b"x"])]
    asyncio.run(runner.run_messages(messages, datetime(2026, 12, 1)))
    assert stage.resets == 2 and stage.written == 5
    assert [s[0] for s in sent] == ["rows", "changelog", "dead"]


def test_outputs_that_fail_to_send_are_sent_again_before_the_state_and_noted() -> None:
    stage, sent, state = Counter(), [], WorkerState()
    attempts = {"n": 0}

    async def send_all(sends: list[tuple]) -> list[BaseException | None]:
        attempts["n"] += 1
        if attempts["n"] == 1:
            return [RuntimeError("broker away")] * len(sends)
        sent.extend(sends)
        return [None] * len(sends)

    runner = StageRunner("counter", send_all, stage.step, stage.reset, stage.dead_letter, state)  # type: ignore[arg-type]
    asyncio.run(runner.run_messages([RawMessage("in", 0, 0, None, b"2", None)], datetime(2026, 12, 1)))
    assert [s[0] for s in sent] == ["rows", "changelog"] and stage.written == 2
    assert state.last_error is not None and "broker away" in state.last_error


# ------------------------------------------------------------------ the ingest stage through the runner
def ingest_stage(monkeypatch, poison: str | None = None):  # type: ignore[no-untyped-def]
    """The real ``IngestRunner`` step with Kafka replaced at its three edges: sends are recorded,
    changelog records are kept in a dict that ``read_to_end`` reads back, commits are recorded.
    Sessionization raises on the events of session ``poison``, after taking the events before them."""
    import agents.ingest as ingest
    from pipeline.sessions.partition import PartitionSessions
    from pipeline.settings import Settings

    runner = ingest.IngestRunner(Settings(), WorkerState())
    for p in range(runner.settings.kafka.partitions):
        runner.sessions.restore(p, [])
    sent: list[tuple] = []
    changelog: dict[int, dict[bytes, bytes]] = {}
    commits: list[dict] = []

    async def send_all(sends: list[tuple]) -> list[None]:
        for topic, key, value, partition, _ in sends:
            if topic == runner.sessions.changelog:
                part = changelog.setdefault(partition, {})
                if value is None:
                    part.pop(key, None)
                else:
                    part[key] = value
        sent.extend(sends)
        return [None] * len(sends)

    async def read_to_end(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        assert topic == runner.sessions.changelog
        return {p: dict(changelog.get(p, {})) for p in partitions}

    async def commit(offsets: dict) -> None:
        commits.append({(tp.topic, tp.partition): o for tp, o in offsets.items()})

    real_process = PartitionSessions.process

    def process(self, events, processed_upto, lagging=()):  # type: ignore[no-untyped-def]
        events = list(events)
        bad = [i for i, s in enumerate(events) if s.event.session_id == poison]
        if bad:  # half-changed: the events before the bad one are taken, then it raises
            real_process(self, events[:bad[0]], {}, lagging)
            raise RuntimeError("sessionizer bug")
        return real_process(self, events, processed_upto, lagging)

    monkeypatch.setattr(PartitionSessions, "process", process)
    monkeypatch.setattr(ingest, "read_to_end", read_to_end)
    monkeypatch.setattr(runner, "_commit", commit)
    runner.runner.send_all = send_all  # type: ignore[assignment]
    runner.highwater = lambda topic, partition: None  # type: ignore[method-assign]
    return runner, sent, commits


def raw_batch(n: int, poison_at: int | None = None) -> list[RawMessage]:
    """``n`` action messages on partition 0 of the actions topic; each its own session and event id,
    each sent twice in the batch as an SDK retry would (the second is a duplicate)."""
    import orjson

    from tests.events import ev

    messages = []
    for i in range(n):
        session = "poison" if i == poison_at else f"s-{i}"
        value = orjson.dumps(ev("action", session_id=session))
        messages += [RawMessage("pulse.raw.actions", 0, 2 * i, session.encode(), value, None),
                     RawMessage("pulse.raw.actions", 0, 2 * i + 1, session.encode(), value, None)]
    return messages


NOW = datetime(2026, 11, 23, 10, 1, tzinfo=__import__("datetime").timezone.utc)


def test_ingest_a_message_that_breaks_sessionization_is_the_only_dead_letter(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    runner, sent, commits = ingest_stage(monkeypatch, poison="poison")
    messages = raw_batch(40, poison_at=13)
    asyncio.run(runner.runner.run_messages(messages, NOW))
    dead = [orjson_loads(s[2]) for s in sent if s[0] == "pulse.dead-letter"]
    # the poisoned message and its retry (each fails alone: the retry is no duplicate of a message
    # that was not stored), nothing else
    assert [d["source"] for d in dead] == ["pulse.raw.actions:0:26", "pulse.raw.actions:0:27"]
    assert all(d["reason"].startswith("worker error: failed: RuntimeError: sessionizer bug") for d in dead)
    # every other event stored once, their retries dropped as duplicates although the batch was
    # redone (a failed step's ids are not remembered): 39 events
    assert runner.state.last_error is not None and "sessionizer bug" in runner.state.last_error
    events_out = sum(len(s[2].split(b"\n")) for s in sent
                     if s[0] == "pulse.storage" and dict(s[4]).get("pulse-table") == b"actions")
    assert events_out == 39
    # the raw offsets are committed in order, up to the end of the batch
    assert [c[("pulse.raw.actions", 0)] for c in commits] == sorted(c[("pulse.raw.actions", 0)] for c in commits)
    assert commits[-1] == {("pulse.raw.actions", 0): 80}
    # the other 39 events are in their sessions, in memory and in the changelog alike
    part = runner.sessions.parts[0]
    assert part.buffered_events == 39  # behind the watermark, which waits (highwater unknown)
    from pipeline.sessions.partition import PartitionSessions, split_key
    again = PartitionSessions.restore(0, [(split_key(k.decode())[1], v) for k, v in changelog_of(sent, runner).items()],
                                      runner.sessions.rules, runner.sessions.lateness_ms)
    assert again.buffered_events == 39 and again.marks == part.marks


def test_ingest_a_clean_batch_is_one_step_one_commit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    runner, sent, commits = ingest_stage(monkeypatch)
    first = raw_batch(20)
    asyncio.run(runner.runner.run_messages(first, NOW))
    assert commits == [{("pulse.raw.actions", 0): 40}]
    assert not [s for s in sent if s[0] == "pulse.dead-letter"]
    # outputs first, then the state records, nothing after them
    kinds = ["state" if s[0] == runner.sessions.changelog else "output" for s in sent]
    assert kinds == sorted(kinds, key=lambda k: k == "state") and "state" in kinds
    # the batch's ids are remembered once committed: the same events again are all duplicates
    sent.clear()
    again = [RawMessage(m.topic, m.partition, m.offset + 40, m.key, m.value, None) for m in first]
    asyncio.run(runner.runner.run_messages(again, NOW))
    assert not [s for s in sent if s[0] == "pulse.storage" and dict(s[4]).get("pulse-table") == b"actions"]
    assert commits[-1] == {("pulse.raw.actions", 0): 80}


def orjson_loads(value: bytes):  # type: ignore[no-untyped-def]
    import orjson

    return orjson.loads(value)


def changelog_of(sent: list[tuple], runner) -> dict[bytes, bytes]:  # type: ignore[no-untyped-def]
    state: dict[bytes, bytes] = {}
    for topic, key, value, partition, _ in sent:
        if topic == runner.sessions.changelog and partition == 0:
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    return state
