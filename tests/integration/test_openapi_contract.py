"""The API does what its OpenAPI document says: schemathesis generates requests for every operation of
`/schema/openapi.json` (valid ones and, in the negative mode, invalid ones) against an embedded deployment
over real HTTP, with an API key, and runs all of its checks on every answer: no 5xx, every status and body
documented, a 4xx for invalid input, `Allow` on 405, content types as documented, and more.

Bounded (`MAX_EXAMPLES` per operation and mode, no shrinking, fixed seed), so a run takes well under two
minutes. The live feed is closed before the run: `/v1/live` then answers its opening comment and ends,
instead of streaming for ever."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.integration.helpers import embedded_env
from tests.serving import serving

MAX_EXAMPLES = 8

# Rules that JSON Schema cannot state, so a schema-valid request can still get a 400 there; each is in the
# route's documented 400 (and the field's description): `sent_at` within the retention and at most 15
# minutes ahead; `to` after `from`, both within 1970-2106, at most 10,000 buckets, `tz` an IANA zone; a
# `cursor` that this API gave; a webhook `url` whose host resolves to a private address; a mail service's
# credentials and options, whose rules depend on the provider in the path. Every other check
# runs as schemathesis ships it.
ACCEPTS_WITH_400 = [
    "/v1/messages",
    "/v1/messages/batch",
    "/v1/instrument",
    "/v1/campaigns/{campaign_id}/timeseries",
    "/v1/campaigns/{campaign_id}/report",  # its time series' `tz`
    "/v1/campaigns",
    "/v1/webhooks",  # a host that resolves to a private address
    "/v1/mail-services/{provider}",  # the keys each provider takes (`schemas.mail_services`)
    "/v1/account/settings",  # a tracking base URL's query, fragment or credentials (issue 19)
    "/v1/recipients/{recipient}/consent",  # a consent change's `at` at most 15 minutes ahead
]
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path": path,
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 400, 401, 404, 409]}},
            }
            for path in ACCEPTS_WITH_400
        ]
    }
)
KEY = "acme-key-123"


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Any]:
    env = embedded_env(tmp_path_factory.mktemp("data"), chdb_path, PIXELPIPE_API_KEYS=f"acme={KEY}")
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base:
        assert components.notifications is not None
        assert components.notifications.live is not None
        components.notifications.live.close_soon()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as client:
            r = client.post(
                "/v1/messages",
                json={
                    "campaign_id": "c1",
                    "recipient": "a@example.org",
                    "message_id": "m1",
                    "links": ["https://shop.example.com/a"],
                },
            )
            assert r.status_code == 201, r.text
        yield schemathesis.openapi.from_url(f"{base}/schema/openapi.json", config=CONFIG)
        assert components.store is not None
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


def _run(operation: Any, mode: schemathesis.GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,  # the same examples each run
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, timeout=30)

    check()


def test_the_api_does_what_its_openapi_document_says(api_schema: Any) -> None:
    failures = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                _run(operation, mode)
            except Exception as exc:  # every operation's failures, not just the first one's
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
