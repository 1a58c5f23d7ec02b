"""What changed under the hub in Django 6.0 and 6.1, checked on whichever Django runs the suite."""

import pytest
from django.db import DatabaseError

from observers_app.db import DATABASE_ERRORS
from observers_app.models import Latest, Observer, Payload, Variable
from observers_app.querysets import _first_page_statement
from tests.factories import make_observers, unique_var


@pytest.mark.parametrize("model", [Variable, Latest, Payload])
def test_a_save_that_updates_no_row_is_never_taken_for_the_database_going_away(model):
    """``save(update_fields=...)`` on a row gone raises ``Model.NotUpdated`` from Django 6.0 (a
    DatabaseError before): the hub saves only rows it holds locked, and such an error would be the
    message's own failure, never an outage to wait out."""
    not_updated = getattr(model, "NotUpdated", DatabaseError)
    assert issubclass(not_updated, DatabaseError)
    assert not issubclass(not_updated, DATABASE_ERRORS)


@pytest.mark.django_db
def test_a_statement_compiled_once_is_bound_again_with_the_parameters_of_each_call():
    """Compiled SQL's parameters are a tuple from Django 6.0 (a list before): the dispatch's reads,
    compiled once, put each variable's name in place of the placeholder in either."""
    _, params = _first_page_statement("default", 1000)
    assert isinstance(params, tuple | list)
    first, second = unique_var(), unique_var()
    make_observers(first, 3)
    make_observers(second, 2)
    assert len(Observer.objects.first_delivery_page(first, limit=1000)) == 3
    assert len(Observer.objects.first_delivery_page(second, limit=1000)) == 2
