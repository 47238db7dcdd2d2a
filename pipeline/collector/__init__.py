"""HTTP ingest: ``POST /api/v1/events`` -> scrub -> validate -> raw topics (see ``app.py``)."""
