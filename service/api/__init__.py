"""The JSON API: blueprints for the runs (:mod:`.runs`) and the health probes (:mod:`.health`).

Imports flow one way: the API imports storage, the queue and the trainer's
spec; nothing imports the API but :mod:`trainyard.service.app`, which registers it.
"""
