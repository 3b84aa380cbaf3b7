"""The edge's on-disk spool: raw hits that cannot go to Kafka yet wait here, in order, across restarts.

Owns one directory:

    <dir>/<seq:020d>.seg   append-only segment files of records  ``u32 length | u32 crc32(payload) | payload``
                           (little endian); payloads are opaque bytes to the spool
    <dir>/cursor           ``seq acked_records acked_bytes`` of the first segment, replaced atomically

Order: records come out of `read` in the order they went in: segment by segment in ``seq`` order, and in file
order within a segment. `prepend` is the one exception to "append only": it puts a new segment *before* the
first one (the edge uses it at shutdown for hits that were sent to Kafka before the spool started but never
acknowledged; they are older than everything spooled).

Durability: `append` writes with ``os.write`` straight to the file (a process crash loses nothing written);
``fsync`` happens in batches, when `sync_due` says so: every ``sync_records`` records, or ``sync_interval_s``
after the first unsynced change. A power loss loses at most that batch. The fsync itself is *planned* here
(`begin_sync`), run by the caller wherever it likes (`run_sync`, e.g. in a worker thread, so the event loop
never waits on the disk) and finished here (`end_sync`). File descriptors are only ever closed by `run_sync`
or `close`, so a sync running in a thread never sees its descriptor closed or reused under it.

Acknowledgement: `read` hands out records; `ack(n)` says the ``n`` oldest handed-out records are delivered.
A segment file is deleted only when every record in it is acknowledged. The acknowledged position is
persisted at each sync and at `close`, so a restart re-delivers at most the records acknowledged since the
last sync (at-least-once; never loses an unacknowledged record).

Bounded: the segment files together never exceed ``max_bytes``; `append` refuses (returns how many it took)
and the caller counts the drop. Startup tolerates a truncated or corrupt record (a crash mid-write, a bad
disk): the rest of that segment is skipped and counted in `skipped_bytes`; later segments are read normally.

Never: blocks on the network, reorders records, deletes an unacknowledged record, or runs two syncs at once.
Not thread-safe apart from `run_sync`; one owner (the publisher's event loop) calls everything else.
"""

from __future__ import annotations

import collections
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from schemas.errors import PixelpipeError

log = logging.getLogger(__name__)

HEADER: Final = struct.Struct("<II")
MAX_RECORD_BYTES: Final = 1 << 20
SEGMENT_SUFFIX: Final = ".seg"
CURSOR_NAME: Final = "cursor"
# Sequence numbers start high so that `prepend` always has room below the first segment.
FIRST_SEQ: Final = 1_000_000_000
_READ_CHUNK: Final = 4 << 20
# `has_room` keeps this much headroom: a typical raw hit is well under 1 KiB.
_ROOM_FOR_ONE: Final = 4096


class SpoolOrderError(PixelpipeError, RuntimeError):
    """`prepend` was asked to put records before records that are already handed out or acknowledged."""


# -- pure framing --------------------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """One record as it sits in a segment file."""
    if len(payload) > MAX_RECORD_BYTES:
        raise ValueError(f"spool record of {len(payload)} bytes is over the {MAX_RECORD_BYTES} byte limit")
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def record_end(buf: bytes | memoryview, offset: int) -> int | None:
    """End offset of the well-formed record starting at ``offset``, or None if it is truncated or corrupt."""
    if offset + HEADER.size > len(buf):
        return None
    length: int
    crc: int
    length, crc = HEADER.unpack_from(buf, offset)
    start = offset + HEADER.size
    end: int = start + length
    if length > MAX_RECORD_BYTES or end > len(buf):
        return None
    if zlib.crc32(buf[start:end]) != crc:
        return None
    return end


def scan(buf: bytes | memoryview, offset: int = 0, max_records: int | None = None) -> tuple[list[bytes], int]:
    """Payloads of the well-formed records from ``offset`` on, and the offset just past the last one.

    Stops at the end of ``buf``, after ``max_records``, or at the first truncated or corrupt record (the
    returned offset then points at it).
    """
    payloads: list[bytes] = []
    while max_records is None or len(payloads) < max_records:
        end = record_end(buf, offset)
        if end is None:
            break
        payloads.append(bytes(buf[offset + HEADER.size : end]))
        offset = end
    return payloads, offset


def count_records(buf: bytes | memoryview) -> tuple[int, int]:
    """How many well-formed records ``buf`` starts with, and where they end."""
    count = offset = 0
    while (end := record_end(buf, offset)) is not None:
        count += 1
        offset = end
    return count, offset


def segment_name(seq: int) -> str:
    return f"{seq:020d}{SEGMENT_SUFFIX}"


# -- the spool -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    size: int  # bytes of well-formed records; readers never go past it
    file_bytes: int  # bytes on disk, including a skipped bad tail
    records: int
    read_off: int = 0
    read_count: int = 0
    acked: int = 0
    acked_off: int = 0
    fd: int | None = None  # open for appending; only the active (newest) segment has one


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What one sync must do; built by `Spool.begin_sync`, carried out by `Spool.run_sync`."""

    fsync_fds: tuple[int, ...]
    close_fds: tuple[int, ...]
    cursor: bytes | None  # new cursor file content, or None to leave it
    sync_dir: bool
    records: int


@dataclass(slots=True)
class _Dirt:
    unsynced_records: int = 0
    since: float | None = None  # monotonic time of the first unsynced change
    cursor: bool = False
    directory: bool = False
    retired_fds: list[int] = field(default_factory=list)


class Spool:
    """Append-only, bounded, crash-safe FIFO of byte records in ``directory`` (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        sync_records: int = 1000,
        sync_interval_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0 or sync_records <= 0 or sync_interval_s < 0:
            raise ValueError("spool bounds must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.sync_records = sync_records
        self.sync_interval_s = sync_interval_s
        self._clock = clock
        self._fsync = fsync
        self._segments: collections.deque[_Segment] = collections.deque()
        self._active: _Segment | None = None
        # Frame sizes of records handed out by `read` and not yet acknowledged, oldest first.
        self._unacked: collections.deque[int] = collections.deque()
        self._dirt = _Dirt()
        self._sync_in_flight = False
        self._closed = False
        self.skipped_bytes = 0
        self.syncs = 0
        self.synced_records = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- start-up

    def _load(self) -> None:
        found = sorted(
            (int(path.stem), path)
            for path in self.directory.iterdir()
            if path.suffix == SEGMENT_SUFFIX and path.stem.isdigit()
        )
        cursor = self._read_cursor()
        for seq, path in found:
            data = path.read_bytes()
            records, end = count_records(data)
            if end < len(data):
                self.skipped_bytes += len(data) - end
                log.warning(
                    "spool segment %s: %d bytes after record %d are truncated or corrupt; skipped",
                    path.name,
                    len(data) - end,
                    records,
                )
            if records == 0:
                path.unlink()  # nothing deliverable in it
                self._dirt.directory = True
                continue
            segment = _Segment(seq=seq, path=path, size=end, file_bytes=len(data), records=records)
            self._segments.append(segment)
        # The cursor only ever describes the first segment; anything else is stale (the segment it named was
        # deleted once fully acknowledged) and re-delivering is the safe side.
        if cursor is not None and self._segments and self._segments[0].seq == cursor[0]:
            first = self._segments[0]
            acked, acked_off = cursor[1], cursor[2]
            if 0 < acked <= first.records and record_end_at_count(first.path, acked) == acked_off:
                first.acked = first.read_count = acked
                first.acked_off = first.read_off = acked_off
                self._drop_acked()  # fully acknowledged, only the unlink was lost
        self._next_seq = (self._segments[-1].seq + 1) if self._segments else FIRST_SEQ

    def _read_cursor(self) -> tuple[int, int, int] | None:
        try:
            fields = (self.directory / CURSOR_NAME).read_text().split()
            seq, acked, acked_off = (int(f) for f in fields)
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("spool cursor in %s unreadable; re-delivering the first segment", self.directory)
            return None
        return seq, acked, acked_off

    # -- state

    @property
    def depth(self) -> int:
        """Records not yet acknowledged (handed out or not)."""
        return sum(s.records - s.acked for s in self._segments)

    @property
    def unread(self) -> int:
        """Records not yet handed out by `read`."""
        return sum(s.records - s.read_count for s in self._segments)

    @property
    def in_flight(self) -> int:
        """Records handed out and not yet acknowledged."""
        return len(self._unacked)

    @property
    def size_bytes(self) -> int:
        return sum(s.file_bytes for s in self._segments)

    @property
    def segments(self) -> int:
        return len(self._segments)

    def has_room(self) -> bool:
        return self.size_bytes + _ROOM_FOR_ONE <= self.max_bytes

    # -- writing

    def append(self, payload: bytes) -> bool:
        return self.append_many((payload,)) == 1

    def append_many(self, payloads: Sequence[bytes]) -> int:
        """Append in order; returns how many were taken (fewer when the size bound or the disk is full)."""
        self._check_open()
        taken = 0
        total = self.size_bytes
        batch: list[bytes] = []
        batch_bytes = 0
        for payload in payloads:
            record = frame(payload)
            if total + len(record) > self.max_bytes:
                break
            active = self._active
            if active is None or (
                active.records + len(batch) > 0
                and active.file_bytes + batch_bytes + len(record) > self.segment_bytes
            ):
                if not self._write(batch, batch_bytes):
                    return taken - len(batch)
                batch, batch_bytes = [], 0
                try:
                    self._rotate()
                except OSError:
                    log.exception("spool could not start a new segment in %s", self.directory)
                    return taken
            batch.append(record)
            batch_bytes += len(record)
            total += len(record)
            taken += 1
        if not self._write(batch, batch_bytes):
            return taken - len(batch)
        return taken

    def _write(self, records: list[bytes], nbytes: int) -> bool:
        if not records:
            return True
        active = self._active
        if active is None or active.fd is None:
            raise RuntimeError("spool has no segment open for appending")
        fd = active.fd
        view = memoryview(b"".join(records))
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            # Disk full or failing. The batch counts as not taken; whatever part of it reached the file is a
            # bad tail that start-up skips. Nothing more goes into this segment, so readers (who stop at
            # `size`) and the next start (which stops at the bad tail) both see exactly the records before it.
            log.exception("spool write to %s failed", active.path.name)
            active.file_bytes += nbytes - len(view)
            self._retire(active)
            return False
        active.size += nbytes
        active.file_bytes += nbytes
        active.records += len(records)
        self._mark_dirty(records=len(records))
        return True

    def _rotate(self) -> None:
        if self._active is not None:
            self._retire(self._active)
        seq = self._next_seq
        self._next_seq += 1
        self._active = self._create(seq)
        self._segments.append(self._active)

    def _create(self, seq: int) -> _Segment:
        path = self.directory / segment_name(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._dirt.directory = True
        self._mark_dirty()
        return _Segment(seq=seq, path=path, size=0, file_bytes=0, records=0, fd=fd)

    def _retire(self, segment: _Segment) -> None:
        # Closed by the next sync, after its fsync: a sync running in a thread may be using it right now.
        if segment.fd is not None:
            self._dirt.retired_fds.append(segment.fd)
            segment.fd = None
        if segment is self._active:
            self._active = None

    def prepend(self, payloads: Sequence[bytes]) -> int:
        """Put records before everything in the spool (oldest first); returns how many fit under the bound.

        Only allowed while nothing in the spool has been handed out or acknowledged: those records would
        otherwise be delivered after records that come later. The new segment is fsync'd before returning.
        """
        self._check_open()
        if not payloads:
            return 0
        if not self._segments:
            return self.append_many(payloads)
        if self._unacked or self._segments[0].acked:
            raise SpoolOrderError("cannot prepend: spooled records are already handed out")
        records: list[bytes] = []
        total = self.size_bytes
        for payload in payloads:
            record = frame(payload)
            if total + len(record) > self.max_bytes:
                break
            records.append(record)
            total += len(record)
        if not records:
            return 0
        segment = self._create(self._segments[0].seq - 1)
        fd, segment.fd = segment.fd, None
        if fd is None:
            raise RuntimeError("spool segment was not opened")
        data = b"".join(records)
        # Closed right here, not by a sync: this descriptor was never part of a sync plan.
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._fsync(fd)
        finally:
            os.close(fd)
        segment.size = segment.file_bytes = len(data)
        segment.records = len(records)
        self._segments.appendleft(segment)
        self._dirt.cursor = True  # the cursor named the old first segment
        return len(records)

    # -- reading and acknowledging

    def read(self, max_records: int) -> list[bytes]:
        """The next ``max_records`` records not yet handed out, oldest first."""
        self._check_open()
        out: list[bytes] = []
        for segment in self._segments:
            if len(out) >= max_records:
                break
            if segment.read_count >= segment.records:
                continue
            with segment.path.open("rb") as f:
                f.seek(segment.read_off)
                buf = f.read(min(segment.size - segment.read_off, _READ_CHUNK))
            payloads, end = scan(buf, 0, max_records - len(out))
            if not payloads:
                # Checked at start-up, so the disk changed under us; keep going with the next segment.
                self._give_up_on(segment)
                continue
            self._unacked.extend(HEADER.size + len(payload) for payload in payloads)
            segment.read_off += end
            segment.read_count += len(payloads)
            out.extend(payloads)
            if segment.read_count < segment.records:
                break  # a later segment must wait until this one is read to the end
        return out

    def _give_up_on(self, segment: _Segment) -> None:
        lost = segment.records - segment.read_count
        log.error(
            "spool segment %s turned unreadable at byte %d; %d records skipped",
            segment.path.name,
            segment.read_off,
            lost,
        )
        self.skipped_bytes += segment.size - segment.read_off
        segment.records = segment.read_count
        segment.size = segment.read_off
        self._drop_acked()

    def ack(self, count: int) -> None:
        """The ``count`` oldest handed-out records are delivered; fully acknowledged segments are deleted."""
        self._check_open()
        if count > len(self._unacked):
            raise ValueError(f"ack of {count} records, but only {len(self._unacked)} are handed out")
        while count:
            segment = self._segments[0]
            take = min(count, segment.read_count - segment.acked)
            # Records are handed out segment by segment, so the oldest handed-out one is in the first segment.
            if take <= 0:
                raise RuntimeError("spool bookkeeping: handed-out records must start in the first segment")
            for _ in range(take):
                segment.acked_off += self._unacked.popleft()
            segment.acked += take
            count -= take
            self._dirt.cursor = True
            self._mark_dirty()
            self._drop_acked()

    def rewind(self) -> None:
        """Hand out again every record handed out and not acknowledged (after a failed delivery)."""
        for segment in self._segments:
            segment.read_count = segment.acked
            segment.read_off = segment.acked_off
        self._unacked.clear()

    def _drop_acked(self) -> None:
        while self._segments and self._segments[0].acked >= self._segments[0].records:
            segment = self._segments.popleft()
            self._retire(segment)
            segment.path.unlink(missing_ok=True)
            self._dirt.directory = True
            self._dirt.cursor = True

    # -- syncing

    def _mark_dirty(self, records: int = 0) -> None:
        self._dirt.unsynced_records += records
        if self._dirt.since is None:
            self._dirt.since = self._clock()

    def sync_due(self) -> bool:
        dirt = self._dirt
        if dirt.unsynced_records >= self.sync_records:
            return True
        return dirt.since is not None and self._clock() - dirt.since >= self.sync_interval_s

    def begin_sync(self) -> SyncPlan:
        """Take everything unsynced into a plan; the caller runs it (`run_sync`) and then calls `end_sync`."""
        self._check_open()
        if self._sync_in_flight:
            raise RuntimeError("a spool sync is already in flight")
        dirt, self._dirt = self._dirt, _Dirt()
        fsync_fds = list(dirt.retired_fds)
        if self._active is not None and self._active.fd is not None and dirt.unsynced_records:
            fsync_fds.append(self._active.fd)
        cursor = None
        if dirt.cursor:
            first = self._segments[0] if self._segments else None
            seq, acked, acked_off = (first.seq, first.acked, first.acked_off) if first else (0, 0, 0)
            cursor = f"{seq} {acked} {acked_off}\n".encode()
        self._sync_in_flight = True
        return SyncPlan(
            fsync_fds=tuple(fsync_fds),
            close_fds=tuple(dirt.retired_fds),
            cursor=cursor,
            sync_dir=dirt.directory or cursor is not None,
            records=dirt.unsynced_records,
        )

    def run_sync(self, plan: SyncPlan) -> None:
        """Carry out a plan. Touches only the plan's descriptors and the cursor file: safe in a thread."""
        try:
            for fd in plan.fsync_fds:
                self._fsync(fd)
        finally:
            for fd in plan.close_fds:
                os.close(fd)
        if plan.cursor is not None:
            tmp = self.directory / (CURSOR_NAME + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, plan.cursor)
                self._fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.directory / CURSOR_NAME)
        if plan.sync_dir:
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def end_sync(self, plan: SyncPlan) -> None:
        self._sync_in_flight = False
        self.syncs += 1
        self.synced_records += plan.records

    def sync(self) -> None:
        """Begin, run and end a sync in the calling thread."""
        plan = self.begin_sync()
        try:
            self.run_sync(plan)
        finally:
            self.end_sync(plan)

    def close(self) -> None:
        """Sync and release the files; the spool stays on disk for the next start."""
        if self._closed:
            return
        self.sync()
        if self._active is not None and self._active.fd is not None:
            os.close(self._active.fd)
            self._active.fd = None
        self._active = None
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("spool is closed")


def record_end_at_count(path: Path, count: int) -> int | None:
    """Byte offset just past the first ``count`` records of a segment file (None if it has fewer)."""
    payloads, end = scan(path.read_bytes(), 0, count)
    return end if len(payloads) == count else None
