"""Export jobs (issue 20): an account's events, filtered hits, delivery events or segment members written to a
file under ``$PIXELPIPE_DATA_DIR/exports/`` by a worker thread, chunk by chunk, with their progress; the file
downloaded, expired, erased.

**Memory is one chunk's.** Each chunk (`CHUNK_ROWS` rows in the table's key order, `api.sql.exports`; a
segment's chunk is its next window of 10,000 recipients, `api.sql.engagement.PAGE_WINDOW`) is one query
answered in ClickHouse's own output format and appended to the file: CSV (our header line, then
ClickHouse's ``CSV`` of each chunk) and JSON lines (``JSONEachRow``) piece by piece as they come
(`Store.raw_stream`; chDB, the embedded engine, streams these two formats, a server streams every format);
Parquet from each chunk's ``Arrow`` answer, written as one row group by pyarrow's ``ParquetWriter`` (chDB
hands Arrow and Parquet whole, and Parquet files cannot be concatenated: a file has one footer indexing its
row groups). Progress: ``rows_total`` is counted first, ``rows_written`` after each chunk, exactly (a full
chunk is ``CHUNK_ROWS`` rows by construction, the last one is counted).

**On disk, not in the store.** A job is a JSON manifest next to its file (``exports/<account hash>/<id>.json``
and ``<id>.<ext>``; directories 0700, files 0600): the file is the job's product and lives on this process's
disk, so the job's state lives with it (a job row in ClickHouse would be visible from API processes that do
not have the file). A job that was queued or running when the process stopped starts over at the next start
(its partial file deleted). Expiry (`PIXELPIPE_EXPORT_TTL_HOURS`, capped at the retention) deletes the file
and the manifest; erasure of any recipient of an account deletes every export of that account
(`erase_account`): an export file holds personal data and we do not rewrite files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from api.sql import engagement
from api.sql import exports as sql
from api.sql.common import Query, iso
from schemas.store import Store, StoreError

log = logging.getLogger(__name__)

Format = Literal["csv", "jsonl", "parquet"]
Status = Literal["queued", "running", "done", "failed"]

CHUNK_ROWS: Final = 10_000  # rows per chunk of a table export: what one query holds (measured: BENCHMARKS)
MAX_ACTIVE_PER_ACCOUNT: Final = 4  # queued or running jobs of one account at once
SWEEP_S: Final = 60.0  # how often expired exports are looked for


@dataclass(frozen=True, slots=True)
class FileFormat:
    extension: str
    media_type: str


FORMATS: Final[dict[str, FileFormat]] = {
    "csv": FileFormat("csv", "text/csv; charset=utf-8"),
    "jsonl": FileFormat("jsonl", "application/x-ndjson"),
    "parquet": FileFormat("parquet", "application/vnd.apache.parquet"),
}


@dataclass(frozen=True, slots=True)
class ExportJob:
    """One export: what it covers, where it stands. ``segment``: the segment's conditions (kind segment)."""

    id: str
    account: str
    kind: sql.ExportKind
    format: Format
    created_at: datetime
    campaign_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    segment: dict[str, Any] | None = None
    status: Status = "queued"
    rows_written: int = 0
    rows_total: int | None = None
    bytes: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    error: str | None = None

    @property
    def file_name(self) -> str:
        """The name the download suggests: kind, campaign (letters, digits, ``._-`` only) and id."""
        what = "".join(c if c.isalnum() or c in "._-" else "_" for c in (self.campaign_id or "all"))[:64]
        return f"{self.kind}-{what}-{self.id}.{FORMATS[self.format].extension}"

    def answer(self) -> dict[str, Any]:
        """The job as the API shows it."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "format": self.format,
            "campaign_id": self.campaign_id,
            "since": iso(self.since),
            "until": iso(self.until),
            "status": self.status,
            "rows_written": self.rows_written,
            "rows_total": self.rows_total,
            "progress": _progress(self.rows_written, self.rows_total, self.status),
            "bytes": self.bytes,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "expires_at": iso(self.expires_at),
            "error": self.error,
            "download_url": f"/v1/exports/{self.id}/download" if self.status == "done" else None,
        }
        if self.segment is not None:
            out["segment"] = self.segment
        return out


def _progress(written: int, total: int | None, status: Status) -> float | None:
    if status == "done":
        return 1.0
    if total is None:
        return None
    return round(min(1.0, written / total), 4) if total else 0.0


_TIMES: Final = ("created_at", "since", "until", "started_at", "finished_at", "expires_at")


def _manifest(job: ExportJob) -> bytes:
    data = {name: getattr(job, name) for name in ExportJob.__dataclass_fields__}
    for name in _TIMES:
        data[name] = None if data[name] is None else data[name].isoformat()
    return json.dumps(data, sort_keys=True).encode()


def _job_of(raw: bytes) -> ExportJob:
    data = json.loads(raw)
    for name in _TIMES:
        if data.get(name) is not None:
            data[name] = datetime.fromisoformat(data[name])
    return ExportJob(**data)


def segment_of(conditions: dict[str, Any]) -> engagement.Segment:
    """The segment of stored conditions (`engagement.Segment`'s fields, as `api.exports` checked them)."""
    fields = dict(conditions)
    clicked = fields.pop("clicked", None)
    return engagement.Segment(
        **fields, clicked=None if clicked is None else engagement.CampaignLink(**clicked)
    )


class TooManyExports(Exception):
    """The account has `MAX_ACTIVE_PER_ACCOUNT` jobs queued or running."""


class _Gone(Exception):
    """The job was deleted (or its account erased) while it ran."""


@dataclass(slots=True)
class _Sink:
    """The file being written, and how much of it."""

    file: IO[bytes]
    written: int = 0
    parquet: Any = None  # pyarrow.parquet.ParquetWriter, opened at the first chunk

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.written += len(data)


class ExportJobs:
    """This process's export jobs: submit, read, delete, download path; one worker thread runs them in
    order. ``start`` loads the manifests (queued and running ones start over) and starts the worker. (A plain
    class: the API's context holds it, and a dataclass there would be read field by field.)"""

    def __init__(
        self,
        root: Path,
        store: Store,
        *,
        ttl: timedelta,
        chunk_rows: int = CHUNK_ROWS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.root = root
        self.store = store
        self.ttl = ttl
        self.chunk_rows = chunk_rows
        self.clock = clock
        self._jobs: dict[tuple[str, str], ExportJob] = {}
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the process's life

    def start(self) -> None:
        """Load the jobs on disk, queue again those a stop interrupted (from scratch), sweep expired ones and
        start the worker."""
        if self._thread is not None:
            return
        self._stopping.clear()
        resumed = []
        for path in sorted(self.root.glob("*/*.json")) if self.root.exists() else []:
            try:
                job = _job_of(path.read_bytes())
            except (OSError, ValueError, TypeError) as exc:
                log.warning("an export manifest could not be read and is ignored: %s (%s)", path.name, exc)
                continue
            if job.status in ("queued", "running"):
                self._part(job).unlink(missing_ok=True)
                job = replace(job, status="queued", rows_written=0, bytes=0, started_at=None)
                resumed.append(job)
            self._jobs[(job.account, job.id)] = job
        for job in sorted(resumed, key=lambda j: j.created_at):
            self._save(job)
            self._queue.put((job.account, job.id))
        if resumed:
            log.info("%d export job(s) interrupted by a stop start over", len(resumed))
        self.sweep()
        self._thread = threading.Thread(target=self._work, name="pixelpipe-exports", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current chunk; a running job stays `running` on disk and starts over next time."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    # -- what the API asks

    def submit(
        self,
        account: str,
        kind: sql.ExportKind,
        fmt: Format,
        *,
        campaign_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: dict[str, Any] | None = None,
    ) -> ExportJob:
        """Queue an export. Without ``until`` a table export ends at now: what was stored before the
        request."""
        now = self.clock()
        if kind != "segment" and until is None:
            until = now
        job = ExportJob(
            id="exp_" + secrets.token_hex(8),
            account=account,
            kind=kind,
            format=fmt,
            created_at=now,
            campaign_id=campaign_id,
            since=since,
            until=until,
            segment=segment,
        )
        with self._lock:
            active = [
                j for (a, _), j in self._jobs.items() if a == account and j.status in ("queued", "running")
            ]
            if len(active) >= MAX_ACTIVE_PER_ACCOUNT:
                raise TooManyExports(
                    f"an account has at most {MAX_ACTIVE_PER_ACCOUNT} exports queued or running"
                )
            self._jobs[(account, job.id)] = job
            self._save(job)
        self._queue.put((account, job.id))
        return job

    def get(self, account: str, job_id: str) -> ExportJob | None:
        """The job, or None: there is none, or it expired (its file goes at the next sweep, unserved)."""
        with self._lock:
            job = self._jobs.get((account, job_id))
        return None if job is None or self._expired(job, self.clock()) else job

    def of_account(self, account: str) -> list[ExportJob]:
        """The account's jobs, newest first (not the expired)."""
        now = self.clock()
        with self._lock:
            jobs = [j for (a, _), j in self._jobs.items() if a == account and not self._expired(j, now)]
        return sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)

    @staticmethod
    def _expired(job: ExportJob, now: datetime) -> bool:
        return job.expires_at is not None and job.expires_at <= now

    def path(self, job: ExportJob) -> Path:
        """Where a done job's file is."""
        return self._dir(job.account) / f"{job.id}.{FORMATS[job.format].extension}"

    def delete(self, account: str, job_id: str) -> bool:
        """Delete a job and its file (a running one stops after its current chunk). False: no such job."""
        with self._lock:
            job = self._jobs.pop((account, job_id), None)
            if job is None:
                return False
            self._remove(job)
        return True

    def erase_account(self, account: str, *, asked_by: datetime | None = None) -> int:
        """Delete the account's exports asked for by ``asked_by`` (an erasure then: their files may hold the
        recipient; None: every one). An export asked for after the erasure holds nothing of theirs and stays:
        the privacy feed hands every process each erasure again at its start. How many."""
        with self._lock:
            doomed = [
                j
                for (a, _), j in self._jobs.items()
                if a == account and (asked_by is None or j.created_at <= asked_by)
            ]
            for job in doomed:
                del self._jobs[(account, job.id)]
                self._remove(job)
        return len(doomed)

    def sweep(self) -> int:
        """Delete the jobs past their expiry, with their files. How many."""
        now = self.clock()
        with self._lock:
            expired = [j for j in self._jobs.values() if self._expired(j, now)]
            for job in expired:
                del self._jobs[(job.account, job.id)]
                self._remove(job)
        return len(expired)

    # -- on disk

    def _dir(self, account: str) -> Path:
        return self.root / hashlib.sha256(account.encode()).hexdigest()[:32]

    def _part(self, job: ExportJob) -> Path:
        return self.path(job).with_name(self.path(job).name + ".part")

    def _save(self, job: ExportJob) -> None:
        """Write the manifest whole (a temporary file renamed over it). Call with the lock held."""
        folder = self._dir(job.account)
        if not folder.exists():
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700, exist_ok=True)
        target = folder / f"{job.id}.json"
        temporary = target.with_name(target.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(_manifest(job))
        os.replace(temporary, target)

    def _remove(self, job: ExportJob) -> None:
        for path in (self.path(job), self._part(job), self._dir(job.account) / f"{job.id}.json"):
            path.unlink(missing_ok=True)

    def _update(self, job: ExportJob, **changes: Any) -> ExportJob:
        """The job with ``changes``, kept and saved; `_Gone` when it was deleted meanwhile."""
        with self._lock:
            if (job.account, job.id) not in self._jobs:
                raise _Gone
            job = replace(job, **changes)
            self._jobs[(job.account, job.id)] = job
            self._save(job)
            return job

    # -- the worker

    def _work(self) -> None:
        swept = time.monotonic()
        while not self._stopping.is_set():
            try:
                if time.monotonic() - swept >= SWEEP_S:  # also between jobs: a busy queue does not keep files
                    swept = time.monotonic()
                    self.sweep()
                try:
                    item = self._queue.get(timeout=SWEEP_S)
                except queue.Empty:
                    continue
                if item is None:
                    continue
                job = self.get(*item)
                if job is None or job.status != "queued":
                    continue
                self._run(job)
            except Exception:  # the disk full, a file gone: this job or sweep, never the worker
                log.exception("the export worker's turn failed")
                time.sleep(1)

    def _run(self, job: ExportJob) -> None:
        part = self._part(job)
        try:
            job = self._update(job, status="running", started_at=self.clock())
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                sink = _Sink(out)
                try:
                    job = self._write(job, sink)
                finally:
                    if sink.parquet is not None:
                        sink.parquet.close()
            if self._stopping.is_set():
                return  # stays running on disk: starts over at the next start
            self._publish(job, part)
            finished = self.clock()
            self._update(
                job,
                status="done",
                bytes=self.path(job).stat().st_size,
                finished_at=finished,
                expires_at=finished + self.ttl,
            )
        except _Gone:  # deleted or erased meanwhile: nothing of it may stay
            part.unlink(missing_ok=True)
            self.path(job).unlink(missing_ok=True)
        except Exception as exc:  # a job fails, the worker goes on
            part.unlink(missing_ok=True)
            if isinstance(exc, StoreError):
                error = f"the store failed: {exc.label}"
                log.warning("export %s failed: %s", job.id, exc.label)
            else:
                error = "internal error"
                log.exception("export %s failed", job.id)
            finished = self.clock()
            with contextlib.suppress(_Gone):
                self._update(
                    job, status="failed", error=error, finished_at=finished, expires_at=finished + self.ttl
                )

    def _publish(self, job: ExportJob, part: Path) -> None:
        """The written file under its name; `_Gone` when the job was deleted meanwhile."""
        with self._lock:
            if (job.account, job.id) not in self._jobs:
                raise _Gone
            os.replace(part, self.path(job))

    def _write(self, job: ExportJob, sink: _Sink) -> ExportJob:
        db = self.store.database
        if job.format == "csv":
            names = self._column_names(job)
            sink.write((",".join(names) + "\n").encode())
        chunks = self._segment_chunks(job) if job.kind == "segment" else self._table_chunks(job)
        total: int | None = None
        for item in chunks:
            if isinstance(item, int):  # the count, first
                total = item
                job = self._update(job, rows_total=total)
                continue
            query, rows = item
            if rows:
                self._append(job, sink, query)
            job = self._update(job, rows_written=job.rows_written + rows, bytes=sink.written)
            if self._stopping.is_set():
                return job
        if job.format == "parquet" and sink.parquet is None:  # no row at all: ClickHouse's file of no rows
            empty = self._empty_query(job, db)
            sink.write(self.store.raw_query(empty.sql, empty.parameters, fmt="Parquet"))
        return job

    def _column_names(self, job: ExportJob) -> tuple[str, ...]:
        return sql.SEGMENT_COLUMNS if job.kind == "segment" else sql.column_names(_table_kind(job))

    def _empty_query(self, job: ExportJob, db: str) -> Query:
        if job.kind == "segment":
            return sql.segment_rows(db, job.account, segment_of(job.segment or {}), "", "", text=False)
        scope = self._scope(job)
        return sql.chunk_rows(db, _table_kind(job), scope, (), None, text=False, limit=0)

    def _append(self, job: ExportJob, sink: _Sink, query: Query) -> None:
        """One chunk in the file's format."""
        if job.format == "parquet":
            data = self.store.raw_query(query.sql, query.parameters, fmt="Arrow")
            table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
            if sink.parquet is None:
                sink.parquet = pq.ParquetWriter(sink.file, table.schema, compression="zstd")
            sink.parquet.write_table(table)
            sink.written = sink.file.tell()
            return
        fmt = "CSV" if job.format == "csv" else "JSONEachRow"
        with contextlib.closing(self.store.raw_stream(query.sql, query.parameters, fmt=fmt)) as pieces:
            for piece in pieces:
                sink.write(piece)

    def _scope(self, job: ExportJob) -> sql.Scope:
        return sql.Scope(job.account, job.campaign_id, job.since, job.until)

    def _table_chunks(self, job: ExportJob) -> Iterator[int | tuple[Query, int]]:
        """The count, then each chunk's query and its number of rows, in key order."""
        db, text = self.store.database, job.format != "parquet"
        kind = _table_kind(job)
        scope = self._scope(job)
        yield self._one(sql.count(db, kind, scope))
        after: sql.Cursor = ()
        while True:
            end = self.store.query(*_args(sql.chunk_end(db, kind, scope, after, self.chunk_rows)))
            if not end:
                rest = self._one(sql.rest_count(db, kind, scope, after))
                yield sql.chunk_rows(db, kind, scope, after, None, text=text), rest
                return
            upto = tuple(end[0])
            yield sql.chunk_rows(db, kind, scope, after, upto, text=text), self.chunk_rows
            after = upto

    def _segment_chunks(self, job: ExportJob) -> Iterator[int | tuple[Query, int]]:
        """The count, then each window's members (`api.sql.engagement.segment_window`) and their number."""
        db, text = self.store.database, job.format != "parquet"
        seg = segment_of(job.segment or {})
        yield self._one(engagement.segment_count(db, job.account, seg))
        after = ""
        while True:
            ((upto, window_rows),) = self.store.query(
                *_args(engagement.segment_window(db, job.account, after=after))
            )
            if not window_rows:
                return
            rows = sql.segment_rows(db, job.account, seg, after, upto, text=text)
            yield rows, self._one(sql.counted(rows))
            if window_rows < engagement.PAGE_WINDOW:
                return
            after = upto

    def _one(self, query: Query) -> int:
        return int(self.store.query(query.sql, query.parameters)[0][0])


def _table_kind(job: ExportJob) -> sql.TableKind:
    if job.kind == "segment":
        raise ValueError("a segment export reads no table in chunks")
    return job.kind


def _args(query: Query) -> tuple[str, dict[str, Any]]:
    return query.sql, query.parameters
