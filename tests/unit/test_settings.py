from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.settings import Settings, describe_settings_error


def test_defaults_run_everything_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.clickhouse.embedded and str(s.clickhouse.path).endswith("chdb")
    assert len(set(s.kafka.all_topics)) == 10
    assert s.issues.noise_rules().drop_resize_observer and s.issues.rules().escalation_factor == 5


def test_env_vars_with_prefix_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_KAFKA_PARTITIONS", "12")
    monkeypatch.setenv("PULSE_CLICKHOUSE_URL", "http://ch.internal:8123")
    monkeypatch.setenv("PULSE_COLLECTOR_PROJECT_KEYS", '{"k1": "shop", "k2": "blog"}')
    s = Settings()
    assert s.kafka.partitions == 12
    assert not s.clickhouse.embedded
    assert s.collector.project_keys == {"k1": "shop", "k2": "blog"}


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("PULSE_KAFKA_PARTITIONS", "zero", "PULSE_KAFKA_PARTITIONS: Input should be a valid integer"),
        ("PULSE_KAFKA_PARTITIONS", "0", "PULSE_KAFKA_PARTITIONS: Input should be greater than or equal to 1"),
        ("PULSE_KAFKA_BOOTSTRAP_SERVERS", "localhost", "PULSE_KAFKA_BOOTSTRAP_SERVERS: Value error, expected host:port"),
        ("PULSE_CLICKHOUSE_URL", "ch:8123", "PULSE_CLICKHOUSE_URL: Value error, must start with http://"),
        ("PULSE_COLLECTOR_PROJECT_KEYS", "{}", "PULSE_COLLECTOR_PROJECT_KEYS: Value error, at least one project key"),
        ("PULSE_KAFKA_COMPRESSION", "brotli", "PULSE_KAFKA_COMPRESSION: Input should be 'none', 'gzip', 'lz4' or 'zstd'"),
    ],
)
def test_bad_values_name_the_env_var(monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert expected in describe_settings_error(info.value)


def test_topic_names_must_be_distinct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_KAFKA_TOPIC_ERRORS", "same")
    monkeypatch.setenv("PULSE_KAFKA_TOPIC_ACTIONS", "same")
    with pytest.raises(ValidationError, match="topic names must be distinct"):
        Settings()


def test_data_identity_names_the_resolved_chdb_directory_or_the_server_without_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.settings import ClickHouseSettings

    monkeypatch.chdir(tmp_path)
    relative = ClickHouseSettings(path=Path("data/../data/chdb"))
    assert relative.data_identity() == f"chdb:{tmp_path.resolve() / 'data' / 'chdb'}"
    assert ClickHouseSettings(path=tmp_path / "other").data_identity() != relative.data_identity()
    server = ClickHouseSettings(url="http://reader:s3cret@ch.internal:8123", database="shop")
    assert server.data_identity() == "clickhouse:http://ch.internal:8123/shop"
    assert ClickHouseSettings(url="http://ch.internal:8123", database="other").data_identity() != server.data_identity()


def test_the_replaced_batch_within_setting_is_an_error_naming_its_successor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_WORKER_BATCH_WITHIN_S", "0.2")
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert "PULSE_WORKER_BATCH_WITHIN_S: Value error, replaced by PULSE_WORKER_STEP_INTERVAL_S" in describe_settings_error(exc.value)
    monkeypatch.delenv("PULSE_WORKER_BATCH_WITHIN_S")
    monkeypatch.setenv("PULSE_WORKER_STEP_INTERVAL_S", "2.5")
    assert Settings().worker.step_interval_s == 2.5


def test_the_raw_consumer_lets_the_broker_gather_input_as_the_operator_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.ingest import ingest_consumer_options

    options = ingest_consumer_options(Settings())
    assert (options["fetch_min_bytes"], options["fetch_max_wait_ms"]) == (256 * 1024, 250)
    monkeypatch.setenv("PULSE_WORKER_FETCH_MIN_BYTES", "1")
    monkeypatch.setenv("PULSE_WORKER_FETCH_MAX_WAIT_MS", "500")
    options = ingest_consumer_options(Settings())
    assert (options["fetch_min_bytes"], options["fetch_max_wait_ms"]) == (1, 500)


def test_the_fetch_wait_never_exceeds_a_step_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.ingest import ingest_consumer_options

    monkeypatch.setenv("PULSE_WORKER_STEP_INTERVAL_S", "0.05")
    assert ingest_consumer_options(Settings())["fetch_max_wait_ms"] == 50
    monkeypatch.setenv("PULSE_WORKER_FETCH_MAX_WAIT_MS", "20")
    assert ingest_consumer_options(Settings())["fetch_max_wait_ms"] == 20
