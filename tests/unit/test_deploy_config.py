"""The Docker deployment, checked statically (no Docker engine needed): docker-compose.yml,
deploy/prometheus (scrape config, alert rules) and deploy/grafana (provisioning, dashboards).

What would break silently at `docker compose up` is checked against the code it depends on:
pipeline services run `pulse` subcommands that exist (pipeline/cli.py), their environment is valid
``Settings`` and makes every HTTP server listen on 0.0.0.0, Prometheus scrapes the ports those
settings give, and every metric and label in a PromQL expression (dashboards and alert rules)
exists in pipeline/metrics.py with matching label sets on both sides of a binary operator. The
ClickHouse dashboard's SQL is run against migrated chDB in tests/integration/test_grafana_sql.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = "deploy/Dockerfile"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))

SERVICES = {"kafka", "clickhouse", "sink", "worker", "collector", "notifier", "prometheus", "grafana"}


# ---------------------------------------------------------------------------------------- helpers

def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = load_yaml(COMPOSE)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def pipeline_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services built from the pipeline's Dockerfile (entry point ``pulse``)."""
    return {name: svc for name, svc in services(compose).items()
            if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == DOCKERFILE}


_COMPOSE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's variable substitution with an empty (or given) shell environment: ``${VAR:-default}``
    gives the default, an unset ``${VAR}`` gives "" (compose warns), ``$$`` is a literal ``$``."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        value = env.get(name)
        if m.group(2) == ":-" and not value:
            return m.group(3)
        if m.group(2) == "-" and value is None:
            return m.group(3)
        return value or ""

    return _COMPOSE_VAR.sub(sub, value)


def unset_compose_variables(value: str) -> list[str]:
    return [m.group(1) or m.group(4) for m in _COMPOSE_VAR.finditer(value) if m.group(0) != "$$" and not m.group(2)]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (ROOT / DOCKERFILE).read_text().splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def dockerfile_entrypoint() -> list[str]:
    lines = [line for line in (ROOT / DOCKERFILE).read_text().splitlines() if line.startswith("ENTRYPOINT ")]
    assert len(lines) == 1, lines
    return json.loads(lines[0].removeprefix("ENTRYPOINT "))


def service_env(svc: dict[str, Any]) -> dict[str, str]:
    """The environment a pipeline container starts with: the Dockerfile's ENV, then compose's."""
    env = dockerfile_env() if svc.get("build") else {}
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    for key, value in raw.items():
        env[key] = interpolate("" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
    return env


def settings_in(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    import os

    for key in list(os.environ):
        if key.startswith("PULSE_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def known_setting_variables() -> set[str]:
    """Every PULSE_* variable ``Settings`` reads."""
    from pydantic_settings import BaseSettings

    names = set()
    for field, info in Settings.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseSettings):
            prefix = sub.model_config.get("env_prefix", "")
            names |= {f"{prefix}{name}".upper() for name in sub.model_fields}
        else:
            names.add(f"PULSE_{field}".upper())
    return names


def bind_mounts(svc: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (short syntax, relative to the repo)."""
    out = {}
    for volume in svc.get("volumes") or []:
        parts = volume.split(":")
        if parts[0].startswith((".", "/")):
            out[parts[1].rstrip("/")] = (ROOT / parts[0]).resolve()
    return out


def host_path(svc: dict[str, Any], container_path: str) -> Path:
    mounts = bind_mounts(svc)
    for target in sorted(mounts, key=len, reverse=True):
        if container_path == target or container_path.startswith(target + "/"):
            return mounts[target] / container_path[len(target):].lstrip("/")
    raise AssertionError(f"{container_path} is not under a bind mount of the service: {sorted(mounts)}")


# HTTP servers of the pipeline services: (settings part, bind-host field, port field).
HTTP = {
    "collector": ("collector", "host", "port"),
    "worker": ("worker", "web_host", "web_port"),
    "sink": ("sink", "host", "port"),
    "notifier": ("notifier", "host", "port"),
}


def http_port(settings: Settings, service: str) -> int:
    part, _, port = HTTP[service]
    return int(getattr(getattr(settings, part), port))


def default_http_port(service: str) -> int:
    """The port's default as declared in pipeline/settings.py."""
    part, _, port = HTTP[service]
    return int(Settings.model_fields[part].default_factory.model_fields[port].default)  # type: ignore[union-attr]


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((GRAFANA_DIR / "provisioning" / "datasources").glob("*.y*ml")):
        for ds in load_yaml(path).get("datasources", []):
            assert ds["uid"] not in out, f"datasource uid {ds['uid']} provisioned twice"
            out[ds["uid"]] = ds
    return out


def panel_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(panel, target, datasource ref) for every query of the dashboard."""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target, target.get("datasource") or panel.get("datasource")


# ------------------------------------------------------------------------------ PromQL, checked

TARGET_LABELS = frozenset({"job", "instance"})  # added by Prometheus to every scraped series


def exported_series() -> dict[str, frozenset[str]]:
    """Series name -> labels, for every metric in pipeline/metrics.py, as prometheus_client exposes
    them (a Counter named x_total exposes x_total and x_created; a Histogram x exposes x_bucket with
    ``le``, x_sum, x_count), plus the series Prometheus adds itself."""
    import pipeline.metrics as metrics
    from prometheus_client.metrics import MetricWrapperBase

    series: dict[str, frozenset[str]] = {"up": frozenset()}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        labels = frozenset(obj._labelnames)
        for family in obj.describe():
            name, kind = family.name, family.type
            if kind == "counter":
                series[f"{name}_total"] = series[f"{name}_created"] = labels
            elif kind == "histogram":
                series[f"{name}_bucket"] = labels | {"le"}
                series[f"{name}_sum"] = series[f"{name}_count"] = series[f"{name}_created"] = labels
            elif kind == "summary":
                series[name] = labels | {"quantile"}
                series[f"{name}_sum"] = series[f"{name}_count"] = labels
            else:
                series[name] = labels
    return series


_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<num>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|s|m|h|d|w|y)*)
  | (?P<var>\$\{[^}]+\}|\$\w+)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,(){}@])
""", re.X)

AGGREGATIONS = {"sum", "avg", "count", "min", "max", "stddev", "stdvar", "group", "topk", "bottomk", "quantile",
                "count_values", "limitk", "limit_ratio"}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time", "ceil",
    "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "deg", "delta", "deriv", "exp", "floor", "histogram_avg", "histogram_count",
    "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time", "ln",
    "log10", "log2", "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin", "sinh",
    "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
    "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}
SCALAR_FUNCTIONS = {"scalar", "time", "pi", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour",
                    "minute", "month", "year"}
PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<": 3, ">": 3, "<=": 3, ">=": 3,
              "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}

Labels = frozenset[str] | None  # a vector's label names; None for a scalar or a string


class PromQLError(AssertionError):
    pass


class PromQL:
    """A small PromQL parser that tracks the label names of every sub-expression, to check an
    expression against the exported series: metric names, matcher labels, ``by``/``without``/``on``/
    ``ignoring`` labels, histogram_quantile's ``le``, and one-to-one vector matching (both sides
    must carry the same labels, else the operator matches nothing). Grafana's ``$variables`` are
    accepted as scalars and inside ``[ranges]``."""

    def __init__(self, expr: str, series: dict[str, frozenset[str]]) -> None:
        self.series = series
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(expr):
            m = _TOKEN.match(expr, pos)
            if m is None:
                raise PromQLError(f"cannot tokenize at {expr[pos:pos + 20]!r}")
            pos = m.end()
            if m.lastgroup != "ws":
                self.tokens.append((m.lastgroup or "", m.group()))
        self.pos = 0
        self.metrics: set[str] = set()
        self.labels = self._expr(1)
        if self.pos != len(self.tokens):
            raise PromQLError(f"unexpected {self._peek()[1]!r}")

    # tokens
    def _peek(self, ahead: int = 0) -> tuple[str, str]:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else ("eof", "")

    def _next(self) -> tuple[str, str]:
        tok = self._peek()
        if tok[0] == "eof":
            raise PromQLError("unexpected end of expression")
        self.pos += 1
        return tok

    def _expect(self, value: str) -> None:
        tok = self._next()
        if tok[1] != value:
            raise PromQLError(f"expected {value!r}, got {tok[1]!r}")

    def _ident_is(self, *words: str) -> bool:
        kind, value = self._peek()
        return kind == "ident" and value.lower() in words

    def _label_list(self) -> frozenset[str]:
        self._expect("(")
        names = []
        while self._peek()[1] != ")":
            kind, value = self._next()
            if kind != "ident":
                raise PromQLError(f"expected a label name, got {value!r}")
            names.append(value)
            if self._peek()[1] == ",":
                self._next()
        self._expect(")")
        return frozenset(names)

    # grammar
    def _expr(self, min_prec: int) -> Labels:
        lhs = self._unary()
        while True:
            kind, value = self._peek()
            op = value.lower() if kind == "ident" else value
            if kind not in ("op", "ident") or op not in PRECEDENCE or PRECEDENCE[op] < min_prec:
                return lhs
            self._next()
            if self._ident_is("bool"):
                self._next()
            matching = group = None
            if self._ident_is("on", "ignoring"):
                matching = (self._next()[1].lower(), self._label_list())
                if self._ident_is("group_left", "group_right"):
                    gkind = self._next()[1].lower()
                    group = (gkind, self._label_list() if self._peek()[1] == "(" else frozenset())
            rhs = self._expr(PRECEDENCE[op] if op == "^" else PRECEDENCE[op] + 1)
            lhs = self._binary(op, lhs, rhs, matching, group)

    def _binary(self, op: str, lhs: Labels, rhs: Labels, matching: Any, group: Any) -> Labels:
        if lhs is None or rhs is None:
            if op in ("and", "or", "unless"):
                raise PromQLError(f"{op} needs vectors on both sides")
            return rhs if lhs is None else lhs
        ignored: frozenset[str] = frozenset()
        if matching:
            kind, names = matching
            if kind == "on":
                if missing := names - (lhs & rhs):
                    raise PromQLError(f"on({', '.join(sorted(missing))}): not on both sides ({sorted(lhs)} {op} {sorted(rhs)})")
            else:
                if missing := names - (lhs | rhs):
                    raise PromQLError(f"ignoring({', '.join(sorted(missing))}): on neither side")
                ignored = names
        if group:
            gkind, extra = group
            one, many = (rhs, lhs) if gkind == "group_left" else (lhs, rhs)
            if missing := extra - one:
                raise PromQLError(f"{gkind}({', '.join(sorted(missing))}): not on the 'one' side")
            return many | extra
        if op == "or":
            return lhs | rhs
        if not (matching and matching[0] == "on") and lhs - ignored != rhs - ignored:
            raise PromQLError(f"'{op}' matches series with identical labels, but the sides carry "
                              f"{sorted(lhs - ignored)} and {sorted(rhs - ignored)}: use on(...)/ignoring(...) or aggregate")
        return lhs

    def _unary(self) -> Labels:
        if self._peek()[1] in ("-", "+"):
            self._next()
            return self._postfix(self._primary())
        return self._postfix(self._primary())

    def _postfix(self, labels: Labels) -> Labels:
        while True:
            kind, value = self._peek()
            if kind == "range":
                self._next()
            elif kind == "ident" and value.lower() == "offset":
                self._next()
                if self._peek()[1] == "-":
                    self._next()
                self._next()
            elif value == "@":
                self._next()
                if self._next()[0] == "ident":  # start() / end()
                    self._expect("(")
                    self._expect(")")
            else:
                return labels

    def _primary(self) -> Labels:
        kind, value = self._next()
        if kind in ("num", "var", "str"):
            return None
        if value == "(":
            labels = self._expr(1)
            self._expect(")")
            return labels
        if kind != "ident":
            raise PromQLError(f"unexpected {value!r}")
        low = value.lower()
        if low in AGGREGATIONS and (self._peek()[1] == "(" or self._ident_is("by", "without")):
            return self._aggregation(low)
        if self._peek()[1] == "(":
            return self._call(value)
        if low in ("inf", "nan"):
            return None
        return self._selector(value)

    def _args(self) -> list[tuple[Labels, str | None]]:
        self._expect("(")
        args = []
        while self._peek()[1] != ")":
            literal = self._peek()[1].strip("\"'`") if self._peek()[0] == "str" else None
            args.append((self._expr(1), literal))
            if self._peek()[1] == ",":
                self._next()
        self._expect(")")
        return args

    def _aggregation(self, op: str) -> Labels:
        grouping = None
        if self._ident_is("by", "without"):
            grouping = (self._next()[1].lower(), self._label_list())
        args = self._args()
        if grouping is None and self._ident_is("by", "without"):
            grouping = (self._next()[1].lower(), self._label_list())
        if not args or args[-1][0] is None:
            raise PromQLError(f"{op}(...) needs a vector")
        vector = args[-1][0]
        if grouping:
            kind, names = grouping
            if missing := names - vector:
                raise PromQLError(f"{op} {kind} ({', '.join(sorted(missing))}): not a label of {sorted(vector)}")
            result = names if kind == "by" else vector - names
        else:
            result = frozenset()
        if op in ("topk", "bottomk", "limitk", "limit_ratio"):
            result = vector
        if op == "count_values" and args[0][1]:
            result = result | {args[0][1]}
        return result

    def _call(self, name: str) -> Labels:
        if name not in FUNCTIONS:
            raise PromQLError(f"unknown function {name}()")
        args = self._args()
        vectors = [labels for labels, _ in args if labels is not None]
        if name == "histogram_quantile":
            if len(args) != 2 or args[1][0] is None:
                raise PromQLError("histogram_quantile(φ, buckets) needs a vector of buckets")
            if "le" not in args[1][0]:
                raise PromQLError(f"histogram_quantile over {sorted(args[1][0])}: no 'le' label (aggregate by le)")
            return args[1][0] - {"le"}
        if name in ("label_replace", "label_join") and vectors and args[1][1]:
            return vectors[0] | {args[1][1]}
        if name in SCALAR_FUNCTIONS:
            return None
        if name in ("vector", "absent", "absent_over_time"):
            return frozenset()
        return vectors[0] if vectors else None

    def _selector(self, name: str) -> Labels:
        matchers = []
        if self._peek()[1] == "{":
            self._next()
            while self._peek()[1] != "}":
                kind, label = self._next()
                if kind != "ident":
                    raise PromQLError(f"expected a label name in {name}{{...}}, got {label!r}")
                op = self._next()[1]
                if op not in ("=", "!=", "=~", "!~") or self._next()[0] != "str":
                    raise PromQLError(f"bad matcher on {label} in {name}{{...}}")
                matchers.append(label)
                if self._peek()[1] == ",":
                    self._next()
            self._expect("}")
        if name not in self.series:
            raise PromQLError(f"unknown metric {name} (not exported by pipeline/metrics.py)")
        labels = self.series[name] | TARGET_LABELS
        if missing := set(matchers) - labels - {"__name__"}:
            raise PromQLError(f"{name}{{{', '.join(sorted(missing))}=...}}: {name} has labels {sorted(labels)}")
        self.metrics.add(name)
        return labels


def template_labels(text: str) -> set[str]:
    """Label names a Grafana legend (``{{process}}``) or an alert template (``{{ $labels.process }}``) uses."""
    return set(re.findall(r"\{\{\s*(?:\$labels\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", text))


def promql_expressions() -> list[tuple[str, str, str]]:
    """(where, expression, label template text) for every PromQL expression of the deployment."""
    out = []
    provisioned = provisioned_datasources()
    for name, board in load_dashboards().items():
        for panel, target, ds in panel_targets(board):
            if isinstance(ds, dict) and provisioned.get(ds.get("uid"), {}).get("type") == "prometheus":
                out.append((f"{name}: {panel['title']} [{target['refId']}]", target["expr"],
                            target.get("legendFormat", "")))
    for group in load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]:
        for rule in group["rules"]:
            where = f"alerts.yml: {rule.get('alert') or rule.get('record')}"
            out.append((where, rule["expr"], " ".join(str(v) for v in (rule.get("annotations") or {}).values())))
    return out


# ------------------------------------------------------------------------------------ compose

def test_compose_parses_and_has_every_service(compose: dict[str, Any]) -> None:
    assert SERVICES <= set(services(compose))
    assert {"sink", "worker", "collector", "notifier"} <= set(pipeline_services(compose))


def test_images_are_pinned_and_environment_values_are_strings(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use the mapping form of environment"
        for key, value in env.items():  # compose refuses booleans and nulls here
            assert isinstance(value, (str, int, float)) and not isinstance(value, bool), f"{name}: {key}={value!r}"
        if "build" in svc:
            continue
        image = svc["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith((":latest", ":main")), f"{name}: {image}"


def test_pipeline_services_run_existing_pulse_subcommands(compose: dict[str, Any]) -> None:
    import typer.main

    from pipeline.cli import app

    assert dockerfile_entrypoint() == ["pulse"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pulse"] == "pipeline.cli:main"
    root = typer.main.get_command(app)
    for name, svc in pipeline_services(compose).items():
        command = svc.get("command")
        assert isinstance(command, list) and command, f"{name}: command must be a list naming a pulse subcommand"
        group: Any = root
        for word in command:
            if word.startswith("-") or not hasattr(group, "commands"):
                break
            assert word in group.commands, f"{name}: `pulse {' '.join(command)}`: no command {word!r}; " \
                                           f"`pulse` has {sorted(group.commands)}"
            group = group.commands[word]
    # the service runs its namesake process: a copy-paste slip would start a second sink
    for name in HTTP:
        assert pipeline_services(compose)[name]["command"][0] == name


def test_pipeline_environment_is_valid_settings(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    known = known_setting_variables()
    for name, svc in pipeline_services(compose).items():
        env = service_env(svc)
        unknown = {key for key in env if key.startswith("PULSE_") and key not in known
                   and not key.startswith("PULSE_NOTIFY_")}  # PULSE_NOTIFY_*: ${VAR}s of the notifier's config file
        assert not unknown, f"{name}: {sorted(unknown)} are not settings (pipeline/settings.py)"
        settings = settings_in(env, monkeypatch)
        assert not settings.clickhouse.embedded, f"{name}: containers share the ClickHouse server, not chDB"
        host = settings.kafka.bootstrap_servers.split(",")[0].rpartition(":")[0]
        assert host in services(compose), f"{name}: Kafka host {host} is not a compose service"
        ch_host = urlparse(settings.clickhouse.url).hostname
        assert ch_host in services(compose), f"{name}: ClickHouse host {ch_host} is not a compose service"


def test_http_servers_listen_on_all_interfaces(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (part, host, _) in HTTP.items():
        env = service_env(services(compose)[name])
        bound = getattr(getattr(settings_in(env, monkeypatch), part), host)
        assert bound == "0.0.0.0", f"{name} listens on {bound} in its container: Prometheus cannot scrape it"


def test_the_worker_binds_its_web_server_to_pulse_worker_web_host(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    from agents.app import make_app

    settings = settings_in({"PULSE_WORKER_DATA_DIR": str(tmp_path / "worker")}, monkeypatch)
    assert make_app(settings).conf.web_bind == "127.0.0.1"  # the default: loopback only
    settings = settings_in({"PULSE_WORKER_DATA_DIR": str(tmp_path / "worker"), "PULSE_WORKER_WEB_HOST": "0.0.0.0"},
                           monkeypatch)
    app = make_app(settings)
    assert app.conf.web_bind == "0.0.0.0"
    assert app.conf.web_port == settings.worker.web_port


def test_healthchecks_and_published_ports_match_settings(compose: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HTTP:
        svc = services(compose)[name]
        expected = http_port(settings_in(service_env(svc), monkeypatch), name)
        urls = [word for word in svc["healthcheck"]["test"] if str(word).startswith("http")]
        assert len(urls) == 1, f"{name}: health check {svc['healthcheck']['test']}"
        url = urlparse(urls[0])
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", expected, "/health"), f"{name}: {urls[0]}"
        for mapping in svc.get("ports", []):
            assert int(str(mapping).rsplit(":", 1)[-1]) == expected, f"{name}: publishes {mapping}, listens on {expected}"
    for name, svc in services(compose).items():
        assert "healthcheck" in svc, f"{name} has no health check"
    # dependencies on health need a health check to wait for
    for name, svc in services(compose).items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services(compose), f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services(compose)[dep], f"{name} waits for {dep} to be healthy; it has no check"


def test_notifier_config_loads_with_the_compose_environment(compose: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.notify.config import load_config_file

    svc = services(compose)["notifier"]
    raw = svc["environment"]
    for key, value in raw.items():  # no variable the user must export before `docker compose up`
        assert not unset_compose_variables(str(value)), f"notifier: {key}={value} has no default"
    env = service_env(svc)
    settings = settings_in(env, monkeypatch)
    config_path = settings.notifier.config_path
    if not config_path.is_relative_to(ROOT):  # a file mounted into the container
        config_path = host_path(svc, str(config_path))
    config = load_config_file(config_path, env=env)  # ConfigError if a ${VAR} is unset or a URL is bad
    assert config.receivers
    state = settings.notifier.state_path
    volumes = [str(v).split(":")[1] for v in svc.get("volumes", [])]
    assert any(state.is_relative_to(v) for v in volumes), f"notifier state {state} is not on a volume ({volumes})"


# --------------------------------------------------------------------------------- prometheus

def test_prometheus_scrapes_every_process_on_its_settings_port(compose: dict[str, Any],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    prom_svc = services(compose)["prometheus"]
    command = prom_svc["command"]
    config_arg = next(arg for arg in command if arg.startswith("--config.file="))
    config_path = host_path(prom_svc, config_arg.split("=", 1)[1])
    assert config_path == PROMETHEUS_DIR / "prometheus.yml"
    config = load_yaml(config_path)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in HTTP:
        assert name in jobs, f"no scrape job for {name}"
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics" and job.get("scheme", "http") == "http"
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        expected = http_port(settings_in(service_env(services(compose)[name]), monkeypatch), name)
        assert expected == default_http_port(name), f"{name}: compose overrides the port; keep the default"
        assert targets == [f"{name}:{expected}"], f"{name}: scrapes {targets}, listens on {expected}"
    for rule_file in config.get("rule_files", []):
        path = config_path.parent / rule_file
        assert path.is_file(), f"rule file {rule_file} does not exist"
        assert path.parent == config_path.parent, "rule files must be inside the mounted deploy/prometheus"


def test_alert_rules_are_well_formed() -> None:
    groups = load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
    names = [rule["alert"] for group in groups for rule in group["rules"]]
    assert len(names) == len(set(names)) and len(names) >= 4
    for group in groups:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]


def pinned_promtool() -> Path | None:
    """The promtool deploy/ensure-promtool.sh built (its pinned version, under the project's cache), else
    one on PATH. The pinned one comes first: another version may judge the files differently."""
    script = ROOT / "deploy" / "ensure-promtool.sh"
    proc = subprocess.run(["bash", str(script), "--path"], capture_output=True, text=True, timeout=30, check=True)
    built = Path(proc.stdout.strip())
    if built.is_file() and os.access(built, os.X_OK):
        return built
    on_path = shutil.which("promtool")
    return Path(on_path) if on_path else None


def test_compose_runs_the_prometheus_version_promtool_checks(compose: dict[str, Any]) -> None:
    """The rules and config are checked by promtool at one version; the compose file must deploy that
    version (2.x and 3.x judge some things differently, e.g. whether a range includes its start)."""
    pinned = re.search(r"^PROMTOOL_VERSION=v0\.(\d)(\d+)\.(\d+)$", (ROOT / "deploy" / "ensure-promtool.sh").read_text(),
                       re.MULTILINE)
    assert pinned, "deploy/ensure-promtool.sh: PROMTOOL_VERSION=v0.3XX.Y not found"
    release = f"v{pinned[1]}.{int(pinned[2])}.{pinned[3]}"
    assert services(compose)["prometheus"]["image"] == f"prom/prometheus:{release}"


def test_prometheus_config_and_alert_rules_pass_promtool() -> None:
    """promtool's own checks, and the alert rules' unit tests (deploy/prometheus/alerts_test.yml)."""
    promtool = pinned_promtool()
    if promtool is None:
        reason = "promtool is not installed (bash deploy/ensure-promtool.sh builds it; `make test` runs that)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        proc = subprocess.run([str(promtool), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, f"{promtool} {' '.join(args)}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("where,expr,templates", [pytest.param(*e, id=e[0]) for e in promql_expressions()])
def test_promql_uses_exported_metrics_and_labels(where: str, expr: str, templates: str) -> None:
    try:
        parsed = PromQL(expr, exported_series())
    except PromQLError as exc:
        pytest.fail(f"{where}: {exc}\n  {expr}")
    assert parsed.metrics, f"{where}: no metric in {expr}"
    if parsed.labels is not None:
        assert template_labels(templates) <= parsed.labels, \
            f"{where}: the legend/annotation uses {sorted(template_labels(templates) - parsed.labels)}, " \
            f"the expression keeps {sorted(parsed.labels)}"


@pytest.mark.parametrize("expr,error", [
    ("rate(pulse_event_in_total[5m])", "unknown metric pulse_event_in_total"),
    ("pulse_events_in", "unknown metric pulse_events_in"),  # a Counter is exposed with _total
    ("pulse_batch_seconds_total", "unknown metric"),
    ("sum by (topic) (rate(pulse_events_in_total[5m]))", "not a label"),
    ('pulse_consumer_lag{table="x"}', "pulse_consumer_lag{table=...}"),
    ("histogram_quantile(0.9, sum by (process) (rate(pulse_batch_seconds_bucket[5m])))", "no 'le' label"),
    ("histogram_quantile(0.9, rate(pulse_batch_seconds_sum[5m]))", "no 'le' label"),
    ("sum by (process) (rate(pulse_events_in_total[5m])) / sum(rate(pulse_dead_letters_total[5m]))", "identical labels"),
    ("rate(pulse_events_in_total[5m]) / on(step) rate(pulse_dead_letters_total[5m])", "not on both sides"),
    ("sum by (process) (rates(pulse_events_in_total[5m]))", "unknown function"),
])
def test_the_promql_check_catches_mistakes(expr: str, error: str) -> None:
    with pytest.raises(PromQLError, match=re.escape(error)):
        PromQL(expr, exported_series())


def test_the_promql_check_accepts_valid_matching() -> None:
    series = exported_series()
    parsed = PromQL("sum by (process, type) (rate(pulse_events_in_total[5m])) / ignoring(type) group_left "
                    'sum by (process) (rate(pulse_dead_letters_total{step="worker"}[$__rate_interval]))', series)
    assert parsed.labels == {"process", "type"}
    assert PromQL("histogram_quantile(0.99, sum by (le, table) (rate(pulse_clickhouse_insert_seconds_bucket[5m])))",
                  series).labels == {"table"}
    assert PromQL("up == 0", series).labels == {"job", "instance"}


# ------------------------------------------------------------------------------------ grafana

def test_grafana_provisioning_is_mounted_where_grafana_reads_it(compose: dict[str, Any]) -> None:
    svc = services(compose)["grafana"]
    provisioning = host_path(svc, "/etc/grafana/provisioning")
    assert provisioning == GRAFANA_DIR / "provisioning"
    providers = [p for path in sorted((provisioning / "dashboards").glob("*.y*ml")) for p in load_yaml(path)["providers"]]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    folder = host_path(svc, providers[0]["options"]["path"])
    assert folder == GRAFANA_DIR / "dashboards"
    assert {p.name for p in folder.glob("*.json")} >= {"pipeline-health.json", "product.json"}
    home = svc["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert host_path(svc, home).is_file()
    assert svc["environment"].get("GF_AUTH_ANONYMOUS_ENABLED") == "true"
    assert svc["environment"].get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer"  # viewers only, never editors


def test_datasources_point_at_the_compose_services(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    sources = provisioned_datasources()
    by_type = {ds["type"]: ds for ds in sources.values()}
    assert set(by_type) == {"prometheus", "grafana-clickhouse-datasource"}

    prom = by_type["prometheus"]
    url = urlparse(prom["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert any(str(p).endswith(":9090") for p in services(compose)["prometheus"]["ports"])
    scrape = load_yaml(PROMETHEUS_DIR / "prometheus.yml")["global"]["scrape_interval"]
    assert prom["jsonData"]["timeInterval"] == scrape  # $__rate_interval needs the real scrape interval

    ch = by_type["grafana-clickhouse-datasource"]
    grafana = services(compose)["grafana"]
    assert ch["type"] in grafana["environment"]["GF_INSTALL_PLUGINS"].split()
    settings = settings_in(service_env(services(compose)["sink"]), monkeypatch)
    server = urlparse(settings.clickhouse.url)
    data = ch["jsonData"]
    assert (data["host"], int(data["port"]), data["protocol"]) == (server.hostname, server.port, "http")
    assert data["defaultDatabase"] == settings.clickhouse.database
    # the user Grafana logs in as is the read-only one mounted into the ClickHouse server
    users_file = host_path(services(compose)["clickhouse"], "/etc/clickhouse-server/users.d/grafana.xml")
    xml = ET.parse(users_file).getroot()
    user = xml.find(f"users/{data['username']}")
    assert user is not None, f"no ClickHouse user {data['username']} in {users_file}"
    assert user.findtext("password") == ch["secureJsonData"]["password"]
    profile = xml.find(f"profiles/{user.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") in ("1", "2")


def test_dashboards_are_valid_grafana_json() -> None:
    boards = load_dashboards()
    assert set(boards) >= {"pipeline-health.json", "product.json"}
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in boards.items():
        assert board["uid"] == "pulse-" + Path(name).stem, f"{name}: uid {board['uid']} (links use it: keep it stable)"
        assert board["schemaVersion"] >= 38 and board["title"] and board.get("id") is None
        panels = list(iter_panels(board))
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        cells: dict[tuple[int, int], int] = {}
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']} {pos}"
            if panel["type"] == "row":
                continue
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), f"{name}: {panel['title']} repeats a refId"
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    other = cells.setdefault((x, y), panel["id"])
                    assert other == panel["id"], f"{name}: panels {other} and {panel['id']} overlap"


def test_dashboard_datasources_are_provisioned() -> None:
    sources = provisioned_datasources()
    for name, board in load_dashboards().items():
        refs = [(p["title"], ds) for p, _, ds in panel_targets(board)]
        refs += [(p["title"], p["datasource"]) for p in iter_panels(board) if "datasource" in p]
        refs += [(f"${v['name']}", v["datasource"]) for v in board["templating"]["list"] if "datasource" in v]
        assert refs
        for where, ds in refs:
            assert isinstance(ds, dict), f"{name}: {where}: refer to the datasource by uid, got {ds!r}"
            assert ds["uid"] in sources, f"{name}: {where}: datasource uid {ds['uid']!r} is not provisioned"
            assert ds["type"] == sources[ds["uid"]]["type"], f"{name}: {where}: type {ds['type']}"


CH_MACROS = {"timeFilter", "timeFilter_ms", "timeInterval", "timeInterval_ms", "fromTime", "toTime", "fromTime_ms",
             "toTime_ms", "dateFilter", "dateTimeFilter", "dt", "interval_s", "conditionalAll"}


def test_clickhouse_queries_are_sql_with_known_macros_and_variables() -> None:
    sources = provisioned_datasources()
    checked = 0
    for name, board in load_dashboards().items():
        variables = {v["name"] for v in board["templating"]["list"]}
        for panel, target, ds in panel_targets(board):
            if sources[ds["uid"]]["type"] != "grafana-clickhouse-datasource":
                continue
            where = f"{name}: {panel['title']}"
            sql = target["rawSql"]
            assert target["editorType"] == "sql" and sql.strip(), where
            assert (target["format"], target["queryType"]) in ((0, "timeseries"), (1, "table")), where
            if panel["type"] == "timeseries":
                assert target["format"] == 0 and re.search(r"\bAS time\b", sql), f"{where}: needs a `time` column"
            for macro in re.findall(r"\$__(\w+)", sql):
                assert macro in CH_MACROS, f"{where}: $__{macro} is not a macro of the ClickHouse plugin"
            for var in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(?!__)(\w+)", sql):
                assert (var[0] or var[1]) in variables, f"{where}: unknown variable {var}"
            checked += 1
    assert checked >= 10
