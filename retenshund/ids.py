"""Unguessable ids for the hot path, without a system call per id.

``os.urandom`` is a ``getrandom`` call that also lets go of the GIL; on the
event loop, with the writer thread waiting for the GIL, each call could cost
the loop tens of microseconds before it ran again. Ids are instead cut from a
buffer of kernel randomness refilled 4 KiB at a time: the same source, one
call per 256 ids of 16 bytes.
"""

from __future__ import annotations

import os
import threading

_REFILL = 4096


class RandomPool:
    """Bytes from ``os.urandom``, handed out once each (thread-safe)."""

    __slots__ = ("_buf", "_pos", "_lock")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buf):
                self._buf = os.urandom(max(_REFILL, n))
                self._pos = 0
            start = self._pos
            self._pos = start + n
            return self._buf[start:start + n]


# One pool per process: it holds no configuration, only randomness not yet used.
_pool = RandomPool()


def random_bytes(n: int) -> bytes:
    return _pool.take(n)


def random_hex(n_bytes: int = 16) -> str:
    return _pool.take(n_bytes).hex()
