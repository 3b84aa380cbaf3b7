"""Exports' memory and time (issue 20): 1,000,000 events of one campaign exported by `api.export_jobs` in each
format and chunk size asked for, the process's resident memory (VmRSS) sampled every 20 ms while each runs.

The data is the export test's (`tests/integration/test_exports_http.py`: 1 M events over 10,000 messages
with their sends), generated once into the embedded engine at PATH. Growth is measured from the RSS at each
run's start: the engine and the allocator give memory back to the system between runs and take it again, so
a run that starts low grows more for the same work.

    uv run python -m bench.exports PATH jsonl:10000 csv:10000 parquet:10000 jsonl:50000
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from api.export_jobs import ExportJobs
from schemas.store import Store, parse_store_url
from tests.integration.test_exports_http import _generate


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def run(store: Store, out: Path, fmt: str, chunk: int) -> str:
    jobs = ExportJobs(out / f"{fmt}-{chunk}", store, ttl=timedelta(hours=1), chunk_rows=chunk)
    jobs.start()
    start = rss()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    began = time.monotonic()
    job = jobs.submit("acme", "events", fmt, campaign_id="big")  # type: ignore[arg-type]
    while (current := jobs.get("acme", job.id)) is not None and current.status not in ("done", "failed"):
        time.sleep(0.1)
    done.set()
    sampler.join()
    jobs.stop()
    if current is None:
        raise RuntimeError("the job vanished")
    took = time.monotonic() - began
    return (
        f"{fmt} chunks of {chunk:,}: {current.status}, {current.rows_written:,} rows, "
        f"{current.bytes:,} bytes in {took:.1f} s; "
        f"RSS {start // 2**20} MiB at the start, growth {(peak[0] - start) // 2**20} MiB"
    )


def main() -> None:
    path = Path(sys.argv[1])
    store = Store.connect(parse_store_url(f"chdb://{path}/clickhouse?database=exports_bench"))
    if not store.query(f"SELECT count() FROM {store.database}.events")[0][0]:  # noqa: S608 - our name
        _generate(store)
    for spec in sys.argv[2:]:
        fmt, chunk = spec.split(":")
        print(run(store, path / "out", fmt, int(chunk)), flush=True)


if __name__ == "__main__":
    main()
