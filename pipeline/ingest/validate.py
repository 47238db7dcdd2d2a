"""Turn raw bytes into events, or into dead letters with a reason. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
