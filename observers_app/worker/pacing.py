"""How long callbacks take, as this process last measured them: what sizes a fan-out's pages.

Each deliver page costs the worker a fixed share besides its callbacks (its Celery task, its read of
the page's observers): a few milliseconds when the pool is busy. Pages of cheap callbacks are
therefore made to hold about PAGE_SECONDS of them, more than ``OBSERVERS_BATCH_SIZE`` observers,
so that fixed share stays small; pages of costly callbacks (webhooks, slow code) keep the batch size,
which spreads them over more pool processes. A process that has not yet run a callback pages by the
batch size alone.
"""

# The callbacks' time one page is made to hold, at least: several times a page's fixed cost on a
# busy two-core worker, and short enough that the pages of a 10,000-observer fan-out of cheap
# callbacks still balance across the pool processes at its end.
PAGE_SECONDS = 0.025
# A batch this small says too little about its callbacks' cost to be kept.
MIN_SAMPLE = 50
# How much of the last estimate a new measurement replaces.
WEIGHT = 0.5

_seconds_per_call: dict[str, float] = {}


def record(callbacks: set[str], seconds: float, calls: int) -> None:
    """Keep the time ``calls`` calls of ``callbacks`` (a batch's names) took: their mean cost, which
    a batch mixing several callbacks gives each of them."""
    if calls < MIN_SAMPLE:
        return
    mean = seconds / calls
    for name in callbacks:
        known = _seconds_per_call.get(name)
        _seconds_per_call[name] = mean if known is None else known + WEIGHT * (mean - known)


def seconds_per_call(callbacks: set[str]) -> float | None:
    """The cost of the costliest of ``callbacks`` as last measured here, or None while one of them
    was not measured yet."""
    costs = [_seconds_per_call.get(name) for name in callbacks]
    if not costs or None in costs:
        return None
    return max(cost for cost in costs if cost is not None)


def page_size(*, seconds_per_call: float | None, size: int) -> int:
    """How many observers a further page of a fan-out holds: the batch size, or more for callbacks
    cheap enough that the batch size would not fill PAGE_SECONDS."""
    if not seconds_per_call:
        return size
    return max(size, round(PAGE_SECONDS / seconds_per_call))
