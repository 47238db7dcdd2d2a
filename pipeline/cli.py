"""``pulse``: one entry point for every process and tool.

    pulse demo                      # broker + collector + worker + sink + demo traffic, then a summary
    pulse broker start|stop|status  # the project's own Kafka (deploy/kafka/kafka-local.sh)
    pulse topics create             # raw, dead-letter and storage topics with explicit partitions
    pulse collector | worker | sink # the long-running processes
    pulse notifier                  # alert events -> pages (webhook, Slack, PagerDuty, e-mail)
    pulse notify silence|silences|expire|ack|resolve|incidents   # talk to the running notifier
    pulse simulate                  # send simulated browser traffic to a running collector
    pulse query "SELECT ..."        # SQL, also while the sink holds the embedded database
    pulse report [--period 24h]     # the health report (docs/report.md); --json for the document
    pulse schemas export|check      # JSON Schema + ClickHouse DDL snapshots in schemas/
    pulse settings                  # the effective settings (env vars with the PULSE_ prefix)
"""

from __future__ import annotations

import asyncio
import sys
from typing import Optional

import typer
from rich.console import Console

from pipeline.settings import Settings, describe_settings_error

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0] if __doc__ else None)
broker_app = typer.Typer(no_args_is_help=True, help="The project's own single-node Kafka (KRaft) on loopback.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics.")
schemas_app = typer.Typer(no_args_is_help=True, help="Generated contract files in schemas/.")
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
console = Console(stderr=True)


def load_settings() -> Settings:
    """Build the one Settings object; bad env vars end the command with one line each."""
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError
        console.print(f"[red]{describe_settings_error(exc)}[/red]")
        raise typer.Exit(2) from exc


def local_broker(settings: Settings):  # type: ignore[no-untyped-def]
    from pipeline.localbroker import LocalBroker

    host, _, port = settings.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        console.print(f"[red]PULSE_KAFKA_BOOTSTRAP_SERVERS={settings.kafka.bootstrap_servers} is not local; "
                      "the local broker only runs on 127.0.0.1[/red]")
        raise typer.Exit(2)
    return LocalBroker(port=int(port), data_dir=settings.data_dir.resolve() / "kafka")


@broker_app.command("start")
def broker_start() -> None:
    """Fetch the jars (cached), format KRaft storage, start, wait until it answers."""
    settings = load_settings()
    broker = local_broker(settings)
    with console.status(f"starting Kafka on {broker.bootstrap} (first run fetches jars with Maven)..."):
        broker.start()
        from pipeline.kafka_admin import wait_for_broker

        asyncio.run(wait_for_broker(broker.bootstrap, timeout_s=60))
    console.print(f"Kafka ready on {broker.bootstrap} (data: {broker.data_dir})")


@broker_app.command("stop")
def broker_stop() -> None:
    local_broker(load_settings()).stop()


@broker_app.command("status")
def broker_status() -> None:
    broker = local_broker(load_settings())
    running = broker.running()
    console.print(f"{'running' if running else 'stopped'} on {broker.bootstrap}")
    raise typer.Exit(0 if running else 1)


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic with PULSE_KAFKA_PARTITIONS partitions (idempotent)."""
    from pipeline.kafka_admin import ensure_topics

    settings = load_settings()
    created = asyncio.run(ensure_topics(settings.kafka))
    for t in settings.kafka.all_topics:
        console.print(f"{t}: {'created' if t in created else 'exists'} ({settings.kafka.partitions} partitions)")


@app.command()
def collector() -> None:
    """HTTP collector: POST /api/v1/events, /health, /metrics."""
    from pipeline.collector import shared_metrics

    settings = load_settings()
    shared_metrics.enable(settings)  # before the app (and prometheus_client) is imported
    from pipeline.collector.app import run_collector

    run_collector(settings)


@app.command()
def worker() -> None:
    """The Faust worker: raw topics -> validated, deduplicated rows on the storage topic."""
    from agents.worker import run_worker
    from pipeline.alerts.rules import RuleFileError, load_rules

    settings = load_settings()
    try:  # before connecting to anything: a bad rule file is the operator's to fix, said plainly
        load_rules(settings.alerts.rules_path)
    except (RuleFileError, OSError) as exc:
        console.print(f"[red]alert rules: {exc}[/red]")
        raise typer.Exit(2) from exc
    run_worker(settings)


@app.command()
def sink() -> None:
    """The ClickHouse sink (sole owner of the database) and its read-only SQL endpoint."""
    from pipeline.storage.sink import run_sink
    from pipeline.storage.tables import check_retention

    settings = load_settings()
    try:
        check_retention(settings)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    run_sink(settings)


@app.command()
def notifier() -> None:
    """The notifier: alert events -> pages; silences, acknowledgements and incidents over HTTP."""
    from pipeline.notify.config import ConfigError, load_config_file
    from pipeline.notify.service import run_notifier

    settings = load_settings()
    try:
        config = load_config_file(settings.notifier.config_path)
    except ConfigError as exc:
        console.print(f"{exc}\n(PULSE_NOTIFIER_CONFIG_PATH={settings.notifier.config_path})", style="red",
                      markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    run_notifier(settings, config)


@app.command()
def query(sql: str = typer.Argument(..., help="A read-only query (SELECT, SHOW, DESCRIBE, EXPLAIN, WITH)"),
          fmt: str = typer.Option("PrettyCompactMonoBlock", "--format", "-f", help="Any ClickHouse output format")) -> None:
    """Run SQL: through the sink while it runs, directly on chDB when it does not, or on the server."""
    from pipeline.storage.query_client import QueryError, run_query

    try:
        sys.stdout.write(run_query(load_settings(), sql, fmt))
    except QueryError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True, markup=True, highlight=False)  # paths stay whole
        raise typer.Exit(1) from exc


@app.command("forget-user")
def forget_user_command(user_id: str = typer.Argument(..., help="The user id (or anonymous id) to forget"),
                        yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation")) -> None:
    """Delete every row of a user, and of their sessions, from every table (data protection)."""
    import json
    import urllib.error
    import urllib.request

    from pipeline.storage.query_client import WrongSink, check_sink_serves_own_data, sink_url

    settings = load_settings()
    if not yes:
        typer.confirm(f"Delete every row of user {user_id!r} from every table?", abort=True)
    deleted: dict[str, int] | None = None
    if settings.clickhouse.embedded:
        req = urllib.request.Request(sink_url(settings) + "api/forget-user", method="POST",
                                     data=json.dumps({"user_id": user_id}).encode(),
                                     headers={"Content-Type": "application/json"})
        token = settings.collector.api_token
        if token is not None:
            req.add_header("Authorization", f"Bearer {token.get_secret_value()}")
        try:
            check_sink_serves_own_data(settings)  # never delete from another pipeline's data
            with urllib.request.urlopen(req, timeout=600) as resp:
                deleted = json.loads(resp.read())["deleted"]
        except WrongSink as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        except urllib.error.HTTPError as exc:
            console.print(f"[red]{exc.read().decode(errors='replace')}[/red]")
            raise typer.Exit(1) from exc
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError):
                console.print(f"[red]sink at {sink_url(settings)} did not answer: {exc.reason}[/red]")
                raise typer.Exit(1) from exc
    if deleted is None:  # a ClickHouse server, or nothing running: the database is ours to open
        from pipeline.storage.clickhouse import connect
        from pipeline.storage.privacy import forget_user

        client = connect(settings.clickhouse)
        try:
            deleted = forget_user(client, user_id)
        finally:
            client.close()
    for table, n in sorted(deleted.items()):
        print(f"{table}\t{n}")
    console.print(f"deleted {sum(deleted.values())} rows of {user_id!r} from {len(deleted)} tables "
                  "(Kafka topics keep raw events until their retention)")


issues_app = typer.Typer(help="Issues (errors grouped by fingerprint): list, history, resolve, ignore, reopen.")
app.add_typer(issues_app, name="issues")


def _api_call(coro):  # type: ignore[no-untyped-def]
    """Run an API coroutine from the CLI; its errors end the command with their message."""
    from pipeline.api.common import ApiError

    try:
        return asyncio.run(coro)
    except ApiError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc


@issues_app.callback(invoke_without_command=True)
def issues(ctx: typer.Context, project: Optional[str] = typer.Option(None, help="Only this project"),
           status: Optional[str] = typer.Option(None, help="new, ongoing, escalating, regressed, resolved or ignored"),
           limit: int = typer.Option(20, help="How many, most recently seen first")) -> None:
    """Issues: status, title, culprit, events, affected users, first/last seen and release."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from pipeline.api.issues import list_issues

    rows = _api_call(list_issues(load_settings(), project, status, limit, allow_direct=True))
    table = Table("fingerprint", "status", "title", "culprit", "events", "users", "last seen", "releases")
    for r in rows:
        releases = r["first_release"] if r["first_release"] == r["last_release"] else \
            f"{r['first_release']} .. {r['last_release']}"
        table.add_row(r["fingerprint"][:12], r["status"], r["title"][:60], r["culprit"][:40], str(r["events"]),
                      str(r["affected_users"]), str(r["last_seen"])[:19], releases)
    Console().print(table)
    if not rows:
        console.print("no issues yet")


def _decide(action: str, fingerprint: str, project: Optional[str], **options: object) -> None:
    from pipeline.api.issues import find_issue, new_command, publish_command
    from pipeline.ingest.producer import EventProducer

    settings = load_settings()

    async def run() -> str:
        issue = await find_issue(settings, fingerprint, project, prefix=True, allow_direct=True)
        command = new_command(action, issue, actor=_whoami(), **options)  # type: ignore[arg-type]
        try:
            async with EventProducer(settings.kafka, process="cli") as producer:
                await publish_command(producer, settings, command)
        except Exception as exc:  # noqa: BLE001 - KafkaConnectionError, ProduceError, OSError: say so, exit 1
            console.print(f"[red]could not reach Kafka at {settings.kafka.bootstrap_servers}: {exc}[/red]")
            raise typer.Exit(1) from exc
        return f"{action}: {issue['project']}/{issue['fingerprint']} ({issue['title']}), was {issue['status']}"

    print(_api_call(run()))
    console.print("sent; the worker applies it within seconds (see `pulse issues history`)")


def _whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


@issues_app.command("resolve")
def issues_resolve(fingerprint: str = typer.Argument(..., help="Fingerprint, or a unique prefix of it"),
                   project: Optional[str] = typer.Option(None),
                   in_release: Optional[str] = typer.Option(
                       None, help="The release with the fix: its errors then regress the issue, older releases' do not")
                   ) -> None:
    """Resolve an issue; errors from a later release mark it regressed."""
    _decide("resolve", fingerprint, project, in_release=in_release)


@issues_app.command("ignore")
def issues_ignore(fingerprint: str = typer.Argument(..., help="Fingerprint, or a unique prefix of it"),
                  project: Optional[str] = typer.Option(None),
                  until_escalating: bool = typer.Option(False, help="Come back when it escalates")) -> None:
    """Ignore an issue (its errors are still stored and counted)."""
    _decide("ignore", fingerprint, project, until_escalating=until_escalating)


@issues_app.command("unresolve")
def issues_unresolve(fingerprint: str = typer.Argument(..., help="Fingerprint, or a unique prefix of it"),
                     project: Optional[str] = typer.Option(None)) -> None:
    """Reopen a resolved or ignored issue."""
    _decide("unresolve", fingerprint, project)


@issues_app.command("history")
def issues_history(fingerprint: str = typer.Argument(..., help="Fingerprint, or a unique prefix of it"),
                   project: Optional[str] = typer.Option(None)) -> None:
    """Every status change of an issue, with its reason."""
    from rich.table import Table

    from pipeline.api.issues import find_issue, issue_history

    settings = load_settings()

    async def run() -> tuple[dict, list]:
        issue = await find_issue(settings, fingerprint, project, prefix=True, allow_direct=True)
        return issue, await issue_history(settings, issue["project"], issue["fingerprint"], allow_direct=True)

    issue, rows = _api_call(run())
    table = Table("at", "status", "from", "reason", "release", "by", title=f"{issue['title']} ({issue['status']})")
    for r in rows:
        table.add_row(str(r["at"])[:23], r["kind"], r["from_status"], r["reason"], r["release"], r["actor"])
    Console().print(table)


@app.command()
def report(period: str = typer.Option("24h", help="Length of the period: 1h, 24h, 7d, 30d... (1h to 90d); it is "
                                                  "compared with the previous period of the same length"),
           project: Optional[str] = typer.Option(None, help="Only this project (default: all)"),
           as_json: bool = typer.Option(False, "--json", help="Print the monitoring_health_check JSON document")) -> None:
    """Health report: errors, web vitals, user experience, alerts, business figures, a health score,
    trend and recommendations (definitions: docs/report.md)."""
    from datetime import datetime, timezone

    from pipeline.api.report import report_params
    from pipeline.report.build import build_report

    settings = load_settings()

    async def run() -> dict:
        period_s, name = report_params(period, project)
        return await build_report(settings, period_s, name, datetime.now(timezone.utc), allow_direct=True)

    doc = _api_call(run())
    if as_json:
        import orjson

        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    from pipeline.report.render import render_report

    Console().print(render_report(doc))


notify_app = typer.Typer(no_args_is_help=True,
                         help="Talk to the running notifier (`pulse notifier`): silences, acknowledge, resolve, incidents.")
app.add_typer(notify_app, name="notify")
_URL_HELP = "Notifier base URL (default: http://PULSE_NOTIFIER_HOST:PULSE_NOTIFIER_PORT)"


def _notify(method: str, path: str, body: dict | None = None, url: Optional[str] = None):  # type: ignore[no-untyped-def]
    from pipeline.notify.client import NotifierApiError, call

    try:
        return call(load_settings(), method, path, body, url=url)
    except NotifierApiError as exc:
        console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc


def _when(ms: Optional[int]) -> str:
    if ms is None:
        return ""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@notify_app.command("silence")
def notify_silence(matchers: list[str] = typer.Argument(..., help='Label matchers, e.g. \'alertname="HighErrorRate"\' '
                                                                 '\'project=~"shop|blog"\''),
                   duration: str = typer.Option("2h", help="How long, e.g. 30m, 2h, 1d"),
                   until: Optional[str] = typer.Option(None, help="Instead of --duration: an ISO-8601 end time"),
                   comment: str = typer.Option("", help="Why"),
                   by: Optional[str] = typer.Option(None, help="Who (default: your user name)"),
                   url: Optional[str] = typer.Option(None, help=_URL_HELP)) -> None:
    """Mute matching alerts for a while; prints the silence id."""
    body: dict = {"matchers": matchers, "created_by": by or _whoami(), "comment": comment}
    body.update({"ends_at": until} if until else {"duration": duration})
    doc = _notify("POST", "/api/silences", body, url)
    print(doc["silence_id"])
    console.print(f"silenced until {_when(doc['ends_at'])} UTC: {', '.join(doc['matchers'])}", markup=False)


@notify_app.command("silences")
def notify_silences(expired: bool = typer.Option(False, "--expired", help="Include expired silences"),
                    url: Optional[str] = typer.Option(None, help=_URL_HELP)) -> None:
    """Silences: id, status, matchers, start, end, who and why."""
    from rich.table import Table

    rows = _notify("GET", "/api/silences" + ("?expired=true" if expired else ""), url=url)
    table = Table("id", "status", "matchers", "starts (UTC)", "ends (UTC)", "by", "comment")
    for r in rows:
        table.add_row(r["silence_id"], r["status"], ", ".join(r["matchers"]), _when(r["starts_at"]),
                      _when(r["ends_at"]), r["created_by"], r["comment"])
    Console(width=200).print(table)
    if not rows:
        console.print("no silences")


@notify_app.command("expire")
def notify_expire(silence_id: str = typer.Argument(..., help="Silence id, or a unique prefix of it"),
                  url: Optional[str] = typer.Option(None, help=_URL_HELP)) -> None:
    """End a silence now."""
    from pipeline.notify.client import quote

    doc = _notify("DELETE", f"/api/silences/{quote(silence_id)}", url=url)
    print(f"{doc['silence_id']}: {doc['status']}")


def _act(action: str, target: str, by: Optional[str], url: Optional[str]) -> None:
    from pipeline.notify.client import quote

    doc = _notify("POST", f"/api/alerts/{quote(target)}/{action}", {"by": by or _whoami()}, url)
    word = "acknowledged" if action == "ack" else "resolved"
    print(f"{word} by {doc['by']}: incident(s) {', '.join(doc['incidents']) or '(none changed)'}; "
          f"{doc['notifications']} notification(s) queued")


@notify_app.command("ack")
def notify_ack(target: str = typer.Argument(..., help="Incident id or alert fingerprint (or a unique prefix)"),
               by: Optional[str] = typer.Option(None, help="Who (default: your user name)"),
               url: Optional[str] = typer.Option(None, help=_URL_HELP)) -> None:
    """Acknowledge: stops escalation and repeats; notified receivers are told."""
    _act("ack", target, by, url)


@notify_app.command("resolve")
def notify_resolve(target: str = typer.Argument(..., help="Incident id or alert fingerprint (or a unique prefix)"),
                   by: Optional[str] = typer.Option(None, help="Who (default: your user name)"),
                   url: Optional[str] = typer.Option(None, help=_URL_HELP)) -> None:
    """Declare an incident over: its alerts resolve and every notified receiver is told now."""
    _act("resolve", target, by, url)


@notify_app.command("incidents")
def notify_incidents(status: Optional[str] = typer.Option(None, help="open, acknowledged or resolved"),
                     timeline: bool = typer.Option(False, "--timeline", help="Print each incident's timeline"),
                     url: Optional[str] = typer.Option(None, help=_URL_HELP)) -> None:
    """Incidents, newest first: status, level, title, alerts, who acknowledged or resolved."""
    from rich.table import Table

    path = "/api/incidents" + (f"?status={status}" if status else "")
    rows = _notify("GET", path, url=url)
    table = Table("incident", "status", "level", "title", "alerts", "opened (UTC)", "ack by", "resolved by",
                  "notified")
    for r in rows:
        table.add_row(r["incident_id"][:13], r["status"], r["level"], r["title"][:50], str(len(r["fingerprints"])),
                      _when(r["opened_at"]), r["acked_by"], r["resolved_by"], ", ".join(r["notified"]))
    Console(width=200).print(table)
    if not rows:
        console.print("no incidents")
    if timeline:
        for r in rows:
            t = Table("at (UTC)", "what", "by", title=f"{r['incident_id']} {r['title'][:60]}")
            for entry in r["timeline"]:
                t.add_row(_when(entry["at"]), entry["what"], entry["by"])
            Console(width=200).print(t)


@app.command()
def simulate(sessions: int = typer.Option(300, help="Simulated browser sessions"),
             duration: float = typer.Option(60.0, help="Seconds of sending (session time is compressed to fit)"),
             seed: int = typer.Option(7),
             url: Optional[str] = typer.Option(None, help="Collector base URL (default from settings)"),
             key: Optional[str] = typer.Option(None, help="Project key (default: the first configured)"),
             past_sessions: bool = typer.Option(
                 False, "--past-sessions",
                 help="Instead: sessions from 1-4 h ago with known rage/dead clicks and bounces, sent as fast as "
                      "accepted; prints the answer the sessions tables should reach")) -> None:
    """Send realistic SDK flushes (some malformed) to a running collector, paced in real time."""
    from datetime import datetime, timedelta, timezone

    from pipeline.demo import send_session_replay, send_traffic
    from pipeline.simulate_sessions import generate_session_scenario

    settings = load_settings()
    if past_sessions:
        scenario = generate_session_scenario(seed=seed, sessions=sessions,
                                             start=datetime.now(timezone.utc) - timedelta(hours=4))
        accepted = asyncio.run(send_session_replay(settings, scenario, console, base_url=url, key=key))
        t = scenario.truth
        console.print(f"{accepted} events accepted; expected: {t.session_count} sessions, {t.bounces} bounces, "
                      f"{t.total_rage} rage clicks, {t.total_dead} dead clicks")
        return
    report = asyncio.run(send_traffic(settings, sessions=sessions, duration_s=duration, seed=seed,
                                      base_url=url, key=key, console=console))
    console.print(report.summary())


@app.command()
def demo(sessions: int = typer.Option(300, help="Simulated browser sessions"),
         duration: float = typer.Option(60.0, help="Seconds of traffic"),
         seed: int = typer.Option(7),
         keep_running: bool = typer.Option(True, "--keep-running/--exit",
                                           help="After the summary, keep everything up for queries until Ctrl-C")) -> None:
    """End to end on the embedded defaults: broker, collector, worker, sink, traffic, a summary."""
    from pipeline.demo import run_demo

    raise typer.Exit(run_demo(load_settings(), sessions=sessions, duration_s=duration, seed=seed,
                              keep_running=keep_running, console=console))


@schemas_app.command("export")
def schemas_export() -> None:
    """Regenerate schemas/*.schema.json and schemas/clickhouse.sql from the code."""
    from pipeline.contract.export import export_schemas
    from pipeline.storage.tables import write_ddl_snapshot

    for path in export_schemas():
        console.print(f"wrote {path}")
    console.print(f"wrote {write_ddl_snapshot()}")


@schemas_app.command("check")
def schemas_check() -> None:
    """Exit 1 when schemas/ differs from what the code generates."""
    from pipeline.contract.export import drifted
    from pipeline.storage.tables import SCHEMAS_DIR, render_ddl

    stale = drifted()
    ddl = SCHEMAS_DIR / "clickhouse.sql"
    if not ddl.exists() or ddl.read_text() != render_ddl(Settings()):
        stale.append("clickhouse.sql")
    if stale:
        console.print(f"[red]stale: {', '.join(stale)} (run `pulse schemas export`)[/red]")
        raise typer.Exit(1)
    console.print("schemas up to date")


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings as JSON."""
    sys.stdout.write(load_settings().model_dump_json(indent=2) + "\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
