"""How much one client may hold in a web process: streams per user, per token and per address, and
names per stream. Counted on the event loop; a refusal names the setting it is past."""

import collections
from collections.abc import Sequence

from .. import conf
from ..exceptions import StreamLimitReached

_open: collections.Counter[tuple[str, str]] = collections.Counter()


def check_names(values: Sequence[str]) -> None:
    """Refuse a stream of more names and patterns than OBSERVERS_STREAM_MAX_VARS."""
    if len(values) > conf.stream_max_vars():
        raise StreamLimitReached(
            f"{len(values)} variables in one stream; OBSERVERS_STREAM_MAX_VARS is {conf.stream_max_vars()}"
        )


class Admission:
    """One stream counted against each of its holders until ``release()`` (idempotent)."""

    def __init__(self, holders: list[tuple[str, str]]) -> None:
        self.holders = holders

    def release(self) -> None:
        holders, self.holders = self.holders, []
        for holder in holders:
            _open[holder] -= 1
            if _open[holder] <= 0:
                del _open[holder]


def admit(*, user: str | None, token: str | None, address: str | None) -> Admission:
    """Count one more stream for its user, token and address, or raise StreamLimitReached (and count
    nothing) if one of them already holds as many as its setting allows."""
    holders = [(kind, key) for kind, key in (("user", user), ("token", token), ("address", address)) if key]
    for kind, key in holders:
        limit = conf.stream_max_per(kind)
        if _open[kind, key] >= limit:
            raise StreamLimitReached(
                f"{_open[kind, key]} streams already open for this {kind}; "
                f"OBSERVERS_STREAM_MAX_PER_{kind.upper()} is {limit}: close one first"
            )
    for holder in holders:
        _open[holder] += 1
    return Admission(holders)


def is_wide(pattern: str) -> bool:
    """A pattern with fewer characters before its first ``*`` than OBSERVERS_STREAM_GLOB_MIN_PREFIX."""
    return "*" in pattern and pattern.index("*") < conf.stream_glob_min_prefix()
