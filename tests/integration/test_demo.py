"""The README's demo command works from a fresh directory with relative default paths."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_settings, settings_env

pytestmark = pytest.mark.integration


def test_pulse_demo_runs_end_to_end_and_reports_every_event_stored(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, **settings_env(make_settings(kafka_bootstrap, tmp_path)),
           # the defaults' shape: relative to the working directory, nothing created beforehand
           "PULSE_DATA_DIR": ".pulse", "PULSE_CLICKHOUSE_PATH": ".pulse/chdb", "PULSE_WORKER_DATA_DIR": ".pulse/worker",
           "COLUMNS": "200"}
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--exit", "--duration", "5", "--sessions", "25"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=280)
    logs = "".join(p.read_text(errors="replace")[-1500:] for p in (workdir / ".pulse" / "logs").glob("*.log"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs
    assert "all there" in proc.stdout
    # The session replay reached the generator's truth (the table prints stored next to expected).
    assert "pipeline vs. the generator's truth" in proc.stdout, proc.stdout[-3000:]
    for label in ("sessions", "bounces", "rage clicks", "dead clicks"):
        row = next(line for line in proc.stdout.splitlines() if line.strip().strip("│┃ ").startswith(label))
        stored, expected = [c.strip() for c in row.split("│") if c.strip()][1:3]
        assert stored == expected, row
    for table in ("errors", "vitals", "actions", "api_calls", "dead_letters"):
        assert table in proc.stdout
    assert (workdir / ".pulse" / "chdb").is_dir() and (workdir / ".pulse" / "worker").is_dir()

    # every query of the cookbook runs on the demo's data and returns rows (nothing runs now: the
    # query opens the embedded database directly)
    cookbook = (Path(__file__).resolve().parents[2] / "docs" / "cookbook.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", cookbook, re.S)
    assert len(queries) >= 8
    for sql in queries:
        out = subprocess.run([sys.executable, "-m", "pipeline.cli", "query", sql], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (sql, out.stderr[-2000:])
        assert out.stdout.strip(), f"no rows for:\n{sql}"
