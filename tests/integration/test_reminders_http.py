"""Reminders end to end in one process (issue 20), over real HTTP with real chDB and a real webhook receiver:
`remind_if_unopened_after` at registration (bad values a clear 400; an untracked recipient gets none), pixels
and clicks through the edge, and when the scheduler's clock passes the due time: ``not_opened`` for the
message nothing came to, ``unknown`` for the one only Apple's prefetch opened, nothing for a person's open or
click, nothing for a recipient who opted out or was erased meanwhile (their rows gone) — each exactly once to
the webhook and on the live feed, whatever passes and repeated registrations follow. Then a scheduler that
dies before its notices leave and one that dies after, before marking them sent, and the restarts after:
every reminder reaches the receiver and the live feed exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from notices.directory import WebhookDirectory, store_webhooks
from notices.dispatcher import WebhookDispatcher
from notices.live import LiveFeed
from notices.signing import verify
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.reminders import reminder_notice_id
from schemas.store import Store, parse_store_url
from tests.integration.helpers import hit, wait_for
from tests.integration.test_webhooks_http import APPLE_MPP, Receiver, add_webhook
from tests.reminder_checks import (
    ACME,
    MarkingFails,
    Shifted,
    crash_pass,
    live_reminders,
    moved_clock,
    refuse,
    register,
    reminder_rows,
    states,
)
from tests.serving import serving

SALE = "https://shop.example.com/sale"


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rx = Receiver()
    with serving(rx.app()) as base:
        yield rx, base


@pytest.fixture
def reminder_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "PIXELPIPE_CLICK_WINDOW_MS": "200",
        "PIXELPIPE_WEBHOOK_ALLOW_PRIVATE": "true",
        "PIXELPIPE_REMINDER_POLL_SECONDS": "1",
        "PIXELPIPE_REMINDER_GRACE_SECONDS": "0",
    }


@dataclass
class Deployment:
    client: httpx.Client
    base: str
    components: Components
    clock: Shifted

    @property
    def store(self) -> Store:
        assert self.components.store is not None
        return self.components.store


@contextlib.contextmanager
def deployment(env: dict[str, str], shift_s: float = 0.0) -> Iterator[Deployment]:
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    clock = moved_clock(components)
    clock.shift_s = shift_s
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Deployment(client, base, components, clock)


def stats(d: Deployment, message_id: str) -> tuple[int, int, int]:
    r = d.client.get(f"/v1/messages/{message_id}", headers=ACME).json()
    return int(r["opens"]), int(r["machine_opens"]), int(r["clicks"])


def delivered_reminders(rx: Receiver) -> list[dict[str, object]]:
    return [r.json for r in rx.delivered() if r.json["type"] in {"not_opened", "unknown"}]


def test_reminders_decide_by_what_came_before_their_time_and_arrive_once(
    reminder_env: dict[str, str], receiver: tuple[Receiver, str]
) -> None:
    rx, rx_base = receiver
    with deployment(reminder_env) as d:
        c = d.client
        hook = add_webhook(c, f"{rx_base}/acme", ["not_opened", "unknown", "open"])

        for bad in ("3", "3x", "1.5d", "59s", "0m", "91d", "P3D", "", "x" * 40):
            r = register(c, "m-bad", bad)
            assert r.status_code == 400, (bad, r.text)
            assert "remind_if_unopened_after" in r.text, r.text
        r = register(c, "m-bad", "5m", track_opens=False)
        assert r.status_code == 400
        assert "needs the open pixel" in r.text
        assert reminder_rows(d.store, "m-bad") == 0

        sent = {
            m: register(c, m).json() for m in ("m-none", "m-mpp", "m-open", "m-click", "m-dnt", "m-erased")
        }
        assert sent["m-none"]["reminder"]["scheduled"] is True
        assert sent["m-none"]["reminder"]["reason"] is None
        assert "reminder" not in register(c, "m-plain", None).json()  # not asked: the answer as always
        batch = {
            "messages": [
                {"campaign_id": "spring", "recipient": "m-batch@example.com", "message_id": "m-batch",
                 "remind_if_unopened_after": "5m"},
                {"campaign_id": "spring", "recipient": "m-plain2@example.com", "message_id": "m-plain2"},
            ]
        }  # fmt: skip
        answers = c.post("/v1/messages/batch", json=batch, headers=ACME).json()["messages"]
        assert answers[0]["reminder"]["scheduled"] is True
        assert "reminder" not in answers[1]
        assert (reminder_rows(d.store, "m-batch"), reminder_rows(d.store, "m-plain2")) == (1, 0)
        assert c.put("/v1/recipients/m-untracked@example.com/do-not-track", headers=ACME).status_code == 200
        untracked = register(c, "m-untracked").json()
        assert untracked["reminder"] == {"scheduled": False, "due_at": None, "reason": "do_not_track"}
        assert reminder_rows(d.store, "m-untracked") == 0

        hit(c, sent["m-mpp"]["pixel_url"], ua=APPLE_MPP[0], ip=APPLE_MPP[1])  # Apple's prefetch only
        hit(c, sent["m-open"]["pixel_url"])  # a person's open
        assert hit(c, sent["m-click"]["links"][SALE]).status_code == 302  # a click: an implied open
        wait_for(lambda: stats(d, "m-mpp"), lambda s: s == (0, 1, 0), timeout_s=30)
        wait_for(lambda: stats(d, "m-open"), lambda s: s == (1, 0, 0), timeout_s=30)
        wait_for(lambda: stats(d, "m-click"), lambda s: s == (0, 0, 1), timeout_s=30)

        assert c.put("/v1/recipients/m-dnt@example.com/do-not-track", headers=ACME).status_code == 200
        erased = c.delete("/v1/recipients/m-erased@example.com", headers=ACME)
        assert erased.status_code == 200, erased.text
        assert erased.json()["erased"]["reminders"] == 1
        assert reminder_rows(d.store, "m-erased") == 0  # a pending reminder of an erased recipient: gone

        time.sleep(1.5)  # nothing is due yet: passes run and find nothing
        assert delivered_reminders(rx) == []  # (the open went to the "open" subscription)
        d.clock.shift_s = 301.0  # the due time (sent_at + 5 minutes) has passed
        wait_for(lambda: states(d.store), lambda s: "m-none" in s and s["m-none"] == "sent", timeout_s=30)
        time.sleep(2.5)  # more passes: nothing more
        bodies = delivered_reminders(rx)
        assert sorted((b["type"], b["data"]["message_id"]) for b in bodies) == [  # type: ignore[index]
            ("not_opened", "m-batch"),
            ("not_opened", "m-none"),
            ("unknown", "m-mpp"),
        ]
        assert states(d.store) == {
            "m-batch": "sent",
            "m-none": "sent",
            "m-mpp": "sent",
            "m-open": "opened",
            "m-click": "opened",
        }  # m-dnt's row went at its time, m-erased's at the erasure; m-untracked never had one
        assert reminder_rows(d.store, "m-dnt") == 0
        none = next(b for b in bodies if b["data"]["message_id"] == "m-none")  # type: ignore[index]
        assert none["id"] == reminder_notice_id("acme", "m-none")
        data = none["data"]
        assert isinstance(data, dict)
        assert data["recipient"] == "m-none@example.com"
        assert data["campaign_id"] == "spring"
        assert data["outcome"] == "not_opened"
        assert data["machine_opens"] == 0
        assert data["due_at"] > data["sent_at"]
        assert data["registered_at"] is not None
        mpp = next(b for b in bodies if b["type"] == "unknown")
        assert mpp["data"]["machine_opens"] == 1  # type: ignore[index]
        for r in rx.delivered():
            assert verify(hook["secret"], r.headers["pixelpipe-signature"], r.body, now=time.time())

        # Registering again after the decision writes a pending row that never undoes it.
        assert register(c, "m-none").status_code == 201
        time.sleep(2.5)
        assert len(delivered_reminders(rx)) == 3
        assert states(d.store)["m-none"] == "sent"

        live = asyncio.run(live_reminders(d.base))
        assert sorted((event, body["message_id"]) for event, body in live) == [
            ("not_opened", "m-batch"),
            ("not_opened", "m-none"),
            ("unknown", "m-mpp"),
        ]
        assert {body["message_id"]: body["recipient"] for _, body in live}["m-none"] == "m-none@example.com"


def test_a_scheduler_dying_before_or_after_its_notices_leave_loses_and_doubles_nothing(
    reminder_env: dict[str, str], receiver: tuple[Receiver, str]
) -> None:
    """m-a: decided by a pass that dies before its notice leaves; m-a and m-b: emitted (webhook outbox, the
    dying process's live feed) by a pass that dies before marking them sent; then the restart."""
    rx, rx_base = receiver
    with deployment(reminder_env) as d:
        add_webhook(d.client, f"{rx_base}/acme", ["not_opened", "unknown"])
        now = time.time()
        for message, ago_s in (("m-a", 10), ("m-b", 5)):  # m-a is due first
            sent_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - ago_s))
            assert register(d.client, message, sent_at=sent_at).status_code == 201
    # The process is gone; what follows is another one's pass over the same store, outbox and clock.
    later = Shifted()
    later.shift_s = 301.0
    settings = settings_mod.load(reminder_env)
    store = Store.connect(parse_store_url(reminder_env["PIXELPIPE_CLICKHOUSE_URL"]))
    try:
        asyncio.run(crash_pass(store, [refuse], later, batch=1))
        assert states(store) == {"m-a": "decided", "m-b": "pending"}

        async def emitted_then_dies() -> int:
            live = LiveFeed()
            dispatcher = WebhookDispatcher(
                outbox_path=settings.data_dir / "webhooks" / "outbox.sqlite3",
                directory=WebhookDirectory(store_webhooks(store, settings.keyring)),
                allow_private=True,
            )
            await dispatcher.start()
            try:
                await crash_pass(MarkingFails(store), [live.accept, dispatcher.accept], later)
            finally:
                await dispatcher.stop()  # what it had not sent stays pending in the outbox
            return live.held("acme")

        assert asyncio.run(emitted_then_dies()) == 2
        assert states(store) == {"m-a": "decided", "m-b": "decided"}
    finally:
        store.close()

    with deployment(reminder_env, shift_s=301.0) as d:
        wait_for(lambda: states(d.store), lambda s: s == {"m-a": "sent", "m-b": "sent"}, timeout_s=30)
        wait_for(lambda: len(delivered_reminders(rx)), lambda n: n >= 2, timeout_s=30)
        time.sleep(2.5)  # more passes and retries: nothing more
        live = asyncio.run(live_reminders(d.base))
    bodies = delivered_reminders(rx)
    assert sorted((b["type"], b["data"]["message_id"]) for b in bodies) == [  # type: ignore[index]
        ("not_opened", "m-a"),
        ("not_opened", "m-b"),
    ]
    assert sorted(body["message_id"] for _, body in live) == ["m-a", "m-b"]

    with deployment(reminder_env, shift_s=400.0) as d:  # and again: nothing is due, nothing is sent
        time.sleep(2.5)
        assert asyncio.run(live_reminders(d.base, listen_s=1.0)) == []
    assert len(delivered_reminders(rx)) == 2


def test_the_shortest_reminder_is_a_setting_for_tests_and_demos(reminder_env: dict[str, str]) -> None:
    with deployment({**reminder_env, "PIXELPIPE_REMINDER_MIN_AFTER_SECONDS": "5"}) as d:
        r = register(d.client, "m-short", "5s")
        assert r.status_code == 201, r.text
        assert r.json()["reminder"]["scheduled"] is True
        r = register(d.client, "m-shorter", "4s")
        assert r.status_code == 400
        assert "shorter than 5 seconds (5s)" in r.text
    with pytest.raises(settings_mod.SettingsError, match="PIXELPIPE_REMINDER_MIN_AFTER_SECONDS"):
        settings_mod.load({**reminder_env, "PIXELPIPE_REMINDER_MIN_AFTER_SECONDS": "61"})
