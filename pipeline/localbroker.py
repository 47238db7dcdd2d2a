"""Drive deploy/kafka/kafka-local.sh: the project's own real Kafka broker, no Docker needed."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "deploy" / "kafka" / "kafka-local.sh"


@dataclass
class LocalBroker:
    """One broker: a port and a data directory. Jars are shared through the cache."""

    port: int = 9092
    data_dir: Path = REPO_ROOT / ".pulse" / "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, action: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PULSE_KAFKA_PORT": str(self.port), "PULSE_KAFKA_DATA_DIR": str(self.data_dir)}
        return subprocess.run(["bash", str(SCRIPT), action], env=env, check=check, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def fetch(self) -> None:
        self._run("fetch")

    def start(self) -> None:
        proc = self._run("start", check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"Kafka broker failed to start:\n{proc.stdout}")

    def stop(self) -> None:
        self._run("stop", check=False)

    def kill(self) -> None:
        self._run("kill", check=False)

    def running(self) -> bool:
        return self._run("status", check=False).returncode == 0
