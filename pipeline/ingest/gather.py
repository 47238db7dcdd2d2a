"""How long the worker gathers raw records before it takes a step (pure; time passed in).

Why: a step (every stage, outputs, session state records, commit) costs about the same whether it
holds 50 messages or 5,000, and every session a step touches re-writes its changelog record. A
consumer poll returns as soon as any record has arrived, so at ordinary rates (hundreds of messages
per second) one step per poll took a step every few milliseconds. The worker instead polls until
``PULSE_WORKER_STEP_INTERVAL_S`` has passed since the gathering began, or ``PULSE_WORKER_BATCH_SIZE``
records are in (a full batch steps at once, so a backlog drains as before), as quix-streams'
``commit_interval`` and Kafka Streams' ``commit.interval.ms`` do.

A gathering keeps each partition's records in offset order whatever the polls return: when a
partition's position went back (a seek, or a rebalance that restarted it at its committed offset),
the records gathered from that offset on are replaced by the ones read again.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar


class HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


P = TypeVar("P", bound=Hashable)
R = TypeVar("R", bound=HasOffset)


class Gathering(Generic[P, R]):
    """Records of one step, gathered over several polls.

    Example::

        g = Gathering(started=now, interval_s=1.0, max_records=5000)
        while (wait := g.wait_s(clock())) > 0:
            g.add(poll(timeout=wait, max_records=g.room()))
        step(g.records)
    """

    def __init__(self, started: float, interval_s: float, max_records: int) -> None:
        if interval_s <= 0 or max_records < 1:
            raise ValueError(f"need interval_s > 0 and max_records >= 1, got {interval_s}, {max_records}")
        self.deadline = started + interval_s
        self.max_records = max_records
        self.records: dict[P, list[R]] = {}
        self.count = 0
        self.dropped = 0  # records forgotten by ``restart`` (the next owner reads them again)

    def add(self, polled: Mapping[P, Sequence[R]], revoked: bool = False) -> None:
        """One poll's records (each partition's in offset order, as Kafka returns them). ``revoked``:
        partitions were revoked since the previous poll, so what was gathered before belongs to the
        old assignment (``restart``); the poll's own records are of the current one."""
        if revoked:
            self.restart()
        for partition, records in polled.items():
            if not records:
                continue
            have = self.records.setdefault(partition, [])
            first = records[0].offset
            if have and have[-1].offset >= first:  # the position went back: keep what precedes it
                kept = [r for r in have if r.offset < first]
                self.count -= len(have) - len(kept)
                have[:] = kept
            have.extend(records)
            self.count += len(records)

    def restart(self) -> None:
        """Forget everything gathered so far (its partitions were revoked: the next assignment reads
        them again from their committed offsets); the deadline stays."""
        self.dropped += self.count
        self.records = {}
        self.count = 0

    def room(self) -> int:
        """Most records the next poll may add (at least 1: a full gathering does not poll)."""
        return max(1, self.max_records - self.count)

    def full(self) -> bool:
        return self.count >= self.max_records

    def wait_s(self, now: float, assignment_waiting: bool = False) -> float:
        """Seconds the next poll may wait for input; 0: take the step now, because the gathering is
        full, past its deadline, or partitions were assigned (they are restored before any step)."""
        if self.full() or assignment_waiting:
            return 0.0
        return max(0.0, self.deadline - now)
