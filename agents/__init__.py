"""The Faust worker: thin adapters that read raw topics, call the pure ingest logic and send results.

Entry points: ``agents.app.make_app(settings)`` and ``agents.worker.run_worker(settings)``
(``pulse worker`` / ``python -m agents``).
"""
