"""Pages sized by the callbacks' measured cost (pure logic: no worker)."""

import pytest

from observers_app.worker import pacing


@pytest.fixture(autouse=True)
def no_measurements(monkeypatch):
    monkeypatch.setattr(pacing, "_seconds_per_call", {})


def test_an_unmeasured_callback_pages_by_the_batch_size():
    assert pacing.seconds_per_call({"a"}) is None
    assert pacing.page_size(seconds_per_call=None, size=1000) == 1000


def test_cheap_callbacks_fill_a_page_with_page_seconds_of_them_and_costly_ones_keep_the_batch_size():
    assert pacing.page_size(seconds_per_call=pacing.PAGE_SECONDS / 2500, size=1000) == 2500
    assert pacing.page_size(seconds_per_call=0.006, size=1000) == 1000  # a webhook's: never fewer


def test_a_measurement_is_kept_per_callback_and_moves_the_estimate_half_way():
    pacing.record({"a"}, seconds=0.010, calls=1000)  # 10 us a call
    pacing.record({"a"}, seconds=0.030, calls=1000)  # then 30 us

    assert pacing.seconds_per_call({"a"}) == pytest.approx(20e-6)
    assert pacing.seconds_per_call({"a", "b"}) is None  # b not measured yet: no guess


def test_a_fan_out_of_several_callbacks_is_paced_by_the_costliest():
    pacing.record({"cheap"}, seconds=0.005, calls=1000)
    pacing.record({"costly"}, seconds=0.050, calls=1000)

    assert pacing.seconds_per_call({"cheap", "costly"}) == pytest.approx(50e-6)


def test_a_batch_too_small_to_say_anything_is_not_kept():
    pacing.record({"a"}, seconds=1.0, calls=pacing.MIN_SAMPLE - 1)

    assert pacing.seconds_per_call({"a"}) is None
