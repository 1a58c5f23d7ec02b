"""The observed names and glob patterns a process holds in memory, compact: "could anyone observe this?".

Exact names are kept as 64-bit hashes (Python's string hash, computed in this process only), most of
them in one sorted array (8 bytes a name), the ones learned since in a set. A hash shared by two
names only makes an unobserved name look observed (its notification reaches a worker that finds no
observer); an observed name always looks observed. Patterns are kept whole, by their literal
prefix (the part before the first ``*``), so a name is matched only against the patterns whose
prefix begins it.

Writers hold their view's lock (its thread applying changes, a caller remembering its own adds);
any thread reads without it: every change is one atomic step for a reader (a set or dict insertion,
or a new tuple in place of the old).
"""

import heapq
import itertools
from array import array
from bisect import bisect_left
from collections.abc import Iterable

from ..globs import glob_matches

# Names hashed and sorted at a time while an array is built: its transient memory is the chunks'.
SORT_CHUNK = 65_536


def _sorted_hashes(names: Iterable[str]) -> "array[int]":  # quoted: Python 3.11 cannot subscript it
    """The names' distinct hashes in order, built from sorted chunks merged: no set or list of them all."""
    chunks = []
    names = iter(names)
    while chunk := array("q", sorted(hash(name) for name in itertools.islice(names, SORT_CHUNK))):
        chunks.append(chunk)
    merged = array("q")
    last = None
    for key in heapq.merge(*chunks):
        if key != last:
            merged.append(key)
            last = key
    return merged


def glob_prefix(pattern: str) -> str:
    star = pattern.find("*")
    return pattern if star < 0 else pattern[:star]


class ObservedNames:
    def __init__(self, names: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        self.hashes = _sorted_hashes(names)
        self.added: set[int] = set()  # learned since the array was built
        self.patterns: dict[str, tuple[str, ...]] = {}  # literal prefix -> the patterns with it
        self.prefix_lengths: tuple[int, ...] = ()
        self.add_patterns(patterns)

    def __len__(self) -> int:
        return len(self.hashes) + len(self.added)

    def pattern_count(self) -> int:
        return sum(len(patterns) for patterns in self.patterns.values())

    def add_names(self, names: Iterable[str]) -> None:
        self.added.update(hash(name) for name in names)

    def add_patterns(self, patterns: Iterable[str]) -> None:
        lengths = set(self.prefix_lengths)
        for pattern in patterns:
            prefix = glob_prefix(pattern)
            known = self.patterns.get(prefix, ())
            if pattern not in known:
                self.patterns[prefix] = (*known, pattern)
            lengths.add(len(prefix))
        if len(lengths) != len(self.prefix_lengths):
            self.prefix_lengths = tuple(sorted(lengths))

    def observes(self, name: str) -> bool:
        """Whether ``name`` may have an observer: False only when no name or pattern held matches it."""
        key = hash(name)
        if key in self.added:
            return True
        hashes = self.hashes
        index = bisect_left(hashes, key)
        if index < len(hashes) and hashes[index] == key:
            return True
        size = len(name)
        for length in self.prefix_lengths:
            if length > size:
                break
            for pattern in self.patterns.get(name[:length], ()):
                if glob_matches(pattern, name):
                    return True
        return False
