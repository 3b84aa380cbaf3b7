"""The dispatcher's guarded connections, without a network: the name is resolved by the guard, every address
is vetted at each connection (DNS rebinding), the connection goes to a vetted address, and a refusal fails
the delivery at once with its reason."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import httpcore
import httpx
import pytest

from notices.attempts import AttemptLog
from notices.directory import WebhookDirectory
from notices.dispatcher import WebhookDispatcher
from notices.retries import RetryPolicy
from notices.transport import GuardedBackend, GuardedTransport
from schemas.notices import Notice, Webhook
from schemas.secret import Secret
from schemas.store import Store
from schemas.webhook_guard import BlockedTarget, IPAddress
from tests.notice_data import open_notice

ANSWER_204 = [b"HTTP/1.1 204 No Content\r\n", b"content-length: 0\r\n", b"\r\n"]


class Dns:
    """A resolver that gives each name's answers in turn (the last one again once they run out)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        queue = self.answers[host]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ipaddress.ip_address(a) for a in answer]


class Sockets(httpcore.AsyncMockBackend):
    """Records where connections go; ``unreachable`` addresses fail to connect."""

    def __init__(self, unreachable: Iterable[str] = ()) -> None:
        super().__init__(ANSWER_204)
        self.unreachable = set(unreachable)
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host in self.unreachable:
            raise httpcore.ConnectError(f"[Errno 101] Network is unreachable: {host}")
        self.connected.append((host, port))
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)


async def test_the_connection_goes_to_the_vetted_address() -> None:
    dns, sockets = Dns({"hooks.example.com": [["93.184.215.14"]]}), Sockets()
    backend = GuardedBackend(allow_private=False, resolver=dns, inner=sockets)
    await backend.connect_tcp("hooks.example.com", 443)
    assert sockets.connected == [("93.184.215.14", 443)]


async def test_a_name_that_rebinds_to_a_private_address_is_refused_at_the_next_connection() -> None:
    dns = Dns({"rebind.example": [["93.184.215.14"], ["169.254.169.254"]]})
    sockets = Sockets()
    backend = GuardedBackend(allow_private=False, resolver=dns, inner=sockets)
    await backend.connect_tcp("rebind.example", 80)  # registered while it pointed at a public address
    with pytest.raises(
        BlockedTarget, match=r"rebind\.example resolves to 169\.254\.169\.254 is a link-local"
    ):
        await backend.connect_tcp("rebind.example", 80)
    assert sockets.connected == [("93.184.215.14", 80)]
    assert dns.asked == ["rebind.example", "rebind.example"]  # resolved afresh for every connection


async def test_one_private_answer_among_public_ones_refuses_the_name() -> None:
    dns = Dns({"mixed.example": [["93.184.215.14", "2606:4700::1", "10.1.2.3"]]})
    sockets = Sockets()
    backend = GuardedBackend(allow_private=False, resolver=dns, inner=sockets)
    with pytest.raises(BlockedTarget, match=r"10\.1\.2\.3 is a private address"):
        await backend.connect_tcp("mixed.example", 443)
    assert sockets.connected == []


async def test_the_next_vetted_address_is_tried_when_one_is_unreachable() -> None:
    dns = Dns({"dual.example": [["2606:4700::1", "93.184.215.14"]]})
    sockets = Sockets(unreachable={"2606:4700::1"})
    backend = GuardedBackend(allow_private=False, resolver=dns, inner=sockets)
    await backend.connect_tcp("dual.example", 443)
    assert sockets.connected == [("93.184.215.14", 443)]
    sockets.unreachable.add("93.184.215.14")
    with pytest.raises(httpcore.ConnectError, match="unreachable"):
        await backend.connect_tcp("dual.example", 443)


async def test_addresses_are_not_resolved_and_names_that_do_not_resolve_are_connect_errors() -> None:
    dns, sockets = Dns({}), Sockets()
    backend = GuardedBackend(allow_private=False, resolver=dns, inner=sockets)
    with pytest.raises(BlockedTarget, match="loopback"):
        await backend.connect_tcp("127.0.0.1", 80)
    with pytest.raises(BlockedTarget, match="loopback"):
        await backend.connect_tcp("::1", 80)
    with pytest.raises(httpcore.ConnectError, match=r"cannot resolve nowhere\.example"):
        await backend.connect_tcp("nowhere.example", 80)
    assert dns.asked == ["nowhere.example"]
    with pytest.raises(BlockedTarget, match="Unix socket"):
        await backend.connect_unix_socket("/var/run/docker.sock")


async def test_a_slow_resolver_is_a_connect_timeout() -> None:
    async def stuck(host: str, port: int) -> list[IPAddress]:
        await asyncio.sleep(10)
        return []

    backend = GuardedBackend(allow_private=False, resolver=stuck, inner=Sockets())
    with pytest.raises(httpcore.ConnectTimeout):
        await backend.connect_tcp("slow.example", 80, timeout=0.05)


async def test_private_addresses_connect_when_allowed_but_never_unspecified_ones() -> None:
    dns, sockets = Dns({"dev.internal": [["10.0.0.7"]]}), Sockets()
    backend = GuardedBackend(allow_private=True, resolver=dns, inner=sockets)
    await backend.connect_tcp("127.0.0.1", 8080)
    await backend.connect_tcp("dev.internal", 80)
    assert sockets.connected == [("127.0.0.1", 8080), ("10.0.0.7", 80)]
    with pytest.raises(BlockedTarget, match="unspecified"):
        await backend.connect_tcp("0.0.0.0", 80)


async def test_httpx_requests_go_through_the_guard() -> None:
    dns = Dns({"hooks.example.com": [["93.184.215.14"]], "metadata.example": [["169.254.169.254"]]})
    sockets = Sockets()
    transport = GuardedTransport(
        GuardedBackend(allow_private=False, resolver=dns, inner=sockets), limits=httpx.Limits()
    )
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post("http://hooks.example.com/hook", content=b"{}")
        assert response.status_code == 204
        with pytest.raises(BlockedTarget, match=r"169\.254\.169\.254"):
            await client.post("http://metadata.example/latest/meta-data/", content=b"{}")
        with pytest.raises(BlockedTarget, match="loopback"):
            await client.post("http://127.0.0.1:6379/", content=b"{}")
    assert sockets.connected == [("93.184.215.14", 80)]


# -- the dispatcher: a refused target fails the delivery at once, with its reason ----------------------------


class Attempts:
    """Stands in for the store behind `AttemptLog`: keeps the rows it is given."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []

    def insert(self, table: str, columns: Iterable[str], rows: list[list[Any]]) -> None:
        assert table == "webhook_deliveries"
        self.rows.extend(rows)


def a_notice() -> Notice:
    return open_notice("m1", 0, id="m1-1")


async def settled(d: WebhookDispatcher, timeout_s: float = 30.0) -> None:
    """Until nothing is pending in the dispatcher's outbox."""
    deadline = time.monotonic() + timeout_s
    while await d.pending():
        assert time.monotonic() < deadline, "deliveries still pending"
        await asyncio.sleep(0.01)


async def deliver_once(tmp_path: Path, url: str, **kw: Any) -> tuple[WebhookDispatcher, Attempts]:
    attempts = Attempts()
    d = WebhookDispatcher(
        outbox_path=tmp_path / "outbox.sqlite3",
        directory=WebhookDirectory(
            lambda: [Webhook("acme", "wh_1", url, ("open",), Secret("whsec_x"))], refresh_s=0
        ),
        policy=RetryPolicy(first_delay_s=0.01, max_delay_s=0.01, max_attempts=20, jitter=0),
        attempt_log=AttemptLog(cast(Store, attempts)),
        housekeeping_s=0.05,
        **kw,
    )
    await d.start()
    try:
        await d.accept([a_notice()])
        await settled(d)  # nothing pending: no retry can follow
    finally:
        await d.stop()
    return d, attempts


async def test_a_delivery_to_a_name_that_resolves_privately_fails_at_once_with_the_reason(
    tmp_path: Path,
) -> None:
    dns = Dns({"hooks.example.com": [["10.0.0.5"]]})
    d, attempts = await deliver_once(tmp_path, "https://hooks.example.com/hook", resolver=dns)
    assert (d.delivered, d.failed) == (0, 1)
    assert len(attempts.rows) == 1
    row = dict(zip(["attempt", "status", "response_code", "error"], attempts.rows[0][6:10], strict=True))
    assert row == {
        "attempt": 1,
        "status": "failed",
        "response_code": 0,
        "error": "refused: hooks.example.com resolves to 10.0.0.5 is a private address; "
        "webhooks may only call public addresses"
        " (for development, PIXELPIPE_WEBHOOK_ALLOW_PRIVATE=true allows this one)",
    }


async def test_a_stored_url_naming_a_private_address_is_refused_before_any_transport(tmp_path: Path) -> None:
    asked: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(204)

    d, attempts = await deliver_once(
        tmp_path, "http://169.254.169.254/latest/meta-data/", transport=httpx.MockTransport(receiver)
    )
    assert asked == []
    assert d.failed == 1
    assert [(r[7], r[9]) for r in attempts.rows] == [
        ("failed", "refused: 169.254.169.254 is a link-local (cloud metadata) address; "
                   "webhooks may only call public addresses"
                   " (for development, PIXELPIPE_WEBHOOK_ALLOW_PRIVATE=true allows this one)"),
    ]  # fmt: skip


async def test_a_webhook_whose_secret_cannot_be_read_is_not_sent_unsigned(tmp_path: Path) -> None:
    asked: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(204)

    attempts = Attempts()
    d = WebhookDispatcher(
        outbox_path=tmp_path / "outbox.sqlite3",
        directory=WebhookDirectory(
            lambda: [Webhook("acme", "wh_1", "https://hooks.example.com/", ("open",), Secret(""))],
            refresh_s=0,
        ),
        policy=RetryPolicy(first_delay_s=0.01, max_delay_s=0.01, max_attempts=3, jitter=0),
        attempt_log=AttemptLog(cast(Store, attempts)),
        transport=httpx.MockTransport(receiver),
        housekeeping_s=0.05,
    )
    await d.start()
    try:
        await d.accept([a_notice()])
        await settled(d)
    finally:
        await d.stop()
    assert asked == []
    assert [r[7] for r in attempts.rows] == ["retrying", "retrying", "failed"]
    assert {r[9] for r in attempts.rows} == {
        "the signing secret cannot be read with the keys in PIXELPIPE_SECRET"
    }
