"""The hub's public API: every name a host project calls, in one place (``__all__``).

Each lives in the package that answers its question (``observers``, ``publishing``, ``owners``,
``webhooks``, ``sources``, ``streams``, ``telemetry``, ``upkeep``, ``worker``); import it from here.
"""

from .observers.adds import add_observer, add_observers
from .observers.inspection import inspect_variable, observer_count, removal_of, total_observers
from .observers.quarantine import reenable_observer
from .observers.removals import remove_observer
from .owners.leases import OwnerHandle, open_owner
from .owners.process import process_owner
from .owners.reaping import sweep_dead_observers
from .publishing.buffer import flush
from .publishing.notify import notify_observers
from .registry import observer_callback
from .sources.model_fields import ObservedQuerySet, model_variable_id, observe_model, observed_models
from .sources.sessions import delete_variable, get_variable, set_variable
from .sources.sessions import variable_id as session_variable_id
from .streams.access import issue_token, staff_only, stream_authorizer
from .telemetry.stats import get_stats
from .upkeep.sweep import sweep
from .webhooks.api import WebhookRef, add_webhook, send_test_webhook
from .worker.poison import replay_dead_letters

__all__ = [
    "ObservedQuerySet",
    "OwnerHandle",
    "WebhookRef",
    "add_observer",
    "add_observers",
    "add_webhook",
    "delete_variable",
    "flush",
    "get_stats",
    "get_variable",
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
    "replay_dead_letters",
    "send_test_webhook",
    "session_variable_id",
    "set_variable",
    "staff_only",
    "stream_authorizer",
    "sweep",
    "sweep_dead_observers",
    "total_observers",
]
