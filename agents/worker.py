"""Run the Faust worker in this process (``pulse worker``, ``python -m agents``)."""

from __future__ import annotations

import asyncio

import faust

from agents.app import make_app
from agents.alerts import alert_changelog_topic
from agents.issues import issue_changelog_topic
from agents.sessions import changelog_topic
from pipeline.common import browser_and_os
from pipeline.kafka_admin import ensure_topics, wait_for_broker
from pipeline.runtime import tune_gc
from pipeline.settings import Settings


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    """Block until SIGTERM/SIGINT, then stop gracefully (the in-flight batch finishes its sends,
    faust commits acked offsets). Topics are created first with the project's partition counts,
    so faust never auto-creates them with its own.

    Example::

        run_worker(Settings())
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(wait_for_broker(settings.kafka.bootstrap_servers, timeout_s=60))
    loop.run_until_complete(ensure_topics(settings.kafka, compacted=[changelog_topic(settings),
                                                                        issue_changelog_topic(settings),
                                                                        alert_changelog_topic(settings)]))
    # Absolute: faust chdir()s into workdir, after which a relative datadir would point elsewhere.
    data_dir = settings.worker.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    app = make_app(settings)
    # The user-agent parser builds its regexes at its first parse (0.1-0.2 s of CPU): here, before
    # ready (not in the first batch) and before tune_gc's freeze (the regexes live as long as the process).
    browser_and_os("Mozilla/5.0")
    tune_gc()
    worker = faust.Worker(app, loop=loop, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                          workdir=str(data_dir))
    # faust's terminal spinner sets the root logger to DEBUG (to spin on every record): every
    # send then builds debug log records, a measurable cost per message. No spinner.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
