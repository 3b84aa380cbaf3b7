"""Hit ids (ingest.edge): deduplication and ``uniqExact(hit_id)`` count on them being unique, so the random
part, fetched from the OS in batches, must never be handed out twice: not across batches, not to a forked
child."""

from __future__ import annotations

import os
import re

from ingest.edge import _hit_id, _RandomHex


def test_a_hit_id_is_the_time_then_64_random_bits() -> None:
    hit_id = _hit_id(0x18F0A1B2C3D)
    assert re.fullmatch(r"018f0a1b2c3d[0-9a-f]{16}", hit_id), hit_id


def test_random_parts_never_repeat_across_batches() -> None:
    random_hex = _RandomHex(batch=4)
    values = [random_hex() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", v) for v in values)
    assert len(set(values)) == 10_000


def test_a_forked_child_does_not_reuse_the_parents_batch() -> None:
    random_hex = _RandomHex(batch=64)
    random_hex()  # the batch is fetched; 63 values are left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next value and leave at once
        os.write(write, random_hex().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16
    assert child != random_hex()  # without the fork hook both would take the batch's second value
