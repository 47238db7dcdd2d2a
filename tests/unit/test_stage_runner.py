"""agents/stage.py: the order of a batch's effects and the error boundary, without Kafka (the sends
are recorded; the issue and alert agents run it for real in tests/integration/test_issues.py and
test_alerts.py)."""

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


def run(values: list[bytes]) -> tuple[Counter, list[tuple], WorkerState]:
    stage, sent, state = Counter(), [], WorkerState()

    async def send_all(sends: list[tuple]) -> list[None]:
        for s in sends:
            stage.log.append(f"send {s[0]} {s[2].decode()}")
        sent.extend(sends)
        return [None] * len(sends)

    runner = StageRunner("counter", Given(), send_all, stage.step, stage.reset, stage.dead_letter, state)  # type: ignore[arg-type]
    messages = [RawMessage("in", 0, offset, None, v, None) for offset, v in enumerate(values)]
    asyncio.run(runner.run(messages))
    return stage, sent, state


def test_outputs_then_state_then_memory() -> None:
    stage, _, state = run([b"1", b"2", b"3"])
    assert stage.log == ["send rows 6", "send changelog 6", "done 6"]
    assert stage.written == 6 and stage.resets == 0 and state.last_error is None


def test_a_bad_record_is_dead_lettered_alone_and_its_neighbours_count_once() -> None:
    stage, sent, state = run([b"1", b"2", b"oops", b"4"])
    dead = [s[2].decode() for s in sent if s[0] == "dead"]
    assert len(dead) == 1 and dead[0].startswith("2: failed: ValueError")
    # the batch's partial change was forgotten, then each record was applied once, in order
    assert stage.written == 7 and stage.memory == 7
    assert [s[2] for s in sent if s[0] == "changelog"] == [b"1", b"3", b"7"]
    assert stage.resets == 2  # once for the batch, once for the bad record
    assert state.last_error is not None and "ValueError" in state.last_error
