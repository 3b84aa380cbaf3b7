"""`POST /v1/messages/batch` over real HTTP on the embedded ClickHouse (chDB): the same answers as
`POST /v1/messages`, in order, all or nothing, one row per message in `sends`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pixelpipe import loadgen
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from schemas.store import Store
from schemas.tokens import Claim, Keyring, TokenKind, verify
from tests.integration.helpers import path_of
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
SALE, FAQ = "https://shop.example.com/sale?utm_source=mail&x=1", "http://example.org/faq"
SENT = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)  # inside the retention (TTL) window
SENT_AT, SENT_AT_S = SENT.isoformat().replace("+00:00", "Z"), int(SENT.timestamp())

BATCH: list[dict[str, Any]] = [
    {"campaign_id": "spring", "recipient": "ann@example.com", "message_id": "m-1", "sent_at": SENT_AT,
     "links": [SALE, FAQ, SALE]},
    {"campaign_id": "spring", "recipient": "bob@example.com", "message_id": "m-2", "sent_at": SENT_AT},
    {"campaign_id": "spring", "recipient": "cy@example.com"},
]  # fmt: skip
PARTS = "SELECT count() FROM system.parts WHERE database = '{db}' AND table = 'sends' AND active"


@dataclass(frozen=True, slots=True)
class Served:
    client: httpx.Client
    store: Store
    keyring: Keyring


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[Served]:
    settings = settings_mod.load(env)
    components = build_components(settings, frozenset({"api"}))
    app, _ = build_app(components)
    assert components.store is not None
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Served(client, components.store, settings.keyring)
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


def post_batch(s: Served, messages: list[dict[str, Any]], headers: dict[str, str] = ACME) -> httpx.Response:
    return s.client.post("/v1/messages/batch", json={"messages": messages}, headers=headers)


def rows_per_message(s: Served) -> dict[str, int]:
    rows = s.store.query(f"SELECT message_id, count() FROM {s.store.database}.sends GROUP BY message_id")
    return dict(rows)


def sent(s: Served, campaign_id: str = "spring") -> int:
    r = s.client.get(f"/v1/campaigns/{campaign_id}/stats", headers=ACME)
    assert r.status_code == 200, r.text
    return int(r.json()["sent"])


def claim(url: str, keyring: Keyring, kind: TokenKind) -> Claim:
    token = path_of(url).rsplit("/", 1)[1].removesuffix(".gif")
    return verify(token, keyring, kind)


def test_a_batch_registers_every_message_as_the_single_endpoint_does(served: Served) -> None:
    before = datetime.now(UTC).timestamp()
    r = post_batch(served, BATCH)
    assert r.status_code == 201, r.text
    answers = r.json()["messages"]
    assert [a["message_id"] for a in answers[:2]] == ["m-1", "m-2"]
    generated = answers[2]["message_id"]
    assert len(generated) == 22  # secrets.token_urlsafe(16), as for a single registration
    fields = {"message_id", "tracked", "pixel_url", "links", "untracked_links"}
    fields |= {"tracking", "tracking_reason", "tracking_preferences_url"}  # issue 19
    assert [set(a) for a in answers] == [fields] * 3
    assert [a["tracked"] for a in answers] == [True] * 3
    assert list(answers[0]["links"]) == [SALE, FAQ]
    assert answers[1]["links"] == answers[2]["links"] == {}
    assert rows_per_message(served) == {"m-1": 1, "m-2": 1, generated: 1}
    assert sent(served) == 3

    for item, answer in zip(BATCH, answers, strict=True):
        pixel = claim(answer["pixel_url"], served.keyring, TokenKind.OPEN)
        assert pixel.account == "acme"
        assert pixel.campaign_id == "spring"
        assert pixel.message_id == answer["message_id"]
        if "sent_at" in item:
            assert pixel.sent_at == SENT_AT_S
        else:
            assert before - 1 <= pixel.sent_at <= datetime.now(UTC).timestamp()
    for index, (url, tracked) in enumerate(answers[0]["links"].items()):
        click = claim(tracked, served.keyring, TokenKind.CLICK)
        assert (click.message_id, click.sent_at, click.link_index, click.url) == (
            "m-1",
            SENT_AT_S,
            index,
            url,
        )

    for item, answer in zip(BATCH, answers, strict=True):
        r = served.client.get(f"/v1/messages/{answer['message_id']}", headers=ACME)
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["campaign_id"], got["recipient"], got["opens"], got["clicks"]) == (
            "spring", item["recipient"], 0, 0,
        )  # fmt: skip
        assert got["links"] == ([SALE, FAQ] if answer is answers[0] else [])
        if "sent_at" in item:
            assert got["sent_at"] == SENT_AT.replace("Z", ".000Z")

    # The single endpoint answers exactly the same for each message registered again.
    for item, answer in zip(BATCH, answers, strict=True):
        r = served.client.post(
            "/v1/messages", json={**item, "message_id": answer["message_id"]}, headers=ACME
        )
        assert r.status_code == 201, r.text
        assert r.json() == answer
    assert sent(served) == 3


def test_posting_the_same_batch_again_gives_the_same_urls(served: Served) -> None:
    fixed = BATCH[:2]
    first = post_batch(served, fixed)
    assert first.status_code == 201, first.text
    again = post_batch(served, fixed)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert sent(served) == 2
    final = f"SELECT count() FROM {served.store.database}.sends FINAL"
    assert served.store.query(final) == [(2,)]


def test_an_id_given_twice_alike_gets_the_same_urls_and_one_row(served: Served) -> None:
    item = {"campaign_id": "spring", "recipient": "ann@example.com", "message_id": "twice", "links": [SALE]}
    r = post_batch(served, [item, BATCH[1], item])
    assert r.status_code == 201, r.text
    answers = r.json()["messages"]
    assert answers[0] == answers[2]
    assert answers[0]["message_id"] == "twice"
    assert rows_per_message(served) == {"twice": 1, "m-2": 1}
    assert sent(served) == 2


def test_a_conflicting_id_is_409_naming_the_item_and_nothing_is_stored(served: Served) -> None:
    r = served.client.post("/v1/messages", json={**BATCH[1], "campaign_id": "autumn"}, headers=ACME)
    assert r.status_code == 201, r.text

    r = post_batch(served, [BATCH[0], BATCH[1], BATCH[2]])
    assert r.status_code == 409
    assert r.json()["detail"] == (
        "messages[1]: message 'm-2' is already registered for another campaign or recipient"
    )
    assert rows_per_message(served) == {"m-2": 1}
    assert served.client.get("/v1/messages/m-1", headers=ACME).status_code == 404

    other = {**BATCH[0], "recipient": "someone-else@example.com"}
    r = post_batch(served, [BATCH[0], other])
    assert r.status_code == 409
    assert r.json()["detail"] == (
        "messages[1]: message 'm-1' is already registered by messages[0] of this batch "
        "for another campaign or recipient"
    )
    assert rows_per_message(served) == {"m-2": 1}
    assert served.client.get("/v1/campaigns/spring/stats", headers=ACME).status_code == 404


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        ({"links": ["javascript:alert(1)"]}, "messages[2].links[0]: Expected `str` that is an absolute "
                                             "http(s) URL with a host and no user name or password"),
        ({"links": ["https://x.example.com/" + "a" * 2048]}, "messages[2].links[0]: Expected `str` of length "
                                                             "<= 2048"),
        ({"sent_at": "1969-12-31T00:00:00Z"}, "messages[2]: sent_at is out of range"),
    ],
)  # fmt: skip
def test_a_bad_item_is_400_naming_it_and_nothing_is_stored(
    served: Served, bad: dict[str, Any], detail: str
) -> None:
    r = post_batch(served, [BATCH[0], BATCH[1], {**BATCH[2], **bad}])
    assert r.status_code == 400
    assert r.json()["detail"] == detail
    assert rows_per_message(served) == {}


def test_an_item_out_of_schema_is_400_and_names_it(served: Served) -> None:
    r = post_batch(served, [BATCH[0], {"campaign_id": "", "recipient": "r"}])
    assert r.status_code == 400
    assert r.json()["extra"] == [
        {"message": "Expected `str` of length >= 1", "key": "messages[1].campaign_id", "source": "body"}
    ]
    assert rows_per_message(served) == {}


@pytest.mark.parametrize("count", [0, 1001])
def test_an_empty_or_oversized_batch_is_400(served: Served, count: int) -> None:
    items = [{"campaign_id": "spring", "recipient": f"r{n}@example.com"} for n in range(count)]
    r = post_batch(served, items)
    assert r.status_code == 400
    assert r.json()["detail"] == f"messages: Expected `array` of length {'>= 1' if count == 0 else '<= 1000'}"
    assert rows_per_message(served) == {}


def test_a_batch_of_1000_is_one_insert(served: Served) -> None:
    items = [
        {"campaign_id": "big", "recipient": f"r{n}@example.com", "message_id": f"b-{n}"} for n in range(1000)
    ]
    r = post_batch(served, items)
    assert r.status_code == 201, r.text
    assert [a["message_id"] for a in r.json()["messages"]] == [f"b-{n}" for n in range(1000)]
    assert sent(served, "big") == 1000
    assert served.store.query(PARTS.format(db=served.store.database)) == [(1,)]  # one insert


def test_the_loadgen_registers_in_batches_of_up_to_1000(served: Served) -> None:
    async def register(count: int) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=served.client.base_url, headers=ACME, timeout=30) as api:
            return await loadgen._register(api, "load", count, "m", None)

    answers = asyncio.run(register(1001))
    assert [a["message_id"] for a in answers] == [f"load-m{n}" for n in range(1001)]
    assert all(list(a["links"]) == [loadgen.LANDING] for a in answers)
    assert sent(served, "load") == 1001
    [(parts,)] = served.store.query(PARTS.format(db=served.store.database))
    assert parts in {1, 2}  # two batches, two inserts (their parts merged into one, or not yet)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic YWNtZTphY21l"}]
)
def test_missing_or_wrong_key_is_401(served: Served, headers: dict[str, str]) -> None:
    assert post_batch(served, BATCH, headers=headers).status_code == 401
    assert rows_per_message(served) == {}


def test_the_batch_endpoint_is_in_the_openapi_document(served: Served) -> None:
    spec = served.client.get("/schema/openapi.json").json()
    assert "post" in spec["paths"]["/v1/messages/batch"]
