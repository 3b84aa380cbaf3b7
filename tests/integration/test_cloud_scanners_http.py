"""Cloud scanners end to end over HTTP: the real app (edge, processors, API; embedded chDB) with a refreshed
cloud list in its data dir and the bundled ones beside it; hits sent through a trusted proxy from compute
ranges and elsewhere; the API's counters and reasons."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from processors.cloud_ranges import REFRESHED_DIR, CloudList, write_cloud_lists
from tests.integration.helpers import BROWSER, embedded_env, hit, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.16827; Pro)"
# (message, kind, user agent, client address, seconds since sending)
SENDS = [
    ("aws-open", "open", BROWSER, "3.85.1.2", 0),  # bundled AWS EC2 sample
    ("gcp-open-v6", "open", BROWSER, "2600:1900:4001::5", 0),  # bundled Google Cloud sample, IPv6
    ("linode-click", "click", BROWSER, "139.162.5.5", 0),  # the refreshed Linode list only
    ("outlook-in-aws", "open", OUTLOOK, "3.85.1.2", 0),  # a person on a cloud PC
    ("browser-in-gcp-later", "open", BROWSER, "34.77.5.6", 3600),  # a person behind a cloud VPN
    ("residential-fast", "click", BROWSER, "81.2.69.160", 0),  # timing alone is nothing
]


@pytest.fixture(scope="module")
def messages(
    tmp_path_factory: pytest.TempPathFactory, chdb_path: Path
) -> Iterator[dict[str, dict[str, Any]]]:
    data_dir = tmp_path_factory.mktemp("cloud")
    linode = ((ipaddress.ip_network("139.162.0.0/16"), "DE"),)
    refreshed = CloudList(
        "linode", "https://geoip.linode.com/", "every line", "d", "2026-12-04", True, linode
    )
    write_cloud_lists([refreshed], data_dir / REFRESHED_DIR)
    env = embedded_env(data_dir, chdb_path, PIXELPIPE_TRUSTED_PROXIES="127.0.0.0/8")
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        for message_id, kind, ua, ip, after_s in SENDS:
            sent_at = datetime.now(UTC) - timedelta(seconds=after_s)
            body = {
                "campaign_id": "cloud",
                "recipient": f"{message_id}@example.com",
                "message_id": message_id,
                "sent_at": sent_at.isoformat(),
                "links": ["https://shop.example.com/sale"],
            }
            r = client.post("/v1/messages", json=body, headers=ACME)
            assert r.status_code == 201, r.text
            url = (
                r.json()["pixel_url"]
                if kind == "open"
                else r.json()["links"]["https://shop.example.com/sale"]
            )
            assert hit(client, url, ua=ua, ip=ip).status_code == (200 if kind == "open" else 302)

        def stats() -> dict[str, dict[str, Any]]:
            got = {m: client.get(f"/v1/messages/{m}", headers=ACME).json() for m, *_ in SENDS}
            got["_filtered"] = client.get("/v1/campaigns/cloud/filtered", headers=ACME).json()
            return got

        def settled(s: dict[str, dict[str, Any]]) -> bool:
            counted = [
                m["opens"] + m["machine_opens"] + m["clicks"] + sum(m["filtered"].values())
                for key, m in s.items()
                if not key.startswith("_")
            ]
            return counted == [1] * len(SENDS)

        final, _ = wait_for(stats, settled, timeout_s=60)
        yield final


def test_scanners_in_compute_ranges_are_machine_opens_and_bot_clicks(
    messages: dict[str, dict[str, Any]],
) -> None:
    counts = {m: (s["opens"], s["machine_opens"], s["clicks"], s["bot_clicks"]) for m, s in messages.items()
              if not m.startswith("_")}  # fmt: skip
    assert counts == {
        "aws-open": (0, 1, 0, 0),
        "gcp-open-v6": (0, 1, 0, 0),
        "linode-click": (0, 0, 0, 1),
        "outlook-in-aws": (1, 0, 0, 0),
        "browser-in-gcp-later": (1, 0, 0, 0),
        "residential-fast": (0, 0, 1, 0),
    }
    assert messages["linode-click"]["filtered"] == {"cloud_linode": 1}


def test_the_campaign_names_each_platform(messages: dict[str, dict[str, Any]]) -> None:
    assert messages["_filtered"] == {
        "campaign_id": "cloud",
        "filtered": [{"kind": "click", "verdict": "bot", "reason": "cloud_linode", "hits": 1}],
        "filtered_total": 1,
        "machine_opens_by_reason": {"cloud_aws": 1, "cloud_gcp": 1},
        "machine_opens": 2,
    }
