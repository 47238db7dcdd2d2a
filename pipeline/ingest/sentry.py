"""What Sentry SDKs send, translated into our event contract. Pure: no I/O, no clock.

Sentry SDKs post envelopes (``POST /api/<project>/envelope/``, https://develop.sentry.dev/sdk/envelopes/)
or, when old, one event JSON (``POST /api/<project>/store/``). An endpoint for them authenticates
with ``parse_auth``, parses with ``parse_envelope`` and hands ``translate_envelope(...).events`` to
the producer, which scrubs, validates and dead-letters as for native events. What comes out of here
always validates against the contract: over-long values are cut to the contract's limits, and a
translator never raises on odd input (it drops what it cannot read).

Items:
  * ``event`` (errors, messages) -> one ``error`` event.
  * ``transaction`` -> ``vital`` events from web-vital measurements (or ``browser.web_vital.*``
    trace data) and ``api`` events from HTTP and resource spans.
  * ``span`` (v1: one span JSON; v2: ``{"items": [...]}`` with typed attributes) -> the same from a
    standalone span: browser SDKs since v8 send INP on its own ``ui.interaction.*`` span, and SDKs
    with span streaming send every span this way. Its session is the span's trace id.
  * ``session``/``sessions`` and every other type (client_report, attachment, profile,
    replay_event, check_in, log, ...) -> counted, nothing produced. The contract has no
    session-update type, and our sessions are built from the events themselves.

Mapping decisions:
  * session_id: Sentry events carry no session id, and the contract needs one (it is the Kafka
    key). We use ``contexts.trace.trace_id`` (the browser SDK keeps one trace per page load or
    navigation, so errors, vitals and API calls of one page view share it), else ``user.id``, else
    the event id (a session of one event).
  * exceptions: Sentry lists chained exceptions oldest first; the last one is the one raised and
    gives type, message, mechanism and frames (its causes are not kept). Frames are oldest first,
    which is our "outermost first". An exception without a type is an ``Error`` (as Sentry shows it),
    except the synthetic one of ``captureMessage`` with a stack (``mechanism.synthetic``, no type):
    that event is a message (type ``Message``), with the stack kept.
  * message-only events (``message``, ``logentry``): exception_type ``Message``
    (``MESSAGE_EXCEPTION_TYPE``), the formatted message as message.
  * frame filename: ``abs_path`` when it is a URL (browser scripts), else ``filename`` (Python's
    path relative to sys.path, stable across machines), else ``abs_path``.
  * in_app missing (Java, Go, Rust SDKs leave it unset): per-platform defaults like Sentry's
    (``default_in_app``): runtime and library frames (``java.*``, Go ``runtime``, ``std::``,
    ``System.*``, Python's stdlib, ``node:``, node_modules, site-packages ...) are not in-app,
    everything else is.
  * level: fatal/critical -> fatal, error, warning/warn -> warning, info/log -> info, debug;
    anything else -> error.
  * user_id: only ``user.id``; e-mail, IP address and username are never used as an identifier.
  * user_agent: the request's User-Agent header, else ``Browser/version (OS version)`` built from
    ``contexts.browser``/``contexts.os`` (a form the user-agent parser reads); contexts are
    otherwise ignored.
  * route: the transaction name when it looks like a route (starts with ``/``, or ``GET /users/:id``
    as server SDKs name it); span v2 items name it in ``sentry.segment.name``.
  * ids: Sentry writes UUIDs as 32 hex digits; events get the dashed form. Events derived from a
    transaction get uuid5 ids from the transaction's id and the measurement name or span id, so a
    retried envelope yields the same ids and the pipeline drops the duplicates.
"""

from __future__ import annotations

import math
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import orjson

SHORT = 512  # ShortText
LONG = 16_384  # LongText
SESSION_ID_MAX = 128
MAX_FRAMES = 250
MAX_BREADCRUMBS = 200
MESSAGE_EXCEPTION_TYPE = "Message"
DEFAULT_EXCEPTION_TYPE = "Error"

# Namespace of the uuid5 ids of events derived from a transaction (and of events without an id).
ID_NAMESPACE = uuid.UUID("40a9fb4f-0f96-4f65-8790-41d9a9ccadea")

_LEVELS = {"fatal": "fatal", "critical": "fatal", "error": "error", "warning": "warning", "warn": "warning",
           "info": "info", "log": "info", "debug": "debug"}
_VITALS = {"lcp": "LCP", "fcp": "FCP", "cls": "CLS", "ttfb": "TTFB", "fid": "FID", "inp": "INP"}
_UNIT_TO_MS = {"": 1.0, "none": 1.0, "millisecond": 1.0, "second": 1000.0, "microsecond": 1e-3, "nanosecond": 1e-6}
_API_OPS = {"http.client", "http", "resource.fetch", "resource.xhr"}
_THIRD_PARTY = re.compile(
    r"/node_modules/|[/\\](?:site|dist)-packages[/\\]|^[a-z-]+-extension://|^<anonymous>$|^native$|\[native code\]",
    re.IGNORECASE)
_AUTH_PAIR = re.compile(r"([\w-]+)\s*=\s*(\"[^\"]*\"|[^,\s]*)")
_METHOD_AND_URL = re.compile(r"([A-Z]+)\s+(\S+)")


class EnvelopeError(ValueError):
    """The body is not an envelope; the message says what is wrong and where."""


@dataclass(frozen=True)
class SentryItem:
    type: str
    headers: dict[str, Any]
    payload: bytes


@dataclass(frozen=True)
class SentryEnvelope:
    headers: dict[str, Any]
    items: list[SentryItem]


@dataclass
class Translation:
    """Native events from one envelope (or store body), and what was in it.

    ``event_id`` is what Sentry answers (``{"id": ...}``), in its 32-hex form. ``counts`` has every
    item by type, translated or not; ``problems`` the items that could not be read.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    event_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ authentication


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive even for a plain dict (aiohttp's headers already are)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _key_in_auth_header(value: str) -> str | None:
    """``Sentry sentry_key=<key>, sentry_version=7, ...``: the ``Sentry`` word is optional, pairs are
    found wherever they are, names in any case, values optionally quoted."""
    for m in _AUTH_PAIR.finditer(value):
        if m.group(1).lower() == "sentry_key":
            return m.group(2).strip('"').strip() or None
    return None


def parse_auth(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The DSN public key: ``X-Sentry-Auth`` or ``Authorization`` (``Sentry sentry_key=<key>, ...``),
    else the ``sentry_key`` query parameter (browsers send it there to avoid a CORS preflight).
    An envelope may also carry its DSN in its header: see ``dsn_public_key``."""
    for name in ("X-Sentry-Auth", "Authorization"):
        value = _header(headers, name)
        key = _key_in_auth_header(value) if value else None
        if key:
            return key
    key = query.get("sentry_key")
    return (key.strip() or None) if key else None


def dsn_public_key(dsn: Any) -> str | None:
    """``https://<key>@host/42`` -> ``<key>``; None when it is not a DSN."""
    if not isinstance(dsn, str):
        return None
    try:
        return urlsplit(dsn.strip()).username or None
    except ValueError:
        return None


# ------------------------------------------------------------------ envelope format


def _json_object(line: bytes, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"{what} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError(f"{what} is not a JSON object")
    return doc


def _line_end(body: bytes, start: int) -> int:
    end = body.find(b"\n", start)
    return len(body) if end < 0 else end


def parse_envelope(body: bytes) -> SentryEnvelope:
    """Envelope header line, then items: a header line and a payload of exactly ``length`` bytes
    followed by a newline or the end, or without ``length`` up to the next newline or the end.
    Empty lines between items and a missing final newline are accepted.

    Raises ``EnvelopeError`` naming the item (counted from 1) and its byte offset.
    """
    if not body.strip():
        raise EnvelopeError("envelope header: body is empty")
    end = _line_end(body, 0)
    headers = _json_object(body[:end], "envelope header")
    items: list[SentryItem] = []
    pos = end + 1
    while pos < len(body):
        end = _line_end(body, pos)
        line = body[pos:end]
        if not line.strip():
            pos = end + 1
            continue
        where = f"item {len(items) + 1} (byte {pos})"
        item_headers = _json_object(line, f"{where}: header")
        item_type = item_headers.get("type")
        if not isinstance(item_type, str) or not item_type:
            raise EnvelopeError(f"{where}: header has no type")
        start = min(end + 1, len(body))
        length = item_headers.get("length")
        if length is None:
            stop = _line_end(body, start)
            payload, pos = body[start:stop], stop + 1
        else:
            if not isinstance(length, int) or isinstance(length, bool) or length < 0:
                raise EnvelopeError(f"{where}: length {length!r} is not a non-negative integer")
            stop = start + length
            if stop > len(body):
                raise EnvelopeError(f"{where}: payload of {length} bytes, but only {len(body) - start} remain")
            if stop < len(body) and body[stop:stop + 1] != b"\n":
                raise EnvelopeError(f"{where}: payload of {length} bytes is followed by "
                                    f"{body[stop:stop + 1]!r}, not a newline")
            payload, pos = body[start:stop], stop + 1
        items.append(SentryItem(type=item_type, headers=item_headers, payload=payload))
    return SentryEnvelope(headers=headers, items=items)


# ------------------------------------------------------------------ small readers of untrusted JSON


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any, limit: int = SHORT) -> str | None:
    """Strings as they are, numbers and booleans as JSON writes them; cut to ``limit``; else None."""
    if isinstance(value, str):  # the common case first: ~50 calls per error event
        return value[:limit]
    if value is None:
        return None
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    return value[:limit] if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _count(value: Any) -> int | None:
    """A non-negative integer, also from a string of ASCII digits (status codes in span tags)."""
    if isinstance(value, str) and value.isascii() and value.strip().isdigit() and len(value) < 19:
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _time(value: Any) -> datetime | None:
    """RFC 3339 string or epoch seconds (number or numeric string) -> aware UTC datetime."""
    try:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                parsed = datetime.fromisoformat(value.strip())
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                return parsed.astimezone(timezone.utc)
        seconds = _number(value)
        return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat().replace("+00:00", "Z")


def _uuid(value: Any) -> uuid.UUID | None:
    """32 hex digits (Sentry) or the dashed form."""
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def _event_uuid(event: dict[str, Any]) -> uuid.UUID:
    """The event's own id; without one, an id derived from its content (same body, same id)."""
    parsed = _uuid(event.get("event_id"))
    if parsed is not None:
        return parsed
    try:
        return uuid.uuid5(ID_NAMESPACE, orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode())
    except (TypeError, orjson.JSONEncodeError):  # not JSON-shaped: no stable content to derive from
        return uuid.uuid4()


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    """Without None values: the contract's defaults apply, and messages stay small."""
    return {k: v for k, v in d.items() if v is not None}


def _pairs(value: Any) -> list[tuple[Any, Any]]:
    """A JSON object or a list of ``[key, value]`` pairs (Sentry accepts both for tags and headers)."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        return [(p[0], p[1]) for p in value if isinstance(p, (list, tuple)) and len(p) == 2]
    return []


def _values(value: Any) -> list[Any]:
    """A list, or ``{"values": [...]}`` (exceptions, breadcrumbs, threads)."""
    if isinstance(value, dict):
        value = value.get("values")
    return value if isinstance(value, list) else []


# ------------------------------------------------------------------ fields every event shares


def _user_agent(event: dict[str, Any]) -> str | None:
    request = _dict(event.get("request"))
    for key, value in _pairs(request.get("headers")):
        if isinstance(key, str) and key.lower() == "user-agent" and (user_agent := _text(value)):
            return user_agent
    contexts = _dict(event.get("contexts"))
    browser, os_ = _dict(contexts.get("browser")), _dict(contexts.get("os"))
    parts = []
    if name := _text(browser.get("name")):
        version = _text(browser.get("version"))
        parts.append(f"{name}/{version}" if version else name)
    if name := _text(os_.get("name")):
        version = _text(os_.get("version"))
        parts.append(f"({name} {version})" if version else f"({name})")
    return " ".join(parts)[:SHORT] or None


def _url(event: dict[str, Any]) -> str | None:
    request = _dict(event.get("request"))
    url = _text(request.get("url"), LONG)
    query = _text(request.get("query_string"), LONG)
    if url and query and "?" not in url:
        url = f"{url}?{query}"[:LONG]
    if url:
        return url
    return next((url for k, v in _pairs(event.get("tags")) if k == "url" and (url := _text(v, LONG))), None)


def _session_id(event: dict[str, Any], event_id: uuid.UUID) -> str:
    trace_id = _text(_dict(_dict(event.get("contexts")).get("trace")).get("trace_id"), SESSION_ID_MAX)
    user_id = _text(_dict(event.get("user")).get("id"), SESSION_ID_MAX)
    return (trace_id or "").strip() or (user_id or "").strip() or str(event_id)


_METHOD_ROUTE = re.compile(r"[A-Z]{3,7} (/\S*)")


def route_of(transaction: str | None) -> str | None:
    """The route in a transaction name: ``/product/:id``, or server SDKs' ``GET /product/:id``."""
    if not transaction:
        return None
    if transaction.startswith("/"):
        return transaction
    m = _METHOD_ROUTE.fullmatch(transaction)
    return m.group(1) if m else None


def _common(event: dict[str, Any], source_id: uuid.UUID, *, project: str, received_at: datetime,
            sent_at: datetime | None) -> dict[str, Any]:
    """The contract's envelope fields every event from this Sentry event shares: all but
    event_id and timestamp. ``source_id`` is the Sentry event's id."""
    sdk = _dict(event.get("sdk"))
    sdk_name = _text(sdk.get("name"))
    transaction = _text(event.get("transaction"))
    out = {
        "project": project,
        "received_at": _iso(received_at),
        "sent_at": _iso(sent_at) if sent_at else None,
        "session_id": _session_id(event, source_id),
        "user_id": _text(_dict(event.get("user")).get("id")),
        "release": _text(event.get("release")),
        "environment": _text(event.get("environment")) or "production",
        "url": _url(event),
        "route": route_of(transaction),
        "user_agent": _user_agent(event),
        "sdk": {"name": sdk_name, "version": _text(sdk.get("version")) or ""} if sdk_name else None,
    }
    return _compact(out)


# ------------------------------------------------------------------ error events


_NOT_IN_APP_MODULES = re.compile(r"(?:java|javax|sun|jdk|kotlin|kotlinx|System|Microsoft)(?:\.|$)")
_NOT_IN_APP_FUNCTIONS = re.compile(r"<?(?:std|core|alloc|tokio)::|__rust_|rust_begin_unwind")
_GO_RUNTIME = re.compile(r"(?:runtime|net/http)(?:/|$)")
_GO_LIBRARY_PATH = re.compile(r"/pkg/mod/|/go/src/|/libexec/src/|/vendor/", re.IGNORECASE)
_NODE_INTERNAL = re.compile(r"node:|internal/")
_PYTHON_STDLIB_PATH = re.compile(r"[/\\]lib[/\\]python\d(?:\.\d+)?[/\\](?!(?:site|dist)-packages)", re.IGNORECASE)
_PYTHON_STDLIB = frozenset(sys.stdlib_module_names)


def default_in_app(frame: Mapping[str, Any], platform: str | None) -> bool:
    """Whether a frame whose SDK left ``in_app`` unset is application code, per platform, as Sentry's
    SDKs and built-in stack trace rules decide: runtime and library code is not.

    JVM modules ``java.*``, ``javax.*``, ``sun.*``, ``jdk.*``, ``kotlin.*``; Go packages ``runtime`` and
    ``net/http`` and files in the module cache, GOROOT or ``vendor/``; Rust functions ``std::``,
    ``core::``, ``alloc::``, ``tokio::``; .NET ``System.*``, ``Microsoft.*``; Python's standard library
    (by module, or a ``lib/pythonX.Y/`` path) and ``site-``/``dist-packages``; Node's ``node:`` and
    ``internal/`` modules; ``node_modules``, browser extensions and native code. Everything else is.
    """
    abs_path, filename = _text(frame.get("abs_path"), LONG) or "", _text(frame.get("filename"), LONG) or ""
    module, function = _text(frame.get("module")) or "", _text(frame.get("function")) or ""
    paths = [p for p in (abs_path, filename) if p]
    if any(_THIRD_PARTY.search(p) or _NODE_INTERNAL.match(p) for p in paths):
        return False
    if _NOT_IN_APP_MODULES.match(module) or _NOT_IN_APP_FUNCTIONS.match(function) or _NODE_INTERNAL.match(module):
        return False
    platform = (_text(frame.get("platform")) or platform or "").lower()
    if platform == "go" and (_GO_RUNTIME.match(module) or _GO_RUNTIME.match(function)
                             or any(_GO_LIBRARY_PATH.search(p) for p in paths)):
        return False
    if platform == "python" and (module.split(".")[0] in _PYTHON_STDLIB
                                 or any(_PYTHON_STDLIB_PATH.search(p) for p in paths)):
        return False
    return True


def _frame(frame: dict[str, Any], platform: str | None = None) -> dict[str, Any]:
    abs_path = _text(frame.get("abs_path"), LONG)
    filename = _text(frame.get("filename"), LONG)
    in_app = frame.get("in_app")
    if not isinstance(in_app, bool):
        in_app = default_in_app(frame, platform)
    return _compact({
        "filename": abs_path if abs_path and "://" in abs_path else filename or abs_path,
        "function": _text(frame.get("function")),
        "module": _text(frame.get("module")),
        "lineno": _count(frame.get("lineno")),
        "colno": _count(frame.get("colno")),
        "in_app": in_app,
        "context_line": _text(frame.get("context_line"), LONG),
    })


def _frames(exception: dict[str, Any], event: dict[str, Any]) -> list[dict[str, Any]]:
    """The raised exception's frames; else the legacy top-level stacktrace, else the crashed or
    current thread's (messages captured with attach_stacktrace). Innermost 250 kept."""
    stacktrace = exception.get("stacktrace") or event.get("stacktrace")
    if not stacktrace:
        threads = [t for t in _values(event.get("threads")) if isinstance(t, dict)]
        thread = next((t for t in threads if t.get("crashed") or t.get("current")), None)
        stacktrace = _dict(thread).get("stacktrace")
    frames = _dict(stacktrace).get("frames")
    platform = _text(event.get("platform"))
    frames = [_frame(f, platform) for f in frames if isinstance(f, dict)] if isinstance(frames, list) else []
    return frames[-MAX_FRAMES:]


def _message(event: dict[str, Any]) -> str:
    """``logentry``/``message`` (a string or ``{"formatted", "message"}``): formatted text first."""
    for key in ("logentry", "message"):
        value = event.get(key)
        if isinstance(value, dict):
            value = _text(value.get("formatted"), LONG) or _text(value.get("message"), LONG)
        if text := _text(value, LONG):
            return text
    return ""


def _breadcrumb(crumb: dict[str, Any]) -> dict[str, Any]:
    timestamp = _time(crumb.get("timestamp"))
    data = _dict(crumb.get("data"))
    return _compact({
        "timestamp": _iso(timestamp) if timestamp else None,
        "category": _text(crumb.get("category")),
        "message": _text(crumb.get("message"), LONG),
        "level": _text(crumb.get("level")),
        "data": {k: v for k, v in data.items() if isinstance(k, str)},
    })


def _tags(value: Any) -> dict[str, str]:
    """Keys and scalar values as text (null, object and list values dropped)."""
    tags: dict[str, str] = {}
    for key, tag_value in _pairs(value):
        key, tag_value = _text(key), _text(tag_value)
        if key is not None and tag_value is not None:
            tags[key] = tag_value
    return tags


def _mechanism(exception: dict[str, Any]) -> dict[str, Any] | None:
    mechanism = exception.get("mechanism")
    if not isinstance(mechanism, dict):
        return None
    handled = mechanism.get("handled")
    return {"type": _text(mechanism.get("type")) or "generic",
            "handled": handled if isinstance(handled, bool) else True}


def _is_synthetic_message(exception: dict[str, Any]) -> bool:
    """captureMessage with a stack (JS SDKs' ``attachStacktrace``): an exception without a type whose
    mechanism says ``synthetic``; it carries only the call site's stack."""
    return _dict(exception.get("mechanism")).get("synthetic") is True and not _text(exception.get("type"))


def _level(value: Any) -> str:
    return _LEVELS.get(value.strip().lower(), "error") if isinstance(value, str) else "error"


def translate_event(event: Any, *, project: str, received_at: datetime,
                    sent_at: datetime | None = None) -> list[dict[str, Any]]:
    """One Sentry error or message event (an ``event`` item, a ``/store/`` body) -> one ``error``
    event; [] when it is not a JSON object. ``sent_at`` is the envelope's, for clock-skew correction."""
    if not isinstance(event, dict):
        return []
    exceptions = [e for e in _values(event.get("exception")) if isinstance(e, dict)]
    exception = exceptions[-1] if exceptions else {}
    mechanism = _mechanism(exception)
    if exceptions and _is_synthetic_message(exception):
        exception_type, message = MESSAGE_EXCEPTION_TYPE, _message(event) or _text(exception.get("value"), LONG) or ""
    elif exceptions:
        exception_type = _text(exception.get("type")) or DEFAULT_EXCEPTION_TYPE
        message = _text(exception.get("value"), LONG) or _message(event)
    else:
        exception_type, message = MESSAGE_EXCEPTION_TYPE, _message(event)
    raw_fingerprint = event.get("fingerprint")
    fingerprint = [t for t in map(_text, raw_fingerprint) if t is not None] if isinstance(raw_fingerprint, list) else []
    crumbs = [_breadcrumb(c) for c in _values(event.get("breadcrumbs")) if isinstance(c, dict)]
    error = {
        "exception_type": exception_type,
        "message": message,
        "stacktrace": _frames(exception, event),
        "handled": mechanism["handled"] if mechanism else True,
        "mechanism": mechanism,
        "level": _level(event.get("level")),
        "breadcrumbs": crumbs[-MAX_BREADCRUMBS:],
        "tags": _tags(event.get("tags")),
        "fingerprint": fingerprint or None,
    }
    event_id = _event_uuid(event)
    # without its own time an event happened when sent: on the client clock, which the collector corrects
    timestamp = _time(event.get("timestamp")) or sent_at or received_at
    common = _common(event, event_id, project=project, received_at=received_at, sent_at=sent_at)
    return [{"event_id": str(event_id), "type": "error", "timestamp": _iso(timestamp), **common,
             "error": _compact(error)}]


# ------------------------------------------------------------------ transactions


def _vital_value(measurement: Any) -> float | None:
    """``{"value": 1234, "unit": "millisecond"}`` -> ms (CLS stays unitless); None when unusable."""
    if not isinstance(measurement, dict):
        return None
    value = _number(measurement.get("value"))
    unit = measurement.get("unit")
    factor = _UNIT_TO_MS.get(unit.lower() if isinstance(unit, str) else "")
    if value is None or factor is None or value < 0:
        return None
    return value * factor


def _element(transaction: dict[str, Any], name: str) -> str | None:
    """The SDK's selector of the LCP/INP element: a tag (SDK v7) or trace data (v8)."""
    key = f"{name}.element"
    trace_data = _dict(_dict(_dict(transaction.get("contexts")).get("trace")).get("data"))
    from_tags = next((_text(v) for k, v in _pairs(transaction.get("tags")) if k == key), None)
    return from_tags or _text(trace_data.get(key))


def _span_call(span: dict[str, Any]) -> tuple[datetime, dict[str, Any]] | None:
    """(start, ``api`` payload) of an HTTP or resource span; None for other spans or unusable ones."""
    op = span.get("op")
    if not isinstance(op, str) or not (op in _API_OPS or op.startswith("resource.")):
        return None
    data, tags = _dict(span.get("data")), _dict(span.get("tags"))
    description = _text(span.get("description"), LONG) or ""
    method, url = None, description or None
    if m := _METHOD_AND_URL.fullmatch(description):
        method, url = m.group(1)[:SHORT], m.group(2)
    url = _text(data.get("url"), LONG) or _text(data.get("url.full"), LONG) or _text(data.get("http.url"), LONG) or url
    query = _text(data.get("http.query"), LONG)
    if url and query and "?" not in url:
        url = f"{url}?{query}"[:LONG]
    start, end = _time(span.get("start_timestamp")), _time(span.get("timestamp"))
    if not url or start is None or end is None or end < start:
        return None
    status = _count(data.get("http.response.status_code"))
    if status is None:
        status = _count(tags.get("http.status_code"))
    if status is not None and status > 999:
        status = None
    kind = "api" if op in _API_OPS else "resource"
    initiator = op.split(".", 1)[1][:SHORT] if kind == "resource" else _text(data.get("type"))
    method = method or _text(data.get("http.request.method")) or _text(data.get("http.method")) or "GET"
    size = _count(data.get("http.response_content_length"))
    if size is None:
        size = _count(data.get("http.response_transfer_size"))
    call = {"kind": kind, "url": url, "method": method, "status": status,
            "duration_ms": (end - start).total_seconds() * 1000, "initiator": initiator, "size_bytes": size}
    return start, _compact(call)


def translate_transaction(transaction: Any, *, project: str, received_at: datetime,
                          sent_at: datetime | None = None) -> list[dict[str, Any]]:
    """A ``transaction`` -> ``vital`` events (lcp, fcp, cls, ttfb, fid, inp measurements, at the
    transaction's start) and ``api`` events (HTTP and resource spans, at each span's start).
    Other measurements and spans are dropped; [] when it is not a JSON object."""
    if not isinstance(transaction, dict):
        return []
    tx_id = _event_uuid(transaction)
    start = _time(transaction.get("start_timestamp")) or _time(transaction.get("timestamp")) or sent_at or received_at
    common = _common(transaction, tx_id, project=project, received_at=received_at, sent_at=sent_at)
    events: list[dict[str, Any]] = []
    # newer SDKs put web vitals into the trace data as browser.web_vital.<name>.value; measurements win
    vitals = _vitals_from_attributes(_dict(_dict(_dict(transaction.get("contexts")).get("trace")).get("data")))
    for name, measurement in _dict(transaction.get("measurements")).items():
        value = _vital_value(measurement)
        if isinstance(name, str) and name.lower() in _VITALS and value is not None:
            vitals[name.lower()] = value
    for name, value in vitals.items():
        vital = {"name": _VITALS[name], "value": value, "element": _element(transaction, name)}
        events.append({"event_id": str(uuid.uuid5(ID_NAMESPACE, f"{tx_id.hex}:measurement:{name}")),
                       "type": "vital", "timestamp": _iso(start), **common, "vital": _compact(vital)})
    spans = transaction.get("spans")
    for index, span in enumerate(spans if isinstance(spans, list) else []):
        found = _span_call(span) if isinstance(span, dict) else None
        if found is None:
            continue
        span_start, call = found
        span_id = _text(span.get("span_id")) or f"#{index}"
        events.append({"event_id": str(uuid.uuid5(ID_NAMESPACE, f"{tx_id.hex}:span:{span_id}")),
                       "type": "api", "timestamp": _iso(span_start), **common, "api": call})
    return events


_WEB_VITAL_ATTRIBUTE = re.compile(r"browser\.web_vital\.(\w+)\.value")


def _attribute_values(attributes: Any) -> dict[str, Any]:
    """Span v2 attributes ``{"key": {"value": v, "type": t}}`` (or plain values) -> ``{key: v}``."""
    return {k: (v.get("value") if isinstance(v, dict) else v) for k, v in _dict(attributes).items() if isinstance(k, str)}


def _vitals_from_attributes(values: Mapping[str, Any]) -> dict[str, float]:
    """``browser.web_vital.<name>.value`` attributes (span v2, and newer SDKs' transaction trace
    data) -> {name: value}; milliseconds, CLS unitless."""
    out = {}
    for key, value in values.items():
        m = _WEB_VITAL_ATTRIBUTE.fullmatch(key)
        number = _number(value)
        if m and m.group(1).lower() in _VITALS and number is not None and number >= 0:
            out[m.group(1).lower()] = number
    return out


def _legacy_span(span: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """A span v1 (``op``, ``description``, ``data``, ``timestamp``, ``measurements``) as it is,
    with its web vitals: ``measurements`` and ``browser.web_vital.*`` data."""
    vitals = _vitals_from_attributes(_dict(span.get("data")))
    for name, measurement in _dict(span.get("measurements")).items():
        value = _vital_value(measurement)
        if isinstance(name, str) and name.lower() in _VITALS and value is not None:
            vitals[name.lower()] = value
    return span, vitals


def _v2_span(span: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """A span v2 (``name``, ``end_timestamp``, typed ``attributes``) in the v1 shape the HTTP-span
    reader knows, with its web vitals."""
    values = _attribute_values(span.get("attributes"))
    legacy = {"op": values.get("sentry.op"), "description": span.get("name"), "data": values,
              "start_timestamp": span.get("start_timestamp"), "timestamp": span.get("end_timestamp"),
              "span_id": span.get("span_id"), "trace_id": span.get("trace_id")}
    return legacy, _vitals_from_attributes(values)


def translate_span(payload: Any, *, project: str, received_at: datetime,
                   sent_at: datetime | None = None) -> list[dict[str, Any]]:
    """A ``span`` item: one span (v1, ``application/json``) or ``{"items": [...]}`` (span v2, what
    SDKs with span streaming send, and what browser SDKs use for INP since v8) -> ``vital`` events
    from its web vitals (INP above all: it is reported on its own ``ui.interaction.*`` span, after
    the page load's transaction has gone) and ``api`` events from HTTP and resource spans."""
    if not isinstance(payload, dict):
        return []
    items = payload.get("items")
    spans = [s for s in items if isinstance(s, dict)] if isinstance(items, list) else [payload]
    events: list[dict[str, Any]] = []
    for index, raw in enumerate(spans):
        span, vitals = _v2_span(raw) if isinstance(items, list) else _legacy_span(raw)
        data = _dict(span.get("data"))
        span_id = _text(span.get("span_id")) or f"#{index}"
        trace_id = (_text(span.get("trace_id"), SESSION_ID_MAX) or "").strip()
        source = uuid.uuid5(ID_NAMESPACE, f"span:{trace_id}:{span_id}")
        # span v2 (span streaming) names the transaction in sentry.segment.name
        transaction = (_text(data.get("sentry.segment.name")) or _text(data.get("sentry.transaction"))
                       or _text(data.get("transaction")))
        sdk_name = _text(data.get("sentry.sdk.name"))
        common = _compact({
            "project": project, "received_at": _iso(received_at), "sent_at": _iso(sent_at) if sent_at else None,
            "session_id": trace_id or str(source),
            "user_id": _text(data.get("user.id")),
            "release": _text(data.get("sentry.release")) or _text(data.get("release")),
            "environment": _text(data.get("sentry.environment")) or _text(data.get("environment")) or "production",
            "url": _text(data.get("url.full"), LONG) or _text(data.get("url"), LONG),
            "route": route_of(transaction),
            "user_agent": _text(data.get("user_agent.original")),
            "sdk": {"name": sdk_name, "version": _text(data.get("sentry.sdk.version")) or ""} if sdk_name else None,
        })
        start = _time(span.get("start_timestamp")) or sent_at or received_at
        # the element: browser.web_vital.inp.target / .lcp.element; older SDKs name the INP span after it
        named = _text(span.get("description")) if str(span.get("op") or "").startswith("ui.") else None
        for name, value in vitals.items():
            element = (_text(data.get(f"browser.web_vital.{name}.target"))
                       or _text(data.get(f"browser.web_vital.{name}.element")) or named)
            vital = {"name": _VITALS[name], "value": value, "element": element}
            events.append({"event_id": str(uuid.uuid5(ID_NAMESPACE, f"{source.hex}:measurement:{name}")),
                           "type": "vital", "timestamp": _iso(start), **common, "vital": _compact(vital)})
        found = _span_call(span)
        if found is not None:
            span_start, call = found
            events.append({"event_id": str(uuid.uuid5(ID_NAMESPACE, f"{source.hex}:call")),
                           "type": "api", "timestamp": _iso(span_start), **common, "api": call})
    return events


def translate_session(session: Any, *, project: str, received_at: datetime,
                      sent_at: datetime | None = None) -> list[dict[str, Any]]:
    """``session``/``sessions`` (release health) -> nothing: the contract has no session update,
    and our sessions are built from the events. ``translate_envelope`` counts these items."""
    return []


# ------------------------------------------------------------------ envelopes and store bodies

Translator = Callable[..., list[dict[str, Any]]]
TRANSLATORS: dict[str, Translator] = {
    "event": translate_event,
    "transaction": translate_transaction,
    "span": translate_span,
    "session": translate_session,
    "sessions": translate_session,
}


def _sentry_id(value: Any) -> str | None:
    parsed = _uuid(value)
    return parsed.hex if parsed else None


def translate_envelope(env: SentryEnvelope, *, project: str, received_at: datetime) -> Translation:
    """Every item counted by type; events, transactions and sessions translated; other types (and
    non-JSON payloads such as attachments) skipped. An unreadable item is a problem, not an error:
    the other items still count."""
    out = Translation(event_id=_sentry_id(env.headers.get("event_id")))
    sent_at = _time(env.headers.get("sent_at"))
    for number, item in enumerate(env.items, start=1):
        out.counts[item.type] = out.counts.get(item.type, 0) + 1
        translate = TRANSLATORS.get(item.type)
        content_type = item.headers.get("content_type")
        if translate is None or (isinstance(content_type, str) and "json" not in content_type.lower()):
            continue
        try:
            payload = orjson.loads(item.payload)
        except orjson.JSONDecodeError as exc:
            out.problems.append(f"item {number} ({item.type}): payload is not JSON: {exc}")
            continue
        if not isinstance(payload, dict):
            out.problems.append(f"item {number} ({item.type}): payload is {type(payload).__name__}, not an object")
            continue
        if out.event_id is None and item.type in ("event", "transaction"):
            out.event_id = _sentry_id(payload.get("event_id"))
        out.events.extend(translate(payload, project=project, received_at=received_at, sent_at=sent_at))
    return out


def translate_store(body: Any, *, project: str, received_at: datetime) -> Translation:
    """The legacy ``/store/`` endpoint: one event JSON (a transaction when its ``type`` says so)."""
    item_type = "transaction" if isinstance(body, dict) and body.get("type") == "transaction" else "event"
    out = Translation(counts={item_type: 1})
    if not isinstance(body, dict):
        out.problems.append(f"store body is {type(body).__name__}, not an object")
        return out
    out.event_id = _sentry_id(body.get("event_id"))
    out.events = TRANSLATORS[item_type](body, project=project, received_at=received_at)
    if out.event_id is None and out.events:
        out.event_id = uuid.UUID(out.events[0]["event_id"]).hex
    return out
