"""Alembic revisions, one module each, applied in order (Alembic skips this ``__init__``)."""
