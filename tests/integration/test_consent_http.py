"""Consent and branded tracking domains over real HTTP (issue 19), against the real app and chDB: the account
settings, consent modes x states x do-not-track in registration and instrument output, the edge following a
refusal, rates over individually tracked sends, consent history in the recipient's view, and its erasure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from api.tracking import aggregate_pixel_url
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.tokens import TokenKind, verify
from tests.integration.helpers import BROWSER, hit, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
GLOBEX = {"Authorization": "Bearer globex-key-456"}
LINK = "https://shop.example/sale?a=1&b=2"
BRAND = "https://t.brand.example"
SENT_AT = "2026-12-01T10:20:30Z"


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[httpx.Client, Components]]:
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, components


def settings(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.put("/v1/account/settings", json=body, headers=ACME)
    assert r.status_code == 200, r.text
    return dict(r.json())


def register(client: httpx.Client, recipient: str, message_id: str, **body: Any) -> dict[str, Any]:
    payload = {"campaign_id": "c", "recipient": recipient, "message_id": message_id, "links": [LINK], **body}
    r = client.post("/v1/messages", json=payload, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def consent(client: httpx.Client, recipient: str, state: str, **body: Any) -> dict[str, Any]:
    r = client.put(f"/v1/recipients/{recipient}/consent", json={"state": state, **body}, headers=ACME)
    assert r.status_code == 200, r.text
    return dict(r.json())


def stats(client: httpx.Client, campaign_id: str = "c") -> dict[str, Any]:
    r = client.get(f"/v1/campaigns/{campaign_id}/stats", headers=ACME)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_settings_default_change_and_refuse(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    defaults = {"account": "acme", "consent_mode": "off", "tracking_base_url": None, "aggregate_opens": True}
    assert client.get("/v1/account/settings", headers=ACME).json() == defaults
    changed = settings(client, consent_mode="opt_in", tracking_base_url="HTTPS://T.Brand.Example/")
    assert changed == {
        **defaults,
        "consent_mode": "opt_in",
        "tracking_base_url": BRAND,
    }
    r = client.patch("/v1/account/settings", json={"aggregate_opens": False}, headers=ACME)
    assert r.json() == {
        **defaults,
        "consent_mode": "opt_in",
        "tracking_base_url": BRAND,
        "aggregate_opens": False,
    }
    assert client.get("/v1/account/settings", headers=ACME).json()["aggregate_opens"] is False
    # another account's settings are its own
    assert client.get("/v1/account/settings", headers=GLOBEX).json() == {**defaults, "account": "globex"}
    for bad in (
        {"tracking_base_url": "ftp://t.brand.example"},
        {"tracking_base_url": "https://user:pw@t.brand.example"},
        {"tracking_base_url": "https://t.brand.example/?x=1"},
        {"tracking_base_url": "https://t.brand.example/#f"},
        {"tracking_base_url": "t.brand.example"},
        {"tracking_base_url": "https://t.brand.example:99999"},
        {"consent_mode": "maybe"},
        {"colour": "blue"},
    ):
        r = client.put("/v1/account/settings", json=bad, headers=ACME)
        assert r.status_code == 400, (bad, r.text)
        assert "password" not in r.text or "pw@" not in r.text
    r = client.patch("/v1/account/settings", json={"tracking_base_url": None}, headers=ACME)
    assert r.json()["tracking_base_url"] is None
    assert client.get("/v1/account/settings").status_code == 401


def _token_of(url: str) -> str:
    path = urlsplit(url).path
    return path.removeprefix("/o/").removeprefix("/c/").removeprefix("/p/").removesuffix(".gif")


@pytest.mark.parametrize(
    ("mode", "state", "dnt", "tracking", "reason"),
    [
        ("off", None, False, "individual", None),
        ("off", "refused", False, "aggregate", "consent_refused"),  # a refusal is honoured in every mode
        ("off", None, True, "none", "do_not_track"),
        ("opt_out", None, False, "individual", None),
        ("opt_out", "granted", False, "individual", None),
        ("opt_out", "refused", False, "aggregate", "consent_refused"),
        ("opt_out", "refused", True, "none", "do_not_track"),
        ("opt_in", None, False, "aggregate", "consent_not_granted"),
        ("opt_in", "unknown", False, "aggregate", "consent_not_granted"),
        ("opt_in", "granted", False, "individual", None),
        ("opt_in", "granted", True, "none", "do_not_track"),
        ("opt_in", "refused", False, "aggregate", "consent_refused"),
    ],
)
def test_registration_and_instrument_follow_mode_state_and_do_not_track(  # noqa: PLR0917
    running: tuple[httpx.Client, Components],
    mode: str,
    state: str | None,
    dnt: bool,
    tracking: str,
    reason: str | None,
) -> None:
    client, components = running
    settings(client, consent_mode=mode, tracking_base_url=BRAND)
    if state is not None:
        consent(client, "Ann@Example.com", state)
    if dnt:
        assert client.put("/v1/recipients/ann@example.com/do-not-track", headers=ACME).status_code == 200
    keyring = components.settings.keyring
    answer = register(client, " ann@example.com", "m1", sent_at=SENT_AT)
    html = f'<html><body><p>Hi</p><a href="{LINK.replace("&", "&amp;")}">Sale</a></body></html>'
    r = client.post(
        "/v1/instrument",
        json={"campaign_id": "c", "recipient": "ann@example.com", "message_id": "m2", "html": html,
              "sent_at": SENT_AT},
        headers=ACME,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    instrumented = r.json()
    for done, message_id in ((answer, "m1"), (instrumented, "m2")):
        assert (done["tracking"], done["tracking_reason"], done["tracked"]) == (
            tracking,
            reason,
            tracking == "individual",
        )
        if tracking == "individual":
            assert done["pixel_url"].startswith(f"{BRAND}/o/")
            claim = verify(_token_of(done["pixel_url"]), keyring, expect=TokenKind.OPEN)
            assert (claim.campaign_id, claim.message_id) == ("c", message_id)
            assert done["links"][LINK].startswith(f"{BRAND}/c/")
            assert verify(_token_of(done["links"][LINK]), keyring, expect=TokenKind.CLICK).url == LINK
            page = done["tracking_preferences_url"]
            assert page.startswith(f"{BRAND}/p/")
            claim = verify(_token_of(page), keyring, expect=TokenKind.PREFERENCES)
            assert (claim.account, claim.campaign_id, claim.message_id) == ("acme", "c", message_id)
        elif tracking == "aggregate":
            expected = aggregate_pixel_url(keyring, BRAND, "acme", "c", 1796120430)
            assert done["pixel_url"] == expected
            claim = verify(_token_of(expected), keyring, expect=TokenKind.AGGREGATE_OPEN)
            assert (claim.account, claim.campaign_id, claim.message_id) == ("acme", "c", "")
            assert (claim.recipient_tag, claim.sent_at) == (bytes(8), 1796119200)  # to the hour
            assert done["links"] == {LINK: LINK}
            assert done["tracking_preferences_url"] is None
        else:
            assert (done["pixel_url"], done["links"], done["tracking_preferences_url"]) == (
                None,
                {LINK: LINK},
                None,
            )
    pixel = instrumented["pixel_url"]
    if tracking == "individual":
        tracked = instrumented["links"][LINK].replace("&", "&amp;")
        assert instrumented["html"] == (
            f'<html><body><p>Hi</p><a href="{tracked}">Sale</a>'
            f'<img src="{pixel}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px" /></body></html>'
        )
    elif tracking == "aggregate":
        assert instrumented["html"] == (
            f'<html><body><p>Hi</p><a href="{LINK.replace("&", "&amp;")}">Sale</a>'
            f'<img src="{pixel}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px" /></body></html>'
        )
    else:
        assert instrumented["html"] == html  # nothing added, nothing rewritten
    # Every send is registered; the rates' basis is the individually tracked ones.
    numbers = stats(client)
    assert (numbers["sent"], numbers["tracked_sends"]) == (2, 2 if tracking == "individual" else 0)
    assert numbers["rate_basis"] == ("sent" if tracking == "individual" else "tracked_sends")


def test_the_message_base_url_wins_and_is_checked(running: tuple[httpx.Client, Components]) -> None:
    client, components = running
    settings(client, consent_mode="opt_out", tracking_base_url=BRAND)
    own = register(client, "ann@example.com", "m1", tracking_base_url="https://mail.other.example/t/")
    for url in (own["pixel_url"], own["links"][LINK], own["tracking_preferences_url"]):
        assert url.startswith("https://mail.other.example/t/"), url
    r = client.post(
        "/v1/messages/batch",
        json={"messages": [
            {"campaign_id": "c", "recipient": "bob@example.com", "links": [LINK]},
            {"campaign_id": "c", "recipient": "cat@example.com", "links": [LINK],
             "tracking_base_url": "javascript:alert(1)"},
        ]},
        headers=ACME,
    )  # fmt: skip
    assert r.status_code == 400
    assert r.json()["detail"].startswith("messages[1]: tracking_base_url:")
    default = client.patch("/v1/account/settings", json={"tracking_base_url": None}, headers=ACME).json()
    assert default["tracking_base_url"] is None
    plain = register(client, "bob@example.com", "m2")
    assert plain["pixel_url"].startswith(f"{components.settings.public_url}/o/")


def test_a_branded_pixel_is_counted_whatever_its_host(running: tuple[httpx.Client, Components]) -> None:
    """The edge ignores `Host`: a pixel and a click fetched through a CNAME (another Host) count."""
    client, _ = running
    settings(client, tracking_base_url=BRAND)
    sent = register(client, "ann@example.com", "m1")
    assert sent["pixel_url"].startswith(f"{BRAND}/o/")
    path = urlsplit(sent["pixel_url"]).path
    browser = {"User-Agent": BROWSER}
    r = client.get(path, headers={**browser, "Host": "t.brand.example", "X-Forwarded-For": "81.2.69.160"})
    assert (r.status_code, r.headers["content-type"]) == (200, "image/gif")
    click = client.get(
        urlsplit(sent["links"][LINK]).path,
        headers={**browser, "Host": "t.brand.example", "X-Forwarded-For": "81.2.69.160"},
    )
    assert (click.status_code, click.headers["location"]) == (302, LINK)
    wait_for(
        lambda: client.get("/v1/messages/m1", headers=ACME).json(),
        lambda m: (m["opens"], m["clicks"]) == (1, 1),
    )


def test_a_refusal_stops_the_edge_and_a_grant_resumes_it(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    settings(client, consent_mode="opt_out")
    ann = register(client, "ann@example.com", "m-ann")
    bob = register(client, "bob@example.com", "m-bob")
    refused = consent(client, "ann@example.com", "refused", source="preferences form", evidence="ua: test")
    assert (refused["state"], refused["refusal_enforced"], refused["consent_mode"]) == (
        "refused",
        True,
        "opt_out",
    )
    hit(client, ann["pixel_url"])  # an email sent before the refusal: answered, not recorded
    hit(client, bob["pixel_url"])
    wait_for(lambda: stats(client), lambda s: s["opens"] == 1)
    assert client.get("/v1/messages/m-ann", headers=ACME).json()["opens"] == 0
    # do-not-track keeps its own meaning: lifting it leaves the refusal in force
    assert client.put("/v1/recipients/ann@example.com/do-not-track", headers=ACME).status_code == 200
    lifted = client.delete("/v1/recipients/ann@example.com/do-not-track", headers=ACME).json()
    assert lifted == {"recipient": "ann@example.com", "tracking": False, "tracking_reason": "consent_refused"}
    assert register(client, "ann@example.com", "m-ann-2")["tracking"] == "aggregate"
    # a grant lifts the refusal's suppression
    granted = consent(client, "ann@example.com", "granted", how="import", evidence="signed form #12")
    assert (granted["state"], granted["refusal_enforced"]) == ("granted", False)
    hit(client, ann["pixel_url"])
    wait_for(lambda: client.get("/v1/messages/m-ann", headers=ACME).json(), lambda m: m["opens"] == 1)


def test_a_refusal_is_honoured_in_every_mode(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    ann = register(client, "ann@example.com", "m-ann")  # mode off
    assert consent(client, "ann@example.com", "refused")["refusal_enforced"] is True
    again = register(client, "ann@example.com", "m-ann-2")
    assert (again["tracking"], again["tracking_reason"]) == ("aggregate", "consent_refused")
    hit(client, ann["pixel_url"])  # not recorded
    assert settings(client, consent_mode="opt_in")["consent_mode"] == "opt_in"
    bob = register(client, "bob@example.com", "m-bob")
    assert (bob["tracking"], bob["tracking_reason"]) == ("aggregate", "consent_not_granted")
    assert consent(client, "ann@example.com", "granted")["refusal_enforced"] is False
    hit(client, ann["pixel_url"])
    wait_for(lambda: client.get("/v1/messages/m-ann", headers=ACME).json(), lambda m: m["opens"] == 1)


def test_rates_use_only_individually_tracked_sends(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    settings(client, consent_mode="opt_in")
    for name in ("ann", "bob"):
        consent(client, f"{name}@example.com", "granted")
    sent = {
        name: register(client, f"{name}@example.com", f"m-{name}") for name in ("ann", "bob", "cat", "dan")
    }
    assert [s["tracking"] for s in sent.values()] == ["individual", "individual", "aggregate", "aggregate"]
    hit(client, sent["ann"]["pixel_url"])
    hit(client, sent["ann"]["links"][LINK])
    numbers = wait_for(lambda: stats(client), lambda s: (s["unique_opens"], s["unique_clicks"]) == (1, 1))[0]
    assert {k: numbers[k] for k in ("sent", "tracked_sends", "open_rate", "click_rate", "rate_basis")} == {
        "sent": 4,
        "tracked_sends": 2,
        "open_rate": 0.5,
        "click_rate": 0.5,
        "rate_basis": "tracked_sends",
    }
    summary = client.get("/v1/campaigns/c/summary", headers=ACME).json()
    assert (summary["tracked_sends"], summary["open_rate"], summary["rate_basis"]) == (
        2,
        0.5,
        "tracked_sends",
    )
    # The dashboard's reads say the same: the report's summary, and the list's rates on the same basis.
    assert client.get("/v1/campaigns/c/report", headers=ACME).json()["summary"] == summary
    listed = client.get("/v1/campaigns", headers=ACME).json()["items"]
    item = next(i for i in listed if i["campaign_id"] == "c")
    assert (item["sent"], item["tracked_sends"], item["open_rate"], item["click_rate"]) == (4, 2, 0.5, 0.5)
    # a campaign whose sends were all tracked answers as before (its summary has no new field)
    settings(client, consent_mode="off")
    register(client, "eve@example.com", "m-eve", campaign_id="d")
    assert "tracked_sends" not in client.get("/v1/campaigns/d/summary", headers=ACME).json()
    assert (stats(client, "d")["tracked_sends"], stats(client, "d")["rate_basis"]) == (1, "sent")
    # registering an untracked message again, once tracked, puts it in the tracked set
    settings(client, consent_mode="opt_in")
    consent(client, "cat@example.com", "granted")
    assert register(client, "cat@example.com", "m-cat")["tracking"] == "individual"
    assert stats(client)["tracked_sends"] == 3


def test_consent_history_export_and_erasure(running: tuple[httpx.Client, Components]) -> None:
    client, components = running
    settings(client, consent_mode="opt_out")
    register(client, "ann@example.com", "m-ann")
    consent(
        client,
        "Ann@Example.com",
        "granted",
        source="signup form",
        evidence="checkbox v3",
        at="2026-11-01T08:00:00Z",
    )
    consent(client, "ann@example.com", "refused", source="support ticket 7")
    r = client.get("/v1/recipients/ANN@example.com/consent", headers=ACME)
    assert r.status_code == 200
    answer = r.json()
    refused_at = answer["history"][1].pop("at")
    assert answer == {
        "recipient": "ann@example.com",
        "consent_mode": "opt_out",
        "state": "refused",
        "history": [
            {"at": "2026-11-01T08:00:00.000Z", "state": "granted", "how": "api", "source": "signup form",
             "evidence": "checkbox v3"},
            {"state": "refused", "how": "api", "source": "support ticket 7", "evidence": None},
        ],
    }  # fmt: skip
    assert refused_at.endswith("Z")
    # another account knows nothing of her consent
    assert client.get("/v1/recipients/ann@example.com/consent", headers=GLOBEX).json()["history"] == []
    # the recipient's view carries the same (their data, with the proof)
    view = client.get("/v1/recipients/ann@example.com", headers=ACME).json()
    assert view["consent"] == {
        "state": "refused",
        "history": client.get("/v1/recipients/ann@example.com/consent", headers=ACME).json()["history"],
    }
    store = components.store
    assert store is not None
    db = store.database
    assert store.query(f"SELECT count() FROM {db}.consent_events WHERE account = 'acme'")[0][0] > 0
    erased = client.delete("/v1/recipients/ann@example.com", headers=ACME).json()
    assert erased["erased"]["consent_changes"] == 2
    assert client.get("/v1/recipients/ann@example.com/consent", headers=ACME).json()["history"] == []
    assert store.query(f"SELECT count() FROM {db}.consent_events WHERE account = 'acme'")[0][0] == 0
    # a recipient known only by their consent is erased too
    consent(client, "zed@example.com", "granted", evidence="double opt-in 2026-11-30")
    gone = client.delete("/v1/recipients/zed@example.com", headers=ACME)
    assert gone.status_code == 200, gone.text
    assert gone.json()["erased"]["consent_changes"] == 1
    assert client.get("/v1/recipients/zed@example.com/consent", headers=ACME).json()["state"] == "unknown"


def test_bad_consent_is_a_400(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    for body in (
        {"state": "maybe"},
        {"state": "granted", "how": "preferences_page"},
        {"state": "granted", "source": "x" * 257},
        {"state": "granted", "evidence": "x" * 4097},
        {"state": "granted", "at": "2099-01-01T00:00:00Z"},
        {"state": "granted", "extra": 1},
    ):
        r = client.put("/v1/recipients/ann@example.com/consent", json=body, headers=ACME)
        assert r.status_code == 400, (body, r.text)
    r = client.put("/v1/recipients/%20/consent", json={"state": "granted"}, headers=ACME)
    assert r.status_code == 400


def test_the_aggregate_pixel_a_registration_gives_counts_the_campaign(
    running: tuple[httpx.Client, Components],
) -> None:
    """opt_in, nobody granted: each send gets the campaign's pixel, which counts opens and names nobody."""
    client, components = running
    settings(client, consent_mode="opt_in")
    sent = [register(client, f"{name}@example.com", f"m-{name}", sent_at=SENT_AT) for name in ("ann", "bob")]
    assert sent[0]["pixel_url"] == sent[1]["pixel_url"]  # one URL for the campaign's hour: nobody told apart
    hit(client, sent[0]["pixel_url"])
    hit(client, sent[1]["pixel_url"], ip="81.2.69.161")
    numbers = wait_for(lambda: stats(client), lambda s: s.get("aggregate_opens") == 2)[0]
    assert {k: numbers[k] for k in ("sent", "tracked_sends", "opens", "unique_opens", "open_rate")} == {
        "sent": 2,
        "tracked_sends": 0,
        "opens": 0,
        "unique_opens": 0,
        "open_rate": 0.0,
    }
    for message_id in ("m-ann", "m-bob"):  # nothing per person
        assert client.get(f"/v1/messages/{message_id}", headers=ACME).json()["opens"] == 0
    store = components.store
    assert store is not None
    assert store.query(f"SELECT count() FROM {store.database}.events")[0][0] == 0
