"""The built-in dashboard: one HTML page served by the collector (``GET /dashboard``), fed by
``GET /api/dashboard`` (JSON, assembled from read-only queries through the sink).

* ``queries.py`` — the SQL of each panel for a period (pure);
* ``data.py`` — runs them and assembles plain JSON (the assembly and the web-vital ratings are pure);
* ``routes.py`` — the page, its static files and the JSON endpoint;
* ``static/`` — plain HTML/CSS/JS, no build step; Chart.js vendored under ``static/vendor/``.
"""
