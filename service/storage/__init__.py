"""Storage: SQLAlchemy models, engines, migrations and the data functions the API and the worker call."""
