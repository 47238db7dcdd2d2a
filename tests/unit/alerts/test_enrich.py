"""Alert enrichment: last release, related issues of the last hour, suggested actions."""

from __future__ import annotations

from pipeline.alerts.enrich import Context, enrich
from pipeline.alerts.evaluate import AlertEvent, WindowAggregate

T = 1_700_000_000_000


def event(status: str = "firing", kind: str = "ratio", **labels: str) -> AlertEvent:
    return AlertEvent("e1", "fp", "error-rate", status, "critical", {"project": "shop", **labels}, T, None, T, 0.2,
                      0.1, "summary", annotations={"kind": kind})


def transition(group: str, events: int, at: int, kind: str = "new", project: str = "shop") -> dict:
    return {"project": project, "group_id": group, "title": f"T {group}", "kind": kind, "events": events, "at_ms": at}


def test_firing_events_get_release_related_issues_and_actions() -> None:
    ctx = Context()
    ctx.see_aggregate(WindowAggregate("shop", T - 120_000, 60_000, {"release": "2.4.0"}))
    ctx.see_aggregate(WindowAggregate("shop", T - 60_000, 60_000, {"release": "2.4.1"}))
    ctx.see_aggregate(WindowAggregate("shop", T - 180_000, 60_000, {"release": "2.3.9"}))  # older: ignored
    for group, events, at in (("a", 5, T - 10_000), ("b", 50, T - 20_000), ("c", 9, T - 7_200_000),
                              ("d", 7, T - 30_000), ("e", 1, T - 40_000)):
        ctx.see_transition(transition(group, events, at))
    ctx.see_transition(transition("x", 99, T, project="blog"))
    out = enrich(event(), ctx).annotations
    assert out["last_release"] == "2.4.1"
    assert [r["group_id"] for r in out["related_issues"]] == ["b", "d", "a"]  # c is too old, blog is another project
    assert out["suggested_actions"][0].startswith("Compare with the last release")
    assert out["kind"] == "ratio"


def test_resolved_events_are_left_alone_and_context_round_trips() -> None:
    ctx = Context()
    ctx.see_transition(transition("a", 5, T))
    assert enrich(event("resolved"), ctx).annotations == {"kind": "ratio"}
    assert Context.from_json(ctx.to_json()) == ctx
    issue_alert = enrich(event(kind="issue", issue="a"), ctx).annotations
    assert issue_alert["related_issues"] == []  # not itself
