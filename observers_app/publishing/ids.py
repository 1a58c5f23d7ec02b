"""Random (version 4) UUIDs for notifications and task messages, without a system call per id.

``uuid.uuid4()`` reads 16 bytes with ``getrandom`` on every call, and that system call releases the
interpreter lock: on the notify hot path it hands the lock to the send buffer's publishing thread,
and the caller then waits for the thread to give it back. Here the bytes are read from the same
source (``os.urandom``) a block at a time. A forked child never reuses its parent's block: the block
belongs to the process id that read it.
"""

import os
import threading
from collections.abc import Iterator

# Ids per read of os.urandom.
BLOCK = 256


class _Block(threading.local):
    pid = 0
    chunks: Iterator[bytes] = iter(())


_block = _Block()


def new_id() -> str:
    """A random UUID (version 4, as ``str(uuid.uuid4())``), from random bytes read a block at a time."""
    block = _block
    raw = next(block.chunks, None) if block.pid == os.getpid() else None
    if raw is None:
        data = os.urandom(16 * BLOCK)
        block.pid = os.getpid()
        block.chunks = iter([data[start : start + 16] for start in range(0, len(data), 16)])
        raw = next(block.chunks)
    text = bytes([*raw[:6], raw[6] & 0x0F | 0x40, raw[7], raw[8] & 0x3F | 0x80, *raw[9:]]).hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
