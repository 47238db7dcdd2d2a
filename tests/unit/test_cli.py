from __future__ import annotations

import subprocess
import sys

import orjson


def pulse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_settings_prints_effective_configuration() -> None:
    out = pulse("settings", env={"PULSE_KAFKA_PARTITIONS": "7"})
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout)["kafka"]["partitions"] == 7


def test_bad_env_var_stops_with_its_name_and_exit_code_2() -> None:
    out = pulse("settings", env={"PULSE_SINK_BATCH_ROWS": "lots"})
    assert out.returncode == 2
    assert "PULSE_SINK_BATCH_ROWS: Input should be a valid integer" in out.stderr
    assert "Traceback" not in out.stderr


def test_schemas_check_passes_on_a_clean_tree() -> None:
    out = pulse("schemas", "check")
    assert out.returncode == 0, out.stderr


def test_bad_alert_rule_file_stops_the_worker_naming_rule_and_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: api-latency\n    kind: percentile\n    sketch: api_latency\n"
                     "    quantile: p95\n    window: 5x\n    thresholds: {warning: 3000}\n")
    # an unreachable broker: the rule file is checked before anything connects
    out = pulse("worker", env={"PULSE_ALERTS_RULES_PATH": str(rules), "PULSE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
                               "COLUMNS": "300"})
    assert out.returncode == 2
    assert "rule 'api-latency' (#1): window: invalid duration '5x'" in out.stderr
    assert "Traceback" not in out.stderr
