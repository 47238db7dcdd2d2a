"""Sessions on event time: summaries, page views, rage and dead clicks. Pure; time is an argument.

Events of a session are held until the watermark (max event time seen - allowed lateness) passes
them, then applied in (timestamp, event_id) order. Out-of-order delivery within the allowed lateness
therefore gives exactly the same results as in-order delivery. An event at or behind the
watermark is *late*: ``add`` hands it back for the caller to count (it is still stored raw).

A session ends when the next event comes more than ``idle_ms`` after the previous one (29 min
continues, 31 min splits, exactly 30 continues) or ``max_ms`` after its first event. It is closed
(and its summary emitted) once the watermark passes ``last + idle_ms`` or ``start + max_ms``; the
caller's timer advances the watermark on quiet partitions.

Example::

    s = Sessionizer(SessionRules())
    s.add([SessionEvent(...), ...])
    out = s.advance(watermark_ms=max_seen_ms - 60_000)
    out.sessions, out.page_views, out.rage_clicks, out.dead_clicks
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from operator import attrgetter

from pipeline.sessions.clicks import (
    SAME_CLICK_MS, Click, DeadClickRule, RageClick, RageClickDetector, RageClickRule, dead_click_kind,
    merge_observation,
)

SCROLL_MILESTONES = (25, 50, 75, 90, 100)
_EVENT_ORDER = attrgetter("ts_ms", "event_id")  # how a session's events are applied
_EVENT_TIME = attrgetter("ts_ms")
NEVER = -(2**62)


@dataclass(frozen=True, slots=True)
class SessionRules:
    idle_ms: int = 30 * 60 * 1000
    max_ms: int = 24 * 60 * 60 * 1000
    bounce_max_ms: int = 10_000
    rage: RageClickRule = RageClickRule()
    dead: DeadClickRule = DeadClickRule()
    # what one session may hold ahead of the watermark: those events are in the session's changelog
    # record, which must stay far below Kafka's 1 MB (a buffered event is ~80 B, but its page and
    # selector may be 16 KB each): a count, and their text's length (``buffered_cost``)
    max_buffered_events: int = 400
    max_buffered_chars: int = 256 * 1024


@dataclass(slots=True)  # not frozen: built per event on the hot path (frozen __init__ is slow); never mutated
class SessionEvent:
    """What sessionization needs of an event (built from the contract by the agent)."""

    session_id: str
    ts_ms: int
    event_id: str
    kind: str  # pageview, click, scroll, form_start, form_submit, visibility, custom, error, other
    page: str = ""
    project: str = ""
    user_id: str = ""
    release: str = ""
    user_agent: str = ""
    click: Click | None = None
    scroll_depth: float | None = None
    form: str = ""
    visible: bool | None = None


@dataclass(frozen=True, slots=True)
class DeadClick:
    session_id: str
    session_start_ms: int
    ts_ms: int
    selector: str
    page: str
    kind: str
    event_id: str = ""
    project: str = ""


@dataclass(frozen=True, slots=True)
class SessionRage:
    session_id: str
    session_start_ms: int
    rage: RageClick
    project: str = ""


@dataclass(frozen=True, slots=True)
class PageView:
    session_id: str
    session_start_ms: int
    page: str
    start_ms: int
    end_ms: int
    visible_ms: int
    max_scroll: float
    milestones: tuple[int, ...]
    clicks: int
    rage_clicks: int
    dead_clicks: int
    forms_started: int
    forms_abandoned: int
    project: str = ""


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    project: str
    user_id: str
    start_ms: int
    end_ms: int
    duration_ms: int
    pageviews: int
    clicks: int
    rage_clicks: int
    dead_clicks: int
    errors: int
    max_scroll: float
    forms_started: int
    forms_submitted: int
    forms_abandoned: int
    entry_page: str
    exit_page: str
    bounce: bool
    release: str
    user_agent: str


@dataclass
class Emitted:
    sessions: list[SessionSummary] = field(default_factory=list)
    page_views: list[PageView] = field(default_factory=list)
    rage_clicks: list[SessionRage] = field(default_factory=list)  # final burst counts
    dead_clicks: list[DeadClick] = field(default_factory=list)

    def extend(self, other: "Emitted") -> None:
        self.sessions += other.sessions
        self.page_views += other.page_views
        self.rage_clicks += other.rage_clicks
        self.dead_clicks += other.dead_clicks


class _Page:
    __slots__ = ("page", "start_ms", "last_ms", "visible_since", "visible_ms", "max_scroll", "clicks", "rage",
                 "dead", "forms_started", "forms_submitted")

    def __init__(self, page: str, ts: int) -> None:
        self.page, self.start_ms, self.last_ms = page, ts, ts
        self.visible_since: int | None = ts
        self.visible_ms = 0
        self.max_scroll = 0.0
        self.clicks = self.rage = self.dead = 0
        # Tuples, not sets: almost always empty (the shared ``()`` costs nothing per page).
        self.forms_started: tuple[str, ...] = ()
        self.forms_submitted: tuple[str, ...] = ()

    def end(self, session_id: str, session_start: int, end_ms: int, project: str = "") -> PageView:
        visible = self.visible_ms + (end_ms - self.visible_since if self.visible_since is not None else 0)
        abandoned = len(set(self.forms_started) - set(self.forms_submitted))
        return PageView(session_id, session_start, self.page, self.start_ms, end_ms, visible, self.max_scroll,
                        tuple(m for m in SCROLL_MILESTONES if self.max_scroll >= m), self.clicks, self.rage,
                        self.dead, len(self.forms_started), abandoned, project)


class _Session:
    __slots__ = ("session_id", "project", "user_id", "release", "user_agent", "start_ms", "last_ms", "pageviews",
                 "clicks", "rage", "dead", "errors", "max_scroll", "forms_started", "forms_submitted",
                 "forms_abandoned", "entry_page", "exit_page", "page", "detector")

    def __init__(self, e: SessionEvent) -> None:
        self.session_id, self.project, self.user_id = e.session_id, e.project, e.user_id
        self.release, self.user_agent = e.release, e.user_agent
        self.start_ms = self.last_ms = e.ts_ms
        self.pageviews = self.clicks = self.rage = self.dead = self.errors = 0
        self.forms_started = self.forms_submitted = self.forms_abandoned = 0
        self.max_scroll = 0.0
        self.entry_page = self.exit_page = ""
        self.page: _Page | None = None
        self.detector: RageClickDetector | None = None  # made at the first click: many sessions have none


def buffered_cost(e: SessionEvent) -> int:
    """An upper bound of what a buffered event adds to its session's changelog record, in characters
    (the record writes repeated strings once, so usually far less)."""
    cost = 48 + len(e.event_id) + len(e.page) + len(e.project) + len(e.user_id) + len(e.release) + len(e.user_agent)
    c = e.click
    if c is not None:
        cost += 64 + len(c.selector) + len(c.page)
    return cost + (len(e.form) if e.form else 0)


def in_apply_order(events: list[SessionEvent]) -> list[SessionEvent]:
    """``events`` of one session in the order they are applied, (ts_ms, event_id), an event
    delivered twice within the lateness once (sorts ``events`` in place; may return it). Without two
    events of one millisecond that is the order of ts_ms alone (int keys, no tuple per event) and
    nothing is a duplicate; most sessions' events even arrive in that order."""
    previous_ts = NEVER
    for e in events:
        ts = e.ts_ms
        if ts <= previous_ts:
            break
        previous_ts = ts
    else:
        return events
    events.sort(key=_EVENT_TIME)
    previous_ts = NEVER
    for e in events:
        ts = e.ts_ms
        if ts == previous_ts:
            break
        previous_ts = ts
    else:
        return events
    events.sort(key=_EVENT_ORDER)  # stable, as a sort by this key of the events as they came
    unique = []
    previous = None
    for e in events:
        key = (e.ts_ms, e.event_id)
        if key != previous:
            unique.append(e)
        previous = key
    return unique


class Sessionizer:
    """Active sessions of one partition. ``add`` buffers, ``advance`` releases and closes."""

    def __init__(self, rules: SessionRules = SessionRules()) -> None:
        self.rules = rules
        self.watermark_ms = -(2**62)
        self._active: dict[str, _Session] = {}
        self._pending: dict[str, list[SessionEvent]] = {}
        # (close-at watermark, session_id): exactly one entry per open session, pushed when it opens; an
        # entry reached while its session was extended meanwhile is pushed again with the new time.
        # Close times only grow, so an entry is never late. (One entry per step and session held
        # ~1.6 entries per open session, ~160 B each.)
        self._deadlines: list[tuple[int, str]] = []
        self.dirty: set[str] = set()  # sessions whose state changed since the caller last took them
        self.overflowed = 0  # events refused since start: their session held its buffering bound already
        # buffered_cost of _pending[sid], kept while it has two events or more (counted when needed)
        self._pending_chars: dict[str, int] = {}

    # ---------------------------------------------------------------- input
    def add(self, events: list[SessionEvent]) -> list[SessionEvent]:
        """Buffer events; returns the ones not applied: late (at or behind the watermark), or beyond
        ``max_buffered_events`` of their session ahead of the watermark (a bot or a loop, not a person:
        400 events within the allowed lateness; counted in ``overflowed``). Both stay in the raw tables."""
        late = []
        limit, max_chars = self.rules.max_buffered_events, self.rules.max_buffered_chars
        pending, chars, mark_dirty = self._pending, self._pending_chars, self.dirty.add
        watermark = self.watermark_ms
        for e in events:
            if e.ts_ms <= watermark:
                late.append(e)
                continue
            sid = e.session_id
            buffered = pending.get(sid)
            if buffered is None:
                # Its cost is counted when a second event joins it (``held is None`` below): most sessions'
                # only buffered event of a step is applied before that.
                pending[sid] = [e]
            else:
                held = chars.get(sid)
                if held is None:  # buffered by a restore, a redo, or a first event: counted once, here
                    held = sum(map(buffered_cost, buffered))
                # buffered_cost(e), inlined: it runs for most events
                cost = 48 + len(e.event_id) + len(e.page) + len(e.project) + len(e.user_id) + len(e.release) + len(
                    e.user_agent)
                c = e.click
                if c is not None:
                    cost += 64 + len(c.selector) + len(c.page)
                if e.form:
                    cost += len(e.form)
                if len(buffered) >= limit or held + cost > max_chars:
                    chars[sid] = held
                    self.overflowed += 1
                    late.append(e)
                    continue
                buffered.append(e)
                chars[sid] = held + cost
            mark_dirty(sid)
        return late

    def advance(self, watermark_ms: int) -> Emitted:
        """Move the watermark forward (never back), apply what it passed, close what it ended."""
        out = Emitted()
        if watermark_ms <= self.watermark_ms:
            return out
        self.watermark_ms = watermark_ms
        pending, chars, mark_dirty, apply_events = self._pending, self._pending_chars, self.dirty.add, self._apply_events
        due = []
        for sid, evs in pending.items():
            for e in evs:
                if e.ts_ms <= watermark_ms:
                    due.append(sid)
                    break
        for sid in due:
            evs = pending.pop(sid)
            held = chars.pop(sid, None)
            if len(evs) > 1:
                ready = [e for e in evs if e.ts_ms <= watermark_ms]
                if len(ready) < len(evs):
                    left = pending[sid] = [e for e in evs if e.ts_ms > watermark_ms]
                    # What is left stays counted when that is cheaper than counting it again at its next event.
                    if held is not None and len(ready) < len(left):
                        chars[sid] = held - sum(map(buffered_cost, ready))
                evs = in_apply_order(ready)
            apply_events(sid, evs, out)
            mark_dirty(sid)
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] < watermark_ms:
            _, sid = heapq.heappop(deadlines)
            s = self._active.get(sid)
            if s is None:
                continue
            close_at = self._close_at(s)
            if close_at < watermark_ms:
                self._close(s, out)
                self.dirty.add(sid)
            else:  # extended since the entry was pushed: one entry per open session, never stale ones
                heapq.heappush(deadlines, (close_at, sid))
        return out

    def flush_all(self) -> Emitted:
        """Apply everything and close every session (end of a bounded input, e.g. tests)."""
        return self.advance(2**62)

    @property
    def active_sessions(self) -> int:
        return len(self._active)

    # ---------------------------------------------------------------- logic
    def _close_at(self, s: _Session) -> int:
        return min(s.last_ms + self.rules.idle_ms, s.start_ms + self.rules.max_ms)

    def _apply_events(self, sid: str, events: list[SessionEvent], out: Emitted) -> None:
        """Apply events of session ``sid``, in order. Runs once per event: one loop per session and
        step, locals and plain ifs rather than attribute chains, max() and ``or``."""
        active = self._active
        idle_ms, max_ms = self.rules.idle_ms, self.rules.max_ms
        s = active.get(sid)
        for e in events:
            ts, kind = e.ts_ms, e.kind
            if s is None:
                s = active[sid] = _Session(e)
                heapq.heappush(self._deadlines, (self._close_at(s), sid))
            elif ts - s.last_ms > idle_ms or ts - s.start_ms >= max_ms:
                self._close(s, out)
                s = active[sid] = _Session(e)  # the closed one's deadline entry serves it
            if ts > s.last_ms:
                s.last_ms = ts
            if not s.user_id:
                s.user_id = e.user_id
            if e.release:
                s.release = e.release
            if kind == "pageview":
                if s.page is not None:
                    out.page_views.append(self._end_page(s, ts))
                s.page = _Page(e.page, ts)
                s.pageviews += 1
                s.entry_page = s.entry_page or e.page
                s.exit_page = e.page
            page = s.page
            if page is not None:
                page.last_ms = ts
            if kind == "click":
                if e.click is not None:
                    self._click(s, page, e, out)
            elif kind == "scroll":
                if e.scroll_depth is not None:
                    if e.scroll_depth > s.max_scroll:
                        s.max_scroll = e.scroll_depth
                    if page and e.scroll_depth > page.max_scroll:
                        page.max_scroll = e.scroll_depth
            elif kind in ("form_start", "form_submit") and page is not None:
                if kind == "form_start" and e.form not in page.forms_started:
                    page.forms_started += (e.form,)
                elif kind == "form_submit" and e.form not in page.forms_submitted:
                    page.forms_submitted += (e.form,)
            elif kind == "visibility" and page is not None:
                if e.visible is False and page.visible_since is not None:
                    page.visible_ms += ts - page.visible_since
                    page.visible_since = None
                elif e.visible and page.visible_since is None:
                    page.visible_since = ts
            elif kind == "error":
                s.errors += 1

    def _click(self, s: _Session, page: _Page | None, e: SessionEvent, out: Emitted) -> None:
        """A click event: rage bursts, dead clicks, and a second report of one click counted once."""
        click: Click = e.click  # type: ignore[assignment]  # the caller checked it is there
        detector = s.detector
        if detector is None:
            detector = s.detector = RageClickDetector(self.rules.rage)
        last = detector._last
        # same_click(click, last), inlined
        repeat = (last is not None and last.observed != click.observed and last.selector == click.selector
                  and abs(click.ts_ms - last.ts_ms) <= SAME_CLICK_MS)
        if repeat:  # another report of the last click: not a click of its own
            dead_before = dead_click_kind(last, self.rules.dead) is not None  # type: ignore[arg-type]
            merge_observation(last, click)  # type: ignore[arg-type]
            kind = None if dead_before else dead_click_kind(last, self.rules.dead)  # type: ignore[arg-type]
        else:
            s.clicks += 1
            detected, ended = detector.feed(click)
            if ended:
                out.rage_clicks.append(SessionRage(s.session_id, s.start_ms, ended, s.project))
            if detected:
                s.rage += 1
                if page:
                    page.rage += 1
            kind = dead_click_kind(click, self.rules.dead) if click.observed else None
        if kind:
            s.dead += 1
            out.dead_clicks.append(DeadClick(s.session_id, s.start_ms, e.ts_ms, click.selector,
                                             click.page or (page.page if page else ""), kind, e.event_id, s.project))
        if page:
            if not repeat:
                page.clicks += 1
            if kind:
                page.dead += 1

    def _end_page(self, s: _Session, end_ms: int) -> PageView:
        assert s.page is not None
        pv = s.page.end(s.session_id, s.start_ms, end_ms, s.project)
        s.forms_started += pv.forms_started
        s.forms_submitted += pv.forms_started - pv.forms_abandoned
        s.forms_abandoned += pv.forms_abandoned
        s.page = None
        return pv

    def _close(self, s: _Session, out: Emitted) -> None:
        """Emit ``s`` (its last page view, last rage burst, summary) into ``out`` and forget it."""
        if s.page is not None:
            out.page_views.append(self._end_page(s, s.last_ms))
        ended = s.detector.close() if s.detector is not None else None
        if ended:
            out.rage_clicks.append(SessionRage(s.session_id, s.start_ms, ended, s.project))
        duration = s.last_ms - s.start_ms
        out.sessions.append(SessionSummary(
            s.session_id, s.project, s.user_id, s.start_ms, s.last_ms, duration, s.pageviews, s.clicks, s.rage,
            s.dead, s.errors, s.max_scroll, s.forms_started, s.forms_submitted, s.forms_abandoned, s.entry_page,
            s.exit_page, s.pageviews == 1 and duration < self.rules.bounce_max_ms, s.release, s.user_agent))
        del self._active[s.session_id]
