"""Random ids cut from a pool of kernel randomness."""

from __future__ import annotations

import threading

from retenshund.ids import RandomPool, random_hex
from retenshund.messages import new_message_id


def test_pool_hands_out_each_byte_once_across_refills() -> None:
    pool = RandomPool()
    chunks = [pool.take(16) for _ in range(1000)]  # about four refills of 4 KiB
    assert all(len(c) == 16 for c in chunks)
    assert len(set(chunks)) == len(chunks)
    assert len(pool.take(5000)) == 5000  # more than one refill's worth at once


def test_pool_is_safe_to_share_between_threads() -> None:
    pool = RandomPool()
    seen: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [pool.take(16) for _ in range(2000)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8000 and len(set(seen)) == 8000


def test_server_message_ids_are_random_hex_and_message_ids_sort_by_time() -> None:
    token = random_hex()
    assert len(token) == 32 and int(token, 16) >= 0
    first, second = new_message_id(), new_message_id()
    assert first.startswith("msg_") and len(first) == 30 and first != second
