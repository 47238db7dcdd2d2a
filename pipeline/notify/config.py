"""The notifier's configuration: receivers, the routing tree, inhibition, escalation, remediation.

Why a file and not ``PULSE_*`` variables like the rest of ``pipeline/settings.py``: routing is a
tree with lists of matchers, which does not fit flat environment variables. The shape follows
Prometheus Alertmanager's ``alertmanager.yml`` where the concepts are the same (``route``,
``matchers``, ``continue``, ``group_by``, ``group_wait``, ``group_interval``, ``repeat_interval``,
``inhibit_rules``), so on-call people can read it without learning a new format. Secrets stay out of
the file: any string may reference the environment as ``${VAR}`` (or ``${VAR:-default}``; ``$$`` is
a literal ``$``), expanded at load time, with an error naming the field and the variable when it is
unset. Every error names the path of the bad field, e.g. ``route.routes[1].matchers[0]``.

Example (``pipeline/notify/default_config.yaml`` is a working one)::

    external_url: https://pulse.example.com        # links in notifications
    receivers:
      - name: slack-oncall
        slack: {webhook_url: "${SLACK_WEBHOOK_URL}"}
      - name: pagerduty-oncall
        pagerduty: {routing_key: "${PAGERDUTY_ROUTING_KEY}"}   # url defaults to Events API v2
      - name: email-oncall
        email: {to: [oncall@example.com], from: pulse@example.com, smtp_host: smtp.example.com,
                smtp_port: 587, starttls: true, username: pulse, password_env: PULSE_SMTP_PASSWORD}
      - name: sms-gateway                            # SMS / phone: via an Alertmanager-style webhook
        webhook: {url: "${SMS_WEBHOOK_URL}", headers: {Authorization: "Bearer ${SMS_TOKEN}"}}
        send_resolved: false
    route:                                           # the root matches every alert
      receiver: slack-oncall
      group_by: [alertname, project]                 # "..." = every label (no grouping)
      group_wait: 30s                                # defaults: 30s, 5m, 4h
      group_interval: 5m
      repeat_interval: 4h
      routes:                                        # depth first, first match wins ...
        - matchers: ['severity="critical"']
          receiver: pagerduty-oncall
          continue: true                             # ... unless continue: true
        - matchers: ['project=~"shop|checkout"', 'severity!="info"']
          receiver: sms-gateway
          group_wait: 10s
    inhibit_rules:                                   # a firing critical mutes the matching warning
      - source_matchers: ['severity="critical"']
        target_matchers: ['severity="warning"']
        equal: [alertname, project]
    escalation:                                      # per level; unacknowledged -> next step
      critical: {timeout: 5m, steps: [slack-oncall, email-oncall, pagerduty-oncall]}
      high: {steps: [slack-oncall, pagerduty-oncall]}          # timeout defaults to 15m
    severity_levels: {info: low, ticket: low, warning: medium, page: high, critical: critical}
    remediation:                                     # rule name -> URL, called once per firing
      HighJsErrorRate: https://runbooks.example.com/hooks/rollback
    auto_resolve:                                    # alerts that never send "resolved" (events)
      - matchers: ['issue!=""']                      # new / regressed issue alerts
        after: 1h                                    # end 1h after they fire ...
        send_resolved: false                         # ... without a resolved notice (the default)

Remediation URLs can also come with the alert event (``remediation_webhook``, from the rule file of
``pipeline/alerts``); the config's map wins for a rule listed in both.

Alerts end when a ``resolved`` event arrives, or (as Alertmanager's ``endsAt``) when a firing
event's ``ends_at`` has passed. ``auto_resolve`` gives an ``ends_at`` to firing events without one.

Severities and escalation levels. Alert rules carry our severities; escalation policies are per
*level* (low / medium / high / critical, as in PagerDuty-style urgency). ``severity_levels`` maps one
onto the other; the default mapping (``DEFAULT_SEVERITY_LEVELS``) is:

=============  ===========  ==========================================================
severity       level        why
=============  ===========  ==========================================================
``info``       low (1h)     informational, nobody needs to act soon
``ticket``     low (1h)     SLO slow burn: worth a ticket, not a wake-up
``warning``    medium (30m) degraded, look during working hours
``page``       high (15m)   SLO fast burn: page the on-call
``critical``   critical (5m) broken for users now
=============  ===========  ==========================================================

A severity that is not in the map gets ``unknown_severity_level`` (default high: a typo in a rule
should over-page rather than go unnoticed). Level timeouts default to low 1h, medium 30m, high 15m,
critical 5m; a level without ``steps`` does not escalate (its route's receiver is still notified).

Durations are Prometheus-style (``90s``, ``5m``, ``1h30m``, ``2d``, ``500ms``) or a number of seconds;
internally milliseconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.notify.matchers import Matcher, parse_matcher

Level = Literal["low", "medium", "high", "critical"]
LEVELS: tuple[str, ...] = ("low", "medium", "high", "critical")  # ascending urgency
DEFAULT_TIMEOUTS_MS: dict[str, int] = {"low": 3_600_000, "medium": 1_800_000, "high": 900_000, "critical": 300_000}
DEFAULT_SEVERITY_LEVELS: dict[str, str] = {
    "info": "low", "ticket": "low", "warning": "medium", "page": "high", "critical": "critical"}
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")
GROUP_BY_ALL = "..."  # group_by: ["..."] = every label, i.e. one group per alert (as in Alertmanager)

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000,
            "y": 365 * 86_400_000}
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_RECEIVER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # no ":", which marks "remediation:<rule>"


class ConfigError(ValueError):
    """A config that cannot be used; the message has one line per problem, each naming its path."""


def parse_duration(value: Any) -> int:
    """``"1h30m"`` -> 5_400_000 ms; plain numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 5m or 4h, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value!r}")
        return int(value * 1000)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, 5m or 4h, got {value!r}")
    text = value.strip()
    pos, total = 0, 0
    for part in _DURATION_PART.finditer(text):
        if part.start() != pos:
            break
        total += int(part.group(1)) * _UNIT_MS[part.group(2)]
        pos = part.end()
    if not text or pos != len(text):
        raise ValueError(f"expected a duration like 30s, 5m, 4h or 1h30m, got {value!r}")
    return total


def format_duration(ms: int) -> str:
    """The inverse of ``parse_duration`` for display: 5_400_000 -> ``1h30m``."""
    if ms == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        n, ms = divmod(ms, _UNIT_MS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


Duration = Annotated[int, BeforeValidator(parse_duration)]


def _check_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {value!r}")
    return value


def _check_secret_url(value: Any) -> Any:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if isinstance(raw, str):
        _check_url(raw)
    return value


def _check_matcher(text: str) -> str:
    parse_matcher(text)  # ValueError says what is wrong; pydantic adds the path with the index
    return text


Url = Annotated[str, BeforeValidator(lambda v: _check_url(v) if isinstance(v, str) else v)]
# a list of matcher strings (one string is a list of one), each checked where it stands
MatcherList = Annotated[list[Annotated[str, AfterValidator(_check_matcher)]],
                        BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SlackConfig(_Model):
    """A Slack incoming webhook (the URL is the secret: keep it in the environment)."""

    webhook_url: Annotated[SecretStr, BeforeValidator(_check_secret_url)]


class PagerDutyConfig(_Model):
    """A PagerDuty Events API v2 integration."""

    routing_key: SecretStr
    url: Url = PAGERDUTY_EVENTS_URL
    source: str = "frontend-pulse"  # payload.source: where the problem is, as PagerDuty shows it


class WebhookConfig(_Model):
    """An HTTP endpoint receiving Alertmanager-compatible JSON (version 4). SMS and phone calls go
    through one (a gateway that speaks the Alertmanager webhook format)."""

    url: Url
    headers: dict[str, SecretStr] = Field(default_factory=dict)


class EmailConfig(_Model):
    """An SMTP submission. The password is read from the environment variable ``password_env`` by the
    process that sends, so it is never part of the config or its errors."""

    to: Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)] = Field(min_length=1)
    from_: str = Field(alias="from")
    smtp_host: str
    smtp_port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: list[str]) -> list[str]:
        for addr in value:
            if "@" not in addr:
                raise ValueError(f"not an e-mail address: {addr!r}")
        return value


class ReceiverConfig(_Model):
    """A named destination: exactly one of slack, pagerduty, webhook, email."""

    name: str = Field(pattern=_RECEIVER_NAME)
    send_resolved: bool = True
    slack: SlackConfig | None = None
    pagerduty: PagerDutyConfig | None = None
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ReceiverConfig":
        kinds = [k for k in ("slack", "pagerduty", "webhook", "email") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"receiver {self.name!r} needs exactly one of slack, pagerduty, webhook, email; "
                             f"got {', '.join(kinds) or 'none'}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("slack", "pagerduty", "webhook", "email") if getattr(self, k) is not None)


class RouteConfig(_Model):
    """A node of the routing tree. Unset fields are inherited from the parent (``receiver``,
    ``group_by`` and the three intervals); the root's defaults are Alertmanager's."""

    receiver: str | None = None
    matchers: MatcherList = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")
    routes: list["RouteConfig"] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be greater than zero")
        return value


class InhibitRuleConfig(_Model):
    """While an alert matching ``source_matchers`` fires, alerts matching ``target_matchers`` whose
    ``equal`` labels have the same values (a missing label counts as "") are not notified."""

    source_matchers: MatcherList = Field(min_length=1)
    target_matchers: MatcherList = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    def source(self) -> list[Matcher]:
        return [parse_matcher(m) for m in self.source_matchers]

    def target(self) -> list[Matcher]:
        return [parse_matcher(m) for m in self.target_matchers]


class AutoResolveRule(_Model):
    """Alerts that only ever fire (events rather than conditions: a new or regressed issue) and
    arrive without ``ends_at`` get ``ends_at = starts_at + after`` when they match; the first
    matching rule applies. They then end like any alert whose ``ends_at`` has passed, silently
    unless ``send_resolved``."""

    matchers: MatcherList = Field(min_length=1)
    after: Duration
    send_resolved: bool = False

    @field_validator("after")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    def compiled(self) -> list[Matcher]:
        return [parse_matcher(m) for m in self.matchers]


class EscalationPolicy(_Model):
    """``steps`` are receiver names: step 0 is paged when the incident opens, step k after k timeouts
    without an acknowledgement."""

    timeout: Duration
    steps: list[str] = Field(default_factory=list)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value


def _default_policy(level: str) -> EscalationPolicy:
    return EscalationPolicy(timeout=DEFAULT_TIMEOUTS_MS[level] // 1000)  # (seconds, like a bare number in YAML)


class EscalationConfig(_Model):
    """One policy per level; a level left out, or without ``timeout``, gets the default timeout
    (low 1h, medium 30m, high 15m, critical 5m)."""

    low: EscalationPolicy = Field(default_factory=lambda: _default_policy("low"))
    medium: EscalationPolicy = Field(default_factory=lambda: _default_policy("medium"))
    high: EscalationPolicy = Field(default_factory=lambda: _default_policy("high"))
    critical: EscalationPolicy = Field(default_factory=lambda: _default_policy("critical"))

    @model_validator(mode="before")
    @classmethod
    def _default_timeouts(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for level in LEVELS:
            policy = data.get(level)
            if policy is None:
                data.pop(level, None)
            elif isinstance(policy, dict) and "timeout" not in policy:
                data[level] = {**policy, "timeout": DEFAULT_TIMEOUTS_MS[level] // 1000}
        return data

    def for_level(self, level: str) -> EscalationPolicy:
        return getattr(self, level)


class Route:
    """A resolved routing node: inheritance applied, matchers compiled, with a stable ``key``."""

    __slots__ = ("key", "receiver", "matchers", "continue_", "group_by", "group_wait_ms", "group_interval_ms",
                 "repeat_interval_ms", "children", "path")

    def __init__(self, cfg: RouteConfig, parent: "Route | None", index: int, path: str) -> None:
        self.matchers = [parse_matcher(m) for m in cfg.matchers]
        matcher_text = "{" + ",".join(str(m) for m in self.matchers) + "}"
        # like Alertmanager's route key, plus the sibling index so two routes with the same matchers
        # keep separate groups
        self.key = matcher_text if parent is None else f"{parent.key}/{index}{matcher_text}"
        self.path = path
        self.receiver: str = cfg.receiver or (parent.receiver if parent else "")
        self.continue_ = cfg.continue_
        self.group_by: list[str] = cfg.group_by if cfg.group_by is not None else (parent.group_by if parent else [])

        def inherit(name: str, default: int) -> int:
            own = getattr(cfg, name)
            if own is not None:
                return own
            return getattr(parent, f"{name}_ms") if parent else default

        self.group_wait_ms = inherit("group_wait", 30_000)
        self.group_interval_ms = inherit("group_interval", 300_000)
        self.repeat_interval_ms = inherit("repeat_interval", 4 * 3_600_000)
        self.children = [Route(c, self, i, f"{path}.routes[{i}]") for i, c in enumerate(cfg.routes)]

    @property
    def group_all(self) -> bool:
        return GROUP_BY_ALL in self.group_by

    def walk(self) -> list["Route"]:
        return [self, *(r for c in self.children for r in c.walk())]

    def match(self, labels: Mapping[str, str]) -> list["Route"]:
        """The routes an alert goes to: depth first; a node's children are tried in order, the first
        match stops the search unless it has ``continue``; a node none of whose children match is
        itself the match (Alertmanager's algorithm)."""
        if not all(m.matches(labels) for m in self.matchers):
            return []
        found: list[Route] = []
        for child in self.children:
            hits = child.match(labels)
            found.extend(hits)
            if hits and not child.continue_:
                break
        return found or [self]


class NotifierConfig(_Model):
    """The whole file. Build it with ``load_config`` / ``load_config_file``."""

    external_url: str = ""
    receivers: list[ReceiverConfig] = Field(min_length=1)
    route: RouteConfig
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    severity_levels: dict[str, Level] = Field(default_factory=lambda: dict(DEFAULT_SEVERITY_LEVELS))
    unknown_severity_level: Level = "high"
    remediation: dict[str, Url] = Field(default_factory=dict)
    auto_resolve: list[AutoResolveRule] = Field(default_factory=list)

    _root: Route = PrivateAttr()
    _routes: dict[str, Route] = PrivateAttr()

    @field_validator("external_url")
    @classmethod
    def _check_external(cls, value: str) -> str:
        return _check_url(value).rstrip("/") if value else value

    @model_validator(mode="after")
    def _cross_check(self) -> "NotifierConfig":
        problems: list[str] = []
        names = [r.name for r in self.receivers]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(f"receivers[{i}].name: duplicate receiver name {name!r}")
        known = set(names)
        if not self.route.receiver:
            problems.append("route.receiver: the root route needs a receiver")
        if self.route.matchers:
            problems.append("route.matchers: the root route matches every alert; put matchers on child routes")
        if self.route.continue_:
            problems.append("route.continue: not allowed on the root route")

        def check(route: RouteConfig, path: str) -> None:
            if route.receiver and route.receiver not in known:
                problems.append(f"{path}.receiver: unknown receiver {route.receiver!r} (known: {', '.join(names)})")
            for i, child in enumerate(route.routes):
                check(child, f"{path}.routes[{i}]")

        check(self.route, "route")
        for level in LEVELS:
            for i, step in enumerate(self.escalation.for_level(level).steps):
                if step not in known:
                    problems.append(f"escalation.{level}.steps[{i}]: unknown receiver {step!r} "
                                    f"(known: {', '.join(names)})")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def model_post_init(self, context: Any) -> None:
        root = Route(self.route, None, 0, "route")
        self._root = root
        self._routes = {r.key: r for r in root.walk()}

    @property
    def root(self) -> Route:
        return self._root

    def route_for_key(self, key: str) -> Route:
        """The route with this key; the root when the config changed and the key is gone (its group
        keeps its receiver and is flushed with the root's timers)."""
        return self._routes.get(key, self._root)

    def receiver(self, name: str) -> ReceiverConfig | None:
        return next((r for r in self.receivers if r.name == name), None)

    def level_of(self, severity: str) -> str:
        return self.severity_levels.get(severity, self.unknown_severity_level)


# --- loading -----------------------------------------------------------------------------------


def expand_env(doc: Any, env: Mapping[str, str] | None = None, path: str = "") -> Any:
    """``${VAR}`` / ``${VAR:-default}`` in every string value of a parsed document (not in keys);
    ``$$`` is a literal ``$``. ``ConfigError`` naming the field and the variable when one is unset."""
    env = os.environ if env is None else env
    if isinstance(doc, dict):
        return {k: expand_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(doc)]
    if not isinstance(doc, str):
        return doc

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            raise ConfigError(f"{path or '<root>'}: environment variable {name} is not set "
                              f"(referenced as ${{{name}}}; set it, or write ${{{name}:-default}})")
        return value

    return _ENV_REF.sub(sub, doc)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "lambda")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``path: message``."""
    lines = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = _loc(tuple(p for p in err["loc"] if p != "continue_"))
        lines.extend(f"{where}: {line}" if where else line for line in msg.splitlines())
    return "\n".join(lines)


def parse_config(doc: Any, *, env: Mapping[str, str] | None = None, source: str = "<config>") -> NotifierConfig:
    """A parsed YAML/JSON document -> ``NotifierConfig``; ``ConfigError`` listing every problem."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(doc).__name__}")
    try:
        return NotifierConfig.model_validate(expand_env(doc, env))
    except ConfigError as exc:
        raise ConfigError(f"invalid notifier config {source}:\n  {exc}") from None
    except ValidationError as exc:
        text = describe_validation_error(exc).replace("\n", "\n  ")
        raise ConfigError(f"invalid notifier config {source}:\n  {text}") from None


def load_config(text: str, *, env: Mapping[str, str] | None = None, source: str = "<string>") -> NotifierConfig:
    """YAML text -> ``NotifierConfig``."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid notifier config {source}: not valid YAML: {exc}") from None
    return parse_config(doc, env=env, source=source)


def load_config_file(path: str | Path = DEFAULT_CONFIG_PATH, *, env: Mapping[str, str] | None = None) -> NotifierConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read notifier config {path}: {exc}") from None
    return load_config(text, env=env, source=str(path))
