"""The pure parts of implied opens and the MPP-adjusted open rate (`api.sql.open_rates`), and a message's
``opened`` / ``open_implied`` (`api.sql.messages.open_implied`)."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from api.sql import open_rates
from api.sql.messages import open_implied
from api.sql.open_rates import OpenFacts
from processors.classify import RULES
from schemas.verdicts import MPP_REASONS, Verdict


def _summary(**more: Any) -> dict[str, Any]:
    return {"sent": 10, "unique_opens": 4, "open_rate": 0.4, **more}


def test_the_mpp_reasons_are_the_classifiers_apple_prefetch_rules() -> None:
    apple = {r.reason for r in RULES if r.verdict is Verdict.MACHINE and r.reason.startswith("apple_mpp")}
    assert apple == set(MPP_REASONS)


def test_the_mpp_sets_migration_leaves_out_exactly_the_mpp_reasons() -> None:
    """0015's view and backfill name the reasons in SQL: each list must be `MPP_REASONS`."""
    sql = (resources.files("schemas.ddl") / "0015_mpp_sets.sql").read_text()
    lists = re.findall(r"NOT IN \(([^)]*)\)", sql)
    assert len(lists) == 2
    for listed in lists:
        assert tuple(name.strip().strip("'") for name in listed.split(",")) == MPP_REASONS


def test_facts_from_counts_none_is_zero() -> None:
    assert open_rates.OPEN_COUNTS == ("mpp_only", "implied")
    assert open_rates.shape_facts((5, 3)) == OpenFacts(mpp_only=5, implied=3)
    assert open_rates.shape_facts(None) == OpenFacts()


def test_implied_opens_join_unique_opens_and_the_open_rate() -> None:
    out = open_rates.with_implied_opens(_summary(opens=9), OpenFacts(mpp_only=1, implied=2))
    assert out == {
        "sent": 10,
        "opens": 9,  # pixel loads, unchanged
        "unique_opens": 6,
        "unique_pixel_opens": 4,
        "implied_opens": 2,
        "open_rate": 0.6,
    }


def test_the_adjusted_rate_leaves_mpp_only_messages_out_of_the_basis() -> None:
    assert open_rates.mpp_adjusted_open_rate(3, 7, 2) == 0.6
    assert open_rates.mpp_adjusted_open_rate(0, 4, 4) == 0.0  # nothing left to judge: 0.0, as `rate`
    assert open_rates.mpp_adjusted_open_rate(0, 0, 0) == 0.0
    assert open_rates.mpp_adjusted_open_rate(1, 1, 3) == 0.0  # never a negative basis


def test_the_adjusted_rate_is_over_sent_or_delivered_as_the_rate_basis_says() -> None:
    facts = OpenFacts(mpp_only=2, implied=1)
    over_sent = open_rates.with_mpp_adjusted(_summary(), facts, person_opened=4)
    assert (over_sent["mpp_only_messages"], over_sent["mpp_adjusted_open_rate"]) == (2, 0.5)  # 4 / (10 - 2)
    sent_basis = open_rates.with_mpp_adjusted(
        _summary(rate_basis="sent", delivered=None), facts, person_opened=4
    )
    assert sent_basis["mpp_adjusted_open_rate"] == 0.5
    delivered = open_rates.with_mpp_adjusted(
        _summary(rate_basis="delivered", delivered=6), facts, person_opened=2
    )
    assert delivered["mpp_adjusted_open_rate"] == 0.5  # 2 / (6 - 2)


def test_a_message_is_opened_by_implication_only_when_clicked_and_its_pixel_never_loaded() -> None:
    assert open_implied(opens=0, machine_opens=0, clicks=1)
    assert not open_implied(opens=0, machine_opens=1, clicks=1)  # the pixel loaded (a prefetch)
    assert not open_implied(opens=1, machine_opens=0, clicks=2)  # a pixel open: not implied
    assert not open_implied(opens=0, machine_opens=0, clicks=0)


def test_the_per_bucket_queries_are_scoped_by_account_and_campaigns() -> None:
    for q in (
        open_rates.open_parts("db", "acme", ["launch"]),
        open_rates.campaigns_open_counts("db", "acme", ["launch"]),
    ):
        assert q.parameters == {"account": "acme", "campaign_ids": ["launch"]}
        assert "account = {account:String} AND campaign_id IN {campaign_ids:Array(String)}" in q.sql
        assert "FROM db.rollups" in q.sql
    some = open_rates.campaigns_open_counts("db", "acme", ["launch"], [3, 9])
    assert some.parameters["buckets"] == [3, 9]
    assert "bucket IN {buckets:Array(UInt16)}" in some.sql
