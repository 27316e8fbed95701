"""The WSGI entry point for gunicorn: ``gunicorn trainyard.service.wsgi:app``.

The app is built from the ``TRAINYARD_*`` environment when gunicorn imports
this module (in each worker, or once with ``--preload``).
"""

from trainyard.service.app import create_app

app = create_app()
