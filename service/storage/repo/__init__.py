"""Data functions: everything the API, the CLI and the worker read or write.

Every function takes the session from its caller as the keyword ``session``
and neither opens a session nor commits; the caller owns the transaction::

    Session = make_sessionmaker(make_engine(settings.database_url))
    with Session() as s, s.begin():
        run = repo.create_run(session=s, spec=spec, name="xor", seed=0, tags=[], notes="", epochs_total=100)

Functions return ORM objects (readable after the commit: the session factory
keeps them from expiring) or plain values, as each docstring says.  Blobs
never come along by accident: weights and checkpoints live in their own
tables and are read only by the functions named for them, and a dataset's
``content`` is deferred (reading it without asking raises).

Bad arguments (an unknown status, sort field, cursor, metric field...) raise
``ValueError`` with a message fit to show a client.  Times are timezone-aware
UTC; the ``now`` parameters exist for tests and must be aware too.

The functions live in one module per concern (:mod:`.runs`, :mod:`.listing`,
:mod:`.leases`, :mod:`.epochs`, :mod:`.downsampling`, :mod:`.blobs`,
:mod:`.tokens`, :mod:`.browser_sessions`, :mod:`.datasets`, :mod:`.sweeps`,
:mod:`.projects`, :mod:`.tracked`) and every public name is here: callers write ``repo.name``,
never import a module, so a function can move between modules without a caller noticing, and a test that replaces
``repo.name`` replaces it for every caller (calls between these modules do
not go through the package).
"""

from trainyard.service.storage.models import utcnow
from trainyard.service.storage.repo.blobs import (
    delete_checkpoint,
    delete_weights,
    get_checkpoint,
    get_weights,
    list_weight_epochs,
    save_checkpoint,
    write_weights_many,
)
from trainyard.service.storage.repo.browser_sessions import (
    MAX_SESSIONS_PER_TOKEN,
    browser_session_scope,
    end_browser_session,
    purge_browser_sessions,
    start_browser_session,
)
from trainyard.service.storage.repo.datasets import create_dataset, datasets_bytes, get_dataset, list_datasets
from trainyard.service.storage.repo.downsampling import downsample
from trainyard.service.storage.repo.epochs import (
    EPOCH_FIELDS,
    EPOCH_LISTS,
    EPOCH_METRICS,
    MAX_CUSTOM_METRICS,
    METRIC_NAME_PATTERN,
    RESERVED_METRIC_NAMES,
    epoch_layers,
    epoch_value,
    get_curves,
    get_epoch_page,
    get_epochs,
    is_metric_name,
    metric_keys,
    write_epochs,
)
from trainyard.service.storage.repo.leases import (
    LOST_CONTACT,
    Lease,
    Reconciled,
    claim_run,
    finish_run,
    reconcile,
    release_run,
    renew_lease,
)
from trainyard.service.storage.repo.listing import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, SORT_FIELDS, list_runs
from trainyard.service.storage.repo.projects import (
    DEFAULT_PROJECT_LIMIT,
    MAX_PROJECT_LIMIT,
    ProjectSummary,
    list_projects,
)
from trainyard.service.storage.repo.runs import (
    count_queued,
    create_run,
    delete_run,
    get_run,
    get_run_by_idempotency_key,
    get_runs,
    request_cancel,
    update_run,
)
from trainyard.service.storage.repo.sweeps import (
    create_sweep,
    find_sweeps,
    get_sweep,
    get_sweep_by_idempotency_key,
    list_sweeps,
    sweep_best,
    sweep_progress,
    sweep_runs,
)
from trainyard.service.storage.repo.tokens import (
    LAST_USED_RESOLUTION,
    TOKEN_PREFIX,
    create_token,
    find_token,
    get_active_token,
    list_tokens,
    record_token_use,
    revoke_token,
    use_to_record,
    verify_token,
)
from trainyard.service.storage.repo.tracked import (
    create_tracked_run,
    lock_run,
    touch_run,
    tracked_summary,
    write_tracked_epochs,
)

__all__ = [
    # runs
    "count_queued",
    "create_run",
    "get_run",
    "get_run_by_idempotency_key",
    "get_runs",
    "update_run",
    "delete_run",
    "request_cancel",
    # listing
    "DEFAULT_LIST_LIMIT",
    "MAX_LIST_LIMIT",
    "SORT_FIELDS",
    "list_runs",
    # leases
    "LOST_CONTACT",
    "Lease",
    "Reconciled",
    "claim_run",
    "renew_lease",
    "finish_run",
    "release_run",
    "reconcile",
    # epochs
    "EPOCH_METRICS",
    "EPOCH_LISTS",
    "EPOCH_FIELDS",
    "write_epochs",
    "get_epochs",
    "epoch_value",
    "epoch_layers",
    "get_epoch_page",
    "get_curves",
    "downsample",
    "MAX_CUSTOM_METRICS",
    "METRIC_NAME_PATTERN",
    "RESERVED_METRIC_NAMES",
    "is_metric_name",
    "metric_keys",
    # tracked runs
    "MAX_CUSTOM_METRICS",
    "METRIC_NAME_PATTERN",
    "RESERVED_METRIC_NAMES",
    "create_tracked_run",
    "is_metric_name",
    "lock_run",
    "touch_run",
    "tracked_summary",
    "write_tracked_epochs",
    # blobs
    "write_weights_many",
    "delete_weights",
    "get_weights",
    "list_weight_epochs",
    "save_checkpoint",
    "delete_checkpoint",
    "get_checkpoint",
    # tokens
    "TOKEN_PREFIX",
    "LAST_USED_RESOLUTION",
    "create_token",
    "verify_token",
    "find_token",
    "use_to_record",
    "record_token_use",
    "get_active_token",
    "list_tokens",
    "revoke_token",
    # the dashboard's sessions
    "MAX_SESSIONS_PER_TOKEN",
    "start_browser_session",
    "browser_session_scope",
    "end_browser_session",
    "purge_browser_sessions",
    # datasets
    "create_dataset",
    "get_dataset",
    "datasets_bytes",
    "list_datasets",
    # sweeps
    "create_sweep",
    "find_sweeps",
    "get_sweep",
    "get_sweep_by_idempotency_key",
    "list_sweeps",
    "sweep_best",
    "sweep_progress",
    "sweep_runs",
    # projects
    "DEFAULT_PROJECT_LIMIT",
    "MAX_PROJECT_LIMIT",
    "ProjectSummary",
    "list_projects",
    # the clock every function here reads, so a caller can compare times with it
    "utcnow",
]
