"""The batch loop of the worker's Faust-hosted stages (issues, alerts), written once.

A stage is a step: ``step(messages, now) -> StageOutput``, a plain function of its input and the
state it last wrote, that returns what to send rather than sending it. The runner owns the order
that makes a SIGKILL anywhere harmless, the same order as the raw-event runner (``agents/ingest.py``):

1. complete the batch (records faust skipped are read again, ``agents/skips.py``);
2. run the step;
3. send its outputs (rows, alert and issue events, dead letters) and wait until Kafka has them;
4. write its state records to the changelog and wait;
5. apply its in-memory commits (``done``); then faust acks the batch.

The error boundary is here too: when the step raises on a batch, the stage forgets whatever it
changed in memory (``reset``: it reads its state back as last written) and the batch is redone one
message at a time, each delivered before the next, so only the message at fault becomes a dead
letter and its neighbours go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from agents.delivery import Send, SendAll, deliver_all
from agents.skips import CompleteBatches, to_raw_message
from agents.state import WorkerState
from pipeline.ingest.process import RawMessage

log = logging.getLogger(__name__)


@dataclass
class StageOutput:
    """What a step returns: ``outputs`` go to Kafka first, then ``state`` (changelog records), then
    every ``done`` runs (in-memory state, metrics, logs), in that order."""

    outputs: list[Send] = field(default_factory=list)
    state: list[Send] = field(default_factory=list)
    done: list[Callable[[], None]] = field(default_factory=list)


Step = Callable[[list[RawMessage], datetime], StageOutput]
DeadLetterOf = Callable[[RawMessage, str, datetime], Send]


class StageRunner:
    """Runs one stage's batches: ``step`` as above; ``reset()`` drops what a failed step may have
    changed in memory; ``dead_letter(message, reason, now)`` is the stage's dead letter for one input."""

    def __init__(self, name: str, complete: CompleteBatches, send_all: SendAll, step: Step,
                 reset: Callable[[], None], dead_letter: DeadLetterOf, state: WorkerState) -> None:
        self.name = name
        self.complete = complete
        self.send_all = send_all
        self.step = step
        self.reset = reset
        self.dead_letter = dead_letter
        self.state = state

    async def run(self, events: Sequence[Any]) -> None:
        """One batch of faust events, through every step above."""
        now = datetime.now(timezone.utc)
        try:
            messages = await self.complete.complete(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-reading skipped records failed: go on with what faust gave
            log.exception("%s: completing the batch failed; going on with the %d records faust handed over",
                          self.name, len(events))
            self.state.last_error = f"{self.name}: {type(exc).__name__}: {exc}"
            messages = sorted({(m.topic, m.partition, m.offset): m for m in map(to_raw_message, events)}.values(),
                              key=lambda m: (m.topic, m.partition, m.offset))
        await self.run_messages(messages, now)

    async def run_messages(self, messages: list[RawMessage], now: datetime) -> None:
        try:
            out = self.step(messages, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: find the message at fault
            log.warning("%s: a batch of %d records failed (%s: %s); redoing it one record at a time",
                        self.name, len(messages), type(exc).__name__, exc)
            self.reset()
            await self._one_at_a_time(messages, now)
            return
        await self.deliver(out)

    async def _one_at_a_time(self, messages: list[RawMessage], now: datetime) -> None:
        for message in messages:
            try:
                out = self.step([message], now)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - this record is the one at fault
                log.exception("%s: record %s:%d:%d failed; dead-lettering it", self.name, message.topic,
                              message.partition, message.offset)
                self.state.last_error = f"{self.name}: {type(exc).__name__}: {exc}"
                self.reset()
                out = StageOutput(outputs=[self.dead_letter(message, f"failed: {type(exc).__name__}: {exc}", now)])
            await self.deliver(out)

    async def deliver(self, out: StageOutput) -> None:
        """Outputs, then state, then the in-memory commits (also for the stages' clock ticks)."""
        await deliver_all(out.outputs, self.send_all, f"{self.name} outputs")
        await deliver_all(out.state, self.send_all, f"{self.name} state")
        for done in out.done:
            done()
