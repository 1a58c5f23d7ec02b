"""Glob observers: exactly the matching notifications, the concrete name, and no accidental matches."""

import pytest

from observers_app import manager
from observers_app.globs import candidate_prefixes, glob_matches
from observers_app.models import Observer
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("shop.order:*:status", "shop.order:42:status", True),
        ("shop.order:*:status", "shop.order:42:total", False),
        ("shop.order:*:status", "shop.order::status", True),
        ("session:42:*", "session:42:cart", True),
        ("session:42:*", "session:421:cart", False),
        ("a_b%c:*", "a_b%c:1", True),
        ("a_b%c:*", "aXbYc:1", False),
        ("a_b:*", "axb:1", False),
        ("100%", "100 percent", False),
        ("x.y", "xzy", False),
        ("[ab]", "a", False),
        ("*", "anything at all", True),
        ("ab*ba", "aba", False),  # the ends may not overlap
        ("ab*ba", "abba", True),
        ("a*b*c", "acb", False),
        ("x*", "x\ny", True),
        ("*a*a*a*a*a*a*b", "a" * 120, False),
    ],
)
def test_glob_matching(pattern, name, matches):
    assert glob_matches(pattern, name) is matches


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_glob_observers_receive_exactly_the_matching_notifications():
    prefix = unique_var("shop")
    status_glob = manager.add_observer(f"{prefix}.order:*:status", record, glob=True)
    exact = manager.add_observer(f"{prefix}.order:1:status", record)
    literal = manager.add_observer(f"{prefix}_order%:*", record, glob=True)

    sent = {
        f"{prefix}.order:1:status": {status_glob, exact},
        f"{prefix}.order:2:status": {status_glob},
        f"{prefix}.order:2:total": set(),
        f"{prefix}Xorder:3:status": set(),  # "." is no wildcard
        f"{prefix}XorderY:3": set(),  # "_" and "%" are no wildcards
        f"{prefix}_order%:3": {literal},
    }
    assert manager.observer_count(f"{prefix}.order:2:status") == 1
    assert manager.observer_count(f"{prefix}.order:1:status") == 2
    assert manager.observer_count(f"{prefix}XorderY:3") == 0
    for var_id in sent:
        manager.notify_observers(var_id, 0, 1)
    manager.notify_observers(f"{prefix}_order%:done", 0, 1)  # the last one, to know all arrived

    wait_for(lambda: Received.objects.filter(var_id=f"{prefix}_order%:done").exists())
    wait_for(lambda: Received.objects.count() == sum(len(refs) for refs in sent.values()) + 1)
    for var_id, refs in sent.items():
        assert {c.observer_ref for c in Received.objects.filter(var_id=var_id)} == refs, var_id

    view = manager.inspect_variable(f"{prefix}.order:1:status")
    assert {(o["ref"], o["match"], o["pattern"]) for o in view["observers"]} == {
        (status_glob, "glob", f"{prefix}.order:*:status"),
        (exact, "exact", None),
    }


@pytest.mark.django_db(transaction=True)
def test_a_glob_observer_is_removed_by_its_pattern():
    ref = manager.add_observer("session:7:*", record, glob=True)
    assert manager.observer_count("session:7:cart") == 1
    assert manager.remove_observer("session:7:*", ref) is True
    assert manager.observer_count("session:7:cart") == 0
    assert Observer.objects.count() == 0


def test_candidate_prefixes_are_every_beginning_of_the_names():
    assert candidate_prefixes(["ab", "ac"]) == ["", "a", "ab", "ac"]


@pytest.mark.django_db(transaction=True)
def test_a_lookup_reads_only_the_globs_whose_literal_prefix_begins_the_name():
    patterns = ["session:1:*", "session:12:*", "shop:*", "*:cart", "session:12:c*t", "a%b_*", "session:*:x"]
    manager.add_observers(patterns, record, glob=True)
    assert {row.var_id: row.glob_prefix for row in Observer.objects.filter(var_id__in=patterns)} == {
        pattern: pattern.split("*")[0] for pattern in patterns
    }

    assert set(Observer.objects.candidate_globs(["session:12:cart"])) == {
        "session:12:*",
        "*:cart",
        "session:12:c*t",
        "session:*:x",
    }
    assert manager.observer_count("session:12:cart") == 3  # "session:*:x" could, but does not match
    assert set(Observer.objects.candidate_globs(["a%b_1"])) == {"a%b_*", "*:cart"}
    # "%" and "_" are plain characters in prefixes too: no LIKE behind the index.
    assert set(Observer.objects.candidate_globs(["aXbY1"])) == {"*:cart"}
    assert manager.observer_count("aXbY1") == 0
    assert Observer.objects.any_for_variable("a%b_1") is True
    assert Observer.objects.any_for_variable("aXbY1") is False
    assert Observer.objects.any_for_variable("shop:9") is True
    assert Observer.objects.any_for_variable("shopping") is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_a_batch_of_notifications_reaches_the_globs_of_each_name_among_many_others():
    prefix = unique_var("sessions")
    refs = manager.add_observers([f"{prefix}:{n}:*" for n in range(500)], record, glob=True)
    names = [f"{prefix}:{n}:cart" for n in (3, 30, 300)]
    for name in names:
        manager.notify_observers(name, 0, 1)
    calls = Received.objects.filter(var_id__startswith=prefix)
    wait_for(lambda: calls.count() >= 3)
    expected = [(names[0], refs[3]), (names[1], refs[30]), (names[2], refs[300])]
    assert sorted(calls.values_list("var_id", "observer_ref")) == sorted(expected)
