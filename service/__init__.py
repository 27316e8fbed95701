"""Trainyard's service: configuration, storage, and (later) the HTTP API and the CLI.

Importing this package builds nothing: settings are read by
:meth:`trainyard.service.config.Settings.from_env`, engines are made by
:func:`trainyard.service.storage.db.make_engine`, both when the caller asks.
"""
