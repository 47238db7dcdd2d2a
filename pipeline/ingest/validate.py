"""Turn raw bytes into events, or into dead letters with a reason. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from pipeline.contract import EVENT_ADAPTER, EVENT_BATCH_ADAPTER, DeadLetter
from pipeline.contract.dead_letter import DeadLetterStep


@dataclass
class Decoded:
    """What one message (or one HTTP body) held: valid events, and the rest as dead letters."""

    events: list[Any] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    rejected_at: list[int] = field(default_factory=list)  # input position of each dead letter (validate_items)


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """'vital.value: Input should be ...; ...' — short enough for a response, specific enough to fix."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        loc = [str(p) for p in err["loc"]]
        # The discriminated union prefixes the type tag ('vital.vital.value'); drop the tag.
        if len(loc) > 1 and loc[0] in ("error", "vital", "action", "api"):
            loc = loc[1:]
        parts.append(f"{'.'.join(loc) or '<event>'}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def decode_message(raw: bytes, *, step: DeadLetterStep, source: str, now: datetime,
                   project: str = "") -> Decoded:
    """A message is one JSON event object or a JSON array of events (one SDK flush).

    The fast path validates the whole array at once; only when that fails is each element
    validated alone, so one bad event never takes its valid neighbours with it.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Decoded(dead_letters=[DeadLetter.of(raw, step=step, source=source, project=project,
                                                   reason=f"invalid JSON: {exc}", now=now)])
    if isinstance(doc, dict):
        items = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        return Decoded(dead_letters=[DeadLetter.of(raw, step=step, source=source, project=project,
                                                   reason=f"expected a JSON object or array, got {type(doc).__name__}",
                                                   now=now)])
    return validate_items(items, step=step, source=source, now=now, project=project)


def validate_items(items: list[Any], *, step: DeadLetterStep, source: str, now: datetime,
                   project: str = "") -> Decoded:
    """Validate already-parsed items; invalid ones become dead letters carrying their own JSON."""
    try:
        return Decoded(events=EVENT_BATCH_ADAPTER.validate_python(items))
    except ValidationError:
        pass
    out = Decoded()
    for position, item in enumerate(items):
        try:
            out.events.append(EVENT_ADAPTER.validate_python(item))
        except ValidationError as exc:
            event_id = str(item.get("event_id", "")) if isinstance(item, dict) else ""
            out.dead_letters.append(DeadLetter.of(
                orjson.dumps(item), step=step, source=source, event_id=event_id[:64],
                project=project or (str(item.get("project", ""))[:128] if isinstance(item, dict) else ""),
                reason=describe_validation_error(exc), now=now))
            out.rejected_at.append(position)
    return out


# ------------------------------------------------------------------ event time sanity

OUT_OF_RANGE_PREFIX = "timestamp out of range"


@dataclass(frozen=True)
class EventTimeWindow:
    """How far an event's time may be from the receive time, after clock-skew correction.

    Defaults are the settings' (``PULSE_COLLECTOR_MAX_FUTURE_S``, ``_MAX_PAST_DAYS``,
    ``_CLOCK_SKEW_MIN_S``, ``_OUT_OF_RANGE_TIMESTAMPS``).
    """

    max_future_s: float = 86_400.0
    max_past_days: float = 365.0
    skew_min_s: float = 60.0
    out_of_range: Literal["reject", "clamp"] = "reject"


@dataclass(frozen=True)
class TimeCheck:
    """The event time to keep (None: reject, see ``reason``), the skew applied and whether it was clamped."""

    timestamp: datetime | None
    skew_s: float = 0.0
    clamped: bool = False
    reason: str | None = None


def check_event_time(timestamp: datetime, sent_at: datetime | None, received_at: datetime,
                     window: EventTimeWindow) -> TimeCheck:
    """Correct the client's clock, then keep the event time inside the window around ``received_at``.

    Skew = ``received_at - sent_at`` (the client's clock error, plus the network delay): when it is
    ``skew_min_s`` or more either way, it is added to the timestamp (Sentry and PostHog correct the
    same way), so an SDK whose clock is a year off still lands at the right time. Smaller skews are
    network delay and left alone. Then a time more than ``max_future_s`` ahead of or ``max_past_days``
    behind ``received_at`` is rejected (``reason`` starts with ``timestamp out of range``) or, with
    ``out_of_range="clamp"``, set to ``received_at``.

    Example::

        check_event_time(datetime(9999, 1, 1, tzinfo=timezone.utc), None, now, EventTimeWindow()).reason
        # 'timestamp out of range: 9999-01-01T00:00:00+00:00 is more than 86400 s after the receive time ...'
    """
    skew_s = 0.0
    corrected: datetime | None = timestamp
    if sent_at is not None:
        skew = received_at - sent_at
        if abs(skew.total_seconds()) >= window.skew_min_s:
            skew_s = skew.total_seconds()
            try:
                corrected = timestamp + skew
            except OverflowError:
                corrected = None
    correction = f" (after a clock-skew correction of {skew_s:+.0f} s from sent_at)" if skew_s else ""
    reason = None
    if corrected is None:
        reason = f"{OUT_OF_RANGE_PREFIX}: {timestamp.isoformat()} cannot be corrected by {skew_s:+.0f} s"
    elif corrected > received_at + timedelta(seconds=window.max_future_s):
        reason = (f"{OUT_OF_RANGE_PREFIX}: {corrected.isoformat()} is more than {window.max_future_s:g} s after "
                  f"the receive time {received_at.isoformat()}{correction}; limit PULSE_COLLECTOR_MAX_FUTURE_S")
    elif corrected < received_at - timedelta(days=window.max_past_days):
        reason = (f"{OUT_OF_RANGE_PREFIX}: {corrected.isoformat()} is more than {window.max_past_days:g} days before "
                  f"the receive time {received_at.isoformat()}{correction}; limit PULSE_COLLECTOR_MAX_PAST_DAYS")
    if reason is None:
        return TimeCheck(corrected, skew_s)
    if window.out_of_range == "clamp":
        return TimeCheck(received_at, skew_s, clamped=True)
    return TimeCheck(None, skew_s, reason=reason)
