"""The edge's on-disk spool: order, batched fsync, restart recovery, damaged tails, the size bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.spool import (
    HEADER,
    SEGMENT_SUFFIX,
    Spool,
    SpoolOrderError,
    count_records,
    frame,
    record_end,
    scan,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingFsync:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        os.fsync(fd)


def payloads(n: int, start: int = 0) -> list[bytes]:
    return [f"hit-{i:05d}".encode() for i in range(start, start + n)]


def segment_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix == SEGMENT_SUFFIX)


# -- framing (pure)


def test_frame_and_scan_round_trip() -> None:
    buf = b"".join(frame(p) for p in payloads(3)) + frame(b"")
    records, end = scan(buf)
    assert records == [*payloads(3), b""]
    assert end == len(buf)
    assert count_records(buf) == (4, len(buf))


def test_scan_stops_at_max_records_and_at_a_truncated_record() -> None:
    buf = b"".join(frame(p) for p in payloads(3))
    first_two, end = scan(buf, 0, 2)
    assert first_two == payloads(2)
    assert scan(buf, end) == ([payloads(3)[2]], len(buf))
    truncated = buf[:-1]
    assert count_records(truncated) == (2, end)


def test_record_end_rejects_a_bad_checksum() -> None:
    record = bytearray(frame(b"hello"))
    assert record_end(bytes(record), 0) == len(record)
    record[HEADER.size] ^= 0xFF
    assert record_end(bytes(record), 0) is None


def test_frame_refuses_an_oversized_record() -> None:
    with pytest.raises(ValueError, match="over the"):
        frame(b"x" * ((1 << 20) + 1))


# -- append, read, ack


def test_records_come_out_in_order_and_acked_segments_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    assert spool.append_many(payloads(50)) == 50
    assert spool.segments > 1  # 200-byte segments hold a dozen records each
    assert spool.depth == 50

    got = spool.read(30)
    assert got == payloads(30)
    assert spool.in_flight == 30
    assert spool.unread == 20
    spool.ack(30)
    assert spool.depth == 20
    assert spool.read(100) == payloads(20, 30)
    spool.ack(20)
    assert spool.depth == 0
    assert spool.segments == 0
    assert segment_files(tmp_path) == []
    spool.close()


def test_appends_after_reads_keep_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=128)
    seen: list[bytes] = []
    for round_ in range(10):
        spool.append_many(payloads(7, round_ * 7))
        batch = spool.read(5)
        seen.extend(batch)
        spool.ack(len(batch))
    seen.extend(spool.read(1000))
    assert seen == payloads(70)
    spool.close()


def test_ack_of_more_than_handed_out_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append_many(payloads(3))
    spool.read(2)
    with pytest.raises(ValueError, match="only 2 are handed out"):
        spool.ack(3)
    spool.close()


def test_rewind_hands_out_unacked_records_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    spool.append_many(payloads(20))
    spool.read(8)
    spool.ack(3)
    spool.rewind()
    assert spool.read(100) == payloads(17, 3)
    spool.close()


# -- fsync batching


def test_sync_is_due_after_sync_records(tmp_path: Path) -> None:
    clock, fsync = FakeClock(), CountingFsync()
    spool = Spool(tmp_path, sync_records=1000, sync_interval_s=0.05, clock=clock, fsync=fsync)
    spool.append_many(payloads(999))
    assert not spool.sync_due()
    spool.append(b"the thousandth")
    assert spool.sync_due()
    plan = spool.begin_sync()
    assert plan.records == 1000
    assert len(plan.fsync_fds) == 1  # one segment file
    assert plan.sync_dir  # the segment file is new
    spool.run_sync(plan)
    spool.end_sync(plan)
    assert fsync.calls == 2  # the segment, then the directory
    assert spool.synced_records == 1000
    assert not spool.sync_due()
    spool.close()


def test_sync_is_due_after_the_interval(tmp_path: Path) -> None:
    clock, fsync = FakeClock(), CountingFsync()
    spool = Spool(tmp_path, sync_records=1000, sync_interval_s=0.05, clock=clock, fsync=fsync)
    assert not spool.sync_due()
    spool.append(b"one")
    clock.now += 0.049
    assert not spool.sync_due()
    clock.now += 0.002
    assert spool.sync_due()
    spool.sync()
    assert spool.syncs == 1
    assert fsync.calls == 2
    clock.now += 10
    assert not spool.sync_due()  # nothing new since
    spool.close()


def test_only_one_sync_in_flight(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"x")
    plan = spool.begin_sync()
    with pytest.raises(RuntimeError, match="already in flight"):
        spool.begin_sync()
    spool.run_sync(plan)
    spool.end_sync(plan)
    spool.close()


def test_rotated_segments_are_fsynced_before_they_are_closed(tmp_path: Path) -> None:
    fsync = CountingFsync()
    spool = Spool(tmp_path, segment_bytes=100, fsync=fsync)
    spool.append_many(payloads(30))  # several segments; all but the last were retired unsynced
    plan = spool.begin_sync()
    assert len(plan.close_fds) == spool.segments - 1
    assert len(plan.fsync_fds) == spool.segments
    spool.run_sync(plan)
    spool.end_sync(plan)
    assert fsync.calls == spool.segments + 1  # every segment, then the directory
    spool.close()


# -- restart recovery


def test_restart_resumes_after_the_acknowledged_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append_many(payloads(10))
    spool.read(6)
    spool.ack(4)  # 4 delivered, 2 handed out but not acknowledged
    spool.close()

    reopened = Spool(tmp_path)
    assert reopened.depth == 6
    assert reopened.read(100) == payloads(6, 4)  # the 2 unacknowledged come again
    reopened.append_many(payloads(3, 10))  # a new segment, behind the old one
    assert reopened.read(100) == payloads(3, 10)
    reopened.close()


def test_restart_with_a_lost_cursor_redelivers_rather_than_loses(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append_many(payloads(5))
    spool.read(2)
    spool.ack(2)
    spool.close()
    (tmp_path / "cursor").unlink()  # e.g. a crash before the acknowledgement was synced
    reopened = Spool(tmp_path)
    assert reopened.read(100) == payloads(5)
    reopened.close()


def test_truncated_tail_record_is_ignored(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append_many(payloads(5))
    spool.close()
    (segment,) = segment_files(tmp_path)
    data = segment.read_bytes()
    segment.write_bytes(data[:-3])  # a crash in the middle of writing the last record

    reopened = Spool(tmp_path)
    assert reopened.depth == 4
    assert reopened.skipped_bytes == len(frame(payloads(5)[4])) - 3
    reopened.append(b"after the crash")
    assert reopened.read(100) == [*payloads(4), b"after the crash"]
    reopened.close()


def test_corrupt_record_skips_the_rest_of_its_segment_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append_many(payloads(5))
    spool.close()
    spool = Spool(tmp_path)  # a second run writes a second segment
    spool.append_many(payloads(2, 100))
    spool.close()
    first, _ = segment_files(tmp_path)
    data = bytearray(first.read_bytes())
    record_size = len(frame(payloads(1)[0]))
    data[2 * record_size + HEADER.size] ^= 0xFF  # flip a byte inside the third record's payload
    first.write_bytes(bytes(data))

    reopened = Spool(tmp_path)
    assert reopened.depth == 4  # records 0-1 of the first segment, both of the second
    assert reopened.skipped_bytes == 3 * record_size
    assert reopened.read(100) == [*payloads(2), *payloads(2, 100)]
    reopened.close()


def test_segment_with_nothing_readable_is_removed_at_start(tmp_path: Path) -> None:
    (tmp_path / f"{5:020d}{SEGMENT_SUFFIX}").write_bytes(b"\x01\x02")
    spool = Spool(tmp_path)
    assert spool.depth == 0
    assert segment_files(tmp_path) == []
    spool.close()


# -- prepend


def test_prepend_puts_records_before_everything_and_survives_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append_many([b"c", b"d"])
    assert spool.prepend([b"a", b"b"]) == 2
    spool.close()
    reopened = Spool(tmp_path)
    assert reopened.read(10) == [b"a", b"b", b"c", b"d"]
    reopened.close()


def test_prepend_is_refused_once_records_are_handed_out(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append_many([b"c", b"d"])
    spool.read(1)
    with pytest.raises(SpoolOrderError):
        spool.prepend([b"a"])
    spool.close()


# -- the size bound


def test_append_stops_at_max_bytes_and_room_returns_after_acks(tmp_path: Path) -> None:
    record = len(frame(payloads(1)[0]))
    spool = Spool(tmp_path, max_bytes=10 * record, segment_bytes=3 * record)
    assert spool.append_many(payloads(15)) == 10
    assert spool.size_bytes == 10 * record
    assert not spool.append(b"hit-99999")
    assert not spool.has_room()

    assert spool.read(6) == payloads(6)
    spool.ack(6)  # the first two 3-record segments are deleted
    assert spool.size_bytes == 4 * record
    assert spool.append_many(payloads(6, 10)) == 6
    assert spool.read(100) == payloads(10, 6)
    spool.close()


def test_bound_holds_across_a_restart(tmp_path: Path) -> None:
    record = len(frame(payloads(1)[0]))
    spool = Spool(tmp_path, max_bytes=5 * record)
    spool.append_many(payloads(5))
    spool.close()
    reopened = Spool(tmp_path, max_bytes=5 * record)
    assert reopened.append_many(payloads(1, 5)) == 0
    assert reopened.depth == 5
    reopened.close()
