"""Session state <-> compact bytes for the changelog (positional orjson arrays, versioned).

Positional lists, not dicts: a record is written per touched session per batch, and its size is
both changelog traffic and restore time. ``VERSION`` changes when a layout changes; a record of
an unknown version is refused loudly rather than misread.

Layouts: 3 (written now) holds a session key's buffered events inside its session record, so a
batch writes one record per touched session. 2 (read, for an upgrade in place) kept them in
separate chunk records, one per raw message, written once and deleted once applied: a touched
session cost ~2.5 records per batch.
"""

from __future__ import annotations

from sys import intern
from typing import Any

import orjson

from pipeline.sessions.clicks import Click, RageClickDetector
from pipeline.sessions.sessionizer import SessionEvent, SessionRules, _Page, _Session

VERSION = 3
READABLE = (2, 3)  # layouts restored; 2: buffered events in chunk records


class StateFormatError(ValueError):
    """A stored record this code cannot read (another layout version, or corrupt)."""


def _click(c: Click | None) -> tuple[Any, ...] | None:
    if c is None:
        return None
    return (c.ts_ms, c.selector, c.page, c.x, c.y, c.interactive, c.observed, c.dom_mutation_ms, c.navigated,
            c.scrolled, c.observed_for_ms)


def _unclick(v: list[Any] | None) -> Click | None:
    return None if v is None else Click(v[0], intern(v[1]), intern(v[2]), *v[3:])


def _event(e: SessionEvent) -> list[Any]:
    return [e.ts_ms, e.event_id, e.kind, e.page, e.project, e.user_id, e.release, e.user_agent, _click(e.click),
            e.scroll_depth, e.form, e.visible]


def _unevent(sid: str, v: list[Any]) -> SessionEvent:
    ts, eid, kind, page, project, user_id, release, ua, click, scroll, form, visible = v
    return SessionEvent(sid, ts, eid, kind, page, project, user_id, release, ua, _unclick(click), scroll, form, visible)


_SAME = None  # in a buffered event of layout 3: "as the event before it" (string fields are never null)


def session_buffered(events: list[SessionEvent]) -> list[tuple[Any, ...]]:
    """Layout 3: events of one session, page/project/user/release/user agent written only when they
    differ from the previous event's, and a click's time and page only when they differ from its event's:
    a buffered event costs ~80 bytes instead of ~300. Tuples: written as JSON arrays like lists, and
    cheaper to build. (Comparisons inlined and made with the previous event's fields, the first event
    taken before the loop: this runs for every buffered event of every session a batch touches.)"""
    it = iter(events)
    prev = next(it)
    c = prev.click
    page = prev.page
    out = [(prev.ts_ms, prev.event_id, prev.kind, page, prev.project, prev.user_id, prev.release, prev.user_agent,
            None if c is None else (
                _SAME if c.ts_ms == prev.ts_ms else c.ts_ms, c.selector, _SAME if c.page == page else c.page, c.x,
                c.y, c.interactive, c.observed, c.dom_mutation_ms, c.navigated, c.scrolled, c.observed_for_ms),
            prev.scroll_depth, prev.form, prev.visible)]
    append = out.append
    for e in it:
        c = e.click
        append((e.ts_ms, e.event_id, e.kind, _SAME if e.page == prev.page else e.page,
                _SAME if e.project == prev.project else e.project, _SAME if e.user_id == prev.user_id else e.user_id,
                _SAME if e.release == prev.release else e.release,
                _SAME if e.user_agent == prev.user_agent else e.user_agent,
                None if c is None else (
                    _SAME if c.ts_ms == e.ts_ms else c.ts_ms, c.selector, _SAME if c.page == e.page else c.page,
                    c.x, c.y, c.interactive, c.observed, c.dom_mutation_ms, c.navigated, c.scrolled,
                    c.observed_for_ms),
                e.scroll_depth, e.form, e.visible))
        prev = e
    return out


def _unbuffered(sid: str, rows: list[list[Any]]) -> list[SessionEvent]:
    out: list[SessionEvent] = []
    page = project = user_id = release = ua = ""
    for ts, eid, kind, p, pr, u, r, a, c, scroll, form, visible in rows:
        page = intern(p) if p is not None else page
        project = intern(pr) if pr is not None else project
        user_id = u if u is not None else user_id
        release = intern(r) if r is not None else release
        ua = intern(a) if a is not None else ua
        click = None
        if c is not None:
            cts, selector, cpage, *rest = c
            click = Click(ts if cts is None else cts, intern(selector), page if cpage is None else intern(cpage), *rest)
        out.append(SessionEvent(sid, ts, eid, kind, page, project, user_id, release, ua, click, scroll, form, visible))
    return out


def _unpage(v: list[Any] | None) -> _Page | None:
    if v is None:
        return None
    p = _Page(intern(v[0]), v[1])
    (p.last_ms, p.visible_since, p.visible_ms, p.max_scroll, p.clicks, p.rage, p.dead) = v[2:9]
    p.forms_started, p.forms_submitted = tuple(v[9]), tuple(v[10])
    return p


def session_active(s: _Session | None) -> tuple[Any, ...] | None:
    """Tuples, not lists (the same JSON arrays): built for every session a batch touches."""
    if s is None:
        return None
    d, p = s.detector, s.page
    return (s.project, s.user_id, s.release, s.user_agent, s.start_ms, s.last_ms, s.pageviews, s.clicks, s.rage,
            s.dead, s.errors, s.max_scroll, s.forms_started, s.forms_submitted, s.forms_abandoned, s.entry_page,
            s.exit_page,
            None if p is None else (  # the open page, as ``_unpage`` reads it
                p.page, p.start_ms, p.last_ms, p.visible_since, p.visible_ms, p.max_scroll, p.clicks, p.rage, p.dead,
                p.forms_started, p.forms_submitted),
            _NO_DETECTOR if d is None else (
                None if (c := d._last) is None else (  # _click(d._last), inlined
                    c.ts_ms, c.selector, c.page, c.x, c.y, c.interactive, c.observed, c.dom_mutation_ms, c.navigated,
                    c.scrolled, c.observed_for_ms),
                d._count, d._first_ts, d._detected_ts))


_NO_DETECTOR = (None, 0, 0, 0)  # serialized as [null,0,0,0], as a detector that saw no click


def _unsession(sid: str, v: list[Any] | None, rules: SessionRules) -> _Session | None:
    if v is None:
        return None
    s = _Session.__new__(_Session)
    s.session_id = sid
    (s.project, s.user_id, s.release, s.user_agent, s.start_ms, s.last_ms, s.pageviews, s.clicks, s.rage, s.dead,
     s.errors, s.max_scroll, s.forms_started, s.forms_submitted, s.forms_abandoned, s.entry_page, s.exit_page) = v[:17]
    # Interned as on the way in (``events.session_event``): restored sessions share these strings too.
    s.project, s.release, s.user_agent = intern(s.project), intern(s.release), intern(s.user_agent)
    s.entry_page, s.exit_page = intern(s.entry_page), intern(s.exit_page)
    s.page = _unpage(v[17])
    last, count, first_ts, detected_ts = v[18]
    s.detector = None
    if last is not None or count:  # a detector that saw no click yet is made at the first one
        s.detector = RageClickDetector(rules.rage)
        s.detector._last, s.detector._count = _unclick(last), count
        s.detector._first_ts, s.detector._detected_ts = first_ts, detected_ts
    return s


def encode_session(active: _Session | None, marks: dict[str, int], applied_wm: int,
                   buffered: list[SessionEvent] | None = None) -> bytes:
    """One session key's state: the open session (if any), the highest raw offset per topic taken
    into the key (applied or buffered, so a replay skips them), the watermark it was applied up
    to, and the events buffered behind that watermark (not yet inside ``active``)."""
    return orjson.dumps([VERSION, session_active(active), marks, applied_wm,
                         session_buffered(buffered) if buffered else ()])


def decode_session(sid: str, raw: bytes, rules: SessionRules
                   ) -> tuple[_Session | None, dict[str, int], int, list[SessionEvent]]:
    """``(active, marks, applied watermark, buffered events)``; layout 2 records have no buffered
    events of their own (they are in chunk records, ``decode_chunk``)."""
    try:
        v = orjson.loads(raw)
        if not isinstance(v, list) or not v or v[0] not in READABLE:
            raise StateFormatError(f"session state of {sid!r}: unknown layout {v[0] if v else v!r}")
        buffered = _unbuffered(sid, v[4]) if v[0] >= 3 else []
        return _unsession(sid, v[1], rules), dict(v[2]), v[3], buffered
    except StateFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign bytes: say which key
        raise StateFormatError(f"session state of {sid!r} is unreadable: {exc}") from exc


def encode_chunk(events: list[SessionEvent]) -> bytes:
    """Layout 2 only (no longer written; kept to test upgrades): events of one session from one raw
    message, buffered behind the watermark, written once and deleted once applied."""
    return orjson.dumps([2, [_event(e) for e in events]])


def decode_chunk(sid: str, raw: bytes) -> list[SessionEvent]:
    v = orjson.loads(raw)
    if not isinstance(v, list) or v[0] != 2:
        raise StateFormatError(f"buffered events of {sid!r}: unknown layout {v!r:.80}")
    return [_unevent(sid, e) for e in v[1]]


def encode_partition(watermark_ms: int, max_ts: dict[str, int], marks: dict[str, int]) -> bytes:
    """The partition's progress: watermark, highest event time and highest offset per topic."""
    return orjson.dumps([VERSION, watermark_ms, max_ts, marks])


def decode_partition(raw: bytes) -> tuple[int, dict[str, int], dict[str, int]]:
    v = orjson.loads(raw)
    if not isinstance(v, list) or v[0] not in READABLE:
        raise StateFormatError(f"partition state: unknown layout {v!r:.80}")
    return v[1], dict(v[2]), dict(v[3])
