"""Trainyard's service: settings, storage, the operations every interface shares, and the Flask app.

- :mod:`.config`: the ``TRAINYARD_*`` settings;
- :mod:`.storage`: the schema, engines, migrations and queries (each takes the caller's session);
- :mod:`.operations`: what the API and the dashboard do to runs and sweeps, each use case once;
- :mod:`.auth`: tokens, the dashboard's sessions and CSRF, scopes;
- :mod:`.api` and :mod:`.dashboard`: the JSON API (declared once, documented from the declarations) and the pages;
- :mod:`.app`, :mod:`.server`: the Flask application factory, and gunicorn serving it;
- :mod:`.celery_config`, :mod:`.queue`: the Celery configuration both sides share, and the API's sender.

It never imports the worker or the entry layer.  Importing it builds
nothing: settings are read by :meth:`.config.Settings.from_env`, engines made
by :func:`.storage.db.make_engine`, apps by :func:`.app.create_app`, each when
the caller asks.
"""
