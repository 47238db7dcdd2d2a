"""``pulse query`` reads its own data: two real sinks with different chDB directories on one machine;
the CLI with A's settings pointed at B's port is refused with a message naming both, and with its
own port it answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.kafka_admin import ensure_topics
from tests.conftest import make_settings, settings_env
from tests.integration.pipeline_procs import running_pipeline

pytestmark = pytest.mark.integration


def pulse_query(env: dict[str, str], sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "query", sql, "--format", "TabSeparated"],
                          env={**os.environ, **env, "COLUMNS": "80"}, capture_output=True, text=True, timeout=120)


async def test_pulse_query_refuses_another_pipelines_sink(kafka_bootstrap: str, tmp_path: Path) -> None:
    a = make_settings(kafka_bootstrap, tmp_path / "a")
    b = make_settings(kafka_bootstrap, tmp_path / "b")
    for s in (a, b):
        await ensure_topics(s.kafka)
    with running_pipeline(a, tmp_path / "logs-a", ("sink",)), running_pipeline(b, tmp_path / "logs-b", ("sink",)):
        env_a = settings_env(a)
        wrong = pulse_query({**env_a, "PULSE_SINK_PORT": str(b.sink.port)}, "SELECT count() FROM dead_letters")
        said = " ".join(wrong.stderr.split())
        assert wrong.returncode == 1, (wrong.returncode, wrong.stdout, wrong.stderr)
        assert wrong.stdout == ""
        assert a.clickhouse.data_identity() in said and b.clickhouse.data_identity() in said, said
        assert "refusing to read another pipeline's data" in said

        own = pulse_query(env_a, "SELECT count() FROM dead_letters")
        assert own.returncode == 0, own.stderr
        assert own.stdout.strip() == "0"
