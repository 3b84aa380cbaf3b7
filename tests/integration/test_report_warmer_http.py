"""Reports kept ready (`api.report_warmer`), over real HTTP and chDB: at start the largest campaign's default
report is computed before anyone asks; after a report was asked for, a new open's flush changes the campaign's
parts and the warmer computes the report again without a request, so the next request finds it kept and
answers the new numbers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.context import ApiContext
from api.sql import campaigns as sql
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.integration.helpers import embedded_env, hit, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
DEFAULT = ("report", False, "hour", "UTC")


def _register(
    client: httpx.Client, campaign_id: str, message_id: str, hours_ago: float = 1.0
) -> dict[str, Any]:
    sent_at = (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat()
    body = {"campaign_id": campaign_id, "message_id": message_id, "recipient": f"{message_id}@example.com"}
    r = client.post("/v1/messages", json={**body, "sent_at": sent_at}, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _opens(client: httpx.Client, campaign_id: str) -> int:
    r = client.get(f"/v1/campaigns/{campaign_id}/stats", headers=ACME)
    return int(r.json()["opens"]) if r.status_code == 200 else -1


@pytest.fixture
def served(tmp_path: Path, chdb_path: Path) -> Iterator[tuple[httpx.Client, ApiContext]]:
    env = embedded_env(tmp_path / "data", chdb_path, PIXELPIPE_REPORT_WARM_CAMPAIGNS="1")
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, litestar = build_app(components)
    ctx = litestar.dependencies["ctx"].dependency()
    assert isinstance(ctx, ApiContext)
    assert ctx.report_warmer is not None
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, ctx
        assert components.store is not None
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


def _kept_now(ctx: ApiContext, campaign_id: str) -> bool:
    """The campaign's default report is kept under the signature of its parts now."""
    db = ctx.store.database
    rows = ctx.read(sql.campaign_parts(db, "acme", campaign_id))
    now = (int(rows[0][0]), int(rows[0][1]))
    return ctx.campaign_reads.kept_signature(db, "acme", campaign_id, variant=DEFAULT) == now


def test_a_changed_campaigns_report_is_computed_again_before_the_next_request(
    served: tuple[httpx.Client, ApiContext],
) -> None:
    client, ctx = served
    sent = [_register(client, "launch", f"m-{i}") for i in range(3)]
    for message in sent[:2]:
        assert hit(client, message["pixel_url"]).status_code == 200
    wait_for(lambda: _opens(client, "launch"), lambda n: n == 2)
    assert client.get("/v1/campaigns/launch/report", headers=ACME).status_code == 200
    assert _kept_now(ctx, "launch")

    assert hit(client, sent[2]["pixel_url"]).status_code == 200  # a new open: a new part
    wait_for(lambda: _opens(client, "launch"), lambda n: n == 3)
    wait_for(lambda: _kept_now(ctx, "launch"), bool, timeout_s=60)  # no report request meanwhile
    report = client.get("/v1/campaigns/launch/report", headers=ACME).json()
    assert (report["summary"]["opens"], report["summary"]["unique_opens"]) == (3, 3)


def test_at_start_the_largest_campaigns_report_is_kept_before_anyone_asks(
    tmp_path: Path, chdb_path: Path
) -> None:
    env = embedded_env(tmp_path / "data", chdb_path, PIXELPIPE_REPORT_WARM_CAMPAIGNS="1")
    first = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(first)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        big = [_register(client, "big", f"b-{i}") for i in range(3)]
        small = [_register(client, "small", "s-0", hours_ago=0.5)]  # the newest
        for message in [*big, *small]:
            assert hit(client, message["pixel_url"]).status_code == 200
        wait_for(lambda: _opens(client, "big") + _opens(client, "small"), lambda n: n == 4)
    # A new process over the same store: nobody has asked for a report yet.
    again = build_components(settings_mod.load(env), frozenset({"api"}))
    app, litestar = build_app(again)
    ctx = litestar.dependencies["ctx"].dependency()
    assert isinstance(ctx, ApiContext)
    with serving(app):
        # one largest and one newest: "big" is the largest, "small" the newest
        wait_for(lambda: (_kept_now(ctx, "big"), _kept_now(ctx, "small")), lambda k: k == (True, True), 60)
        assert again.store is not None
        again.store.command(f"DROP DATABASE IF EXISTS {again.store.database}")
