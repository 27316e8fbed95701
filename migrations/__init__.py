"""Trainyard's Alembic environment and revisions, shipped inside the installed package.

Run them with :func:`trainyard.service.storage.migrate.upgrade` (or ``trainyard db
upgrade``); no ``alembic.ini`` is needed: the configuration is built in code
and finds this folder through the package's own path.
"""
