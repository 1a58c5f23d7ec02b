"""The public API in one place: ``manager`` with its ``__all__``, the version, and the import paths
moved in 0.3 still working (with a DeprecationWarning) for one release."""

import importlib
import tomllib
import warnings
from pathlib import Path

import pytest

import observers_app
from observers_app import checks as hub_checks
from observers_app import conf, manager, signals
from observers_app.publishing import backpressure, buffer
from observers_app.sources import model_fields, sessions
from observers_app.worker import poison

# Every public name manager had before 0.3: each keeps working.
NAMES_BEFORE_0_3 = (
    "add_observer",
    "add_observers",
    "remove_observer",
    "observer_count",
    "total_observers",
    "reenable_observer",
    "removal_of",
    "process_owner",
    "open_owner",
    "notify_observers",
    "get_stats",
    "inspect_variable",
    "add_webhook",
    "send_test_webhook",
    "WebhookRef",
    "sweep",
    "sweep_dead_observers",
)


def test_manager_exports_exactly_its_all_and_keeps_every_earlier_name():
    assert set(NAMES_BEFORE_0_3) <= set(manager.__all__)
    assert sorted(manager.__all__) == manager.__all__, "kept sorted, so a reader finds a name"
    public = {name for name in vars(manager) if not name.startswith("_")}
    assert public == set(manager.__all__), "manager holds the public API only"


def test_the_version_comes_from_the_package_metadata():
    project = tomllib.loads((Path(observers_app.__file__).parent.parent / "pyproject.toml").read_text())
    assert observers_app.__version__ == project["project"]["version"]


@pytest.mark.parametrize(
    ("old_module", "name", "new"),
    [
        ("observers_app.signals", "observe_model", model_fields.observe_model),
        ("observers_app.signals", "ObservedQuerySet", model_fields.ObservedQuerySet),
        ("observers_app.signals", "model_variable_id", model_fields.model_variable_id),
        ("observers_app.signals", "observed_models", model_fields.observed_models),
        ("observers_app.events", "observer_added", signals.observer_added),
        ("observers_app.events", "observers_swept", signals.observers_swept),
        ("observers_app.session_store", "set_variable", sessions.set_variable),
        ("observers_app.session_store", "variable_id", sessions.variable_id),
        ("observers_app.poison", "replay", poison.replay_dead_letters),
        ("observers_app.sender", "flush", buffer.flush),
        ("observers_app.publisher", "flush", buffer.flush),
        ("observers_app.backpressure", "delete_queues", backpressure.delete_queues),
    ],
)
def test_a_moved_name_still_resolves_with_a_deprecation_warning(old_module: str, name: str, new: object):
    module = importlib.import_module(old_module)
    with pytest.warns(DeprecationWarning, match=rf"{old_module}\.{name} moved to .* removed in 0\.4"):
        assert getattr(module, name) is new


def test_an_unknown_name_of_a_moved_module_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        importlib.import_module("observers_app.session_store").nothing  # noqa: B018


def test_the_hubs_own_signals_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert signals.observer_added is not None


def test_a_renamed_setting_is_still_read_and_warned_about(settings):
    settings.OBSERVERS_OUTBOX_MAX_BYTES = 1234
    assert conf.send_buffer_max_bytes() == 1234
    found = hub_checks.check_renamed_settings()
    assert [(message.id, message.msg.split(";")[0]) for message in found] == [
        ("observers.W005", "OBSERVERS_OUTBOX_MAX_BYTES is renamed OBSERVERS_SEND_BUFFER_MAX_BYTES")
    ]
    settings.OBSERVERS_SEND_BUFFER_MAX_BYTES = 99
    assert conf.send_buffer_max_bytes() == 99, "the new name wins"


def test_no_warning_without_the_old_setting():
    assert hub_checks.check_renamed_settings() == []
