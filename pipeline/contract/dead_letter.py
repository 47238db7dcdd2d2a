"""Dead letters: input we could not accept, kept with the reason so nothing is lost."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from typing import Literal

import orjson
from pydantic import BaseModel, Field

DeadLetterStep = Literal["collector", "worker", "sink"]


# Bytes of the rejected input a dead letter keeps: even escaped as JSON (up to 6 bytes per byte) its
# record stays under Kafka's default 1 MB limit.
MAX_PAYLOAD_BYTES = 128 * 1024


class DeadLetter(BaseModel):
    """One rejected input. Its JSON keys are the ``dead_letters`` table's columns."""

    received_at: datetime = Field(description="When the pipeline rejected it (UTC).")
    step: DeadLetterStep
    source: str = Field(description="Topic:partition:offset or HTTP endpoint the input came from.")
    project: str = ""
    reason: str = Field(description="Human-readable reason, with the failing field paths.")
    event_id: str = Field("", description="The event_id, if it could be read.")
    payload: str = Field(description="The original input: UTF-8 text, or base64 when not UTF-8.")
    payload_encoding: Literal["utf8", "base64"] = "utf8"

    @classmethod
    def of(cls, raw: bytes, *, step: DeadLetterStep, source: str, reason: str, project: str = "",
           event_id: str = "", now: datetime | None = None) -> "DeadLetter":
        """The input's first ``MAX_PAYLOAD_BYTES`` are kept (the reason says when it was cut): a dead
        letter travels as one Kafka record, and an input near the broker's 1 MB limit, escaped as
        JSON or base64, would pass it."""
        if len(raw) > MAX_PAYLOAD_BYTES:
            reason = f"{reason} (payload cut to its first {MAX_PAYLOAD_BYTES} of {len(raw)} bytes)"
            raw = raw[:MAX_PAYLOAD_BYTES]
            for cut in range(4):  # a UTF-8 text cut inside a character stays text
                try:
                    raw[:len(raw) - cut].decode("utf-8")
                    raw = raw[:len(raw) - cut]
                    break
                except UnicodeDecodeError:
                    continue
        try:
            payload, encoding = raw.decode("utf-8"), "utf8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        return cls(received_at=now or datetime.now(timezone.utc), step=step, source=source, project=project,
                   reason=reason, event_id=event_id, payload=payload, payload_encoding=encoding)  # type: ignore[arg-type]

    def to_row_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


_FIELD_PROBLEM = re.compile(r"^[\w.<>\[\]-]+: ")
REASON_KINDS = ("invalid_json", "invalid_event", "project_mismatch", "unreadable", "processing_failed",
                "clickhouse_rejected", "timestamp_out_of_range", "other")


def reason_kind(reason: str) -> str:
    """A bounded category of a dead letter's free-text reason, for the ``reason`` label of
    ``pulse_dead_letters_total`` (the text itself stays in the dead_letters table)."""
    r = reason.lstrip()
    if r.startswith(("invalid JSON", "expected a JSON object", "not JSON-serializable")):
        return "invalid_json"
    if r.startswith("project ") and "does not match" in r:
        return "project_mismatch"
    if r.startswith("timestamp out of range"):
        return "timestamp_out_of_range"
    if r.startswith("ClickHouse rejected"):
        return "clickhouse_rejected"
    if "batch failed" in r or "could not produce" in r or r.startswith(("worker error", "issue agent", "alert agent")):
        return "processing_failed"
    if r.startswith(("cannot decompress", "undecodable", "unreadable", "envelope", "not UTF-8", "body", "item ",
                     "event ", "store body")):
        return "unreadable"
    if _FIELD_PROBLEM.match(r):
        return "invalid_event"
    return "other"
