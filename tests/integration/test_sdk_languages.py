"""The published server SDKs beyond Python: @sentry/node + posthog-node, sentry-go + posthog-go, and
io.sentry:sentry + com.posthog:posthog-server (pinned in tests/sdk/<lang>/), each driven by a small
program against a collector started here, twice with two releases. Each program captures an
exception thrown through two of its own functions, a message (Sentry), a ``GET /checkout``
transaction with an HTTP call (Sentry) or a ``$pageview`` (PostHog), and identifies user
``user-<lang>``. The stored rows must carry the type, message, in-app frames and culprit, release,
environment, user id and route, and the exception must be ONE issue across both releases.

Needs `deploy/ensure-sdk-deps.sh` (run by `make test`); a language whose toolchain or packages are
missing is skipped with the reason, except under CI where that is a failure."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.kafka_admin import ensure_topics
from pipeline.settings import Settings
from tests.conftest import make_settings
from tests.integration.test_sdk_ingestion import wait_rows
from tests.integration.pipeline_procs import PipelineProcs, running_pipeline
from tests.integration.test_sessions import query

pytestmark = [pytest.mark.integration, pytest.mark.sdk]
SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"
KEY = "phc_sdk_probe_key"  # a DSN public key and a PostHog project key at once
RELEASES = ("shop@1.0.0", "shop@1.1.0")
ENVIRONMENT = "staging"


@dataclass(frozen=True)
class Language:
    name: str
    tools: tuple[str, ...]
    ready_path: str  # exists once deploy/ensure-sdk-deps.sh ran
    sentry_sdk: str  # sdk_name
    posthog_sdk: str
    exception_type: str

    def missing(self) -> str | None:
        absent = [t for t in self.tools if shutil.which(t) is None]
        if absent:
            return f"{self.name}: toolchain missing: {', '.join(absent)} (see deploy/ensure-sdk-deps.sh)"
        if not (SDK_DIR / self.ready_path).exists():
            return f"{self.name}: SDK packages missing: run deploy/ensure-sdk-deps.sh"
        return None


LANGUAGES = {
    "node": Language("node", ("node",), "node/node_modules/@sentry/node", "sentry.javascript.node", "posthog-node",
                     "TypeError"),
    "go": Language("go", ("go",), "go/go.sum", "sentry.go", "posthog-go", "*errors.errorString"),
    "java": Language("java", ("java", "javac"), "java/target/dependency/sentry-8.64.0.jar", "sentry.java",
                     "posthog-server", "IllegalStateException"),
}


def _build(lang: Language, out: Path) -> list[str]:
    """The command that runs ``lang``'s program (built into ``out`` first, where there is a build)."""
    if lang.name == "node":
        return ["node", str(SDK_DIR / "node" / "probe.cjs")]
    if lang.name == "go":
        binary = out / "sdkprobe"
        subprocess.run(["go", "build", "-o", str(binary), "."], cwd=SDK_DIR / "go", check=True, timeout=300,
                       env={**os.environ, "GOFLAGS": "-mod=readonly"})
        return [str(binary)]
    classes = out / "classes"
    deps = str(SDK_DIR / "java" / "target" / "dependency" / "*")
    subprocess.run(["javac", "-d", str(classes), "-cp", deps, str(SDK_DIR / "java" / "src" / "shop" / "Probe.java")],
                   check=True, timeout=300)
    return ["java", "-cp", f"{classes}{os.pathsep}{deps}", "shop.Probe"]


@dataclass
class Landed:
    settings: Settings
    procs: PipelineProcs
    ran: dict[str, str | None]  # language -> why it was not run (None: it ran)


def _wait(settings: Settings, sql: str, want: int, procs: PipelineProcs, timeout_s: float = 90) -> None:
    def sdks() -> str:
        seen = query(settings, "SELECT DISTINCT sdk_name FROM errors UNION DISTINCT SELECT DISTINCT sdk_name FROM actions")
        return f"; SDKs seen: {seen}"
    wait_rows(settings, sql, want, procs, timeout_s, detail=sdks)


@pytest.fixture(scope="module")
def landed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Landed]:
    """One pipeline; every language's program built once and run once per release, all in parallel."""
    tmp = tmp_path_factory.mktemp("sdk-languages")
    settings = make_settings(kafka_bootstrap, tmp, PULSE_COLLECTOR_PROJECT_KEYS=json.dumps({KEY: "shop"}))
    asyncio.run(ensure_topics(settings.kafka))
    collector = f"http://127.0.0.1:{settings.collector.port}"
    dsn = f"http://{KEY}@127.0.0.1:{settings.collector.port}/1"
    skipped = {name: lang.missing() for name, lang in LANGUAGES.items()}
    commands = {name: _build(lang, tmp) for name, lang in LANGUAGES.items() if skipped[name] is None}
    with running_pipeline(settings, tmp / "logs") as procs:
        runs = [(name, release, subprocess.Popen(
                    [*command, dsn, collector, KEY, release, ENVIRONMENT, f"{collector}/health"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
                for name, command in commands.items() for release in RELEASES]
        failures = []
        for name, release, proc in runs:
            try:
                out, _ = proc.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc.returncode != 0:
                failures.append(f"{name} {release}: exit {proc.returncode}\n{out[-3000:]}")
        assert not failures, "\n".join(failures)
        yield Landed(settings, procs, skipped)


def _ready(landed: Landed, name: str) -> Language:
    reason = landed.ran[name]
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return LANGUAGES[name]


def _check_exceptions(landed: Landed, sdk_name: str, lang: Language) -> None:
    """Two exception rows (one per release): type, message, in-app frames, culprit, one issue."""
    settings, procs = landed.settings, landed.procs
    where = f"sdk_name = '{sdk_name}' AND exception_type != 'Message'"
    _wait(settings, f"SELECT count() FROM errors WHERE {where}", 2, procs)
    rows = query(settings, f"SELECT exception_type, message, release, environment, user_id, culprit, group_id, "
                           f"stacktrace, level, project FROM errors WHERE {where} ORDER BY release")
    assert [r[2] for r in rows] == list(RELEASES), rows
    for etype, message, _release, environment, user_id, culprit, group_id, stacktrace, _level, project in rows:
        assert etype == lang.exception_type, (etype, lang.exception_type)
        assert "card declined for amount 42" in message, message
        assert (environment, user_id, project) == (ENVIRONMENT, f"user-{lang.name}", "shop")
        frames = json.loads(stacktrace)
        in_app = [f.get("function") or "" for f in frames if f.get("in_app")]
        # outermost first: checkout calls chargeCard, which raised; no runtime frame is in-app
        assert any(f.endswith("checkout") for f in in_app) and in_app[-1].endswith("chargeCard"), frames
        assert not any(f.startswith(("runtime.", "java.", "node:", "internal/")) for f in in_app), in_app
        assert "chargeCard" in culprit, culprit
        assert group_id, rows
    assert len({r[6] for r in rows}) == 1, f"two issues across releases: {[r[6] for r in rows]}"


@pytest.mark.parametrize("name", list(LANGUAGES))
def test_sentry_sdk(landed: Landed, name: str) -> None:
    lang = _ready(landed, name)
    settings, procs = landed.settings, landed.procs
    _check_exceptions(landed, lang.sentry_sdk, lang)
    sdk = f"sdk_name = '{lang.sentry_sdk}'"
    _wait(settings, f"SELECT count() FROM errors WHERE {sdk} AND exception_type = 'Message'", 2, procs)
    messages = query(settings, f"SELECT message, level, release, environment, user_id FROM errors "
                               f"WHERE {sdk} AND exception_type = 'Message' ORDER BY release")
    assert messages == [["cart is empty", "warning" if name != "go" else "info", r, ENVIRONMENT, f"user-{name}"]
                        for r in RELEASES], messages
    # the transaction's HTTP span, under the transaction's route
    _wait(settings, f"SELECT count() FROM api_calls WHERE {sdk}", 2, procs)
    calls = query(settings, f"SELECT route, request_url, method, status, release, environment, user_id "
                            f"FROM api_calls WHERE {sdk} ORDER BY release")
    for (route, url, method, status, release, environment, user_id), want in zip(calls, RELEASES, strict=True):
        assert (route, method, release, environment, user_id) == ("/checkout", "GET", want, ENVIRONMENT,
                                                                  f"user-{name}"), calls
        assert url.endswith("/health") and status == "200", calls


@pytest.mark.parametrize("name", list(LANGUAGES))
def test_posthog_sdk(landed: Landed, name: str) -> None:
    lang = _ready(landed, name)
    settings, procs = landed.settings, landed.procs
    _check_exceptions(landed, lang.posthog_sdk, lang)
    sdk = f"sdk_name = '{lang.posthog_sdk}'"
    _wait(settings, f"SELECT count() FROM actions WHERE {sdk} AND kind = 'pageview'", 2, procs)
    views = query(settings, f"SELECT url, release, environment, user_id FROM actions "
                            f"WHERE {sdk} AND kind = 'pageview' ORDER BY release")
    assert views == [["https://shop.example/checkout", r, ENVIRONMENT, f"user-{name}"] for r in RELEASES], views
    _wait(settings, f"SELECT count() FROM actions WHERE {sdk} AND name = '$identify'", 2, procs)
    [[user_id]] = query(settings, f"SELECT DISTINCT user_id FROM actions WHERE {sdk} AND name = '$identify'")
    assert user_id == f"user-{name}"
