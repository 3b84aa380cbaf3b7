"""What the engagement tests (issue 20) share: an embedded pixelpipe (edge, processors, API on a real socket,
its own chDB database) with the ASN test DB, the loopback as a trusted proxy and a 200 ms click window; and a
message's delivery events stored through the delivery loader's matcher and rows (the send's tag)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deliveries.matching import match_all
from deliveries.rows import COLUMNS, row
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.delivery_events import DeliveryEvent, delivery_id
from schemas.store import Store
from tests.conftest import DATA
from tests.integration.helpers import embedded_env
from tests.serving import serving


@contextmanager
def engagement_app(data_dir: Path, chdb_path: Path) -> Iterator[tuple[httpx.Client, Components, Store]]:
    """A served pixelpipe and a client of it; its database is dropped at the end."""
    env = embedded_env(
        data_dir,
        chdb_path,
        PIXELPIPE_GEOIP_ASN_DB=str(DATA / "GeoLite2-ASN-Test.mmdb"),
        PIXELPIPE_TRUSTED_PROXIES="127.0.0.0/8,::1/128",
        PIXELPIPE_CLICK_WINDOW_MS="200",
    )
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    store = components.store
    assert store is not None
    with serving(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        try:
            yield client, components, store
        finally:  # while the app runs: its stop closes the store
            store.command(f"DROP DATABASE IF EXISTS {store.database}")


def delivered_then_bounced(store: Store, message_id: str) -> None:
    """The message's mail service reports it delivered, then hard-bounced, matched by our message id (the
    delivery loader's matcher and rows: the row carries the send's tag)."""
    now_ms = int(time.time() * 1000)
    events = [
        DeliveryEvent(
            delivery_id("acme", "sendgrid", event_id), "acme", "sendgrid", event_id,
            kind, now_ms - 60_000, now_ms, message_id=message_id, bounce_type=bounce,  # type: ignore[arg-type]
        )
        for kind, bounce in (("delivered", ""), ("bounce", "hard"))
        for event_id in [f"{message_id}-{kind}"]
    ]  # fmt: skip
    store.insert("deliveries", COLUMNS, [row(m) for m in match_all(store.query, store.database, events)])
