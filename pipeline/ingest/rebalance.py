"""Which partitions a worker may keep across a rebalance, and which it must rebuild (issue 14).

aiokafka speaks only the eager rebalance protocol (no KIP-429 cooperative assignor): on every
rebalance each member is revoked all its partitions and then assigned its new share, usually with
most of its old partitions in it. Rebuilding all of them (session changelog to the end, two
minutes of raw input for the dedup memory) made every worker pause ~10 s whenever one joined or
left. This module decides, from plain data, what is safe to keep.

The rule: a revoked raw partition's state (its sessions, and the dedup ids it added) is kept only
if

* it is assigned back in the very next assignment;
* the group's committed offset for it is still the offset this worker last committed, so nobody
  processed (and committed) any of its input meanwhile; and
* its session changelog partition still ends where it ended when this worker let go, so nobody
  closed sessions of it meanwhile (quiet partitions write state without committing input).

If any of these fails for one raw topic of a session partition, the whole partition (every raw
topic of it, and its sessions) is rebuilt: sessions and dedup stay one consistent picture.
Everything set aside and not kept is dropped.

Why that is enough: kept state stands exactly for "input up to our commit processed, state as we
last wrote it", which is what a rebuild from the changelog would give. A holder in between that
processed input but died before writing state or committing left nothing but outputs, which the
replay from our commit re-emits identically (collapsed downstream), as after any crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Partition = tuple[str, int]  # (topic, partition); aiokafka's TopicPartition is such a tuple


@dataclass(frozen=True)
class SetAside:
    """What a worker let go of at revocation: per raw partition the offset it last committed
    (None: never committed, or its last commit failed), and per session partition the end offset
    of its changelog partition after the worker's last write."""

    committed: Mapping[Partition, int | None] = field(default_factory=dict)
    changelog_ends: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AssignmentPlan:
    keep: frozenset[Partition]  # raw partitions whose state is reused as it is
    rebuild: frozenset[Partition]  # raw partitions to rebuild (dedup read-back, changelog)
    keep_sessions: frozenset[int]  # session partitions put back without reading the changelog
    drop_sessions: frozenset[int]  # session partitions set aside and not kept: forget them


def plan_assignment(aside: SetAside, assigned: Iterable[Partition], group_committed: Mapping[Partition, int | None],
                    changelog_ends: Mapping[int, int], session_topics: Iterable[str]) -> AssignmentPlan:
    """Split a new assignment into partitions kept and partitions rebuilt (see the module doc).

    ``group_committed`` is the group's committed offset now, ``changelog_ends`` the changelog end
    offsets now, for (at least) the partitions set aside and assigned back."""
    assigned = set(assigned)
    topics = frozenset(session_topics)

    def unchanged(tp: Partition) -> bool:
        ours = aside.committed.get(tp)
        return tp in aside.committed and ours is not None and group_committed.get(tp) == ours

    keep = {tp for tp in assigned if unchanged(tp)}
    keep_sessions = set()
    for p, end in aside.changelog_ends.items():
        raw = {tp for tp in assigned if tp[0] in topics and tp[1] == p}
        if raw and raw <= keep and changelog_ends.get(p) == end:
            keep_sessions.add(p)
    # a session partition rebuilt takes its raw partitions with it (one consistent picture)
    keep = {tp for tp in keep if tp[0] not in topics or tp[1] in keep_sessions}
    return AssignmentPlan(keep=frozenset(keep), rebuild=frozenset(assigned - keep),
                          keep_sessions=frozenset(keep_sessions),
                          drop_sessions=frozenset(set(aside.changelog_ends) - keep_sessions))
