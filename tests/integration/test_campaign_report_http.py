"""What the dashboard reads in one request, over real HTTP against the analytics data set of
`test_analytics_http` (its own pipeline: this module adds hits): the campaign report (every part exactly as
its own route answers it, kept while the campaign's data is unchanged and read again when an open comes), the
campaign list's unique opens, rates and daily opens (each as the campaign's summary says them), and a
recipient's do-not-track state."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.helpers import hit, wait_for
from tests.integration.test_analytics_http import (
    ACME,
    APPLE_MAIL,
    GLOBEX,
    LINKS,
    LONDON,
    get,
    pipeline,
    summary,
)

__all__ = ["pipeline"]  # the module's data set, made once (a fixture of test_analytics_http)

PARTS = ("summary", "timeseries", "breakdowns", "links", "filtered", "best_time_to_send")


def separately(client: httpx.Client, campaign_id: str, **params: Any) -> dict[str, Any]:
    """The report's parts as the separate routes answer them, without their repeated campaign id."""
    base = f"/v1/campaigns/{campaign_id}"
    machine = params.get("include_machine", "false")
    series = get(client, f"{base}/timeseries", **params)
    filtered = get(client, f"{base}/filtered")
    return {
        "summary": summary(client, campaign_id, include_machine=machine),
        "timeseries": {k: v for k, v in series.items() if k != "campaign_id"},
        "breakdowns": {
            by: {
                k: v
                for k, v in get(client, f"{base}/breakdown", by=by, include_machine=machine).items()
                if k != "campaign_id"
            }
            for by in ("client", "device", "os", "country")
        },
        "links": get(client, f"{base}/links")["links"],
        "filtered": {k: v for k, v in filtered.items() if k != "campaign_id"},
        "best_time_to_send": get(client, f"{base}/best-time")["best_time_to_send"],
    }


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"include_machine": "true"},
        {"bucket": "day", "tz": "Europe/London"},
        {"bucket": "minute", "tz": "Asia/Kolkata", "include_machine": "true"},
    ],
)
def test_the_report_is_every_part_as_its_own_route_answers_it(
    pipeline: httpx.Client, params: dict[str, str]
) -> None:
    report = get(pipeline, "/v1/campaigns/launch/report", **params)
    assert report["campaign_id"] == "launch"
    assert {k: report[k] for k in PARTS} == separately(pipeline, "launch", **params)
    assert set(report) == {"campaign_id", *PARTS}
    assert get(pipeline, "/v1/campaigns/launch/report", **params) == report  # again: kept, the same


def test_the_reports_numbers(pipeline: httpx.Client) -> None:
    report = get(pipeline, "/v1/campaigns/launch/report")
    s = report["summary"]
    assert (s["sent"], s["opens"], s["unique_opens"], s["machine_opens"], s["clicks"], s["bot_clicks"]) == (
        4, 6, 3, 3, 1, 1,
    )  # fmt: skip
    country = report["breakdowns"]["country"]["rows"]
    assert [(r["key"], r["opens"], r["unique_opens"], r["clicks"]) for r in country] == [
        ("GB", 3, 1, 1), ("SE", 2, 1, 0), (None, 1, 1, 0),
    ]  # fmt: skip
    assert [(link["url"], link["clicks"], link["bot_clicks"]) for link in report["links"]] == [
        (LINKS[0], 1, 0), (LINKS[1], 0, 1),
    ]  # fmt: skip
    assert (report["filtered"]["filtered_total"], report["filtered"]["machine_opens"]) == (2, 3)
    assert sum(p["opens"] for p in report["timeseries"]["series"]) == 6
    best = report["best_time_to_send"]
    assert (best["basis"], best["sample_size"]) == ("campaign", 5)


def listed(client: httpx.Client, campaign_id: str) -> dict[str, Any]:
    return next(c for c in get(client, "/v1/campaigns")["items"] if c["campaign_id"] == campaign_id)


def test_a_new_open_is_in_the_report_and_the_list_at_once(pipeline: httpx.Client) -> None:
    before = get(pipeline, "/v1/campaigns/newsletter/report")
    assert (before["summary"]["opens"], before["summary"]["unique_opens"]) == (5, 1)
    assert (listed(pipeline, "newsletter")["opens"], listed(pipeline, "newsletter")["unique_opens"]) == (5, 1)
    r = pipeline.post(
        "/v1/messages",
        json={"campaign_id": "newsletter", "message_id": "m-gus", "recipient": "gus@example.com"},
        headers=ACME,
    )
    assert r.status_code == 201, r.text
    assert hit(pipeline, r.json()["pixel_url"], ua=APPLE_MAIL, ip=LONDON).status_code == 200
    after, _ = wait_for(
        lambda: get(pipeline, "/v1/campaigns/newsletter/report"),
        lambda report: report["summary"]["opens"] == 6,
        timeout_s=30,
    )
    assert (after["summary"]["sent"], after["summary"]["unique_opens"]) == (3, 2)
    assert {k: after[k] for k in PARTS} == separately(pipeline, "newsletter")
    gb = [row for row in after["breakdowns"]["country"]["rows"] if row["key"] == "GB"]
    assert [(row["opens"], row["unique_opens"]) for row in gb] == [(1, 1)]
    item = listed(pipeline, "newsletter")  # kept by the list too, and read again after the open
    assert (item["sent"], item["opens"], item["unique_opens"], item["open_rate"]) == (3, 6, 2, 0.6667)


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/campaigns/nope/report", ACME, 404),
        ("/v1/campaigns/newsletter/report", GLOBEX, 404),
        ("/v1/campaigns/launch/report?tz=Mars/Olympus", ACME, 400),
        ("/v1/campaigns/launch/report?bucket=week", ACME, 400),
        ("/v1/campaigns/launch/report?include_machine=maybe", ACME, 400),
        ("/v1/campaigns/launch/report", {}, 401),
    ],
)
def test_the_report_refuses_what_the_routes_refuse(
    pipeline: httpx.Client, path: str, headers: dict[str, str], status: int
) -> None:
    assert pipeline.get(path, headers=headers).status_code == status


def test_the_report_is_in_the_openapi_document(pipeline: httpx.Client) -> None:
    report = pipeline.get("/schema/openapi.json").json()["paths"]["/v1/campaigns/{campaign_id}/report"]["get"]
    assert {p["name"] for p in report["parameters"]} >= {"bucket", "tz", "include_machine"}
    assert "/breakdown" in report["description"]


def test_the_list_has_each_campaigns_unique_opens_and_rates(pipeline: httpx.Client) -> None:
    items = {item["campaign_id"]: item for item in get(pipeline, "/v1/campaigns")["items"]}
    launch = items["launch"]
    numbers = ("sent", "opens", "unique_opens", "open_rate", "clicks", "unique_clicks", "click_rate")
    assert {k: launch[k] for k in numbers} == {
        "sent": 4, "opens": 6, "unique_opens": 3, "open_rate": 0.75, "clicks": 1, "unique_clicks": 1,
        "click_rate": 0.25,
    }  # fmt: skip
    for campaign_id, item in items.items():
        stats = summary(pipeline, campaign_id)
        assert {k: item[k] for k in numbers} == {k: stats[k] for k in numbers}, campaign_id
        assert (item["delivered"], item["delivery_rate"]) == (None, None)  # no delivery data here
        # Human opens per UTC day, from the first day with one to the last (the hits came today).
        assert sum(day["opens"] for day in item["opens_by_day"]) == item["opens"]
    days = [date.fromisoformat(d["day"]) for d in launch["opens_by_day"]]
    assert days == [days[0] + timedelta(days=i) for i in range(len(days))]
    assert days[-1] in (datetime.now(UTC).date(), datetime.now(UTC).date() - timedelta(days=1))


def test_the_recipient_says_whether_they_are_tracked(pipeline: httpx.Client) -> None:
    path = "/v1/recipients/Cat@Example.com"
    assert get(pipeline, path)["tracking"] == "on"
    assert pipeline.put(f"{path}/do-not-track", headers=ACME).json()["tracking"] is False
    assert get(pipeline, path)["tracking"] == "off"
    assert get(pipeline, "/v1/recipients/ann@example.com")["tracking"] == "on"  # only cat
    assert pipeline.delete(f"{path}/do-not-track", headers=ACME).json()["tracking"] is True
    assert get(pipeline, path)["tracking"] == "on"
