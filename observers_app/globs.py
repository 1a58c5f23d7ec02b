"""Glob matching of variable names: ``*`` matches any run of characters, in linear time."""

from collections.abc import Iterable


def candidate_prefixes(var_ids: Iterable[str]) -> list[str]:
    """The literal prefixes (the part before the first ``*``) a glob matching one of ``var_ids`` can
    have: the names' own prefixes, the empty one included. A pattern with any other prefix cannot
    match, so a lookup by these (an index on the prefix) reads only the patterns that might."""
    return sorted({var_id[:end] for var_id in var_ids for end in range(len(var_id) + 1)})


def globs_among(patterns: list[str], var_id: str) -> list[str]:
    """The patterns of ``patterns`` that match ``var_id``."""
    return [pattern for pattern in patterns if glob_matches(pattern, var_id)]


def glob_matches(pattern: str, var_id: str) -> bool:
    """``*`` matches any run of characters (``:`` and newlines included); every other character only
    itself. Linear time: the first and last parts anchor the ends, the middle ones are found in order
    (a regex would backtrack exponentially on patterns like ``a*a*a*a*b``)."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == var_id
    first, *middle, last = parts
    if len(var_id) < len(first) + len(last) or not var_id.startswith(first) or not var_id.endswith(last):
        return False
    position, end = len(first), len(var_id) - len(last)
    for part in middle:
        found = var_id.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True
