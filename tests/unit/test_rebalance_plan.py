"""What a worker keeps across an (eager) rebalance and what it rebuilds: ``plan_assignment``."""

from __future__ import annotations

from pipeline.ingest.rebalance import SetAside, plan_assignment

SESSION_TOPICS = ("actions", "errors")
RAW = ("actions", "errors", "vitals")


def held(*partitions: int) -> set[tuple[str, int]]:
    return {(t, p) for t in RAW for p in partitions}


def aside_of(*partitions: int, offset: int = 100, end: int = 50) -> SetAside:
    return SetAside(committed={tp: offset for tp in held(*partitions)}, changelog_ends={p: end for p in partitions})


def test_partitions_assigned_back_unchanged_are_kept_and_the_others_rebuilt() -> None:
    # worker B joined: A had 0-3, gets 0-1 back; 2-3 went to B
    plan = plan_assignment(aside_of(0, 1, 2, 3), held(0, 1), {tp: 100 for tp in held(0, 1)}, {0: 50, 1: 50},
                           SESSION_TOPICS)
    assert plan.keep == held(0, 1) and plan.rebuild == set()
    assert plan.keep_sessions == {0, 1} and plan.drop_sessions == {2, 3}


def test_new_partitions_are_rebuilt() -> None:
    # worker B left: A gets 2-3 back after B held them
    plan = plan_assignment(aside_of(0, 1), held(0, 1, 2, 3), {tp: 100 for tp in held(0, 1, 2, 3)},
                           {0: 50, 1: 50}, SESSION_TOPICS)
    assert plan.keep == held(0, 1) and plan.rebuild == held(2, 3)
    assert plan.keep_sessions == {0, 1} and plan.drop_sessions == set()


def test_someone_committed_past_our_commit_rebuilds_the_whole_session_partition() -> None:
    committed = {tp: 100 for tp in held(0, 1)} | {("errors", 1): 130}
    plan = plan_assignment(aside_of(0, 1), held(0, 1), committed, {0: 50, 1: 50}, SESSION_TOPICS)
    assert plan.keep == held(0) | {("vitals", 1)}  # vitals has no sessions: its own offset decides
    assert plan.rebuild == {("actions", 1), ("errors", 1)}
    assert plan.keep_sessions == {0} and plan.drop_sessions == {1}


def test_changelog_written_meanwhile_rebuilds_even_with_the_same_commit() -> None:
    # another holder closed quiet sessions of partition 1 (state written, no input committed)
    plan = plan_assignment(aside_of(0, 1), held(0, 1), {tp: 100 for tp in held(0, 1)}, {0: 50, 1: 53},
                           SESSION_TOPICS)
    assert plan.keep_sessions == {0} and plan.drop_sessions == {1}
    assert {("actions", 1), ("errors", 1)} <= plan.rebuild


def test_unknown_or_failed_commit_is_never_kept() -> None:
    aside = SetAside(committed={("actions", 0): None, ("errors", 0): 100, ("vitals", 0): 7},
                     changelog_ends={0: 50})
    plan = plan_assignment(aside, held(0), {("actions", 0): None, ("errors", 0): 100, ("vitals", 0): 7}, {0: 50},
                           SESSION_TOPICS)
    assert plan.keep == {("vitals", 0)} and plan.keep_sessions == set() and plan.drop_sessions == {0}


def test_group_offset_moved_back_is_also_a_change() -> None:
    # e.g. an operator reset the group's offsets: replaying into kept state would skip events
    plan = plan_assignment(aside_of(0), held(0), {tp: 40 for tp in held(0)}, {0: 50}, SESSION_TOPICS)
    assert plan.keep == set() and plan.rebuild == held(0)


def test_unreadable_changelog_end_rebuilds() -> None:
    plan = plan_assignment(aside_of(0), held(0), {tp: 100 for tp in held(0)}, {}, SESSION_TOPICS)
    assert plan.keep_sessions == set() and plan.keep == {("vitals", 0)}


def test_first_assignment_and_turned_off_keep_nothing() -> None:
    plan = plan_assignment(SetAside(), held(0, 1), {tp: 100 for tp in held(0, 1)}, {}, SESSION_TOPICS)
    assert plan.keep == set() and plan.rebuild == held(0, 1) and plan.drop_sessions == set()
