"""Notices and webhook delivery without a network: signatures, the retry schedule, which webhook gets what,
ordering per message through a failing endpoint, deduplication, the outbox across a restart, the live feed."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import orjson
import pytest

from notices.deliveries import delivery_id, plan_deliveries
from notices.directory import WebhookDirectory
from notices.dispatcher import WebhookDispatcher
from notices.hub import NoticeHub
from notices.live import LiveFeed, parse_event_id
from notices.making import notices_of
from notices.retries import RetryPolicy
from notices.signing import sign, verify
from processors.geo import Geo
from processors.pipeline import ProcessedHit
from processors.useragent import Agent
from schemas.events import RawHit
from schemas.live import LiveItem
from schemas.notices import MalformedNotice, Notice, Webhook, decode_notice, encode_notice, notice_data
from schemas.verdicts import Classification, Verdict

SECRET = "whsec_unit-test-secret"


def notice(
    message: str, seq: int, *, kind: str = "open", first: bool = False, account: str = "acme"
) -> Notice:
    return Notice(
        id=f"{message}-{seq}",
        type=kind,  # type: ignore[arg-type]
        account=account,
        campaign_id="spring",
        message_id=message,
        at_ms=1_700_000_000_000 + seq,
        created_at_ms=1_700_000_000_500 + seq,
        verdict="machine" if kind == "machine_open" else "human",
        reason="ua:mail_client",
        first=first,
        link_index=0 if kind == "click" else -1,
        url="https://example.com/sale" if kind == "click" else "",
    )


def webhook(
    webhook_id: str, *events: str, account: str = "acme", url: str = "http://receiver/hook"
) -> Webhook:
    return Webhook(account, webhook_id, url, events, SECRET)


# -- signatures ----------------------------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"h1","type":"open"}'
    # A fixed vector, computed outside Python:
    #   printf '%s' '1700000000.{"id":"h1","type":"open"}' |
    #     openssl dgst -sha256 -hmac 'whsec_unit-test-secret'
    expected = "e155f4568ef55522b44a7ec34a356747828992ff98af529a3f96359b44d5222a"
    assert sign(SECRET, 1_700_000_000, body) == f"t=1700000000,v1={expected}"


def test_a_receiver_accepts_only_an_untampered_recent_body_under_its_secret() -> None:
    body = b'{"id":"h1","type":"open"}'
    header = sign(SECRET, 1_700_000_000, body)
    now = 1_700_000_100.0
    assert verify(SECRET, header, body, now=now)
    assert not verify(SECRET, header, body + b" ", now=now)
    assert not verify("whsec_another", header, body, now=now)
    assert not verify(SECRET, header, body, now=1_700_000_000 + 301)  # a replay, too late
    assert not verify(SECRET, header.replace("t=1700000000", "t=1700000001"), body, now=now)
    for garbled in ("", "t=,v1=", "v1=abc", "t=1700000000", "t=x,v1=00", f"{header},t=1700000000"):
        assert not verify(SECRET, garbled, body, now=now)
    # a rotation sends two v1 values; either matching is enough
    rotated = header + ",v1=" + "0" * 64
    assert verify(SECRET, rotated, body, now=now)


def readme_verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """The verification snippet of the README, verbatim: it must agree with what the dispatcher signs."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [v for k, v in fields if k == "t"]
    signatures = [v for k, v in fields if k == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        return False
    t = int(timestamps[0])
    if abs(time.time() - t) > tolerance_s:
        return False  # too old: a replayed request
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


def test_the_readme_snippet_verifies_what_the_dispatcher_signs() -> None:
    body = b'{"id":"h1","type":"open","created_at":"2025-01-01T00:00:00.000Z","data":{}}'
    header = sign(SECRET, int(time.time()), body)
    assert readme_verify(SECRET, header, body)
    assert not readme_verify(SECRET, header, body.replace(b"h1", b"h2"))
    assert not readme_verify("whsec_other", header, body)
    assert not readme_verify(SECRET, sign(SECRET, int(time.time()) - 301, body), body)


# -- the retry schedule --------------------------------------------------------------------------------------


def test_the_default_backoff_doubles_from_1s_to_10min_and_covers_more_than_an_hour() -> None:
    policy = RetryPolicy()
    assert policy.schedule() == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600, 600, 600]
    assert policy.max_attempts == 16
    assert policy.span_s == 4023  # 67 minutes from the first attempt to the last
    assert policy.span_s >= 3600


def test_backoff_is_capped_and_bad_policies_are_rejected() -> None:
    policy = RetryPolicy(first_delay_s=0.5, max_delay_s=3, max_attempts=6)
    assert policy.schedule() == [0.5, 1, 2, 3, 3]
    assert policy.delay(10_000) == 3
    for bad in (
        {"first_delay_s": 0},
        {"first_delay_s": 5, "max_delay_s": 1},
        {"max_attempts": 0},
        {"jitter": 2},
    ):
        with pytest.raises(ValueError, match="need"):
            RetryPolicy(**bad)  # type: ignore[arg-type]


# -- what each webhook gets ----------------------------------------------------------------------------------


def test_each_webhook_gets_the_events_it_asked_for_of_its_own_account() -> None:
    hooks = {
        "acme": [webhook("wh_all", "open", "click", "machine_open"), webhook("wh_first", "first_open")],
        "globex": [webhook("wh_other", "open", "click", account="globex")],
    }
    notices = [
        notice("m1", 1, first=True),
        notice("m1", 2),
        notice("m1", 3, kind="click"),
        notice("m1", 4, kind="machine_open"),
    ]
    deliveries = plan_deliveries(notices, lambda account: hooks.get(account, []))
    got = [(d.webhook_id, d.notice_id) for d in deliveries]
    assert got == [
        ("wh_all", "m1-1"),
        ("wh_first", "m1-1"),
        ("wh_all", "m1-2"),
        ("wh_all", "m1-3"),
        ("wh_all", "m1-4"),
    ]
    first = orjson.loads(deliveries[1].body)
    assert first["id"] == "m1-1"
    assert first["type"] == "open"  # first_open is a filter; the event is an open with data.first
    assert first["data"]["first"] is True
    assert first["created_at"] == "2023-11-14T22:13:20.501Z"
    assert set(first) == {"id", "type", "created_at", "data"}


def test_a_webhook_of_another_account_never_gets_a_notice_even_if_listed() -> None:
    stray = webhook("wh_globex", "open", account="globex")
    assert plan_deliveries([notice("m1", 1)], lambda _: [stray]) == []


def test_delivery_ids_are_deterministic_per_webhook_and_notice() -> None:
    assert delivery_id("wh_a", "h1") == delivery_id("wh_a", "h1")
    assert delivery_id("wh_a", "h1") != delivery_id("wh_b", "h1")
    assert delivery_id("wh_a", "h1") != delivery_id("wh_a", "h2")
    assert delivery_id("wh_a", "h1").startswith("dlv_")


# -- notices -------------------------------------------------------------------------------------------------


def stored_hit(
    hit_id: str, verdict: Verdict, *, kind: str = "open", message: str = "m1"
) -> tuple[ProcessedHit, Classification]:
    hit = RawHit(
        hit_id=hit_id,
        kind=kind,  # type: ignore[arg-type]
        received_at_ms=1_700_000_000_000,
        ip="81.2.69.160",
        user_agent="Mozilla/5.0",
        token_ok=verdict is not Verdict.INVALID,
        account="acme",
        campaign_id="spring",
        message_id=message,
        sent_at=1_699_999_000,
        link_index=1 if kind == "click" else -1,
        url="https://example.com/b" if kind == "click" else "",
    )
    c = Classification(verdict, "why")
    agent = Agent("Apple Mail", "16", "iOS", "mobile")
    return ProcessedHit(hit, "memory:0:1", Geo(country="GB"), agent, c), c


def test_only_counted_hits_make_notices() -> None:
    stored = [
        stored_hit("h1", Verdict.HUMAN),
        stored_hit("h2", Verdict.MACHINE),
        stored_hit("h3", Verdict.BOT),
        stored_hit("h4", Verdict.INVALID),
        stored_hit("h5", Verdict.HUMAN, kind="click"),
        stored_hit("h6", Verdict.BOT, kind="click"),
    ]
    notices = notices_of(stored, created_at_ms=42)
    assert [(n.id, n.type) for n in notices] == [("h1", "open"), ("h2", "machine_open"), ("h5", "click")]
    click = notice_data(notices[2])
    assert click["url"] == "https://example.com/b"
    assert click["link_index"] == 1
    assert click["country"] == "GB"
    assert click["client"] == "Apple Mail"
    assert click["sent_at"] == "2023-11-14T21:56:40.000Z"
    assert "url" not in notice_data(notices[0])


def test_a_notice_survives_the_wire_and_garbage_does_not_pass() -> None:
    n = notice("m1", 7, kind="click", first=False)
    assert decode_notice(encode_notice(n)) == n
    good = orjson.loads(encode_notice(n))
    for bad in (
        b"not json",
        b"[1]",
        orjson.dumps({**good, "v": 99}),
        orjson.dumps({k: v for k, v in good.items() if k != "id"}),
        orjson.dumps({**good, "at_ms": True}),
        orjson.dumps({**good, "type": "bounce"}),
    ):
        with pytest.raises(MalformedNotice):
            decode_notice(bad)
    assert decode_notice(orjson.dumps({**good, "from_the_future": 1})) == n


def test_notices_travel_in_batches_and_a_bad_one_does_not_sink_the_rest() -> None:
    from schemas.notices import decode_notice_batch, encode_notice_batch

    a, b = notice("m1", 7, kind="click", first=False), notice("m2", 8, kind="open", first=True)
    assert decode_notice_batch(encode_notice_batch([a, b])) == ([a, b], [])
    assert decode_notice_batch(encode_notice(a)) == ([a], [])  # a lone notice, as earlier versions wrote
    good = orjson.loads(encode_notice(b))
    damaged = orjson.dumps({"v": 1, "notices": [orjson.loads(encode_notice(a)), {**good, "type": "bounce"}]})
    assert decode_notice_batch(damaged) == ([a], ["notices[1]: unknown notice type 'bounce'"])
    for bad in (b"[]", b'{"v": 7, "notices": []}', b"nope", b'{"v":1,"notices":3}'):
        with pytest.raises(MalformedNotice):
            decode_notice_batch(bad)


def test_the_fast_notice_decoder_accepts_exactly_what_the_field_by_field_check_accepts() -> None:
    import random

    from schemas.notices import _decode_checked

    n = notice("m1", 7, kind="click", first=True)
    good = orjson.loads(encode_notice(n))
    rng = random.Random(5)
    values: list[object] = [None, True, False, 0, 1, -1, 1.5, "", "open", "click", "machine_open", [], {}]
    names = [*good, "v", "future"]
    agree = 0
    for i in range(5_000):
        if i % 2:
            raw = orjson.dumps({**good, **{rng.choice(names): rng.choice(values) for _ in range(2)}})
        else:
            damaged = bytearray(encode_notice(n))
            damaged[rng.randrange(len(damaged))] = rng.choice(b'{}[]":,0123456789.-+eE tfnrulsa')
            raw = bytes(damaged)
        try:
            slow: Notice | str = _decode_checked(raw)
        except MalformedNotice as exc:
            slow = str(exc)
        try:
            fast: Notice | str = decode_notice(raw)
        except MalformedNotice as exc:
            fast = str(exc)
        assert fast == slow, raw
        agree += isinstance(fast, Notice)
    assert 500 < agree < 4_500  # both outcomes were exercised


async def test_the_hub_never_blocks_and_drops_past_its_bound() -> None:
    got: list[list[str]] = []

    async def sink(notices: object) -> None:
        got.append([n.id for n in notices])  # type: ignore[attr-defined]

    hub = NoticeHub(sinks=[sink], max_queued=3)
    hub.publish([stored_hit("h1", Verdict.HUMAN), stored_hit("h2", Verdict.HUMAN)])
    hub.publish([stored_hit("h3", Verdict.HUMAN), stored_hit("h4", Verdict.HUMAN)])  # over the bound
    hub.publish([stored_hit("h5", Verdict.BOT)])
    assert hub.dropped == 2
    assert hub.queued == 3
    await hub.start()
    await hub.stop()
    assert got == [["h1", "h2"]]  # the bot's batch made no notice


# -- the dispatcher ------------------------------------------------------------------------------------------

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


# -- the live feed -------------------------------------------------------------------------------------------


async def take(stream: AsyncIterator[LiveItem], count: int) -> list[LiveItem]:
    return [await asyncio.wait_for(anext(stream), 30) for _ in range(count)]


def ids(items: list[LiveItem]) -> list[str]:
    return [orjson.loads(i.data)["id"] for i in items if i.data is not None and i.event != "gap"]


async def test_the_live_feed_resumes_after_the_last_event_id_and_keeps_accounts_apart() -> None:
    feed = LiveFeed(ring_size=100, heartbeat_s=5)
    feed.accept_now([notice("m1", 1)])  # before anyone listens: not sent to a fresh stream
    stream = feed.stream("acme")
    hello = await anext(stream)
    assert hello.comment == "connected"
    assert hello.retry_ms == 2000
    feed.accept_now([notice("m1", 2), notice("x", 1, account="globex"), notice("m1", 3, kind="click")])
    feed.accept_now([notice("m1", 4, kind="machine_open")])  # not asked for
    seen = await take(stream, 2)
    assert ids(seen) == ["m1-2", "m1-3"]
    assert [i.event for i in seen] == ["open", "click"]
    await stream.aclose()

    feed.accept_now([notice("m1", 5), notice("x", 2, account="globex"), notice("m1", 6)])
    last = seen[-1].id
    assert last is not None
    assert parse_event_id(last) == (feed.epoch, 4)
    resumed = feed.stream("acme", last_event_id=last)
    assert (await anext(resumed)).comment == "connected"
    assert ids(await take(resumed, 2)) == ["m1-5", "m1-6"]
    await resumed.aclose()
    assert feed.streams == 0


async def test_the_live_feed_says_gap_when_it_cannot_prove_a_resume_complete() -> None:
    feed = LiveFeed(ring_size=2, heartbeat_s=5)
    stream = feed.stream("acme")
    await anext(stream)
    feed.accept_now([notice("m1", 1)])
    first = (await take(stream, 1))[0]
    await stream.aclose()
    feed.accept_now([notice("m1", 2), notice("m1", 3), notice("m1", 4)])  # m1-2 falls out of the ring
    resumed = feed.stream("acme", last_event_id=first.id)
    items = await take(resumed, 4)
    assert items[1].event == "gap"
    assert ids(items) == ["m1-3", "m1-4"]
    await resumed.aclose()
    elsewhere = feed.stream("acme", last_event_id="123-1")  # another process's id
    items = await take(elsewhere, 4)
    assert items[1].event == "gap"
    assert ids(items) == ["m1-3", "m1-4"]
    await elsewhere.aclose()


async def test_the_live_feed_beats_while_quiet_and_ends_at_close() -> None:
    feed = LiveFeed(heartbeat_s=0.05)
    stream = feed.stream("acme")
    await anext(stream)
    assert (await take(stream, 1))[0].comment == "keepalive"
    feed.close_soon()
    rest = [item async for item in stream]  # ends instead of waiting for the next notice
    assert rest == []
    assert feed.streams == 0
