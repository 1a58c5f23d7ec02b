"""Chainable reads of owners and observers, and the dispatch's reads compiled once."""

import functools
import uuid
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Exists, Q
from django.db.models.functions import Now

from .db import counting_rows, prepared_row, prepared_rows, uuid_text
from .exceptions import OwnerClosed, OwnerDead, UnknownOwner
from .globs import candidate_prefixes, glob_matches, globs_among

# What delivering needs of each observer row.
DELIVERY_ROW = ("id", "callback", "failures", "owner_id")


@functools.lru_cache(maxsize=8)
def _alive_condition(alias: str) -> Q:
    """Owners not closed whose lease runs or whose process still holds its lock. Built once per
    database (the clock is the database's), since the worker filters every page with it."""
    held = apps.get_model("observers_app", "HeldLock").objects.using(alias).values("lock_key")
    return Q(closed_at__isnull=True) & (Q(expires_at__gt=Now()) | Q(lock_key__in=held))


@functools.lru_cache(maxsize=8)
def _live_condition(alias: str) -> Q:
    alive_owners = (
        apps.get_model("observers_app", "Owner").objects.using(alias).filter(_alive_condition(alias))
    )
    return (Q(owner__isnull=True) | Q(owner__in=alive_owners.values("id"))) & Q(quarantined_at__isnull=True)


class OwnerQuerySet(models.QuerySet):
    def alive(self) -> "OwnerQuerySet":
        """Owners not closed whose lease runs or whose process still holds its lock."""
        return self.filter(_alive_condition(self.db))

    def dead(self) -> "OwnerQuerySet":
        return self.exclude(_alive_condition(self.db))

    def lock_live(self, owner_id: uuid.UUID) -> None:
        """Lock the owner row for this transaction, or say precisely why it cannot own observers."""
        row = self.select_for_update().filter(id=owner_id).values_list("name", "closed_at").first()
        if row is None:
            raise UnknownOwner(f"no owner {owner_id}; use manager.process_owner() or manager.open_owner()")
        name, closed_at = row
        if closed_at is not None:
            raise OwnerClosed(f"owner {owner_id} ({name}) was closed; open a new one")
        if not self.alive().filter(id=owner_id).exists():
            raise OwnerDead(f"owner {owner_id} ({name}) is dead (its lease expired or its process died)")


class ObserverQuerySet(models.QuerySet):
    def for_variable(self, var_id: str) -> "ObserverQuerySet":
        """Observers registered under exactly this name (for a glob observer, its pattern)."""
        return self.filter(var_id=var_id)

    def matching(self, var_id: str, globs: list[str]) -> "ObserverQuerySet":
        """Observers a notification of ``var_id`` reaches: its exact observers and those of ``globs``
        (the patterns that match it, from ``globs_matching``)."""
        exact = Q(var_id=var_id, is_glob=False)
        return self.filter(exact | Q(var_id__in=globs, is_glob=True) if globs else exact)

    def live(self) -> "ObserverQuerySet":
        """Observers that get called: not quarantined, durable or with a live owner."""
        return self.filter(_live_condition(self.db))

    def in_page(self, *, after: uuid.UUID | None, upto: uuid.UUID | None) -> "ObserverQuerySet":
        """Observers with ``after < id <= upto``; an open bound is None."""
        page = self
        if after is not None:
            page = page.filter(id__gt=after)
        if upto is not None:
            page = page.filter(id__lte=upto)
        return page

    def page_ids(self, *, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
        """The next ``limit`` observer ids after ``after``, in id order (keyset paging)."""
        return list(self.in_page(after=after, upto=None).order_by("id").values_list("id", flat=True)[:limit])

    def delivery_page(
        self,
        var_id: str,
        *,
        after: uuid.UUID | None,
        upto: uuid.UUID,
        coalesce: bool,
        limit: int,
        counted_as: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """``DELIVERY_ROW`` of the first ``limit`` live exact observers of ``var_id`` with
        ``after < id <= upto`` in id order, the coalescing ones or the others: every deliver task's
        read, compiled once.
        With ``counted_as`` (PostgreSQL, outside a transaction), the same statement adds how many
        rows it read to that counter: one round trip instead of two."""
        prepare = self.model._meta.pk.get_db_prep_value
        connection = connections[self.db]
        values = {
            _PLACEHOLDER: var_id,
            prepare(_AFTER, connection): prepare(after or NO_ID, connection),
            prepare(_UPTO, connection): prepare(upto, connection),
        }
        sql, compiled = _page_statement(self.db, coalesce, limit)
        params = [values.get(p, p) for p in compiled]
        if counted_as:
            sql, params = counting_rows(
                sql,
                params,
                name=counted_as,
                counter_table=apps.get_model("observers_app", "StatCounter")._meta.db_table,
                bucket_table=apps.get_model("observers_app", "StatBucket")._meta.db_table,
            )
        rows = prepared_rows(connection, sql, params, uuids_as_text=True)
        if connection.vendor == "postgresql":
            return rows
        return [
            (uuid_text(ref), callback, failures, owner and uuid_text(owner))
            for ref, callback, failures, owner in rows
        ]

    def globs_matching(self, var_id: str) -> list[str]:
        """The glob patterns observed anywhere that match ``var_id``."""
        return globs_among(self.candidate_globs([var_id]), var_id)

    def candidate_globs(self, var_ids: Iterable[str]) -> list[str]:
        """The glob patterns observed whose literal prefix begins one of ``var_ids``: every pattern
        that can match one of them, and only those (an index lookup, not a scan of every pattern);
        ``globs_among`` picks the ones that do. Every dispatch batch asks, so it skips the ORM."""
        connection = connections[self.db]
        sql, params = _candidate_globs(connection, self._table(), candidate_prefixes(var_ids))
        return [pattern for (pattern,) in prepared_rows(connection, sql, params)]

    def with_any_coalescing(self, var_id: str, globs: list[str]) -> "ObserverQuerySet":
        """Each row also says (``any_coalescing``) whether a notification of ``var_id`` reaches any
        live coalescing observer, beyond the rows read too: one probe of the coalescing observers'
        index, evaluated once per statement, so a dispatch learns it in the same round trip as its
        first page."""
        reached = ObserverQuerySet(self.model, using=self.db).live().matching(var_id, globs)
        return self.annotate(any_coalescing=Exists(reached.filter(coalesce=True)))

    def first_delivery_page(self, var_id: str, *, limit: int) -> list[tuple[Any, ...]]:
        """``(id, callback, failures, owner_id, coalesce, any_coalescing)`` of the first ``limit``
        live exact observers of ``var_id`` in id order (``with_any_coalescing``): the read every
        dispatch starts with, compiled once. The ids are their text, as ``delivery_page`` gives
        them."""
        rows = _run_compiled(
            self, _first_page_statement(self.db, limit), {_PLACEHOLDER: var_id}, uuids_as_text=True
        )
        if connections[self.db].vendor == "postgresql":
            return rows
        return [
            (uuid_text(ref), callback, failures, owner and uuid_text(owner), bool(coalesce), bool(more))
            for ref, callback, failures, owner, coalesce, more in rows
        ]

    def any_for_variable(self, var_id: str) -> bool:
        """Whether a notification of ``var_id`` would reach an observer row, in one round trip.

        Runs on the notify hot path, so it skips the ORM's query compilation (which costs more than
        the query) and, on PostgreSQL, binds its values server-side (``db.prepared_rows``). The
        glob patterns that can match (by their indexed literal prefix, see ``candidate_globs``)
        come back in the same round trip and are matched here, never by the database's LIKE, so
        ``%`` and ``_`` in names are plain characters. Rows of a dead owner count until the sweep
        removes them; the worker skips them.
        """
        connection = connections[self.db]
        table = self._table()
        candidates, candidate_params = _candidate_globs(connection, table, candidate_prefixes([var_id]))
        params = [var_id, *candidate_params]
        if connection.vendor == "postgresql":
            exact, globs = prepared_row(
                connection,
                f"SELECT EXISTS(SELECT 1 FROM {table} WHERE var_id = %s AND NOT is_glob), "  # noqa: S608
                f"ARRAY({candidates})",
                params,
            )
            return bool(exact) or any(glob_matches(pattern, var_id) for pattern in globs)
        rows = prepared_rows(
            connection,
            f"SELECT var_id, 0 FROM (SELECT var_id FROM {table} WHERE var_id = %s "  # noqa: S608
            f"AND NOT is_glob LIMIT 1) exact UNION ALL SELECT var_id, 1 FROM ({candidates})",
            params,
        )
        return any(not is_glob or glob_matches(name, var_id) for name, is_glob in rows)

    def _table(self) -> str:
        return connections[self.db].ops.quote_name(self.model._meta.db_table)


def _candidate_globs(
    connection: BaseDatabaseWrapper, table: str, prefixes: list[str]
) -> tuple[str, list[Any]]:
    """The statement reading the distinct patterns whose prefix is one of ``prefixes``: one array
    parameter on PostgreSQL (one statement text whatever the name), a list of them elsewhere."""
    select = f"SELECT DISTINCT var_id FROM {table} WHERE is_glob AND glob_prefix"  # noqa: S608
    if connection.vendor == "postgresql":
        return f"{select} = ANY(%s)", [prefixes]
    return f"{select} IN ({', '.join(['%s'] * len(prefixes))})", list(prefixes)


# Stand for the variable name and the page bounds in a query compiled once: no variable name holds
# a NUL, no observer has these ids (uuid4 never makes them).
_PLACEHOLDER = "\x00observers-var-id\x00"
_AFTER = uuid.UUID(int=1)
_UPTO = uuid.UUID(int=2)
# Before every observer id: the lower bound of a first page.
NO_ID = uuid.UUID(int=0)


# The dispatch's reads, compiled once per process and database: (SQL, parameters).


@functools.lru_cache(maxsize=8)
def _first_page_statement(alias: str, limit: int) -> tuple[str, tuple[Any, ...]]:
    observers = apps.get_model("observers_app", "Observer").objects.using(alias)
    page = observers.live().matching(_PLACEHOLDER, []).with_any_coalescing(_PLACEHOLDER, []).order_by("id")
    return _sql(page.values_list(*DELIVERY_ROW, "coalesce", "any_coalescing")[:limit])


@functools.lru_cache(maxsize=8)
def _page_statement(alias: str, coalesce: bool, limit: int) -> tuple[str, tuple[Any, ...]]:
    observers = apps.get_model("observers_app", "Observer").objects.using(alias)
    page = observers.live().matching(_PLACEHOLDER, []).filter(coalesce=coalesce)
    return _sql(page.in_page(after=_AFTER, upto=_UPTO).order_by("id").values_list(*DELIVERY_ROW)[:limit])


def _sql(queryset: models.QuerySet) -> tuple[str, tuple[Any, ...]]:
    return queryset.query.get_compiler(queryset.db).as_sql()


def _run_compiled(
    queryset: models.QuerySet,
    statement: tuple[str, tuple[Any, ...]],
    values: dict[Any, Any],
    *,
    uuids_as_text: bool = False,
) -> list[tuple[Any, ...]]:
    """Run a compiled statement with its placeholders' parameters replaced by ``values``."""
    sql, params = statement
    return prepared_rows(
        connections[queryset.db], sql, [values.get(p, p) for p in params], uuids_as_text=uuids_as_text
    )
