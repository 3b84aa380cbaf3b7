"""Exports over real HTTP and chDB (issue 20): 1,000,000 events exported as CSV, JSON lines and Parquet with
exact row counts and rows, the process's memory watched while it runs; delivery events, filtered hits and
segment members; the account's scope, bad input, delete, expiry, restart, erasure.

The dataset, generated in the store (``INSERT ... SELECT FROM numbers()``, through the materialized views as
live rows would be): account ``acme``, campaign ``big``: 1,000,000 events, hit ``h00000000``..``h00999999``,
100 per message (``m000000``..``m009999``), every fourth a click (number % 4 = 0), recipient tag ``t`` + the
message's number, received 10 days ago + number ms; 10,000 sends (``r{n}@example.com``). Campaign ``small``:
3 delivery events and 2 filtered hits. Account ``other``: 5 events of its own campaign ``big``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from api.export_jobs import CHUNK_ROWS, ExportJobs
from api.sql.exports import SEGMENT_COLUMNS
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from pixelpipe.privacy import PrivacyWiring
from schemas.privacy_change import PrivacyChange
from schemas.store import Store
from schemas.suppression import DoNotTrack
from schemas.tokens import Keyring
from tests.integration.helpers import embedded_env
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
OTHER = {"Authorization": "Bearer other-key-456"}
ROWS = 1_000_000
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
    "Safari/537.36"
)
HIT_COLUMNS = (
    "hit_id, kind, account, campaign_id, message_id, sent_at, received_at, link_index, url, verdict, reason, "
    "via_proxy, country, city, time_zone, asn, as_org, ip, device, os, client, user_agent, source, "
    "recipient_tag"
)
SENDS = """
INSERT INTO {db}.sends
    (account, campaign_id, message_id, recipient, sent_at, registered_at, links, recipient_tag)
SELECT 'acme', 'big', concat('m', leftPad(toString(number), 6, '0')),
       concat('r', toString(number), '@example.com'), now64(3) - toIntervalDay(11),
       now64(3) - toIntervalDay(11), [], concat('t', toString(number))
FROM numbers(10000)"""
EVENTS = """
INSERT INTO {db}.events ({columns})
SELECT concat('h', leftPad(toString(number), 8, '0')), if(number % 4 = 0, 'click', 'open'), 'acme', 'big',
       concat('m', leftPad(toString(intDiv(number, 100)), 6, '0')), now64(3) - toIntervalDay(11),
       now64(3) - toIntervalDay(10) + toIntervalMillisecond(number), if(number % 4 = 0, 0, -1),
       if(number % 4 = 0, 'https://shop.example.com/a', ''), 'human', 'person', false, 'GB', 'London',
       'Europe/London', 0, '', '81.2.69.0', 'desktop', 'Windows', 'Outlook', '{ua}', 'test',
       concat('t', toString(intDiv(number, 100)))
FROM numbers({rows})"""
OTHERS = """
INSERT INTO {db}.events ({columns})
SELECT concat('o', toString(number)), 'open', 'other', 'big', 'x1', now64(3), now64(3) - toIntervalDay(1),
       -1, '', 'human', 'person', false, '', '', '', 0, '', '', '', '', '', '', 'test', ''
FROM numbers(5)"""
FILTERED = """
INSERT INTO {db}.filtered_hits ({columns}, token_head)
SELECT concat('f', toString(number)), 'click', 'acme', 'small', 's1', now64(3),
       now64(3) - toIntervalDay(1), 0, 'https://shop.example.com/a', 'bot', 'click_burst', false,
       '', '', '', 0, '', '', '', '', '', 'curl/8.0', 'test', 'tag-s1', ''
FROM numbers(2)"""
DELIVERIES = """
INSERT INTO {db}.deliveries
    (delivery_id, account, campaign_id, message_id, recipient, provider, provider_event_id,
     provider_message_id, event, bounce_type, smtp_status, smtp_code, diagnostic, provider_type, matched_by,
     unmatched_reason, occurred_at, received_at, recipient_tag)
VALUES
    ('d1', 'acme', 'small', 's1', 'sam@example.com', 'sendgrid', 'e1', 'p1', 'delivered', '', '', 250, '',
     'delivered', 'message_id', '', now64(3) - toIntervalHour(3), now64(3), 'tag-s1'),
    ('d2', 'acme', 'small', 's1', 'sam@example.com', 'sendgrid', 'e2', 'p1', 'bounce', 'hard', '5.1.1', 550,
     'mailbox "sam" unknown,\nsecond line', 'bounce', 'message_id', '', now64(3) - toIntervalHour(2),
     now64(3), 'tag-s1'),
    ('d3', 'acme', 'small', 's2', 'sue@example.com', 'sendgrid', 'e3', 'p2', 'delivered', '', '', 250, '',
     'delivered', 'message_id', '', now64(3) - toIntervalHour(1), now64(3), 'tag-s2')"""


def _generate(store: Store) -> None:
    for sql in (SENDS, EVENTS, OTHERS, FILTERED, DELIVERIES):
        store.command(sql.format(db=store.database, columns=HIT_COLUMNS, ua=UA, rows=ROWS))


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, chdb_path: Path
) -> Iterator[tuple[httpx.Client, Store, Path]]:
    data_dir = tmp_path_factory.mktemp("data")
    env = embedded_env(data_dir, chdb_path, PIXELPIPE_API_KEYS="acme=acme-key-123,other=other-key-456")
    components = build_components(settings_mod.load(env), frozenset({"api"}))
    app, _ = build_app(components)
    store = components.store
    assert store is not None
    _generate(store)
    with serving(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        yield client, store, data_dir
        store.command(f"DROP DATABASE IF EXISTS {store.database}")


def ask(client: httpx.Client, headers: dict[str, str] = ACME, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/exports", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return dict(r.json())


def finished(
    client: httpx.Client, export_id: str, headers: dict[str, str] = ACME, timeout: float = 900
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[tuple[int, int | None]] = []
    while time.monotonic() < deadline:
        r = client.get(f"/v1/exports/{export_id}", headers=headers)
        assert r.status_code == 200, r.text
        job = dict(r.json())
        seen.append((job["rows_written"], job["rows_total"]))
        if job["status"] in ("done", "failed"):
            job["seen"] = seen
            return job
        time.sleep(0.2)
    raise AssertionError(f"export {export_id} not finished: {seen[-3:]}")


def download(
    client: httpx.Client, job: dict[str, Any], path: Path, headers: dict[str, str] = ACME
) -> httpx.Headers:
    with client.stream("GET", job["download_url"], headers=headers) as r:
        assert r.status_code == 200, r.read()
        with path.open("wb") as out:
            for piece in r.iter_bytes(1 << 16):
                out.write(piece)
        return r.headers


class PeakRss:
    """The process's resident memory (VmRSS), sampled every 20 ms while in use: its peak above the start."""

    def __init__(self) -> None:
        self.start = self.peak = _rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


FIRST = "h00000001"  # key order: campaign, message, kind (open before click), hit id
LAST = "h00999996"  # the last message's last click


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_million_events_export_in_bounded_memory(
    served: tuple[httpx.Client, Store, Path], tmp_path: Path, fmt: str
) -> None:
    client, _, _ = served
    with PeakRss() as rss:
        job = finished(client, ask(client, kind="events", format=fmt, campaign_id="big")["id"])
        assert job["status"] == "done", job
        target = tmp_path / f"events.{fmt}"
        headers = download(client, job, target)
    size = target.stat().st_size
    print(f"\n{fmt}: {size:,} bytes, peak RSS growth {rss.growth:,} bytes (start {rss.start:,})")
    assert job["rows_total"] == job["rows_written"] == ROWS
    assert job["bytes"] == size
    assert any(0 < written < ROWS for written, _ in job["seen"]) or len(job["seen"]) < 3  # progress shown
    disposition = headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert f"events-big-{job['id']}." in disposition
    if fmt == "csv":
        assert headers["content-type"].startswith("text/csv")
        with target.open(newline="") as f:
            reader = csv.DictReader(f)
            first = next(reader)
            count = 1 + sum(1 for _ in reader)
        assert count == ROWS
        assert first["hit_id"] == FIRST
        assert first["kind"] == "open"
        assert first["message_id"] == "m000000"
        assert first["recipient"] == "r0@example.com"
        assert first["recipient_tag"] == "t0"
        assert first["user_agent"] == UA
        assert first["received_at"].endswith("Z")
    elif fmt == "jsonl":
        assert headers["content-type"].startswith("application/x-ndjson")
        with target.open("rb") as f:
            first_line = f.readline()
            count = 1 + sum(1 for _ in f)
        assert count == ROWS
        first = json.loads(first_line)
        assert first["hit_id"] == FIRST
        assert first["recipient"] == "r0@example.com"
        assert first["asn"] == 0
        last = json.loads(target.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[1])
        assert last["hit_id"] == LAST
        assert last["kind"] == "click"
        assert last["recipient"] == "r9999@example.com"
        assert last["url"] == "https://shop.example.com/a"
        assert last["link_index"] == 0
    else:
        assert headers["content-type"].startswith("application/vnd.apache.parquet")
        parquet = pq.ParquetFile(target)
        assert parquet.metadata.num_rows == ROWS
        assert parquet.metadata.num_row_groups == ROWS // CHUNK_ROWS  # one per chunk
        head = parquet.read_row_group(0).slice(0, 1).to_pylist()[0]
        assert head["hit_id"] == FIRST
        assert head["recipient"] == "r0@example.com"
        assert head["received_at"].tzinfo is not None
        tail = parquet.read_row_group(parquet.metadata.num_row_groups - 1).to_pylist()[-1]
        assert tail["hit_id"] == LAST
        assert tail["message_id"] == "m009999"
    # The bound: a few chunks' worth, far below the export (1 M rows: ~320 MB of CSV, ~550 MB of JSON lines).
    # Growth from the RSS at the start: the engine and the allocator may first take back what they returned
    # to the system since the last export (measured: 30 MB with chunks of 10,000 rows, 250 MB with 50,000).
    assert rss.growth < 128 * 1024 * 1024, rss.growth


def test_deliveries_and_filtered_hits_exactly(
    served: tuple[httpx.Client, Store, Path], tmp_path: Path
) -> None:
    client, _, _ = served
    job = finished(client, ask(client, kind="deliveries", format="jsonl", campaign_id="small")["id"])
    assert (job["status"], job["rows_total"], job["rows_written"]) == ("done", 3, 3)
    download(client, job, tmp_path / "d.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [(r["message_id"], r["event"], r["delivery_id"]) for r in rows] == [
        ("s1", "bounce", "d2"), ("s1", "delivered", "d1"), ("s2", "delivered", "d3"),
    ]  # fmt: skip
    assert rows[0]["diagnostic"] == 'mailbox "sam" unknown,\nsecond line'
    assert rows[0]["smtp_code"] == 550
    assert rows[0]["recipient"] == "sam@example.com"
    assert rows[0]["bounce_type"] == "hard"
    # CSV quotes a field with a comma, a quote or a line break (RFC 4180): read back whole
    job = finished(client, ask(client, kind="deliveries", format="csv", campaign_id="small")["id"])
    download(client, job, tmp_path / "d.csv")
    with (tmp_path / "d.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["delivery_id"] for r in table] == ["d2", "d1", "d3"]
    assert table[0]["diagnostic"] == 'mailbox "sam" unknown,\nsecond line'
    # a time range: only the last hour's event
    since = (datetime.now(UTC) - timedelta(minutes=90)).isoformat()
    job = finished(client, ask(client, kind="deliveries", format="jsonl", since=since)["id"])
    assert job["rows_total"] == 1
    # nothing in range: a Parquet file of no rows, with the columns
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    job = finished(client, ask(client, kind="deliveries", format="parquet", since=later)["id"])
    assert (job["status"], job["rows_total"], job["rows_written"]) == ("done", 0, 0)
    download(client, job, tmp_path / "none.parquet")
    empty = pq.read_table(tmp_path / "none.parquet")
    assert empty.num_rows == 0
    assert "diagnostic" in empty.column_names
    job = finished(client, ask(client, kind="filtered_hits", format="parquet", campaign_id="small")["id"])
    assert (job["status"], job["rows_written"]) == ("done", 2)
    download(client, job, tmp_path / "f.parquet")
    rows = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert [(r["hit_id"], r["reason"], r["token_head"]) for r in rows] == [
        ("f0", "click_burst", ""),
        ("f1", "click_burst", ""),
    ]


def test_segment_members_export(served: tuple[httpx.Client, Store, Path], tmp_path: Path) -> None:
    client, _, _ = served
    r = client.post("/v1/segments/query", json={"count": True, "limit": 1}, headers=ACME)
    assert r.status_code == 200, r.text
    members = r.json()["count"]
    assert members >= 10_000  # every message's tag (more windows than one)
    job = finished(client, ask(client, kind="segment", format="csv", segment={})["id"])
    assert (job["status"], job["rows_total"], job["rows_written"]) == ("done", members, members)
    download(client, job, tmp_path / "s.csv")
    with (tmp_path / "s.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == members
    t0 = next(row for row in table if row["recipient_tag"] == "t0")
    assert t0["recipient"] == "r0@example.com"
    assert t0["sends"] == "1"
    assert t0["clicks"] == "25"
    assert list(table[0]) == [*SEGMENT_COLUMNS]  # the numbers of POST /v1/segments/query, implied_opens too
    assert "implied_opens" in table[0]
    # a condition: every recipient clicked link 0 of big
    job = finished(
        client,
        ask(
            client, kind="segment", format="jsonl", segment={"clicked": {"campaign": "big", "link_index": 0}}
        )["id"],
    )
    assert job["rows_written"] == 10_000


def test_exports_are_the_accounts_own(served: tuple[httpx.Client, Store, Path], tmp_path: Path) -> None:
    client, _, _ = served
    mine = ask(client, kind="events", format="jsonl", campaign_id="big", headers=OTHER)
    job = finished(client, mine["id"], headers=OTHER)
    assert job["rows_total"] == 5
    download(client, job, tmp_path / "o.jsonl", headers=OTHER)
    assert {json.loads(line)["hit_id"] for line in (tmp_path / "o.jsonl").read_text().splitlines()} == {
        f"o{n}" for n in range(5)
    }
    for path in (f"/v1/exports/{mine['id']}", f"/v1/exports/{mine['id']}/download"):
        assert client.get(path, headers=ACME).status_code == 404
    assert client.delete(f"/v1/exports/{mine['id']}", headers=ACME).status_code == 404
    assert mine["id"] not in {e["id"] for e in client.get("/v1/exports", headers=ACME).json()["exports"]}
    assert mine["id"] in {e["id"] for e in client.get("/v1/exports", headers=OTHER).json()["exports"]}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"kind": "opens", "format": "csv"}, 400),
        ({"kind": "events", "format": "xlsx"}, 400),
        ({"kind": "events", "since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400),
        ({"kind": "events", "since": "yesterday"}, 400),
        ({"kind": "events", "campaign_id": "nope"}, 404),
        ({"kind": "segment", "campaign_id": "big"}, 400),
        ({"kind": "events", "segment": {"bounced": True}}, 400),
        ({"kind": "segment", "segment": {"clicked": {"campaign": "big", "link_index": 0, "url": "x"}}}, 400),
        ({"kind": "segment", "segment": {"min_score": 9}}, 400),
        ({"kind": "events", "extra": 1}, 400),
    ],
)
def test_bad_input_is_a_clear_4xx(
    served: tuple[httpx.Client, Store, Path], body: dict[str, Any], status: int
) -> None:
    client, _, _ = served
    r = client.post("/v1/exports", json=body, headers=ACME)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_delete_removes_the_file(served: tuple[httpx.Client, Store, Path]) -> None:
    client, _, data_dir = served
    job = finished(client, ask(client, kind="deliveries", format="csv")["id"])
    files = list((data_dir / "exports").rglob(f"{job['id']}*"))
    assert len(files) == 2  # the manifest and the file
    assert client.delete(f"/v1/exports/{job['id']}", headers=ACME).status_code == 204
    assert not any(p.exists() for p in files)
    assert client.get(f"/v1/exports/{job['id']}", headers=ACME).status_code == 404
    assert client.get("/v1/exports/no-such-export/download", headers=ACME).status_code == 404


def test_a_queued_export_is_not_downloadable_and_a_running_one_can_be_deleted(
    served: tuple[httpx.Client, Store, Path],
) -> None:
    client, _, data_dir = served
    big = ask(client, kind="events", format="jsonl", campaign_id="big")  # a while: 1 M rows
    small = ask(client, kind="deliveries", format="csv", campaign_id="small")  # behind it, in order
    r = client.get(f"/v1/exports/{small['id']}/download", headers=ACME)
    assert r.status_code == 409, r.text
    assert "not done" in r.json()["detail"]
    deadline = time.monotonic() + 120
    while client.get(f"/v1/exports/{big['id']}", headers=ACME).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.delete(f"/v1/exports/{big['id']}", headers=ACME).status_code == 204  # stops at its chunk
    assert client.get(f"/v1/exports/{big['id']}", headers=ACME).status_code == 404
    job = finished(client, small["id"])
    assert (job["status"], job["rows_written"]) == ("done", 3)
    assert not list((data_dir / "exports").rglob(f"{big['id']}*"))  # no manifest, no part left behind


def test_a_job_interrupted_starts_over_and_expires(
    served: tuple[httpx.Client, Store, Path], tmp_path: Path
) -> None:
    _, store, _ = served
    now = [datetime.now(UTC)]
    first = ExportJobs(tmp_path / "exports", store, ttl=timedelta(hours=1), clock=lambda: now[0])
    job = first.submit("acme", "deliveries", "jsonl", campaign_id="small")  # queued; never started here
    manifest = next((tmp_path / "exports").rglob(f"{job.id}.json"))
    manifest.write_text(
        manifest.read_text().replace('"queued"', '"running"')
    )  # as a stop mid-export leaves it
    again = ExportJobs(tmp_path / "exports", store, ttl=timedelta(hours=1), clock=lambda: now[0])
    again.start()
    try:
        deadline = time.monotonic() + 120
        while (current := again.get("acme", job.id)) is not None and current.status != "done":
            assert time.monotonic() < deadline, current
            time.sleep(0.1)
        assert current is not None
        assert current.rows_written == 3
        path = again.path(current)
        assert path.read_bytes().count(b"\n") == 3
        now[0] += timedelta(hours=1, seconds=1)
        assert again.get("acme", job.id) is None  # expired: not served, before any sweep
        assert again.of_account("acme") == []
        assert again.sweep() == 1
        assert not path.exists()
        assert not manifest.exists()
        assert again.get("acme", job.id) is None
    finally:
        again.stop()


def test_erasure_deletes_the_accounts_exports(served: tuple[httpx.Client, Store, Path]) -> None:
    client, _, data_dir = served
    job = finished(client, ask(client, kind="deliveries", format="csv", campaign_id="small")["id"])
    r = client.delete("/v1/recipients/r1@example.com", headers=ACME)  # any recipient of the account
    assert r.status_code == 200, r.text
    assert r.json()["erased"]["exports"] >= 1
    assert client.get(f"/v1/exports/{job['id']}", headers=ACME).status_code == 404
    assert not list((data_dir / "exports").rglob(f"{job['id']}*"))
    assert client.get("/v1/exports", headers=OTHER).json()["exports"]  # another account's stay


async def test_an_erasure_another_process_answered_deletes_this_ones_exports(
    served: tuple[httpx.Client, Store, Path], tmp_path: Path
) -> None:
    """With Kafka each API process follows the privacy topic: an erased recipient's account loses its export
    files in every process, not only in the one that answered the erasure (`pixelpipe.privacy`)."""
    _, store, _ = served
    jobs = ExportJobs(tmp_path / "exports", store, ttl=timedelta(hours=1))
    jobs.start()
    try:
        mine = jobs.submit("acme", "deliveries", "csv", campaign_id="small")
        theirs = jobs.submit("other", "events", "csv", campaign_id="big")
        deadline = time.monotonic() + 120
        wanted = (("acme", mine.id), ("other", theirs.id))
        while any((j := jobs.get(a, i)) is None or j.status != "done" for a, i in wanted):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        erased_at_ms = int(time.time() * 1000)
        await asyncio.sleep(0.01)
        later = jobs.submit("acme", "deliveries", "csv", campaign_id="small")  # asked after the erasure
        wiring = PrivacyWiring(DoNotTrack(Keyring(((1, b"k" * 32),))), lambda: None, exports=jobs)
        change = PrivacyChange("acme", ("ab" * 8,), tracking=False, erased=True, at_ms=erased_at_ms)
        await wiring.on_erased([change])
        assert jobs.get("acme", mine.id) is None
        assert not list((tmp_path / "exports").rglob(f"{mine.id}*"))
        assert jobs.get("other", theirs.id) is not None  # another account's stay
        # The feed hands every erasure again at a process's start: an export asked for after it stays.
        await wiring.on_erased([change])
        assert jobs.get("acme", later.id) is not None
    finally:
        jobs.stop()
