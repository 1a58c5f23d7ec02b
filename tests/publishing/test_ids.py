"""Notification and task ids: random version 4 UUIDs, read from os.urandom a block at a time."""

import os
import uuid
import warnings

from observers_app.publishing import ids


def test_an_id_is_a_random_uuid_in_its_canonical_text() -> None:
    for _ in range(3 * ids.BLOCK):
        text = ids.new_id()
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_ids_never_repeat_across_blocks() -> None:
    made = [ids.new_id() for _ in range(10 * ids.BLOCK)]
    assert len(set(made)) == len(made)


def test_a_forked_child_never_reuses_its_parents_block() -> None:
    ids.new_id()  # a block read, most of it still unused
    read, write = os.pipe()
    with warnings.catch_warnings():
        # The child only reads random bytes and writes to a pipe: safe beside the test run's threads.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running the parent's cleanups
        os.write(write, "".join(ids.new_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    parent = "".join(ids.new_id() for _ in range(5))
    assert len(child) == len(parent) == 5 * 36
    assert not {child[i : i + 36] for i in range(0, len(child), 36)} & {
        parent[i : i + 36] for i in range(0, len(parent), 36)
    }
