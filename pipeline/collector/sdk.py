"""Sentry and PostHog endpoints: point an existing SDK at the collector by changing only its DSN or host.

Sentry (DSN ``http://<project key>@<collector host:port>/<any project id>``):
  * ``POST /api/{project_id}/envelope/`` and ``POST /api/{project_id}/store/``; the key from
    ``X-Sentry-Auth`` / ``Authorization: Sentry ...``, ``?sentry_key=``, or the envelope's ``dsn``.
  * 200 ``{"id": "<event id>"}``; 401 unknown key; 400 unreadable; 413 over the body limit; 429 with
    ``Retry-After`` and ``X-Sentry-Rate-Limits`` over the project's limit; 503 when Kafka did not
    confirm. Item types we do not map (attachments, replays, profiles, client reports...) are
    accepted and counted in ``pulse_sdk_items_total``, never an error.

PostHog (``api_host`` = the collector's URL; the project API key must be one of the project keys):
  * ``/capture/``, ``/batch/``, ``/e/``, ``/i/v0/e/``, ``/track/``, ``/engage/``: JSON, gzip (header,
    ``compression=gzip-js`` or by its magic bytes), base64 and form-encoded ``data=`` bodies.
  * 200 ``{"status": 1}``; 401 ``invalid_api_key``; 400/413/415 with the reason; 429; 503.
  * ``/i/v1/analytics/events`` (capture v1, server SDKs' opt-in ``capture_mode="v1"``): Bearer key,
    ``{"created_at", "batch"}``; 200 ``{"results": {<uuid>: {"result": "ok" | "drop"}}}``.

Every path is served with and without its trailing slash (``/batch`` and ``/batch/``, Sentry's
``/api/1/envelope`` and ``/api/1/envelope/``): SDKs and proxies differ, and a 404 loses the events.

Both translate into contract events (``pipeline/ingest/sentry.py``, ``posthog.py``) and go through
the same intake as native events: inbound filters, rate limit, scrubbing, validation, dead letters.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from pipeline.collector.body import Problem, decompress, read_body
from pipeline.collector.intake import RateLimited, intake
from pipeline.contract import DeadLetter, reason_kind
from pipeline.ingest import posthog, sentry
from pipeline.ingest.producer import DEAD_LETTER_HEADERS, EventProducer, ProduceError
from pipeline.ingest.scrub import scrub_text
from pipeline.metrics import DEAD_LETTERS, SDK_ITEMS
from pipeline.settings import Settings

log = logging.getLogger("pulse.collector")

SETTINGS = web.AppKey("sdk_settings", Settings)
PRODUCER = web.AppKey("sdk_producer", EventProducer)
SENTRY_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-Sentry-Auth, Authorization, sentry-trace, baggage",
    "Access-Control-Expose-Headers": "Retry-After, X-Sentry-Rate-Limits",
    "Access-Control-Max-Age": "86400",
}
POSTHOG_PATHS = ("/capture/", "/batch/", "/e/", "/i/v0/e/", "/track/", "/engage/")
SENTRY_PATHS = ("/api/{project_id}/envelope/", "/api/{project_id}/store/")
# The ``type`` label of pulse_sdk_items_total comes from the client (an envelope item's type, a
# PostHog event name): only these values are kept, the rest is counted as "other" / "$other", so a
# client cannot grow the metric's series (nor a collector process's metric file) without bound.
SENTRY_ITEM_TYPES = frozenset({
    *sentry.TRANSLATORS, "attachment", "user_report", "feedback", "client_report", "profile", "profile_chunk",
    "replay_event", "replay_recording", "replay_video", "check_in", "statsd", "metric_meta", "log", "otel_log",
    "security", "raw_security", "unreal_report", "form_data", "nel"})
POSTHOG_EVENTS = frozenset({
    *posthog.TRANSLATED_EVENTS, "$snapshot", "$set", "$set_once", "$groupidentify", "$create_alias", "$screen",
    "$feature_flag_called", "$opt_in", "$merge_dangerously", "$survey_shown", "$survey_sent", "$survey_dismissed",
    "$web_experiment_applied"})


def sdk_item_label(sdk: str, name: str) -> str:
    """The bounded ``type`` label for one SDK item (see SENTRY_ITEM_TYPES)."""
    if sdk == "sentry":
        return name if name in SENTRY_ITEM_TYPES else "other"
    if not name.startswith("$"):
        return "custom"
    return name if name in POSTHOG_EVENTS else "$other"


@functools.lru_cache(maxsize=256)
def _sdk_items(sdk: str, label: str) -> Any:
    """The SDK_ITEMS child for a label (a bounded set, ``sdk_item_label``), looked up once: ``labels()``
    costs a lock and a tuple per call."""
    return SDK_ITEMS.labels(sdk, label)


# Every SDK answer's headers, built once (``content_type=`` would parse and set it per answer).
_JSON_HEADERS = CIMultiDict({**SENTRY_CORS, "Content-Type": "application/json"})


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
    if headers is None:
        return web.Response(status=status, body=orjson.dumps(doc), headers=_JSON_HEADERS)
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json",
                        headers={**SENTRY_CORS, **headers})


async def _body(request: web.Request, settings: Settings) -> bytes | Problem:
    body = await read_body(request, settings.collector.max_body_bytes)
    if isinstance(body, Problem):
        return body
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    return decompress(body, encoding, settings.collector.max_body_bytes)


async def _send(request: web.Request, events: list[dict[str, Any]], project: str, now: datetime,
                source: str, problems: list[str], body: bytes | Callable[[], bytes]) -> web.Response | None:
    """None when sent; else the answer (429 / 503) in the SDK's own terms. Items the translator could
    not read (``problems``) are not lost: the request body (scrubbed) goes to the dead-letter topic
    with the reasons, before the SDK is told its request was accepted. ``body`` may be a function
    that makes it: only requests with problems pay for it."""
    settings = request.app[SETTINGS]
    try:
        done = await intake(request.app, settings, request.app[PRODUCER], events, project=project, now=now,
                            source=source)
        if problems:
            log.info("%s: %s", source, "; ".join(problems)[:500])
            await _dead_letter(request.app[PRODUCER], settings, body() if callable(body) else body, problems,
                               project, now, source)
    except RateLimited as exc:
        return _json(429, {"detail": f"project {project!r} is over its limit of {exc.limit_per_minute} events per "
                                     "minute"},
                     {"Retry-After": str(exc.retry_after_s), "X-Sentry-Rate-Limits": f"{exc.retry_after_s}::project"})
    except ProduceError as exc:
        log.warning("503: %s", exc)
        return _json(503, {"detail": f"not stored, retry later: {exc}"},
                     {"Retry-After": str(settings.collector.retry_after_s)})
    if done.result.rejected:
        log.info("%s: %d events rejected (dead-lettered): %s", source, len(done.result.rejected),
                 done.result.rejected[0].reason[:200])
    return None


async def _dead_letter(producer: EventProducer, settings: Settings, body: bytes, problems: list[str], project: str,
                       now: datetime, source: str) -> None:
    try:  # scrubbed as text, like the collector's unreadable input: it may hold secrets
        raw = scrub_text(body.decode("utf-8"), not settings.collector.scrub_ip_addresses).encode()
    except UnicodeDecodeError:
        raw = body
    dl = DeadLetter.of(raw, step="collector", source=source, reason="; ".join(problems)[:2000], project=project,
                       now=now)
    await producer.send_raw(settings.kafka.topic_dead_letter, dl.to_row_json(), headers=DEAD_LETTER_HEADERS,
                            timeout_s=settings.collector.produce_timeout_s)
    DEAD_LETTERS.labels("collector", "collector", reason_kind(dl.reason)).inc()


# ------------------------------------------------------------------ Sentry


def _sentry_project(request: web.Request, settings: Settings, envelope_dsn: str | None = None) -> str | None:
    key = sentry.parse_auth(request.headers, request.query)
    if key is None and envelope_dsn:
        key = sentry.dsn_public_key(envelope_dsn)
    return settings.collector.project_keys.get(key) if key else None


async def _sentry_answer(request: web.Request, translation: sentry.Translation, project: str, now: datetime,
                         source: str, body: bytes) -> web.Response:
    """Send the translated events; answer as Sentry does (``{"id": ...}``, or 429 / 503)."""
    refused = await _send(request, translation.events, project, now, source, translation.problems, body)
    if refused is not None:
        return refused
    return _json(200, {"id": translation.event_id} if translation.event_id else {})


async def sentry_envelope(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await _body(request, settings)
    if isinstance(body, Problem):
        return _json(body.status, {"detail": body.message})
    try:
        env = sentry.parse_envelope(body)
    except sentry.EnvelopeError as exc:
        return _json(400, {"detail": f"invalid envelope: {exc}"})
    project = _sentry_project(request, settings, env.headers.get("dsn") if isinstance(env.headers, dict) else None)
    if project is None:
        return _json(401, {"detail": "missing or unknown DSN public key (X-Sentry-Auth, sentry_key or the envelope dsn)"})
    now = datetime.now(timezone.utc)
    translation = sentry.translate_envelope(env, project=project, received_at=now)
    for item_type, n in translation.counts.items():
        _sdk_items("sentry", sdk_item_label("sentry", item_type)).inc(n)
    return await _sentry_answer(request, translation, project, now, "http:sentry-envelope", body)


async def sentry_store(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    project = _sentry_project(request, settings)
    if project is None:
        return _json(401, {"detail": "missing or unknown DSN public key (X-Sentry-Auth or sentry_key)"})
    body = await _body(request, settings)
    if isinstance(body, Problem):
        return _json(body.status, {"detail": body.message})
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _json(400, {"detail": f"body is not JSON: {exc}"})
    if not isinstance(doc, dict):
        return _json(400, {"detail": "expected one event (a JSON object)"})
    now = datetime.now(timezone.utc)
    translation = sentry.translate_store(doc, project=project, received_at=now)
    _sdk_items("sentry", "store").inc()
    return await _sentry_answer(request, translation, project, now, "http:sentry-store", body)


# ------------------------------------------------------------------ PostHog


async def posthog_capture(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    raw = await read_body(request, settings.collector.max_body_bytes)
    if isinstance(raw, Problem):
        return _json(raw.status, {"type": "validation_error", "detail": raw.message})
    decoded = posthog.decode_body(raw, content_type=request.headers.get("Content-Type", ""),
                                  content_encoding=request.headers.get("Content-Encoding"), query=request.query,
                                  max_bytes=settings.collector.max_body_bytes)
    return await _posthog_answer(request, decoded, {"status": 1})


async def posthog_capture_v1(request: web.Request) -> web.Response:
    """Capture v1: the same translation; the answer is per event (``ok`` / ``drop``)."""
    settings = request.app[SETTINGS]
    raw = await read_body(request, settings.collector.max_body_bytes)
    if isinstance(raw, Problem):
        return _json(raw.status, {"error": "invalid_request", "error_description": raw.message})
    decoded = posthog.decode_v1_body(raw, content_encoding=request.headers.get("Content-Encoding"),
                                     headers=request.headers, max_bytes=settings.collector.max_body_bytes)
    return await _posthog_answer(request, decoded, None)


async def _posthog_answer(request: web.Request, decoded: posthog.PosthogBatch | posthog.DecodeProblem,
                          ok: dict[str, Any] | None) -> web.Response:
    """Translate and send; ``ok`` is the legacy 200 body, None for v1's per-event results."""
    settings = request.app[SETTINGS]
    if isinstance(decoded, posthog.DecodeProblem):
        return _json(decoded.status, {"type": "validation_error", "detail": decoded.message})
    project = settings.collector.project_keys.get(decoded.api_key) if decoded.api_key else None
    if project is None:
        return _json(401, {"type": "authentication_error", "code": "invalid_api_key",
                           "detail": "missing or unknown project API key (api_key, token or Bearer)"})
    now = datetime.now(timezone.utc)
    translation = posthog.translate_batch(decoded, project=project, received_at=now,
                                          dead_click_window_ms=settings.sessions.dead_click_window_ms)
    for name, n in translation.counts.items():
        _sdk_items("posthog", sdk_item_label("posthog", name)).inc(n)
    refused = await _send(request, translation.events, project, now, "http:posthog", translation.problems,
                          lambda: orjson.dumps(decoded.events, default=str))  # gzip/base64 bodies made readable
    if refused is not None:
        return refused
    return _json(200, ok if ok is not None else {"results": posthog.v1_results(decoded, translation.dropped)})


def both_slash_forms(path: str) -> tuple[str, str]:
    """``/batch/`` -> (``/batch/``, ``/batch``): each SDK path answers with and without the slash."""
    bare = path.rstrip("/")
    return bare + "/", bare


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=SENTRY_CORS)


def add_sdk_routes(app: web.Application, settings: Settings, producer: EventProducer) -> None:
    app[SETTINGS] = settings
    app[PRODUCER] = producer
    handlers = [(SENTRY_PATHS[0], sentry_envelope), (SENTRY_PATHS[1], sentry_store),
                *((path, posthog_capture) for path in POSTHOG_PATHS), (posthog.V1_PATH, posthog_capture_v1)]
    for path, handler in handlers:
        for form in both_slash_forms(path):
            app.router.add_post(form, handler)
            app.router.add_route("OPTIONS", form, preflight)
