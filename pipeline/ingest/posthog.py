"""PostHog SDK payloads -> native contract events. Pure: no I/O, no clock.

Sites already instrumented with PostHog (posthog-js in browsers, posthog-python / posthog-node on
servers) can point their SDK at the collector unchanged. ``decode_body`` turns what they POST to
``/e/``, ``/i/v0/e/``, ``/batch/``, ``/capture/``, ``/track/`` or ``/engage/`` into raw PostHog
events plus the project token; ``translate_batch`` maps each PostHog event onto zero or more native
events. Every dict produced validates with ``EVENT_ADAPTER`` (strings are cut to the contract's
lengths); scrubbing and validation still happen in the producer.

Bodies (PostHog's capture server is the reference for what is accepted):
  * JSON: one event, an array of events (older posthog-js), or ``{"api_key"|"token", "batch": [...],
    "sent_at"}`` (posthog-js today, posthog-python's ``/batch/``).
  * gzip: ``Content-Encoding: gzip`` (posthog-python ``gzip=True``), ``?compression=gzip-js|gzip``
    (posthog-js until mid-2026) or no hint at all (current posthog-js sends gzip as ``text/plain``
    without a parameter), so gzip is recognized by its magic bytes. Inflated with a cap.
  * base64: ``?compression=base64`` (posthog-js ``sendBeacon``), or a form body ``data=<base64 or
    JSON>`` (``application/x-www-form-urlencoded``, older posthog-js), or ``GET ?data=``; the
    capture server also decodes a body that merely looks like base64, and so does this.
  * lz64 (lz-string, a legacy posthog-js encoding) is refused with 415; no current SDK sends it.

Mapping of one PostHog event:
  * ``$pageview`` -> action pageview.
  * ``$pageleave`` -> action visibility ``hidden`` (the page stops being seen, so a page's visible
    time ends at the leave rather than at the next page view or session end), plus an action scroll
    with the page's ``$prev_pageview_max_scroll_percentage`` when sent: posthog-js sends no scroll
    events, this is the only scroll depth it reports.
  * ``$autocapture``: ``click`` -> action click (selector/tag/text from the clicked element, the
    first of ``$elements_chain`` or ``$elements``; no ``observed``: autocapture does not watch what
    follows). ``submit`` -> form_submit; ``change`` inside a form -> form_start (the first edit of a
    form; the sessionizer keeps one per form); both name the form by the same selector. Other event
    types (or a change outside a form) are skipped.
  * ``$rageclick`` -> action custom named ``$rageclick`` with the selector in ``properties``, and
    nothing else: posthog-js sends it *in addition to* the third ``$autocapture`` click, and the
    pipeline detects rage clicks itself from those clicks; a fake click would double count.
  * ``$dead_click`` (posthog-js dead-clicks autocapture) -> action click whose ``observed`` says no
    DOM mutation, navigation or scroll, watched for max(``$dead_click_absolute_delay_ms``, the
    pipeline's window): posthog-js only sends it once its own thresholds judged the click dead, and
    this keeps ``sessions.clicks.dead_click_kind`` agreeing (``dead_click_window_ms`` is that
    window). The SDK's ``$dead_click_*`` delays and timeouts stay in ``properties``. When
    autocapture also took the click (buttons, links: not plain text or images), one physical click
    arrives as two native clicks with the same selector and time; the sessionizer counts them as
    one (``pipeline.sessions.clicks.same_click``).
  * ``$exception`` -> error, from ``$exception_list[0]`` (the thrown exception; the rest are its
    causes; frames put outermost first whatever order the SDK used, see ``outermost_first``) or the
    older ``$exception_type``/``$exception_message``/``$exception_stack_trace_raw``;
    ``$exception_steps`` -> breadcrumbs.
  * ``$web_vitals`` -> one vital per ``$web_vitals_<NAME>_value`` (LCP, INP, CLS, FCP, TTFB), with
    rating, navigation type, element and time from ``$web_vitals_<NAME>_event`` when sent.
  * ``$identify`` -> action custom named ``$identify``, so the link of ``$anon_distinct_id``
    (anonymous_id) to the new ``distinct_id`` (user_id) is kept.
  * other ``$`` events (``$set``, ``$create_alias``, ``$groupidentify``, ``$feature_flag_called``,
    ``$snapshot``, ``$heatmap``, ...) and ``survey *`` events -> nothing (counted as skipped).
  * any other name -> action custom with that name and the event's own properties (no ``$`` keys,
    no ``token``/``distinct_id``), at most 50, strings and large nested values cut to 1 KB.

Envelope:
  * event_id: ``uuid``; when missing or invalid, a uuid5 of (distinct_id, timestamp, event, offset),
    so a retried batch gives the same ids. A second native event of one PostHog event (the scroll
    of a ``$pageleave``, each vital) gets a uuid5 of the first id and its kind.
  * timestamp: ``timestamp``; else ``offset`` ms before the batch's sent_at (else received_at); else
    sent_at or received_at. sent_at is passed on for the pipeline's clock-skew correction.
  * session_id: ``$session_id``; server SDKs usually have none, then ``distinct_id`` (the
    sessionizer still splits after 30 idle minutes); a uuid5 of either when longer than 128.
  * user: ``distinct_id`` is the user_id when the event says the person is identified
    (``$is_identified`` true, an ``$identify`` event, or ``$is_identified`` absent on a server SDK's
    event: ``$is_server`` or a ``$lib`` that is not a device SDK such as posthog-js, whose
    distinct_id is the application's user id unless the SDK marks it anonymous:
    ``$process_person_profile`` false, ``$device_id`` equal to it, or a browser anonymous id's shape,
    UUIDv7 or posthog-js's older five-group hex id); anonymous_id is then
    ``$anon_distinct_id`` or ``$device_id``. A ``$user_id`` with ``$is_identified`` absent is the
    user_id. Otherwise ``distinct_id`` is the anonymous_id. An event without distinct_id is a problem
    (PostHog's capture rejects it too).
  * url ``$current_url``; route ``$pathname`` only without a URL (a route is a pattern, PostHog has
    none, and the page is the URL's path anyway); user_agent ``$raw_user_agent``/``$useragent``;
    sdk ``$lib``/``$lib_version``; environment ``$environment``/``environment`` (default
    production); release ``$app_version``/``$release``/``release``, else ``$release_id`` (the
    PostHog release an SDK build was registered as). consent is true: PostHog SDKs send nothing after
    an opt-out.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import orjson

from pipeline.ingest.compression import GZIP_MAGIC, InflateError, inflate_deflate, inflate_gzip
from pipeline.sessions.clicks import DeadClickRule

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
SHORT = 512  # ShortText in the contract
LONG = 16_384  # LongText
MAX_ID = 128  # session_id
MAX_DISTINCT_ID = 200  # PostHog trims distinct ids to 200 characters
MAX_CUSTOM_PROPERTIES = 50
MAX_PROPERTY_CHARS = 1024
MAX_FRAMES = 250
MAX_BREADCRUMBS = 200
MAX_FINGERPRINT_PARTS = 20
DEAD_CLICK_WINDOW_MS = DeadClickRule().window_ms

FORM_TYPE = "application/x-www-form-urlencoded"
_GZIP_HINTS = ("gzip", "gzip-js", "x-gzip")
_BASE64_HINTS = ("base64", "b64")
_LZ64_HINTS = ("lz64", "lz-string")
_MAX_FORM_FIELDS = 16
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=_\-\s]+")

# Deterministic ids: uuid5 names under this namespace (and under an event's own id for its extras).
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "frontend-pulse/ingest/posthog")

INTERACTIVE_TAGS = frozenset({"a", "button", "input", "select", "textarea"})
_LEVELS = {"fatal": "fatal", "critical": "fatal", "error": "error", "warning": "warning", "warn": "warning",
           "info": "info", "log": "info", "debug": "debug"}
_RATINGS = ("good", "needs-improvement", "poor")
VITALS = ("LCP", "INP", "CLS", "FCP", "TTFB")
_INTERNAL_PROPERTIES = frozenset({"token", "distinct_id", "api_key"})


# ------------------------------------------------------------------ decoding (bytes -> PostHog events)


@dataclass(frozen=True)
class DecodeProblem:
    """A body we refuse: the HTTP status to answer (400, 413, 415) and a message naming the problem."""

    status: int
    message: str


@dataclass(frozen=True)
class PosthogBatch:
    """The raw PostHog events of one request, its project token and the client's send time."""

    api_key: str | None
    events: list[Any]
    sent_at: datetime | None = None


_LZ64_PROBLEM = DecodeProblem(415, "lz64 (lz-string) is a legacy posthog-js compression and is not supported; "
                                   "send gzip-js, base64 or plain JSON")


def decode_body(body: bytes, *, content_type: str, content_encoding: str | None, query: Mapping[str, str],
                max_bytes: int = DEFAULT_MAX_BYTES) -> PosthogBatch | DecodeProblem:
    """Unwrap gzip / form / base64 layers the way PostHog's capture server does, then read the JSON.

    ``max_bytes`` caps the body before and after inflating (a gzip bomb costs at most that much).
    """
    hint = query.get("compression", "").strip().lower()
    encoding = (content_encoding or "").strip().lower()
    if hint in _LZ64_HINTS or encoding in _LZ64_HINTS:
        return _LZ64_PROBLEM
    if encoding not in ("", "identity", *_GZIP_HINTS):
        return DecodeProblem(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    if hint not in ("", *_GZIP_HINTS, *_BASE64_HINTS):
        return DecodeProblem(415, f"unsupported compression {hint!r}; use gzip-js, base64 or none")

    data = body if body.strip() else query.get("data", "").encode()  # legacy GET /e/?data=...
    if not data.strip():
        return DecodeProblem(400, "empty body: expected PostHog events as JSON, gzip or base64")
    if len(data) > max_bytes:
        return DecodeProblem(413, f"body of {len(data)} bytes exceeds the limit of {max_bytes}")
    inflated = _maybe_gunzip(data, max_bytes)
    if isinstance(inflated, DecodeProblem):
        return inflated
    data = inflated
    if FORM_TYPE in content_type.lower() or data.startswith(b"data="):
        form = _form_data(data)
        if isinstance(form, DecodeProblem):
            return form
        data, form_hint = form
        if form_hint in _LZ64_HINTS:
            return _LZ64_PROBLEM
        hint = hint or form_hint
    stripped = data.lstrip()
    if hint in _BASE64_HINTS or (stripped[:1] not in (b"{", b"[") and _BASE64_TEXT.fullmatch(data)):
        decoded = _base64(data)
        if decoded is None:
            return DecodeProblem(400, f"body is not valid base64 (compression={hint})" if hint in _BASE64_HINTS
                                 else "body is neither JSON nor valid base64")
        inflated = _maybe_gunzip(decoded, max_bytes)  # the capture server also takes base64 of gzip
        if isinstance(inflated, DecodeProblem):
            return inflated
        data = inflated
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return DecodeProblem(400, f"body is not JSON: {exc}")
    return _batch(doc, query)


def _maybe_gunzip(data: bytes, limit: int) -> bytes | DecodeProblem:
    """Inflate when the bytes are gzip (whatever the hints say); at most ``limit`` bytes come out."""
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return inflate_gzip(data, limit)
    except InflateError as exc:
        return DecodeProblem(exc.status, str(exc))


def _form_data(data: bytes) -> tuple[bytes, str] | DecodeProblem:
    """The ``data`` field of a urlencoded form and its ``compression`` field (older posthog-js)."""
    try:
        fields = parse_qs(data.decode("utf-8"), keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        return DecodeProblem(400, "form body is not UTF-8")
    except ValueError:
        return DecodeProblem(400, f"form body has more than {_MAX_FORM_FIELDS} fields")
    payload = fields.get("data", [""])[0]
    if not payload:
        return DecodeProblem(400, "form body has no data field")
    return payload.encode(), fields.get("compression", [""])[0].strip().lower()


def _base64(data: bytes) -> bytes | None:
    """Standard or URL-safe base64; a '+' that form decoding turned into a space is restored."""
    text = b"".join(data.strip().replace(b" ", b"+").split()).replace(b"-", b"+").replace(b"_", b"/")
    text += b"=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _batch(doc: Any, query: Mapping[str, str]) -> PosthogBatch | DecodeProblem:
    if isinstance(doc, list):
        events, container = doc, {}
    elif isinstance(doc, dict) and "batch" in doc:
        if not isinstance(doc["batch"], list):
            return DecodeProblem(400, '"batch" must be a JSON array of events')
        events, container = doc["batch"], doc
    elif isinstance(doc, dict):
        events, container = [doc], doc
    else:
        return DecodeProblem(400, f"expected a JSON object or array, got {type(doc).__name__}")
    api_key = _text(container.get("api_key")) or _text(container.get("token"))
    if api_key is None:
        tokens = {token for event in events if (token := _event_token(event))}
        if len(tokens) > 1:
            return DecodeProblem(400, f"the events carry {len(tokens)} different project tokens; send one per request")
        api_key = next(iter(tokens), None)
    sent_at = _parse_time(container.get("sent_at")) or _query_sent_at(query)
    return PosthogBatch(api_key=api_key, events=events, sent_at=sent_at)


def _event_token(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    props = event.get("properties")
    from_props = props.get("token") if isinstance(props, dict) else None
    return next(filter(None, map(_text, (event.get("token"), event.get("api_key"), event.get("$token"),
                                         from_props))), None)


def _query_sent_at(query: Mapping[str, str]) -> datetime | None:
    """posthog-js puts the send time in ``_`` (or ``sent_at``) as epoch ms; seconds (old SDKs) are ignored."""
    raw = query.get("sent_at") or query.get("_")
    if not raw or not (raw.isascii() and raw.isdigit()) or len(raw) > 16:
        return None
    sent_at = _from_epoch_ms(int(raw))
    return sent_at if sent_at is not None and sent_at.year > 2020 else None


V1_PATH = "/i/v1/analytics/events"
# capture v1 ``options`` -> the legacy property each stands for
_V1_OPTIONS = {"process_person_profile": "$process_person_profile", "cookieless_mode": "$cookieless_mode",
               "disable_skew_correction": "$ignore_sent_at", "product_tour_id": "$product_tour_id"}


def decode_v1_body(body: bytes, *, content_encoding: str | None, headers: Mapping[str, str],
                   max_bytes: int = DEFAULT_MAX_BYTES) -> PosthogBatch | DecodeProblem:
    """Capture v1 (``POST /i/v1/analytics/events``, posthog-python/-go/-rs ``capture_mode="v1"``).

    The project key is a Bearer token (``Authorization: Bearer phc_...``), not in the body; the body is
    ``{"created_at", "batch": [{"event", "uuid", "distinct_id", "timestamp", "options": {...},
    "properties": {...}, "session_id"?, "window_id"?}], "historical_migration"?}``, optionally gzip or
    deflate. ``$lib``/``$lib_version`` come from the ``PostHog-Sdk-Info`` header (``posthog-python/7.9.1``),
    the send time from ``PostHog-Request-Timestamp`` (``created_at`` stays the same across retries, so
    it is no send time). Each event is rewritten into the legacy shape (``session_id`` ->
    ``$session_id``, ``options`` -> their ``$`` properties) and translated like any other.
    """
    encoding = (content_encoding or "").strip().lower()
    if not body.strip():
        return DecodeProblem(400, "empty body: expected a capture v1 batch")
    if len(body) > max_bytes:
        return DecodeProblem(413, f"body of {len(body)} bytes exceeds the limit of {max_bytes}")
    try:
        if encoding in _GZIP_HINTS or body[:2] == GZIP_MAGIC:
            body = inflate_gzip(body, max_bytes)
        elif encoding == "deflate":
            body = inflate_deflate(body, max_bytes)
        elif encoding not in ("", "identity"):
            return DecodeProblem(415, f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none")
    except InflateError as exc:
        return DecodeProblem(exc.status, str(exc))
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return DecodeProblem(400, f"body is not JSON: {exc}")
    if not isinstance(doc, dict) or not isinstance(doc.get("batch"), list):
        return DecodeProblem(400, 'expected {"batch": [...]} (capture v1)')
    auth = headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    api_key = _text(token.strip()) if scheme.lower() == "bearer" else None
    lib_name, _, lib_version = headers.get("PostHog-Sdk-Info", "").strip().partition("/")
    lib = {"$lib": lib_name, "$lib_version": lib_version} if lib_name else {}
    events = [_legacy_event(event, lib) for event in doc["batch"]]
    return PosthogBatch(api_key=api_key, events=events, sent_at=_parse_time(headers.get("PostHog-Request-Timestamp")))


def _legacy_event(event: Any, lib: Mapping[str, str]) -> Any:
    """A capture v1 event in the legacy shape ``translate_event`` reads; anything else unchanged."""
    if not isinstance(event, dict):
        return event
    props = dict(event["properties"]) if isinstance(event.get("properties"), dict) else {}
    options = event.get("options") if isinstance(event.get("options"), dict) else {}
    for option, prop in _V1_OPTIONS.items():
        if option in options:
            props.setdefault(prop, options[option])
    for top, prop in (("session_id", "$session_id"), ("window_id", "$window_id")):
        if isinstance(event.get(top), str):
            props.setdefault(prop, event[top])
    for key, value in lib.items():
        props.setdefault(key, value)
    return {**event, "properties": props}


def v1_results(batch: PosthogBatch, dropped: set[int]) -> dict[str, dict[str, str]]:
    """The capture v1 answer: per event uuid ``ok``, or ``drop`` for events that could not be read (they
    are dead letters, so a retry would not help)."""
    results: dict[str, dict[str, str]] = {}
    for index, event in enumerate(batch.events):
        event_uuid = event.get("uuid") if isinstance(event, dict) else None
        if isinstance(event_uuid, str):
            results[event_uuid] = {"result": "drop" if index in dropped else "ok"}
    return results


# ------------------------------------------------------------------ translation (PostHog event -> native)


class UntranslatableEvent(ValueError):
    """A PostHog event too malformed to map: not an object, no name, no distinct_id, a click without element."""


@dataclass
class Translation:
    """Native events of one batch. ``counts``: PostHog events read, per name; ``skipped``: those of them
    that map to nothing; ``problems``: events that could not be read (not counted)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    dropped: set[int] = field(default_factory=set)
    """Indexes (in the batch) of the events behind ``problems``."""


def translate_batch(batch: PosthogBatch, *, project: str, received_at: datetime,
                    dead_click_window_ms: float = DEAD_CLICK_WINDOW_MS) -> Translation:
    """Translate every event; a bad event becomes a problem line, never an exception."""
    out = Translation()
    for index, event in enumerate(batch.events):
        try:
            native = translate_event(event, project=project, received_at=received_at, sent_at=batch.sent_at,
                                     dead_click_window_ms=dead_click_window_ms)
        except UntranslatableEvent as exc:
            out.problems.append(f"event {index}: {exc}")
            out.dropped.add(index)
            continue
        except Exception as exc:  # noqa: BLE001 - the batch boundary: one hostile event must not cost the rest
            out.problems.append(f"event {index}: cannot translate ({type(exc).__name__}: {exc})")
            out.dropped.add(index)
            continue
        name = event["event"][:SHORT]  # translate_event took it: a dict with a string name
        out.counts[name] = out.counts.get(name, 0) + 1
        if native:
            out.events.extend(native)
        else:
            out.skipped[name] = out.skipped.get(name, 0) + 1
    return out


def translate_event(event: Any, *, project: str, received_at: datetime, sent_at: datetime | None,
                    dead_click_window_ms: float = DEAD_CLICK_WINDOW_MS) -> list[dict[str, Any]]:
    """The native events for one PostHog event ([] for events we do not map); see the module docstring."""
    if not isinstance(event, dict):
        raise UntranslatableEvent(f"expected a JSON object, got {type(event).__name__}")
    name = event.get("event")
    if not isinstance(name, str) or not name:
        raise UntranslatableEvent('no "event" name')
    handler = _HANDLERS.get(name)
    if handler is None:
        if name.startswith("$") or name.startswith("survey "):
            return []
        handler = _custom
    props = event.get("properties")
    source = _source(event, name, props if isinstance(props, dict) else {}, project=project,
                     received_at=received_at, sent_at=sent_at, dead_click_window_ms=dead_click_window_ms)
    return handler(source)


@dataclass(frozen=True, slots=True)
class _Source:
    """One PostHog event: its envelope (shared by the native events made from it) and properties."""

    name: str
    props: dict[str, Any]
    envelope: dict[str, Any]
    event_id: uuid.UUID
    dead_click_window_ms: float

    def emit(self, type_: str, payload: dict[str, Any], *, extra: str = "",
             timestamp: datetime | None = None) -> dict[str, Any]:
        """A native event; ``extra`` names a second event of the same PostHog event (its own id)."""
        event = dict(self.envelope, type=type_)
        event[type_] = payload
        event["event_id"] = str(uuid.uuid5(self.event_id, extra) if extra else self.event_id)
        if timestamp is not None:
            event["timestamp"] = timestamp.isoformat()
        return event


def _source(event: dict[str, Any], name: str, props: dict[str, Any], *, project: str, received_at: datetime,
            sent_at: datetime | None, dead_click_window_ms: float) -> _Source:
    distinct_id = _distinct_id(event, props)
    if distinct_id is None:
        raise UntranslatableEvent(f"{name!r} has no distinct_id")
    user_id, anonymous_id = _identity(name, distinct_id, props)
    url = _text(props.get("$current_url"), LONG)
    lib = _first_text(props, ("$lib",))
    envelope: dict[str, Any] = {
        "project": project,
        "timestamp": _timestamp(event, sent_at, received_at).isoformat(),
        "received_at": received_at.isoformat(),
        "sent_at": sent_at.isoformat() if sent_at else None,
        "session_id": _bounded_id(_text(props.get("$session_id")) or distinct_id),
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "release": _first_text(props, ("$app_version", "$release", "release", "$release_id")),
        "environment": _first_text(props, ("$environment", "environment")) or "production",
        "url": url,
        "route": None if url else _first_text(props, ("$pathname",)),
        "user_agent": _first_text(props, ("$raw_user_agent", "$useragent")),
        "sdk": {"name": lib, "version": _first_text(props, ("$lib_version",)) or "unknown"} if lib else None,
        "consent": True,
    }
    envelope = {k: v for k, v in envelope.items() if v is not None}
    return _Source(name, props, envelope, _event_id(event, distinct_id), dead_click_window_ms)


def _distinct_id(event: dict[str, Any], props: dict[str, Any]) -> str | None:
    """Top-level ``distinct_id`` / ``$distinct_id`` (server SDKs) or ``properties.distinct_id`` (posthog-js)."""
    for raw in (event.get("distinct_id"), event.get("$distinct_id"), props.get("distinct_id")):
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = str(raw)
        if isinstance(raw, str) and raw.strip():
            return raw.strip()[:MAX_DISTINCT_ID]
    return None


def _identity(name: str, distinct_id: str, props: dict[str, Any]) -> tuple[str | None, str | None]:
    """(user_id, anonymous_id); see "user" in the module docstring."""
    identified = props.get("$is_identified")
    if name == "$identify" or identified is True or (
            identified is None and _server_side(props) and not _marked_anonymous(distinct_id, props)):
        user_id = distinct_id
        anonymous_id = _first_text(props, ("$anon_distinct_id", "$device_id"))
    elif identified is None and (stated := _first_text(props, ("$user_id",))):
        user_id, anonymous_id = stated, distinct_id
    else:
        user_id, anonymous_id = None, distinct_id
    return user_id, (anonymous_id if anonymous_id != user_id else None)


CLIENT_LIBS = frozenset({"web", "posthog-js", "posthog-js-lite", "posthog-react-native", "posthog-ios",
                         "posthog-android", "posthog-flutter", "posthog-unity", "posthog-web"})
"""``$lib`` of SDKs running on the user's device: they make anonymous ids and say ``$is_identified``."""

# posthog-js anonymous ids: UUIDv7 (current) or the older five-group hex "UUIDT" of uneven lengths
_ANONYMOUS_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE)
_ANONYMOUS_LEGACY = re.compile(r"[0-9a-f]{12,16}-[0-9a-f]{12,16}-[0-9a-f]{6,8}-[0-9a-f]{4,6}-[0-9a-f]{12,16}",
                               re.IGNORECASE)


def _server_side(props: Mapping[str, Any]) -> bool:
    """A server SDK's event: ``$is_server``, or a ``$lib`` that is not a device SDK (posthog-node, -go, ...)."""
    if props.get("$is_server") is True:
        return True
    lib = _first_text(props, ("$lib",))
    return lib is not None and lib.lower() not in CLIENT_LIBS


def _marked_anonymous(distinct_id: str, props: Mapping[str, Any]) -> bool:
    """The SDK says the distinct_id is no person: ``$process_person_profile`` false, ``$device_id`` equal
    to it, or it has the shape of a browser's anonymous id (passed through by the server)."""
    if props.get("$process_person_profile") is False or props.get("$device_id") == distinct_id:
        return True
    return bool(_ANONYMOUS_UUID7.fullmatch(distinct_id) or _ANONYMOUS_LEGACY.fullmatch(distinct_id))


def _event_id(event: dict[str, Any], distinct_id: str) -> uuid.UUID:
    raw = event.get("uuid")
    if isinstance(raw, str):
        try:
            return uuid.UUID(raw)
        except ValueError:
            pass
    name = orjson.dumps([distinct_id, event.get("timestamp"), event.get("event"), event.get("offset")],
                        default=str)
    return uuid.uuid5(_ID_NAMESPACE, name.decode())


def _timestamp(event: dict[str, Any], sent_at: datetime | None, received_at: datetime) -> datetime:
    ts = _parse_time(event.get("timestamp"))
    if ts is not None:
        return ts
    offset = _number(event.get("offset"))
    anchor = sent_at or received_at
    if offset is not None:
        try:
            return anchor - timedelta(milliseconds=offset)
        except OverflowError:
            pass
    return anchor


def _bounded_id(value: str) -> str:
    return value if len(value) <= MAX_ID else str(uuid.uuid5(_ID_NAMESPACE, value))


# ------------------------------------------------------------------ per-event handlers


def _action(source: _Source, payload: dict[str, Any], *, extra: str = "") -> dict[str, Any]:
    return source.emit("action", {k: v for k, v in payload.items() if v is not None}, extra=extra)


def _pageview(source: _Source) -> list[dict[str, Any]]:
    return [_action(source, {"kind": "pageview"})]


def _pageleave(source: _Source) -> list[dict[str, Any]]:
    out = [_action(source, {"kind": "visibility", "visibility": "hidden"})]
    depth = _number(source.props.get("$prev_pageview_max_scroll_percentage"))  # 0..1
    if depth is not None:
        out.append(_action(source, {"kind": "scroll", "scroll_depth": min(max(depth * 100, 0.0), 100.0)},
                           extra="scroll"))
    return out


def _autocapture(source: _Source) -> list[dict[str, Any]]:
    event_type = source.props.get("$event_type")
    if event_type == "click":
        return [_action(source, _click(source))]
    chain = _elements(source.props)
    form = next((i for i, element in enumerate(chain) if element.tag == "form"), None)
    if event_type == "submit" and chain:
        return [_action(source, {"kind": "form_submit", "form": _selector(chain[form or 0:])[:SHORT]})]
    if event_type == "change" and form is not None:
        return [_action(source, {"kind": "form_start", "form": _selector(chain[form:])[:SHORT]})]
    return []


def _rageclick(source: _Source) -> list[dict[str, Any]]:
    click = _click(source)
    return [_action(source, {"kind": "custom", "name": "$rageclick", "selector": click["selector"],
                             "tag": click.get("tag"), "text": click.get("text"),
                             "properties": {"selector": click["selector"]}})]


def _dead_click(source: _Source) -> list[dict[str, Any]]:
    props = source.props
    watched = max(_number(props.get("$dead_click_absolute_delay_ms")) or 0.0, source.dead_click_window_ms)
    details = {k: v for k, v in props.items()
               if k.startswith("$dead_click_") and (v is None or isinstance(v, (bool, int, float)))}
    return [_action(source, {**_click(source), "properties": details,
                             "observed": {"dom_mutation_ms": None, "navigated": False, "scrolled": False,
                                          "observed_for_ms": watched}})]


def _exception(source: _Source) -> list[dict[str, Any]]:
    props = source.props
    exceptions = props.get("$exception_list")
    first = exceptions[0] if isinstance(exceptions, list) and exceptions and isinstance(exceptions[0], dict) else None
    if first is not None:
        mechanism = first.get("mechanism") if isinstance(first.get("mechanism"), dict) else {}
        handled = mechanism.get("handled") if isinstance(mechanism.get("handled"), bool) else True
        stacktrace = first.get("stacktrace") if isinstance(first.get("stacktrace"), dict) else {}
        payload: dict[str, Any] = {
            "exception_type": _text(first.get("type"), SHORT) or "Error",
            "message": _text(first.get("value"), LONG) or "",
            "stacktrace": _frames(without_go_panic_handler(outermost_first(
                stacktrace.get("frames"), _first_text(props, ("$lib",)), _first_text(props, ("$lib_version",))))),
            "handled": handled,
            "mechanism": {"type": _text(mechanism.get("type"), SHORT) or "generic", "handled": handled},
        }
    else:
        payload = {"exception_type": _first_text(props, ("$exception_type",)) or "Error",
                   "message": _text(props.get("$exception_message"), LONG) or "",
                   "stacktrace": _raw_stack(props.get("$exception_stack_trace_raw"))}
    level = props.get("$exception_level")
    payload["level"] = _LEVELS.get(level.lower(), "error") if isinstance(level, str) else "error"
    payload["breadcrumbs"] = _breadcrumbs(props.get("$exception_steps"))
    fingerprint = props.get("$exception_fingerprint")
    if isinstance(fingerprint, str) and fingerprint:
        payload["fingerprint"] = [fingerprint[:SHORT]]
    elif isinstance(fingerprint, list) and fingerprint:
        payload["fingerprint"] = [str(part)[:SHORT] for part in fingerprint[:MAX_FINGERPRINT_PARTS]]
    return [source.emit("error", payload)]


def _web_vitals(source: _Source) -> list[dict[str, Any]]:
    out = []
    for name in VITALS:
        value = _number(source.props.get(f"$web_vitals_{name}_value"))
        if value is None or value < 0:
            continue
        detail = source.props.get(f"$web_vitals_{name}_event")
        detail = detail if isinstance(detail, dict) else {}
        attribution = detail.get("attribution") if isinstance(detail.get("attribution"), dict) else {}
        payload = {
            "name": name,
            "value": value,
            "rating": detail.get("rating") if detail.get("rating") in _RATINGS else None,
            "navigation_type": _text(detail.get("navigationType"), SHORT),
            "element": _first_text(attribution, ("target", "element", "interactionTarget", "largestShiftTarget")),
        }
        out.append(source.emit("vital", {k: v for k, v in payload.items() if v is not None}, extra=f"vital:{name}",
                               timestamp=_from_epoch_ms(_number(detail.get("timestamp")))))
    return out


def _identify(source: _Source) -> list[dict[str, Any]]:
    return [_action(source, {"kind": "custom", "name": "$identify"})]


def _custom(source: _Source) -> list[dict[str, Any]]:
    return [_action(source, {"kind": "custom", "name": source.name[:SHORT],
                             "properties": _custom_properties(source.props)})]


_HANDLERS: dict[str, Callable[[_Source], list[dict[str, Any]]]] = {
    "$pageview": _pageview,
    "$pageleave": _pageleave,
    "$autocapture": _autocapture,
    "$rageclick": _rageclick,
    "$dead_click": _dead_click,
    "$exception": _exception,
    "$web_vitals": _web_vitals,
    "$identify": _identify,
}
TRANSLATED_EVENTS = frozenset(_HANDLERS)
"""The ``$`` event names that become native events (any other name without ``$`` is a custom action)."""


# ------------------------------------------------------------------ elements (autocapture)


@dataclass(frozen=True, slots=True)
class _Element:
    tag: str
    id: str | None = None
    classes: tuple[str, ...] = ()
    text: str | None = None
    role: str | None = None


# Elements are separated by ';' outside quoted values; tag and classes end at the first ':' that
# starts an attribute (classes may contain ':', e.g. "hover:bg-blue"); values escape '"' as '\"'.
_CHAIN_ELEMENT = re.compile(r'(?:[^;"]|"(?:\\.|[^"\\])*")+')
_ATTRIBUTES_START = re.compile(r":(?=[A-Za-z0-9_-]*=)")
_ATTRIBUTE = re.compile(r'([^="]+)="((?:\\.|[^"\\])*)"')


def _elements(props: dict[str, Any]) -> list[_Element]:
    """The clicked element first, then its ancestors: from ``$elements_chain``, else ``$elements``."""
    chain = props.get("$elements_chain")
    if isinstance(chain, str) and chain.strip():
        return list(_parse_chain(chain) if len(chain) > MAX_CACHED_CHAIN else _parse_chain_cached(chain))
    raw = props.get("$elements")
    if isinstance(raw, list):
        return [_dict_element(e) for e in raw if isinstance(e, dict)]
    return []


# A session clicks the same few elements again and again: their chains are parsed once and
# remembered (parsing is a pure function of the text; the elements are immutable).
MAX_CACHED_CHAIN = 4096


def _parse_chain(chain: str) -> tuple[_Element, ...]:
    return tuple(_chain_element(m.group(0)) for m in _CHAIN_ELEMENT.finditer(chain) if m.group(0).strip())


_parse_chain_cached = functools.lru_cache(maxsize=4096)(_parse_chain)


def _chain_element(text: str) -> _Element:
    start = _ATTRIBUTES_START.search(text)
    head, tail = (text[:start.start()], text[start.end():]) if start else (text, "")
    tag, *classes = head.strip().split(".")
    attrs = {m.group(1): m.group(2).replace('\\"', '"') for m in _ATTRIBUTE.finditer(tail)}
    return _Element(tag.lower(), attrs.get("attr__id") or attrs.get("attr_id") or None,
                    tuple(sorted(c for c in classes if c)), attrs.get("text") or None, attrs.get("attr__role"))


def _dict_element(raw: dict[str, Any]) -> _Element:
    classes = raw.get("attr__class") or raw.get("classes")
    classes = classes.split() if isinstance(classes, str) else classes if isinstance(classes, list) else ()
    return _Element((_text(raw.get("tag_name")) or "").lower(), _text(raw.get("attr__id")),
                    tuple(sorted(c for c in classes if isinstance(c, str) and c)), _text(raw.get("$el_text")),
                    _text(raw.get("attr__role")))


def _selector(chain: list[_Element]) -> str:
    """``tag#id`` when the element has an id, else ``tag.classes`` under the nearest ancestor with an id.

    Stable across clicks (nth-child and ancestors' classes change with the page), so rage clicks on
    one button share one selector.
    """
    target = chain[0]
    if target.id:
        return f"{target.tag or '*'}#{target.id}"[:LONG]
    own = (target.tag or "*") + "".join(f".{c}" for c in target.classes)
    anchor = next((element for element in chain[1:] if element.id), None)
    return (f"{anchor.tag}#{anchor.id} {own}" if anchor else own)[:LONG]


def _click(source: _Source) -> dict[str, Any]:
    """Selector, tag, text, coordinates and interactivity of the clicked element."""
    chain = _elements(source.props)
    if not chain:
        raise UntranslatableEvent(f"{source.name!r} without $elements_chain or $elements")
    target = chain[0]
    props = source.props
    return {
        "kind": "click",
        "selector": _selector(chain),
        "tag": target.tag[:SHORT] or None,
        "text": (target.text or _text(props.get("$el_text")) or "")[:SHORT] or None,
        "x": _first_number(props, ("$mouse_x", "$x", "clientX", "x")),
        "y": _first_number(props, ("$mouse_y", "$y", "clientY", "y")),
        # A click on a span inside a link or button activates the link or button.
        "interactive": target.tag in INTERACTIVE_TAGS or any(
            element.tag in ("a", "button") or element.role == "button" for element in chain),
    }


# ------------------------------------------------------------------ exceptions


_INNERMOST_FIRST_BEFORE = {"posthog-go": (1, 20, 0)}
"""SDK releases that sent ``$exception_list`` frames innermost first (before PostHog's canonical order)."""
_ENTRY_FUNCTIONS = frozenset({"main", "main.main", "runtime.main", "runtime.goexit", "<module>", "_start",
                              "__libc_start_main", "start_thread", "java.lang.Thread.run", "Thread.run",
                              "threading.Thread.run", "processTicksAndRejections", "Module._compile"})
_CAPTURE_FUNCTIONS = frozenset({"runtime.Callers", "runtime/debug.Stack", "debug.Stack",
                                "java.lang.Thread.getStackTrace", "Thread.getStackTrace", "captureException",
                                "capture_exception", "CaptureException"})


def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text or "")[:3])


def _frame_name(frame: Any) -> str:
    if not isinstance(frame, dict):
        return ""
    function = frame.get("function") if isinstance(frame.get("function"), str) else ""
    module = frame.get("module") if isinstance(frame.get("module"), str) else ""
    return f"{module}.{function}" if module and function and not function.startswith(module) else function


def _is_one_of(frame: Any, names: frozenset[str]) -> bool:
    name = _frame_name(frame)
    return name in names or (isinstance(frame, dict) and frame.get("function") in names)


def outermost_first(frames: Any, lib: str | None, lib_version: str | None) -> Any:
    """``$exception_list`` frames in Sentry order (outermost first, the raising frame last), whatever the SDK.

    Most PostHog SDKs send that order; posthog-go before 1.20.0 sent the innermost frame first. For
    SDKs not known here the order is read off the stack: an entry point (``main``, ``runtime.goexit``,
    ``Thread.run``, ``<module>``) at the end, or the stack-capturing call (``runtime.Callers``,
    ``Thread.getStackTrace``) at the start, means innermost first. Anything else is left as sent.
    """
    if not isinstance(frames, list) or len(frames) < 2:
        return frames
    known = _INNERMOST_FIRST_BEFORE.get((lib or "").lower())
    if known is not None and lib_version and _version(lib_version) < known:
        return frames[::-1]
    first, last = frames[0], frames[-1]
    if _is_one_of(last, _ENTRY_FUNCTIONS) and not _is_one_of(first, _ENTRY_FUNCTIONS):
        return frames[::-1]
    if _is_one_of(first, _CAPTURE_FUNCTIONS) and not _is_one_of(last, _CAPTURE_FUNCTIONS):
        return frames[::-1]
    return frames


_GO_RUNTIME_FUNCTION = re.compile(r"runtime[./]")


def _is_go(frame: dict[str, Any]) -> bool:
    return "go" in (frame.get("platform"), frame.get("lang"))


def without_go_panic_handler(frames: Any) -> Any:
    """Go frames (outermost first) as sentry-go reports a recovered panic: the frames from
    ``runtime.gopanic`` on are the deferred handler that captured the stack (posthog-go records the
    stack where ``NewDefaultException`` is called), not the failure, so they are dropped; and Go
    ``runtime`` frames are not in-app, whatever the SDK says (posthog-go's ``SimpleInAppDecider``
    calls every GOROOT frame in-app). Frames of other platforms are left as sent."""
    if not isinstance(frames, list):
        return frames
    if not any(isinstance(f, dict) and _is_go(f) for f in frames):
        return frames
    panic = max((i for i, f in enumerate(frames) if isinstance(f, dict) and f.get("function") == "runtime.gopanic"),
                default=None)
    if panic is not None and panic > 0:
        frames = frames[:panic]
    return [{**f, "in_app": False} if isinstance(f, dict) and _is_go(f) and f.get("in_app") is True
            and _GO_RUNTIME_FUNCTION.match(_text(f.get("function"), SHORT) or "") else f for f in frames]


def _frames(raw: Any) -> list[dict[str, Any]]:
    """PostHog frames (Sentry order, outermost first) as contract frames; the innermost 250 are kept."""
    if not isinstance(raw, list):
        return []
    out = []
    for frame in raw[-MAX_FRAMES:]:
        if not isinstance(frame, dict):
            continue
        one = {
            "filename": _text(frame.get("filename"), LONG) or _text(frame.get("abs_path"), LONG),
            "function": _text(frame.get("function"), SHORT),
            "module": _text(frame.get("module"), SHORT),
            "lineno": _non_negative_int(frame.get("lineno")),
            "colno": _non_negative_int(frame.get("colno")),
            "in_app": frame["in_app"] if isinstance(frame.get("in_app"), bool) else None,
            "context_line": _text(frame.get("context_line"), LONG),
        }
        out.append({k: v for k, v in one.items() if v is not None})
    return out


def _raw_stack(raw: Any) -> list[dict[str, Any]]:
    """The older ``$exception_stack_trace_raw``: a JSON array of frames, or an ``error.stack`` string."""
    if not isinstance(raw, str):
        return _frames(raw)
    if raw.lstrip().startswith("["):
        try:
            return _frames(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return []
    frames = [frame for line in raw.splitlines()[:MAX_FRAMES * 2] if (frame := _stack_line(line))]
    return _frames(frames[::-1])  # error.stack lists the innermost call first


def _stack_line(line: str) -> dict[str, Any] | None:
    """One frame of a V8 (``at fn (file:1:2)``, ``at file:1:2``) or Gecko/WebKit (``fn@file:1:2``) stack.

    Split from the right, not by regex: linear in the line's length whatever it holds.
    """
    line = line.strip()
    if line.startswith("at "):
        rest = line[3:]
        function, _, location = rest[:-1].rpartition(" (") if rest.endswith(")") else ("", "", rest)
    elif "@" in line:
        function, _, location = line.partition("@")
    else:
        return None
    rest, _, colno = location.rpartition(":")
    filename, _, lineno = rest.rpartition(":")
    if not filename or not all(n.isascii() and n.isdigit() and len(n) < 10 for n in (lineno, colno)):
        return None
    return {"filename": filename, "function": function or None, "lineno": int(lineno), "colno": int(colno)}


def _breadcrumbs(raw: Any) -> list[dict[str, Any]]:
    """posthog-js ``$exception_steps``: ``{"$message", "$timestamp", ...data}``, oldest first."""
    if not isinstance(raw, list):
        return []
    out = []
    for step in raw[-MAX_BREADCRUMBS:]:
        if not isinstance(step, dict):
            continue
        at = step.get("$timestamp")
        timestamp = _parse_time(at) if isinstance(at, str) else _from_epoch_ms(_number(at))
        crumb = {"message": _text(step.get("$message"), LONG),
                 "timestamp": timestamp.isoformat() if timestamp else None,
                 "data": _custom_properties(step)}
        out.append({k: v for k, v in crumb.items() if v is not None})
    return out


# ------------------------------------------------------------------ small readers


def _text(value: Any, limit: int = SHORT) -> str | None:
    """A non-empty string cut to ``limit`` characters, else None."""
    return value[:limit] if isinstance(value, str) and value else None


def _first_text(props: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first key's value that ``_text`` keeps (a plain loop: ~6 calls per event, on the hot path)."""
    for key in keys:
        value = props.get(key)
        if isinstance(value, str) and value:
            return value[:SHORT]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range (only from Python callers; JSON gives floats)
        return None
    return number if math.isfinite(number) else None


def _first_number(props: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        number = _number(props.get(key))
        if number is not None:
            return number
    return None


def _non_negative_int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number >= 0 else None


def _parse_time(value: Any) -> datetime | None:
    """ISO 8601 (``Z`` or an offset; naive is UTC), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _from_epoch_ms(ms: float | None) -> datetime | None:
    if ms is None:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _bounded_value(value: Any) -> Any:
    """Scalars as they are; strings and nested values over 1 KB of JSON become cut strings."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:MAX_PROPERTY_CHARS]
    encoded = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return value if len(encoded) <= MAX_PROPERTY_CHARS else encoded[:MAX_PROPERTY_CHARS]


def _custom_properties(props: Mapping[str, Any]) -> dict[str, Any]:
    """The sender's own properties: no ``$`` keys, no token or distinct_id, at most 50, bounded values."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not isinstance(key, str) or key.startswith("$") or key in _INTERNAL_PROPERTIES:
            continue
        if len(out) == MAX_CUSTOM_PROPERTIES:
            break
        out[key[:MAX_PROPERTY_CHARS]] = _bounded_value(value)
    return out
