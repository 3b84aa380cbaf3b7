"""A graceful stop with a read-time pixel held (issue 18): ``pixelpipe edge`` as an operator runs it (a real
process on Kafka) is sent SIGTERM while it holds a timed open's answer. It closes that connection at once,
exits 0 within the README's 10 s, and the read record it measured (``stopped``, the seconds it held) is on the
raw-hit topic, after its open, on the open's partition: published before the process exited. With the native
fast path on and off, and the pixel held by the edge itself or by its holder process (`ingest.holder_link`),
which the edge stops first and which leaves no process behind."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path

import pytest

from bus.kafka_config import KafkaConfig
from bus.port import BusRecord
from ingest.native import NativeEdge
from ingest.read_gif import FRAME, ReadGif
from pixelpipe import settings as settings_mod
from processors.kafka_source import KafkaSource
from schemas.events import decode_hit, split_hits
from schemas.reads import decode_read, is_read_line
from schemas.tokens import Claim, TokenKind, sign
from schemas.topics import Topics
from tests.native import require_native
from tests.roles import Role, role_env

CAP_S = 60
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"


def _placed(records: list[BusRecord]) -> list[tuple[int, int, int, bytes]]:
    return [(r.partition, r.offset, i, line) for r in records for i, line in enumerate(split_hits(r.value))]


async def _lines(bootstrap: str, topics: Topics) -> list[tuple[int, int, int, bytes]]:
    """Every line on the raw-hit topic: (partition, offset, position in its record, line)."""
    source = KafkaSource(KafkaConfig(bootstrap), topics, f"g-{uuid.uuid4().hex[:12]}")
    await source.start()
    try:
        found: list[tuple[int, int, int, bytes]] = []
        deadline = time.monotonic() + 60
        while not (ends := await source.end_offsets()):
            assert time.monotonic() < deadline, "no partitions assigned"
            found += _placed(await source.fetch(1000, 0.5))
        read = dict.fromkeys(ends, 0)
        while True:
            for partition, offset, _, _ in found:
                read[partition] = max(read[partition], offset + 1)
            if read == ends:
                return found
            assert time.monotonic() < deadline, f"read up to {read}, the topic ends at {ends}"
            found += _placed(await source.fetch(1000, 0.5))
    finally:
        await source.stop()


def _holders_left(edge_pid: int) -> list[str]:
    """Holder processes of the stopped edge still running (their command line names the edge's pid)."""
    left = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            name = f"{edge_pid}-".encode()
            if b"ingest.read_holder" in cmdline and any(a.startswith(name) for a in cmdline):
                left.append(proc.name)
    return left


@pytest.mark.parametrize("holders", ["0", "1"], ids=["in-edge", "holder"])
@pytest.mark.parametrize("native", ["off", "on"], ids=["python", "native"])
def test_sigterm_ends_a_held_pixel_and_its_stopped_record_is_on_the_topic(
    tmp_path: Path, kafka_bootstrap: str, native: NativeEdge, holders: str
) -> None:
    if native == "on":
        require_native()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = role_env(
        PIXELPIPE_KAFKA_BOOTSTRAP=kafka_bootstrap,
        PIXELPIPE_TOPIC_PREFIX=prefix,
        PIXELPIPE_DATA_DIR=str(tmp_path / "edge"),
        PIXELPIPE_READ_TIME_CAP_SECONDS=str(CAP_S),
        PIXELPIPE_NATIVE_EDGE=native,
        PIXELPIPE_READ_TIME_HOLDERS=holders,
    )
    keyring = settings_mod.load(env).keyring
    token = sign(Claim(TokenKind.TIMED_OPEN, "acme", "spring", "msg-1", 1_700_000_000), keyring)
    edge = Role(["edge"], env, tmp_path / "edge.log")
    gif = ReadGif(CAP_S)
    try:
        edge.start()
        edge.wait_ready()
        with socket.create_connection(("127.0.0.1", edge.port), timeout=15) as conn:
            conn.sendall(f"GET /o/{token}.gif HTTP/1.1\r\nHost: x\r\nUser-Agent: {UA}\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < len(gif.head):
                chunk = conn.recv(65536)
                assert chunk, data
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert f"content-length: {gif.content_length}".encode() in head
            assert body.startswith(gif.head)
            time.sleep(1.5)
            code, took = edge.terminate(timeout_s=10)
            rest = body[len(gif.head) :]
            while chunk := conn.recv(65536):
                rest += chunk
    finally:
        edge.stop()
    assert code == 0, edge.log.read_text()[-3000:]
    assert not _holders_left(edge.proc.pid)
    assert took < 10
    assert set(rest) <= set(FRAME)  # a frame or two, the connection closed long before the cap
    assert len(rest) < 5 * len(FRAME)

    lines = asyncio.run(_lines(kafka_bootstrap, Topics.with_prefix(prefix)))
    hits = [(p, o, i, decode_hit(v)) for p, o, i, v in lines if not is_read_line(v)]
    reads = [(p, o, i, decode_read(v)) for p, o, i, v in lines if is_read_line(v)]
    assert len(hits) == 1
    assert len(reads) == 1
    (hp, ho, hi, hit), (rp, ro, ri, record) = hits[0], reads[0]
    assert record.end == "stopped"
    assert 1300 <= record.read_ms <= 9000
    assert record.read_of == hit.hit_id
    assert (record.account, record.campaign_id, record.message_id) == ("acme", "spring", "msg-1")
    assert rp == hp  # the open's partition
    assert (ro, ri) > (ho, hi)  # after the open
