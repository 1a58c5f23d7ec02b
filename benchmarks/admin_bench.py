"""``manage.py observers_bench --admin``: admin page times with a million observer rows."""

import time
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from observers_app.models import Observer, Owner, VariableState

PREFIX = "adminbench:"


def fill(rows: int, variables: int) -> None:
    """``rows`` observers over ``variables`` variables, a thousand of them owned by a dead lease."""
    owner = Owner.objects.create(name="adminbench dead lease", kind=Owner.Kind.LEASE, expires_at=None)
    table = Observer._meta.db_table
    with connection.cursor() as cursor, transaction.atomic():
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} "  # noqa: S608
                "(id, var_id, is_glob, callback, created_at, failures, last_error, owner_id) "
                "SELECT gen_random_uuid(), %s || (i %% %s), false, 'observers.bench.stamp', "
                "now() - i * interval '1 second', (i %% 97 = 0)::int * 3, '', "
                "CASE WHEN i %% 1000 = 0 THEN %s::uuid END FROM generate_series(1, %s) i",
                [PREFIX, variables, str(owner.id), rows],
            )
        else:
            for start in range(0, rows, 10_000):
                Observer.objects.bulk_create(
                    Observer(
                        var_id=f"{PREFIX}{i % variables}",
                        callback="observers.bench.stamp",
                        failures=3 if i % 97 == 0 else 0,
                        owner=owner if i % 1000 == 0 else None,
                    )
                    for i in range(start, min(start + 10_000, rows))
                )
        VariableState.objects.bulk_create(
            VariableState(var_id=f"{PREFIX}{n}", observer_count=rows // variables) for n in range(variables)
        )
    if connection.vendor == "postgresql":
        cursor = connection.cursor()
        cursor.execute(f"ANALYZE {table}")


def clear() -> None:
    Observer.objects.filter(var_id__startswith=PREFIX).delete()
    VariableState.objects.filter(var_id__startswith=PREFIX).delete()
    Owner.objects.filter(name="adminbench dead lease").delete()


def time_pages(say: Callable[[str], None]) -> dict[str, float]:
    user, _ = get_user_model().objects.get_or_create(
        username="adminbench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    observers = reverse("admin:observers_app_observer_changelist")
    pages: dict[str, tuple[str, dict[str, Any]]] = {
        "observers list": (observers, {}),
        "observers, page 100": (observers, {"p": "100"}),
        "observers, search exact": (observers, {"q": f"{PREFIX}123"}),
        "observers, search prefix": (observers, {"q": f"{PREFIX}12*"}),
        "observers, filter dead": (observers, {"alive": "no"}),
        "observers, filter quarantined": (observers, {"quarantined": "yes"}),
        "observers, filter callback": (observers, {"callback": "observers.bench.stamp"}),
        "variables overview": (reverse("admin:observers_app_variablestate_changelist"), {}),
        "owners list": (reverse("admin:observers_app_owner_changelist"), {}),
        "inspect a variable": (reverse("admin:observers_inspect", kwargs={"var_id": f"{PREFIX}7"}), {}),
        "stats dashboard": (reverse("admin:observers_stats"), {}),
    }
    results = {}
    try:
        for name, (url, params) in pages.items():
            client.get(url, params)  # warm
            samples = []
            for _ in range(3):
                started = time.perf_counter()
                response = client.get(url, params)
                samples.append(time.perf_counter() - started)
                assert response.status_code == 200, (name, response.status_code)
            results[name] = round(sorted(samples)[1] * 1000, 1)
            say(f"{name:<32}{results[name]:>10} ms")
    finally:
        user.delete()
    return results


def run(*, rows: int, say: Callable[[str], None]) -> dict[str, Any]:
    clear()
    say(f"inserting {rows} observer rows")
    started = time.perf_counter()
    fill(rows, variables=20_000)
    say(f"  done in {time.perf_counter() - started:.1f} s; timing pages (median of 3)")
    try:
        return {
            "rows": rows,
            "database": connection.vendor,
            "page_ms": time_pages(say),
            "id": str(uuid.uuid4()),
        }
    finally:
        clear()
