"""The callback registry: pure logic, no broker or database."""

import pytest

from observers_app import registry
from observers_app.exceptions import UnknownCallback


def test_decorator_registers_module_qualname_and_returns_the_function():
    def probe(var_id, old, new, metadata):
        return "called"

    probe.__qualname__ = "probe_default_name"
    assert registry.observer_callback(probe) is probe
    name = f"{__name__}.probe_default_name"
    assert registry.name_of(probe) == name
    assert registry.name_of(name) == name
    assert registry.lookup(name) is probe


def test_decorator_with_explicit_name():
    @registry.observer_callback(name="tests.registry.named")
    def probe(var_id, old, new, metadata):
        return None

    assert registry.name_of(probe) == "tests.registry.named"
    assert registry.lookup("tests.registry.named") is probe


def test_nested_function_without_a_name_is_refused():
    def probe(var_id, old, new, metadata):
        return None

    with pytest.raises(UnknownCallback, match="pass name="):
        registry.observer_callback(probe)


def test_a_name_cannot_be_taken_by_another_function():
    registry.observer_callback(name="tests.registry.taken")(lambda *a: None)
    with pytest.raises(UnknownCallback, match="already registered"):
        registry.observer_callback(name="tests.registry.taken")(lambda *a: None)


def test_unregistered_callable_and_unknown_name_say_how_to_register():
    with pytest.raises(UnknownCallback, match="@observer_callback"):
        registry.name_of(print)
    with pytest.raises(UnknownCallback, match="@observer_callback"):
        registry.name_of("subprocess.call")
    with pytest.raises(UnknownCallback, match="not registered in this process"):
        registry.lookup("subprocess.call")
