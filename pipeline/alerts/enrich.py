"""What an on-call engineer wants next to a page: the last release seen, the issues that moved
recently, and what to try first. Pure; the worker keeps a small ``Context`` per partition.

Annotations added to every firing event (``enrich``):
  * ``last_release``: the newest release seen in the project's partials (by window time; of two in
    the same window, the greater name), so a breach right after a deploy points at it;
  * ``related_issues``: up to 3 issues of the project that became new, regressed or escalating in
    the last hour, most errors first (fingerprint, title, kind, events);
  * ``suggested_actions``: a short checklist by rule kind.
Affected users are not known here (rollups count events, not users): the issue links lead to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.alerts.evaluate import AlertEvent, WindowAggregate

RELATED_WINDOW_MS = 3_600_000
MAX_RELATED = 3
SUGGESTIONS: dict[str, list[str]] = {
    "ratio": ["Compare with the last release: roll back if the rate rose with it",
              "Open the related issues for the stack traces and affected users",
              "Check the failing API endpoints and third-party scripts"],
    "percentile": ["Check the slowest endpoints and the backend's health and saturation",
                   "Compare with the last release and recent infrastructure changes"],
    "spike": ["Open the related issues: a new or regressed issue usually explains a spike",
              "Compare with the last release; roll back if it started with it"],
    "ux_spike": ["Open session data for the page: a broken button or a slow response makes users rage-click",
                 "Check the page's errors and API failures in the same minutes"],
    "vital_rating": ["Check the page's largest assets, render-blocking scripts and server response time",
                     "Compare with the last release"],
    "issue": ["Open the issue for the stack trace, breadcrumbs and affected users",
              "Resolve it in the release with the fix so a regression pages again"],
    "slo": ["The error budget burns fast: find the failing endpoint or page and stop the bleeding first",
            "Freeze risky deploys until the burn rate is back under 1"],
}


@dataclass
class Context:
    """Per partition: the newest release per project and recent alertable issue transitions.

    Bounded: at most ``recent_issues`` transitions per project (``PULSE_ALERTS_RECENT_ISSUES``), and
    at most ``max_projects`` projects in each map (``PULSE_ALERTS_MAX_PROJECTS``): a new project
    beyond it evicts the one seen longest ago (by event time), counted in ``evicted``."""

    releases: dict[str, list[Any]] = field(default_factory=dict)  # project -> [window_start_ms, release]
    transitions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # project -> recent ones
    max_projects: int | None = None
    recent_issues: int = 20
    evicted: int = 0  # projects forgotten at max_projects (drained by the caller)

    def see_aggregate(self, agg: WindowAggregate) -> None:
        release = agg.labels.get("release")
        if release:
            seen = self.releases.get(agg.project)
            # newest window first, then the greater name: independent of arrival order, so merged
            # partials (one per series and minute) give the same context as one per message
            if seen is None or (agg.window_start_ms, release) > (seen[0], seen[1]):
                self.releases[agg.project] = [agg.window_start_ms, release]
                if seen is None:
                    self._bound(self.releases, lambda v: v[0])

    def see_transition(self, t: Mapping[str, Any]) -> None:
        project = str(t.get("project", ""))
        new = project not in self.transitions
        recent = [r for r in self.transitions.get(project, []) if r["group_id"] != t.get("group_id")]
        recent.append({"group_id": str(t.get("group_id", "")), "title": str(t.get("title", ""))[:200],
                       "kind": str(t.get("kind", "")), "events": int(t.get("events", 0)),
                       "at_ms": int(t.get("at_ms", 0))})
        newest = max(r["at_ms"] for r in recent)
        kept = [r for r in recent if r["at_ms"] >= newest - RELATED_WINDOW_MS]
        self.transitions[project] = kept[-self.recent_issues:] if self.recent_issues > 0 else []
        if new:
            self._bound(self.transitions, lambda v: max((r["at_ms"] for r in v), default=0))

    def _bound(self, projects: dict[str, Any], seen_at: Any) -> None:
        while self.max_projects is not None and len(projects) > self.max_projects:
            del projects[min(projects, key=lambda p: seen_at(projects[p]))]
            self.evicted += 1

    def to_json(self) -> dict[str, Any]:
        return {"releases": self.releases, "transitions": self.transitions}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None, max_projects: int | None = None,
                  recent_issues: int = 20) -> "Context":
        doc = doc or {}
        return cls(dict(doc.get("releases", {})), {k: list(v) for k, v in doc.get("transitions", {}).items()},
                   max_projects, recent_issues)


def enrich(event: AlertEvent, context: Context) -> AlertEvent:
    """The event with ``last_release``, ``related_issues`` and ``suggested_actions`` annotations
    (firing events only; a resolved notice needs none)."""
    if event.status != "firing":
        return event
    project = event.labels.get("project", "")
    kind = str(event.annotations.get("kind", ""))
    related = sorted((r for r in context.transitions.get(project, [])
                      if r["at_ms"] >= event.at - RELATED_WINDOW_MS and r["group_id"] != event.labels.get("issue")),
                     key=lambda r: (-r["events"], r["group_id"]))[:MAX_RELATED]
    extra: dict[str, Any] = {"suggested_actions": SUGGESTIONS.get(kind, SUGGESTIONS["ratio"]),
                             "related_issues": [{k: r[k] for k in ("group_id", "title", "kind", "events")}
                                                for r in related]}
    release = context.releases.get(project)
    if release:
        extra["last_release"] = release[1]
    return replace(event, annotations={**event.annotations, **extra})
