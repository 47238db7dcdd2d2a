"""The event contract: what browsers, SDKs and services publish.

Every event shares one envelope (who, where, when) and carries one payload named after its
``type``: ``error``, ``vital``, ``action`` or ``api``. A Kafka message on a raw topic holds one
event (a JSON object) or a batch of events of one session (a JSON array), keyed by ``session_id``.

Unknown extra fields are ignored (SDKs add fields faster than contracts change); missing or
ill-typed known fields are errors with the field's path in the message.

Example::

    {"event_id": "0b5b0f0e-8c1d-4c57-9a55-3f7d3a3c2a11", "type": "vital", "project": "shop",
     "timestamp": "2026-11-23T10:00:00.000Z", "session_id": "s-1",
     "vital": {"name": "LCP", "value": 2315.0}}
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Union
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

ShortText = Annotated[str, Field(max_length=512)]
LongText = Annotated[str, Field(max_length=16_384)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False, str_strip_whitespace=False)


class Sdk(_Model):
    name: ShortText
    version: ShortText


class Envelope(_Model):
    """Fields common to every event."""

    event_id: UUID = Field(description="Unique per event; duplicates by event_id are dropped.")
    project: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="Project id. The collector sets it from the project key; direct producers must send it."
    )
    timestamp: datetime = Field(description="Client time of the event (event time). Naive times are UTC.")
    received_at: datetime | None = Field(None, description="Server receive time; set by the collector or the worker.")
    sent_at: datetime | None = Field(None, description="Client time the batch was sent. The collector corrects "
                                     "timestamp by (received_at - sent_at) when that is at least "
                                     "PULSE_COLLECTOR_CLOCK_SKEW_MIN_S; timestamps on the raw topics are corrected: "
                                     "do not apply it again.")
    session_id: Annotated[str, Field(min_length=1, max_length=128)]
    anonymous_id: ShortText | None = None
    user_id: ShortText | None = None
    release: ShortText | None = None
    environment: ShortText = "production"
    url: LongText | None = Field(None, description="Page URL.")
    route: ShortText | None = Field(None, description="Route pattern, e.g. /product/:id.")
    user_agent: ShortText | None = None
    sdk: Sdk | None = None
    consent: bool = Field(True, description="False: the user did not consent; user identifiers are not kept.")

    @field_validator("timestamp", "received_at", "sent_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


# ---------------------------------------------------------------- error


class StackFrame(_Model):
    filename: LongText | None = None
    function: ShortText | None = None
    module: ShortText | None = None
    lineno: int | None = Field(None, ge=0)
    colno: int | None = Field(None, ge=0)
    in_app: bool = True
    context_line: LongText | None = None


class Mechanism(_Model):
    type: ShortText = "generic"
    handled: bool = True


class Breadcrumb(_Model):
    timestamp: datetime | None = None
    category: ShortText | None = None
    message: LongText | None = None
    level: ShortText | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ErrorPayload(_Model):
    exception_type: ShortText = Field(description="e.g. TypeError")
    message: LongText = ""
    stacktrace: Annotated[list[StackFrame], Field(max_length=250)] = Field(
        default_factory=list, description="Frames, outermost first (Sentry order)."
    )
    handled: bool = True
    mechanism: Mechanism | None = None
    level: Literal["fatal", "error", "warning", "info", "debug"] = "error"
    breadcrumbs: Annotated[list[Breadcrumb], Field(max_length=200)] = Field(default_factory=list)
    tags: dict[ShortText, ShortText] = Field(default_factory=dict)
    fingerprint: list[ShortText] | None = Field(None, description="Overrides grouping when sent.")


class ErrorEvent(Envelope):
    type: Literal["error"]
    error: ErrorPayload


# ---------------------------------------------------------------- vital

VitalName = Literal["LCP", "INP", "CLS", "FCP", "TTFB", "FID", "TTI", "TBT", "LONG_TASK", "MEMORY"]
Rating = Literal["good", "needs-improvement", "poor"]


class VitalPayload(_Model):
    name: VitalName
    value: float = Field(ge=0, description="ms for timings, unitless for CLS, bytes for MEMORY.")
    rating: Rating | None = Field(None, description="As rated by the SDK, if sent; the pipeline rates too.")
    navigation_type: ShortText | None = None
    element: ShortText | None = Field(None, description="Selector of the LCP/INP element, if known.")


class VitalEvent(Envelope):
    type: Literal["vital"]
    vital: VitalPayload


# ---------------------------------------------------------------- action

ActionKind = Literal["pageview", "click", "scroll", "form_start", "form_submit", "visibility", "custom"]


class ClickObservation(_Model):
    """What the SDK saw after a click; the pipeline decides whether the click was dead."""

    dom_mutation_ms: float | None = Field(None, ge=0, description="Delay to the first DOM mutation; null = none seen.")
    navigated: bool = False
    scrolled: bool = False
    observed_for_ms: float | None = Field(None, ge=0, description="How long the SDK watched.")


_REQUIRED_PER_KIND: dict[str, tuple[str, ...]] = {
    "click": ("selector",),
    "scroll": ("scroll_depth",),
    "form_start": ("form",),
    "form_submit": ("form",),
    "visibility": ("visibility",),
    "custom": ("name",),
}


class ActionPayload(_Model):
    kind: ActionKind
    selector: LongText | None = Field(None, description="CSS selector of the target element.")
    tag: ShortText | None = None
    text: ShortText | None = None
    x: float | None = None
    y: float | None = None
    interactive: bool | None = Field(None, description="Target is a link, button, input or has a handler.")
    observed: ClickObservation | None = None
    scroll_depth: float | None = Field(None, ge=0, le=100, description="Percent of the page scrolled.")
    form: ShortText | None = Field(None, description="Form id or selector for form_start / form_submit.")
    visibility: Literal["visible", "hidden"] | None = None
    name: ShortText | None = Field(None, description="Custom event name.")
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _required_per_kind(self) -> "ActionPayload":
        needed = _REQUIRED_PER_KIND.get(self.kind, ())  # runs for every action: no dict built per call
        if not needed:
            return self
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"action kind {self.kind!r} requires {', '.join(missing)}")
        return self


class ActionEvent(Envelope):
    type: Literal["action"]
    action: ActionPayload


# ---------------------------------------------------------------- api call / resource


class ApiPayload(_Model):
    kind: Literal["api", "resource"] = "api"
    url: LongText
    method: ShortText = "GET"
    status: int | None = Field(None, ge=0, le=999, description="HTTP status; 0 or null = network error.")
    duration_ms: float = Field(ge=0)
    ok: bool | None = Field(None, description="Defaults to 200 <= status < 400.")
    initiator: ShortText | None = Field(None, description="fetch, xhr, script, img, css, ...")
    size_bytes: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _default_ok(self) -> "ApiPayload":
        if self.ok is None:
            self.ok = self.status is not None and 200 <= self.status < 400
        return self


class ApiEvent(Envelope):
    type: Literal["api"]
    api: ApiPayload


# ---------------------------------------------------------------- custom metric

MetricName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$",
                                  description="e.g. checkout.duration; letters, digits, _ . : / -")]
TagKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
TagValue = Annotated[str, Field(max_length=200)]


class MetricPayload(_Model):
    name: MetricName
    value: float = Field(allow_inf_nan=False, description="One measurement; percentiles need values >= 0.")
    unit: ShortText | None = Field(None, description="e.g. millisecond, byte, none")
    tags: Annotated[dict[TagKey, TagValue], Field(max_length=20)] = Field(
        default_factory=dict, description="Dimensions to group and filter by, e.g. {\"route\": \"/cart\"}")


class MetricEvent(Envelope):
    """A custom metric point (``POST /api/metrics`` or a direct producer). ``session_id`` is only
    the Kafka key here; the metrics endpoint sets it to ``metric:<name>``."""

    type: Literal["metric"]
    metric: MetricPayload


Event = Annotated[Union[ErrorEvent, VitalEvent, ActionEvent, ApiEvent, MetricEvent], Field(discriminator="type")]
EventType = Literal["error", "vital", "action", "api", "metric"]
EVENT_TYPES: tuple[str, ...] = ("error", "vital", "action", "api", "metric")

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)
EVENT_BATCH_ADAPTER: TypeAdapter[list[Any]] = TypeAdapter(list[Event])
