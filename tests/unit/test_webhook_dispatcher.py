"""The webhook dispatcher without a network: ordering per message through a failing endpoint, giving up,
deduplication, the outbox across a restart, a deleted webhook."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from notices.deliveries import delivery_id
from notices.directory import WebhookDirectory
from notices.dispatcher import WebhookDispatcher
from notices.retries import RetryPolicy
from notices.signing import verify
from schemas.notices import Webhook
from tests.notice_samples import SECRET, notice, webhook

FAST = RetryPolicy(first_delay_s=0.01, max_delay_s=0.05, max_attempts=20, jitter=0)


class Receiver:
    """An httpx transport that answers like an endpoint which fails while ``failing(request)`` says so."""

    def __init__(self, failing: Callable[[dict[str, object], int], bool]) -> None:
        self.failing = failing
        self.attempts: collections.Counter[str] = collections.Counter()
        self.delivered: list[dict[str, object]] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        self.attempts[body["id"]] += 1
        assert verify(SECRET, request.headers["pixelpipe-signature"], request.content, now=time.time())
        if self.failing(body, self.attempts[body["id"]]):
            return httpx.Response(500)
        self.delivered.append(body)
        self.headers.append(request.headers)
        return httpx.Response(204)


def dispatcher(tmp_path: Path, receiver: Receiver, hooks: list[Webhook], **kw: object) -> WebhookDispatcher:
    return WebhookDispatcher(
        outbox_path=tmp_path / "outbox.sqlite3",
        directory=WebhookDirectory(lambda: hooks, refresh_s=0),
        policy=kw.pop("policy", FAST),  # type: ignore[arg-type]
        transport=httpx.MockTransport(receiver),
        housekeeping_s=0.05,
        **kw,  # type: ignore[arg-type]
    )


async def eventually(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_deliveries_stay_in_order_per_message_through_failures(tmp_path: Path) -> None:
    # m1's first notice fails three times; m2 must not wait for it, m1's later notices must.
    receiver = Receiver(lambda body, attempt: body["id"] == "m1-1" and attempt <= 3)
    d = dispatcher(tmp_path, receiver, [webhook("wh_1", "open", "click")])
    await d.start()
    try:
        batch = [
            notice("m1", 1),
            notice("m2", 1),
            notice("m1", 2),
            notice("m2", 2),
            notice("m1", 3, kind="click"),
        ]
        await d.accept(batch)
        await eventually(lambda: len(receiver.delivered) == 5)
        order = [str(body["id"]) for body in receiver.delivered]
        assert [i for i in order if i.startswith("m1")] == ["m1-1", "m1-2", "m1-3"]
        assert [i for i in order if i.startswith("m2")] == ["m2-1", "m2-2"]
        assert order.index("m2-2") < order.index("m1-1")  # m2 went on while m1 was retried
        assert receiver.attempts == {"m1-1": 4, "m2-1": 1, "m1-2": 1, "m2-2": 1, "m1-3": 1}
        first = receiver.headers[order.index("m1-1")]
        assert first["pixelpipe-attempt"] == "4"
        assert first["pixelpipe-event-id"] == "m1-1"
        assert first["pixelpipe-delivery-id"] == delivery_id("wh_1", "m1-1")
        assert first["content-type"] == "application/json"
        # the same notices again (a replay): nothing is sent twice. The outbox decides when it takes them:
        # nothing pending once `accept` returned means nothing more can be sent.
        await d.accept(batch)
        assert await d.states() == {"delivered": 5}
        assert len(receiver.delivered) == 5
    finally:
        await d.stop()


async def test_an_endpoint_that_never_recovers_is_given_up_after_max_attempts(tmp_path: Path) -> None:
    receiver = Receiver(lambda body, attempt: body["id"] == "m1-1")
    policy = RetryPolicy(first_delay_s=0.01, max_delay_s=0.02, max_attempts=5, jitter=0)
    d = dispatcher(tmp_path, receiver, [webhook("wh_1", "open")], policy=policy)
    await d.start()
    try:
        await d.accept([notice("m1", 1), notice("m1", 2)])
        await eventually(lambda: len(receiver.delivered) == 1)
        assert receiver.attempts == {"m1-1": 5, "m1-2": 1}
        assert [body["id"] for body in receiver.delivered] == ["m1-2"]  # the lane went on after giving up
        assert await d.states() == {"delivered": 1, "failed": 1}
    finally:
        await d.stop()


async def test_pending_deliveries_survive_a_restart(tmp_path: Path) -> None:
    down = Receiver(lambda body, attempt: True)
    slow = RetryPolicy(first_delay_s=60, max_delay_s=60, max_attempts=20, jitter=0)
    d = dispatcher(tmp_path, down, [webhook("wh_1", "open")], policy=slow)
    await d.start()
    await d.accept([notice("m1", 1), notice("m1", 2), notice("m2", 1)])
    await eventually(lambda: sum(down.attempts.values()) == 2)  # both lane heads tried once, then wait 60 s
    await d.stop()

    up = Receiver(lambda body, attempt: False)
    # A new process: the retry due in 60 s is honoured, so start it with a clock 61 s ahead.
    d = dispatcher(tmp_path, up, [webhook("wh_1", "open")], clock=lambda: time.time() + 61)
    await d.start()
    try:
        await eventually(lambda: len(up.delivered) == 3)
        assert [body["id"] for body in up.delivered if str(body["id"]).startswith("m1")] == ["m1-1", "m1-2"]
        assert up.headers[0]["pixelpipe-attempt"] == "2"
    finally:
        await d.stop()


async def test_a_deleted_webhook_gets_nothing_more(tmp_path: Path) -> None:
    hooks = [webhook("wh_1", "open")]
    receiver = Receiver(lambda body, attempt: attempt == 1)
    d = dispatcher(
        tmp_path, receiver, hooks, policy=RetryPolicy(first_delay_s=0.2, max_delay_s=0.2, jitter=0)
    )
    await d.start()
    try:
        await d.accept([notice("m1", 1)])
        await eventually(lambda: sum(receiver.attempts.values()) == 1)
        hooks.clear()  # deleted while its delivery waits for a retry
        # The retry, due 0.2 s later, finds the webhook gone and cancels the delivery: nothing is pending
        # after that, so nothing can be delivered later.
        deadline = time.monotonic() + 30
        while (states := await d.states()) != {"cancelled": 1}:
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.01)
        assert receiver.delivered == []
        assert receiver.attempts == {"m1-1": 1}
    finally:
        await d.stop()


async def test_a_webhook_this_process_created_meets_the_next_notice() -> None:
    """Within the reload interval a new webhook is not seen, unless this process made it (the API beside the
    dispatcher calls `invalidate`): then the next match reloads."""
    hooks: list[Webhook] = []
    directory = WebhookDirectory(lambda: list(hooks), refresh_s=3600)
    await directory.fresh()
    hooks.append(webhook("wh_new"))
    await directory.fresh()
    assert directory.of_account("acme") == []  # another process's change: within refresh_s
    directory.invalidate()
    await directory.fresh()
    assert [w.webhook_id for w in directory.of_account("acme")] == [hooks[0].webhook_id]
