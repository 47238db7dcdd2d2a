"""Session state <-> compact bytes for the changelog (positional orjson arrays, versioned).

Positional lists, not dicts: a record is written per touched session per batch, and its size is
both changelog traffic and restore time. ``VERSION`` changes when a layout changes; a record of
another version is refused loudly rather than misread.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.sessions.clicks import Click, RageClickDetector
from pipeline.sessions.sessionizer import SessionEvent, SessionRules, _Page, _Session

VERSION = 2


class StateFormatError(ValueError):
    """A stored record this code cannot read (another layout version, or corrupt)."""


def _click(c: Click | None) -> list[Any] | None:
    if c is None:
        return None
    return [c.ts_ms, c.selector, c.page, c.x, c.y, c.interactive, c.observed, c.dom_mutation_ms, c.navigated,
            c.scrolled, c.observed_for_ms]


def _unclick(v: list[Any] | None) -> Click | None:
    return None if v is None else Click(*v)


def _event(e: SessionEvent) -> list[Any]:
    return [e.ts_ms, e.event_id, e.kind, e.page, e.project, e.user_id, e.release, e.user_agent, _click(e.click),
            e.scroll_depth, e.form, e.visible]


def _unevent(sid: str, v: list[Any]) -> SessionEvent:
    ts, eid, kind, page, project, user_id, release, ua, click, scroll, form, visible = v
    return SessionEvent(sid, ts, eid, kind, page, project, user_id, release, ua, _unclick(click), scroll, form, visible)


def _page(p: _Page | None) -> list[Any] | None:
    if p is None:
        return None
    return [p.page, p.start_ms, p.last_ms, p.visible_since, p.visible_ms, p.max_scroll, p.clicks, p.rage, p.dead,
            list(p.forms_started), list(p.forms_submitted)]


def _unpage(v: list[Any] | None) -> _Page | None:
    if v is None:
        return None
    p = _Page(v[0], v[1])
    (p.last_ms, p.visible_since, p.visible_ms, p.max_scroll, p.clicks, p.rage, p.dead) = v[2:9]
    p.forms_started, p.forms_submitted = tuple(v[9]), tuple(v[10])
    return p


def _session(s: _Session | None) -> list[Any] | None:
    if s is None:
        return None
    d = s.detector
    return [s.project, s.user_id, s.release, s.user_agent, s.start_ms, s.last_ms, s.pageviews, s.clicks, s.rage,
            s.dead, s.errors, s.max_scroll, s.forms_started, s.forms_submitted, s.forms_abandoned, s.entry_page,
            s.exit_page, _page(s.page), [_click(d._last), d._count, d._first_ts, d._detected_ts]]


def _unsession(sid: str, v: list[Any] | None, rules: SessionRules) -> _Session | None:
    if v is None:
        return None
    s = _Session.__new__(_Session)
    s.session_id = sid
    (s.project, s.user_id, s.release, s.user_agent, s.start_ms, s.last_ms, s.pageviews, s.clicks, s.rage, s.dead,
     s.errors, s.max_scroll, s.forms_started, s.forms_submitted, s.forms_abandoned, s.entry_page, s.exit_page) = v[:17]
    s.page = _unpage(v[17])
    last, count, first_ts, detected_ts = v[18]
    s.detector = RageClickDetector(rules.rage)
    s.detector._last, s.detector._count = _unclick(last), count
    s.detector._first_ts, s.detector._detected_ts = first_ts, detected_ts
    return s


def encode_session(active: _Session | None, marks: dict[str, int], applied_wm: int) -> bytes:
    """One session key's state: the open session (if any), the highest raw offset per topic taken
    into the key (applied or buffered, so a replay skips them), and the watermark it was applied
    up to: buffered events (stored in chunks) at or below it are already inside ``active``."""
    return orjson.dumps([VERSION, _session(active), marks, applied_wm])


def decode_session(sid: str, raw: bytes, rules: SessionRules) -> tuple[_Session | None, dict[str, int], int]:
    try:
        v = orjson.loads(raw)
        if not isinstance(v, list) or v[0] != VERSION:
            raise StateFormatError(f"session state of {sid!r}: unknown layout {v[0] if v else v!r}")
        return _unsession(sid, v[1], rules), dict(v[2]), v[3]
    except StateFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign bytes: say which key
        raise StateFormatError(f"session state of {sid!r} is unreadable: {exc}") from exc


def encode_chunk(events: list[SessionEvent]) -> bytes:
    """Events of one session from one raw message, buffered behind the watermark. Written once,
    deleted once applied: buffering costs a write per message, not a rewrite per batch."""
    return orjson.dumps([VERSION, [_event(e) for e in events]])


def decode_chunk(sid: str, raw: bytes) -> list[SessionEvent]:
    v = orjson.loads(raw)
    if not isinstance(v, list) or v[0] != VERSION:
        raise StateFormatError(f"buffered events of {sid!r}: unknown layout {v!r:.80}")
    return [_unevent(sid, e) for e in v[1]]


def encode_partition(watermark_ms: int, max_ts: dict[str, int], marks: dict[str, int]) -> bytes:
    """The partition's progress: watermark, highest event time and highest offset per topic."""
    return orjson.dumps([VERSION, watermark_ms, max_ts, marks])


def decode_partition(raw: bytes) -> tuple[int, dict[str, int], dict[str, int]]:
    v = orjson.loads(raw)
    if not isinstance(v, list) or v[0] != VERSION:
        raise StateFormatError(f"partition state: unknown layout {v!r:.80}")
    return v[1], dict(v[2]), dict(v[3])
