"""Several collector processes, one /metrics: the per-run directory, the import-order guard, the merge
across a fork (real prometheus-client multiprocess mode, in a child interpreter), bounded labels."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import Gauge

from pipeline import metrics
from pipeline.collector import shared_metrics
from pipeline.collector.sdk import sdk_item_label
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_stale_run_dirs_are_those_of_dead_first_processes() -> None:
    names = ["pulse-collector-metrics-10", "pulse-collector-metrics-11", "pulse-collector-metrics-x",
             "something-else-12", "pulse-collector-metrics-12.bak"]
    assert shared_metrics.stale_run_dirs(names, alive=lambda pid: pid == 11) == ["pulse-collector-metrics-10"]


def test_prepare_run_dir_starts_empty_and_clears_dead_runs(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "pulse-collector-metrics-7").mkdir(parents=True)  # this pid in an earlier run: its counts must go
    (base / "pulse-collector-metrics-7" / "counter_7.db").write_bytes(b"x")
    (base / "pulse-collector-metrics-8").mkdir()  # a killed run
    (base / "pulse-collector-metrics-9").mkdir()  # another collector, still running
    (base / "unrelated").mkdir()
    run_dir = shared_metrics.prepare_run_dir(base, 7, alive=lambda pid: pid in (7, 9))
    assert run_dir == base / "pulse-collector-metrics-7" and list(run_dir.iterdir()) == []
    assert sorted(p.name for p in base.iterdir()) == ["pulse-collector-metrics-7", "pulse-collector-metrics-9",
                                                      "unrelated"]
    assert shared_metrics.prepare_run_dir(tmp_path / "new" / "place", 3).is_dir()  # the base is made too


def test_one_process_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(shared_metrics.ENV, raising=False)
    assert shared_metrics.enable(Settings()) is None
    assert shared_metrics.ENV not in os.environ and not shared_metrics.active()
    from prometheus_client import REGISTRY

    assert shared_metrics.scrape_registry() is REGISTRY


def test_metrics_dir_setting_defaults_to_the_temp_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tempfile

    assert Settings().collector.metrics_dir == Path(tempfile.gettempdir())
    monkeypatch.setenv("PULSE_COLLECTOR_METRICS_DIR", str(tmp_path))
    assert Settings().collector.metrics_dir == tmp_path


def run_child(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != shared_metrics.ENV}
    env.update(PULSE_COLLECTOR_PROCESSES="2", PULSE_COLLECTOR_METRICS_DIR=str(tmp_path))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_enable_refuses_when_prometheus_client_came_first(tmp_path: Path) -> None:
    done = run_child("""
        import prometheus_client
        from pipeline.collector import shared_metrics
        from pipeline.settings import Settings
        shared_metrics.enable(Settings())
    """, tmp_path)
    assert done.returncode != 0 and "imported before" in done.stderr, done.stderr


def test_every_process_scrape_sums_all_processes_across_a_fork(tmp_path: Path) -> None:
    done = run_child("""
        import os
        from pipeline.collector import shared_metrics
        from pipeline.settings import Settings
        run_dir = shared_metrics.enable(Settings())
        from prometheus_client import generate_latest
        from pipeline.collector import app  # the metrics are created here, after enable
        from pipeline.metrics import CONSUMER_GROUP_LAG, HTTP_REQUEST_SECONDS, HTTP_REQUESTS

        def scrape():
            return {s.name + repr(sorted(s.labels.items())): s.value
                    for m in shared_metrics.scrape_registry().collect() for s in m.samples}

        HTTP_REQUESTS.labels("collector", "/e", "200").inc(3)
        CONSUMER_GROUP_LAG.labels("g", "t", "0").set(50)
        pid = os.fork()
        if pid == 0:
            HTTP_REQUESTS.labels("collector", "/e", "200").inc(4)
            HTTP_REQUEST_SECONDS.labels("collector", "/e").observe(0.2)
            CONSUMER_GROUP_LAG.labels("g", "t", "0").set(70)  # measured later: the newer value
            os._exit(0 if scrape()["pulse_http_requests_total" + repr(sorted(
                {"endpoint": "/e", "process": "collector", "status": "200"}.items()))] == 7 else 3)
        assert os.waitpid(pid, 0)[1] == 0, "the child's scrape did not see the sum"
        shared_metrics.process_exited(pid)
        HTTP_REQUEST_SECONDS.labels("collector", "/e").observe(0.01)
        got = scrape()
        print(sorted(os.listdir(run_dir)))
        print(got['pulse_http_requests_total' + repr(sorted(
            {"endpoint": "/e", "process": "collector", "status": "200"}.items()))])
        print(got['pulse_http_request_seconds_count' + repr(sorted({"endpoint": "/e", "process": "collector"}.items()))])
        print(got['pulse_http_request_seconds_bucket' + repr(sorted(
            {"endpoint": "/e", "process": "collector", "le": "0.025"}.items()))])
        print(got['pulse_consumer_group_lag' + repr(sorted({"group": "g", "topic": "t", "partition": "0"}.items()))])
        text = generate_latest(shared_metrics.scrape_registry()).decode()
        print(any("pid=" in line for line in text.splitlines() if not line.startswith("process_")))
        shared_metrics.remove_run_dir()
        print(run_dir.exists())
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    files, requests, latency_count, fast_bucket, lag, pid_label, dir_left = done.stdout.splitlines()
    assert files.count("counter_") == 2 and files.count("histogram_") == 2  # one file per process and type
    assert float(requests) == 7  # 3 in the first process + 4 in the forked one
    assert float(latency_count) == 2 and float(fast_bucket) == 1  # histograms summed bucket by bucket
    assert float(lag) == 70  # the gauge's mode: the newest measurement, not 120 (a sum) nor a series per pid
    assert pid_label == "False" and dir_left == "False"


def test_every_gauge_chooses_how_processes_combine() -> None:
    gauges = [m for m in vars(metrics).values() if isinstance(m, Gauge)]
    assert gauges and all(g._multiprocess_mode != "all" for g in gauges), [
        g._name for g in gauges if g._multiprocess_mode == "all"]


def test_sdk_item_labels_are_bounded_whatever_the_client_sends() -> None:
    assert sdk_item_label("sentry", "event") == "event" and sdk_item_label("sentry", "client_report") == "client_report"
    assert sdk_item_label("sentry", "x" * 500) == "other" and sdk_item_label("sentry", "evil-1") == "other"
    assert sdk_item_label("posthog", "$pageview") == "$pageview" and sdk_item_label("posthog", "$snapshot") == "$snapshot"
    assert sdk_item_label("posthog", "$made_up_123") == "$other"
    assert sdk_item_label("posthog", "signup") == "custom"
    labels = {sdk_item_label(sdk, f"{prefix}{i}") for sdk in ("sentry", "posthog") for prefix in ("", "$")
              for i in range(1000)}
    assert labels == {"other", "custom", "$other"}


def test_process_series_of_every_collector_process_labelled_by_pid(tmp_path: Path) -> None:
    """Multiprocess mode has no process_* series of its own: EveryProcess reads each process's /proc."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        collector = shared_metrics.EveryProcess(os.getpid(), children=lambda root: [sleeper.pid, 999999999])
        families = {f.name: f for f in collector.collect()}
        for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                     "process_open_fds", "process_max_fds", "process_start_time_seconds"):
            by_pid = {s.labels["pid"]: s.value for s in families[name].samples}
            assert set(by_pid) == {str(os.getpid()), str(sleeper.pid)}, (name, by_pid)  # a gone pid: no series
        rss = {s.labels["pid"]: s.value for s in families["process_resident_memory_bytes"].samples}
        assert rss[str(os.getpid())] > rss[str(sleeper.pid)] > 1_000_000  # each its own, not one copied
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_scrape_in_multiprocess_mode_has_every_processes_process_series(tmp_path: Path) -> None:
    done = run_child("""
        import os, time
        from pipeline.collector import shared_metrics
        from pipeline.settings import Settings
        shared_metrics.enable(Settings())
        from prometheus_client import generate_latest
        pid = os.fork()
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        time.sleep(0.2)
        text = generate_latest(shared_metrics.scrape_registry()).decode()
        print(f'process_cpu_seconds_total{{pid="{os.getpid()}"}}' in text, f'process_open_fds{{pid="{pid}"}}' in text)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        shared_metrics.remove_run_dir()
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
