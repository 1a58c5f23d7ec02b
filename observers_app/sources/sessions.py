"""The session store: per-session JSON variables whose every change notifies ``session:<id>:<name>``."""

import time
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import aio, validation
from ..models import Variable
from ..publishing.notify import notify_observers

# The longest session id and variable name the Variable table holds.
PART_MAX_LENGTH = 100


def variable_id(session_id: str, name: str) -> str:
    """The hub variable a session variable notifies: ``session:<session_id>:<name>``, with ``%`` and
    ``:`` in the session id percent-escaped (so that a glob ``session:42:*`` never matches session
    ``42:x``, nor two sessions share a name). Refuses ids and names the store cannot hold."""
    validation.check_name(session_id, what="session_id", max_length=PART_MAX_LENGTH)
    validation.check_name(name, what="session variable name", max_length=PART_MAX_LENGTH)
    return validation.check_name(f"session:{validation.name_part(session_id)}:{name}")


def set_variable(session_id: str, name: str, value: Any, metadata: dict[str, Any] | None = None) -> int:
    """Set a session variable and notify its observers after commit; returns the new version.

    The row is locked for the transaction, so concurrent sets each see the true old value and get
    distinct increasing versions, and the notifications' ``seq`` follows the versions.
    """
    return _write(session_id, name, value, metadata, deleted=False)


aset_variable = aio.async_twin(set_variable)


def delete_variable(session_id: str, name: str, metadata: dict[str, Any] | None = None) -> bool:
    """Delete a session variable (its observers get ``new_value`` None); False if it was not set."""
    if get_variable(session_id, name, default=_ABSENT) is _ABSENT:
        return False
    _write(session_id, name, None, metadata, deleted=True)
    return True


adelete_variable = aio.async_twin(delete_variable)


def get_variable(session_id: str, name: str, default: Any = None) -> Any:
    variable_id(session_id, name)  # refuses what the table cannot hold before asking it
    row = Variable.objects.filter(session_id=session_id, name=name).values_list("value", "deleted").first()
    return default if row is None or row[1] else row[0]


aget_variable = aio.async_twin(get_variable)


_ABSENT = object()


def _write(session_id: str, name: str, value: Any, metadata: dict[str, Any] | None, *, deleted: bool) -> int:
    var_id = variable_id(session_id, name)
    validation.value_json("value", value)  # refused before it reaches the table
    with transaction.atomic():
        row = _locked_row(session_id, name)
        old_value = None if row.deleted else row.value
        row.value, row.deleted, row.version, row.updated_at = value, deleted, row.version + 1, timezone.now()
        row.save(update_fields=["value", "deleted", "version", "updated_at"])
        hub_metadata = {"session_id": session_id, "timestamp": time.time(), "version": row.version}
        notify_observers(
            var_id,
            old_value,
            value,
            {**(metadata or {}), **hub_metadata},
            ordered=True,
        )
    return row.version


def _locked_row(session_id: str, name: str) -> Variable:
    for _ in range(3):
        row = Variable.objects.select_for_update().filter(session_id=session_id, name=name).first()
        if row is not None:
            return row
        try:
            with transaction.atomic():
                return Variable.objects.create(session_id=session_id, name=name)
        except IntegrityError:  # another transaction created it first: lock theirs
            continue
    raise RuntimeError(f"could not lock session variable {session_id}:{name}")
