"""Shared fixtures: a real Kafka broker (from deploy/), isolated settings per test.

Broker choice (``PULSE_TEST_KAFKA``):
  * ``local`` (default): deploy/kafka/kafka-local.sh, real Apache Kafka via Maven jars, KRaft.
  * ``testcontainers``: the official apache/kafka image, where a Docker engine exists.
  * ``external:<host:port>``: an already running broker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.kafka_admin import ensure_topics, wait_for_broker
from pipeline.localbroker import LocalBroker
from pipeline.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_port_pair() -> int:
    """A port p with p+1 also free (the KRaft controller listens on p+1)."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real broker for the whole test session."""
    choice = os.environ.get("PULSE_TEST_KAFKA", "local")
    if choice.startswith("external:"):
        yield choice.split(":", 1)[1]
        return
    if choice == "testcontainers":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:3.9.1").with_kraft() as kc:
            yield kc.get_bootstrap_server()
        return
    broker = LocalBroker(port=_free_port_pair(), data_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        asyncio.run(wait_for_broker(broker.bootstrap, timeout_s=60))
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[[], LocalBroker]]:
    """Private brokers a test may stop and restart (e.g. 503 tests). Stopped at teardown."""
    made: list[LocalBroker] = []

    def make() -> LocalBroker:
        b = LocalBroker(port=_free_port_pair(), data_dir=tmp_path / f"kafka{len(made)}")
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def make_settings(bootstrap: str, tmp: Path, **env: str) -> Settings:
    """Settings isolated per test: unique topic names, own chDB directory, free ports."""
    tag = uuid.uuid4().hex[:8]
    base = {
        "PULSE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PULSE_KAFKA_PARTITIONS": "2",
        "PULSE_KAFKA_TOPIC_ERRORS": f"t{tag}.raw.errors",
        "PULSE_KAFKA_TOPIC_VITALS": f"t{tag}.raw.vitals",
        "PULSE_KAFKA_TOPIC_ACTIONS": f"t{tag}.raw.actions",
        "PULSE_KAFKA_TOPIC_DEAD_LETTER": f"t{tag}.dead-letter",
        "PULSE_KAFKA_TOPIC_STORAGE": f"t{tag}.storage",
        "PULSE_KAFKA_TOPIC_UX_SIGNALS": f"t{tag}.ux-signals",
        "PULSE_KAFKA_TOPIC_ISSUE_EVENTS": f"t{tag}.issue-events",
        "PULSE_KAFKA_TOPIC_ISSUE_TRANSITIONS": f"t{tag}.issue-transitions",
        "PULSE_KAFKA_TOPIC_ROLLUP_PARTIALS": f"t{tag}.rollup-partials",
        "PULSE_KAFKA_TOPIC_ALERTS": f"t{tag}.alerts",
        "PULSE_CLICKHOUSE_PATH": str(tmp / "chdb"),
        "PULSE_COLLECTOR_PORT": str(free_port()),
        "PULSE_WORKER_APP_ID": f"pulse-worker-{tag}",
        "PULSE_WORKER_DATA_DIR": str(tmp / "worker"),
        "PULSE_WORKER_WEB_PORT": str(free_port()),
        "PULSE_SINK_GROUP_ID": f"pulse-sink-{tag}",
        "PULSE_SINK_PORT": str(free_port()),
        "PULSE_SINK_BATCH_SECONDS": "0.3",
        "PULSE_DATA_DIR": str(tmp),
    }
    base.update(env)
    old = {k: os.environ.get(k) for k in base}
    os.environ.update(base)
    try:
        return Settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a child process (``pulse sink`` etc.)."""
    env: dict[str, str] = {}
    parts = {"kafka": "PULSE_KAFKA_", "clickhouse": "PULSE_CLICKHOUSE_", "collector": "PULSE_COLLECTOR_",
             "worker": "PULSE_WORKER_", "sink": "PULSE_SINK_", "sessions": "PULSE_SESSIONS_",
             "rollups": "PULSE_ROLLUPS_", "issues": "PULSE_ISSUES_", "alerts": "PULSE_ALERTS_",
             "notifier": "PULSE_NOTIFIER_"}
    import orjson

    for part, prefix in parts.items():
        section = getattr(settings, part)
        for key, value in section.model_dump(mode="json").items():
            if value is None:
                continue
            secret = getattr(section, key)
            if isinstance(secret, SecretStr):  # model_dump masks secrets
                value = secret.get_secret_value()
            if isinstance(value, (dict, list)):
                env[prefix + key.upper()] = orjson.dumps(value).decode()
            else:
                env[prefix + key.upper()] = str(value)
    env["PULSE_DATA_DIR"] = str(settings.data_dir)
    return env


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    s = make_settings(kafka_bootstrap, tmp_path)
    asyncio.run(ensure_topics(s.kafka))
    return s
