"""The JSON API: runs (:mod:`.runs`), comparisons, datasets, sweeps, projects, health probes, and its OpenAPI
document.

Each view declares its input and output once (:mod:`.declare`); the request
models are in :mod:`.schemas`, and :mod:`.openapi` writes the document from
the declarations.  The API calls :mod:`trainyard.service.operations` and
storage; nothing imports it but :mod:`trainyard.service.app`, which registers
it.
"""

from trainyard.service.api import compare, datasets, health, projects, runs, sweeps

#: The API's blueprints (besides the document's own, :data:`.openapi.bp`).
BLUEPRINTS = (health.bp, runs.bp, datasets.bp, compare.bp, sweeps.bp, projects.bp)
