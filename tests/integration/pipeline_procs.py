"""Start the pipeline's real processes (``pulse sink|worker|collector``) for a test, through the
same ``ChildProcesses`` the demo uses, with the test's isolated settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.settings import Settings
from pipeline.supervise import ChildProcesses
from tests.conftest import settings_env


class PipelineProcs(ChildProcesses):
    def __init__(self, settings: Settings, log_dir: Path) -> None:
        super().__init__(log_dir, env={**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"})
        self.settings = settings


@contextmanager
def running_pipeline(settings: Settings, log_dir: Path, names: tuple[str, ...] = ("sink", "worker", "collector")
                     ) -> Iterator[PipelineProcs]:
    procs = PipelineProcs(settings, log_dir)
    try:
        for name in names:
            procs.start(name)
        if "sink" in names:
            procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        if "collector" in names:
            procs.wait_http(f"http://127.0.0.1:{settings.collector.port}/health")
        yield procs
    finally:
        procs.stop_all()
