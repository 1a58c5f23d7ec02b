"""The hub's public API: every name a host project calls, in one place (``__all__``).

Each lives in the package that answers its question (``observers``, ``publishing``, ``owners``,
``history``, ``webhooks``, ``sources``, ``streams``, ``telemetry``, ``upkeep``, ``worker``); import it
from here.
"""

from .history.reading import ahistory, history
from .history.replay import Replayed, areplay, replay
from .observers.adds import aadd_observer, aadd_observers, add_observer, add_observers
from .observers.inspection import (
    ainspect_variable,
    aobserver_count,
    aremoval_of,
    atotal_observers,
    inspect_variable,
    observer_count,
    removal_of,
    total_observers,
)
from .observers.quarantine import areenable_observer, reenable_observer
from .observers.removals import aremove_observer, remove_observer
from .owners.leases import OwnerHandle, aopen_owner, open_owner
from .owners.process import aprocess_owner, process_owner
from .owners.reaping import asweep_dead_observers, sweep_dead_observers
from .publishing.buffer import aflush, flush
from .publishing.notify import anotify_observers, notify_observers
from .registry import observer_callback
from .sources.model_fields import ObservedQuerySet, model_variable_id, observe_model, observed_models
from .sources.sessions import (
    adelete_variable,
    aget_variable,
    aset_variable,
    delete_variable,
    get_variable,
    set_variable,
)
from .sources.sessions import variable_id as session_variable_id
from .streams.access import issue_token, staff_only, stream_authorizer, watch_permission
from .streams.revocation import arevoke_tokens, revoke_tokens
from .telemetry.stats import aget_stats, get_stats
from .upkeep.sweep import asweep, sweep
from .webhooks.api import WebhookRef, aadd_webhook, add_webhook, asend_test_webhook, send_test_webhook
from .worker.poison import areplay_dead_letters, replay_dead_letters

__all__ = [
    "ObservedQuerySet",
    "OwnerHandle",
    "Replayed",
    "WebhookRef",
    "aadd_observer",
    "aadd_observers",
    "aadd_webhook",
    "add_observer",
    "add_observers",
    "add_webhook",
    "adelete_variable",
    "aflush",
    "aget_stats",
    "aget_variable",
    "ahistory",
    "ainspect_variable",
    "anotify_observers",
    "aobserver_count",
    "aopen_owner",
    "aprocess_owner",
    "areenable_observer",
    "aremoval_of",
    "aremove_observer",
    "areplay",
    "areplay_dead_letters",
    "arevoke_tokens",
    "asend_test_webhook",
    "aset_variable",
    "asweep",
    "asweep_dead_observers",
    "atotal_observers",
    "delete_variable",
    "flush",
    "get_stats",
    "get_variable",
    "history",
    "inspect_variable",
    "issue_token",
    "model_variable_id",
    "notify_observers",
    "observe_model",
    "observed_models",
    "observer_callback",
    "observer_count",
    "open_owner",
    "process_owner",
    "reenable_observer",
    "removal_of",
    "remove_observer",
    "replay",
    "replay_dead_letters",
    "revoke_tokens",
    "send_test_webhook",
    "session_variable_id",
    "set_variable",
    "staff_only",
    "stream_authorizer",
    "sweep",
    "sweep_dead_observers",
    "total_observers",
    "watch_permission",
]
