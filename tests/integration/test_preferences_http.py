"""The tracking preferences page over real HTTP (issue 19): GET shows and changes nothing, a POST from the
page records the choice and a refusal stops the recording at the edge; forged tokens, missing nonces and
other sites' forms change nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.preferences import preferences_url
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.tokens import recipient_tag
from tests.integration.helpers import hit, path_of, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[httpx.Client, Components]]:
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, components


def register(client: httpx.Client, recipient: str) -> dict[str, Any]:
    r = client.post("/v1/messages", json={"campaign_id": "c", "recipient": recipient}, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def page_url(components: Components, message_id: str, recipient: str) -> str:
    keyring = components.settings.keyring
    tag = recipient_tag(keyring.signing_key[1], "acme", recipient)
    return preferences_url(keyring, "http://edge.example", "acme", "c", message_id, tag)


def opens(client: httpx.Client, message_id: str) -> int:
    return int(client.get(f"/v1/messages/{message_id}", headers=ACME).json()["opens"])


def consent_rows(components: Components) -> list[tuple[Any, ...]]:
    store = components.store
    assert store is not None
    return store.query(
        f"SELECT tag, recipient_tags, state, how, source, evidence FROM {store.database}.consent_events "
        "ORDER BY at, tag"
    )


def nonce_of(page: str) -> str:
    found = re.search(r'name="nonce" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def opened(client: httpx.Client, components: Components) -> tuple[dict[str, Any], str, str]:
    """A message registered for ann, the path of its preferences page, and the nonce of the page shown."""
    sent = register(client, "ann@example.com")
    path = path_of(page_url(components, sent["message_id"], "ann@example.com"))
    return sent, path, nonce_of(client.get(path).text)


def counted_after(client: httpx.Client, sent: dict[str, Any], expected: int) -> None:
    """After a hit of ``sent``'s pixel: a tracked recipient's open is counted (so anything recorded of the
    hit before it would show), and ``sent`` has ``expected`` opens."""
    zoe = register(client, "zoe@example.com")
    hit(client, zoe["pixel_url"])
    wait_for(lambda: opens(client, zoe["message_id"]), lambda n: n == 1)
    assert opens(client, sent["message_id"]) == expected


def test_get_shows_and_changes_nothing(running: tuple[httpx.Client, Components]) -> None:
    client, components = running
    sent = register(client, "ann@example.com")
    path = path_of(page_url(components, sent["message_id"], "ann@example.com"))
    assert path_of(sent["tracking_preferences_url"]) == path  # what registration answers (c3-consent)
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src" not in r.headers["content-security-policy"]
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert (r.headers["cache-control"], r.headers["referrer-policy"]) == ("no-store", "same-origin")
    assert 'data-state="unknown" data-measured="true"' in r.text
    assert "<script" not in r.text
    assert "ann@example.com" not in r.text
    assert client.head(path).status_code == 200
    assert consent_rows(components) == []
    hit(client, sent["pixel_url"])
    wait_for(lambda: opens(client, sent["message_id"]), lambda n: n == 1)  # the pixel still counts


def test_refusal_stops_recording_and_a_grant_lifts_only_its_own_suppression(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    sent, path, nonce = opened(client, components)
    r = client.post(path, data={"choice": "refuse", "nonce": nonce})
    assert r.status_code == 200, r.text
    assert 'id="confirmation" data-state="refused"' in r.text
    hit(client, sent["pixel_url"])
    counted_after(client, sent, 0)  # not recorded
    rows = consent_rows(components)
    keyring = components.settings.keyring
    tags = sorted(t.hex() for t in keyring.recipient_tags("acme", "ann@example.com"))
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (tag, tags, "refused", "preferences_page", sent["message_id"]) for tag in tags
    ]
    assert rows[0][5].startswith("preferences page v1; shown ")
    assert 'pressed "Do not track me" at ' in rows[0][5]
    assert "ann@" not in rows[0][5]
    assert 'data-state="refused" data-measured="false"' in client.get(path).text

    r = client.post(path, data={"choice": "grant", "nonce": nonce})
    assert 'data-state="granted"' in r.text
    hit(client, sent["pixel_url"])
    wait_for(lambda: opens(client, sent["message_id"]), lambda n: n == 1)

    # A grant never lifts the sender's do-not-track.
    assert client.put("/v1/recipients/ann@example.com/do-not-track", headers=ACME).status_code == 200
    r = client.post(path, data={"choice": "grant", "nonce": nonce})
    assert "The sender has stopped measuring" in r.text
    hit(client, sent["pixel_url"])
    counted_after(client, sent, 1)
    # And a refusal over do-not-track leaves it the sender's (a later grant still does not lift it).
    client.post(path, data={"choice": "refuse", "nonce": nonce})
    client.post(path, data={"choice": "grant", "nonce": nonce})
    hit(client, sent["pixel_url"])
    counted_after(client, sent, 1)
    assert [r[2] for r in consent_rows(components)][:: len(tags)] == [
        "refused", "granted", "granted", "refused", "granted",
    ]  # fmt: skip


def test_forged_tokens_bad_forms_and_other_sites_change_nothing(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    sent, path, nonce = opened(client, components)
    token = path.removeprefix("/p/")
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    open_token = path_of(sent["pixel_url"]).removeprefix("/o/").removesuffix(".gif")
    for bad in (flipped, open_token, "nothing"):
        assert client.get(f"/p/{bad}").status_code == 404
        assert client.head(f"/p/{bad}").status_code == 404
        r = client.post(f"/p/{bad}", data={"choice": "refuse", "nonce": nonce})
        assert r.status_code == 404
        assert "not valid" in r.text
    assert client.post(path, data={"choice": "refuse"}).status_code == 400
    assert client.post(path, data={"choice": "refuse", "nonce": nonce + "x"}).status_code == 400
    assert client.post(path, data={"choice": "maybe", "nonce": nonce}).status_code == 400
    other = path_of(page_url(components, sent["message_id"], "bob@example.com"))
    assert client.post(other, data={"choice": "refuse", "nonce": nonce}).status_code == 400  # another page's
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = client.post(path, data={"choice": "refuse", "nonce": nonce}, headers=headers)
        assert r.status_code == 403
    assert consent_rows(components) == []
    hit(client, sent["pixel_url"])
    wait_for(lambda: opens(client, sent["message_id"]), lambda n: n == 1)
    # The page's own origin is fine.
    host = str(client.base_url).rstrip("/")
    r = client.post(path, data={"choice": "refuse", "nonce": nonce}, headers={"Origin": host})
    assert r.status_code == 200
