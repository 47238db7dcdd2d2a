"""The batch loop of every worker stage (raw-event ingest, issues, alerts), written once.

A stage is a step: ``step(messages, now) -> StageOutput``, a plain function of its input and the
state it last wrote, that returns what to send rather than sending it. The runner owns the order
that makes a SIGKILL anywhere harmless:

1. complete the batch (Faust-hosted stages: records faust skipped are read again, ``agents/skips.py``);
2. run the step;
3. send its outputs (rows, alert and issue events, dead letters) and wait until Kafka has them;
4. write its state records to the changelog and wait;
5. commit the input offsets (the ingest stage, which has its own consumer; faust acks the others'
   batches itself once ``run`` returns);
6. apply its in-memory commits (``done``: dedup memory, metrics, stored state, logs).

The error boundary is here too, and only here: when the step raises on a batch, the stage forgets
whatever it changed in memory (``reset``: it reads its state back as last written) and the batch is
redone in halves, each delivered (3-6) before the next, down to single messages; a message whose
step still raises alone becomes a dead letter, and its neighbours go on. One bad message in a batch
of n costs about 2·log2(n) extra steps and deliveries, and nothing when no step fails.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
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
    """What a step returns: ``outputs`` (dead letters among them) go to Kafka first, then ``state``
    (changelog records), then the input is committed, then every ``done`` runs, in that order."""

    outputs: list[Send] = field(default_factory=list)
    state: list[Send] = field(default_factory=list)
    done: list[Callable[[], None]] = field(default_factory=list)


Step = Callable[[list[RawMessage], datetime], StageOutput]
DeadLetterOf = Callable[[RawMessage, str, datetime], Send]
Reset = Callable[[], "Awaitable[None] | None"]
Commit = Callable[[list[RawMessage]], Awaitable[None]]


class StageRunner:
    """Runs one stage's batches: ``step`` as above; ``reset()`` (plain or async) drops what a failed
    step may have changed in memory; ``dead_letter(message, reason, now)`` is the stage's dead letter
    for one input; ``commit(messages)`` commits their offsets once their outputs and state are
    written (None: the consumer acks by itself after ``run``); ``complete`` re-reads what faust skipped."""

    def __init__(self, name: str, send_all: SendAll, step: Step, reset: Reset, dead_letter: DeadLetterOf,
                 state: WorkerState, *, complete: CompleteBatches | None = None, commit: Commit | None = None) -> None:
        self.name = name
        self.send_all = send_all
        self.step = step
        self.reset = reset
        self.dead_letter = dead_letter
        self.state = state
        self.complete = complete
        self.commit = commit

    async def run(self, events: Sequence[Any]) -> None:
        """One batch of faust events, completed (step 1) and then run as ``run_messages``."""
        assert self.complete is not None, "run() is for faust stages; give the runner a CompleteBatches"
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
        """Steps 2-6 for ``messages`` (in input order), with the error boundary."""
        try:
            out = self.step(messages, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: find the message at fault
            if len(messages) > 1:
                log.warning("%s: a batch of %d records failed (%s: %s); redoing it in halves",
                            self.name, len(messages), type(exc).__name__, exc)
                await self._reset()
                half = len(messages) // 2
                await self.run_messages(messages[:half], now)
                await self.run_messages(messages[half:], now)
                return
            message = messages[0]
            log.exception("%s: record %s:%d:%d failed; dead-lettering it", self.name, message.topic,
                          message.partition, message.offset)
            self.state.last_error = f"{self.name}: {type(exc).__name__}: {exc}"
            await self._reset()
            out = StageOutput(outputs=[self.dead_letter(message, f"failed: {type(exc).__name__}: {exc}", now)])
        await self.deliver(out, messages)

    async def _reset(self) -> None:
        result = self.reset()
        if inspect.isawaitable(result):
            await result

    async def deliver(self, out: StageOutput, messages: list[RawMessage] | None = None) -> None:
        """Outputs, then state, then the commit of ``messages``, then the in-memory commits (also for
        the stages' clock ticks, which have no input to commit)."""
        await deliver_all(out.outputs, self.send_all, f"{self.name} outputs", self._note_error)
        await deliver_all(out.state, self.send_all, f"{self.name} state", self._note_error)
        if self.commit is not None and messages:
            await self.commit(messages)
        for done in out.done:
            done()

    def _note_error(self, error: str) -> None:
        self.state.last_error = error
