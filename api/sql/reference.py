"""The raw campaign counts (``uniqExact`` over ``events`` and ``sends``; the delivery numbers by message over
``deliveries`` and ``events``; MPP-only messages and implied opens by message over ``events``) that the
rollups must equal.

No route reads these: every campaign answer reads the rollups (`api.sql.campaigns`). They stay as the
reference the rollups are checked against, by the unit tests (`tests/unit/test_analytics_queries.py`) and the
benchmark (`bench/query_latency.py`, whose baseline they are). Pure.
"""

from __future__ import annotations

from api.sql.common import CAMPAIGN_SCOPE, Query
from api.sql.deliveries import STATUS_COUNTS, Flag, flag_sql, status_sql
from schemas.verdicts import MPP_REASONS


def campaign_sent(db: str, account: str, campaign_id: str) -> Query:
    return Query(
        f"""SELECT uniqExact(message_id) FROM {db}.sends
            WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}""",
        {"account": account, "campaign_id": campaign_id},
    )


def campaign_counts(db: str, account: str, campaign_id: str) -> Query:
    return Query(
        f"""SELECT
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'human') AS opens,
              uniqExactIf(message_id, kind = 'open' AND verdict = 'human') AS unique_opens,
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'machine') AS machine_opens,
              uniqExactIf(message_id, kind = 'open' AND verdict = 'machine') AS unique_machine_opens,
              uniqExactIf(hit_id, kind = 'click' AND verdict = 'human') AS clicks,
              uniqExactIf(message_id, kind = 'click' AND verdict = 'human') AS unique_clicks
            FROM {db}.events
            WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}""",
        {"account": account, "campaign_id": campaign_id},
    )


def campaign_delivery(db: str, account: str, campaign_id: str) -> Query:
    """The delivery numbers of `api.sql.deliveries.campaigns_delivery` (without the campaign id), by message
    id over ``deliveries`` (matched events), ``events`` (every counted hit proves delivery) and ``sends``."""
    return Query(
        f"""SELECT {STATUS_COUNTS} FROM (
              SELECT message_id, groupBitOr(flag) AS f, {status_sql("f")} AS s FROM (
                SELECT message_id, {flag_sql("toString(event)", "toString(bounce_type)", "false")} AS flag
                FROM {db}.deliveries
                WHERE {CAMPAIGN_SCOPE} AND message_id != ''
                UNION ALL
                SELECT message_id, toUInt16({int(Flag.READ)}) AS flag FROM {db}.events WHERE {CAMPAIGN_SCOPE}
                UNION ALL
                SELECT message_id, toUInt16({int(Flag.SENT)}) AS flag FROM {db}.sends WHERE {CAMPAIGN_SCOPE})
              GROUP BY message_id)""",
        {"account": account, "campaign_id": campaign_id},
    )


def campaign_open_facts(db: str, account: str, campaign_id: str) -> Query:
    """`api.sql.open_rates.OPEN_COUNTS` (without the campaign id), by message id over ``events``: messages
    whose every open is Apple's prefetch, and messages a person clicked that have no open of any kind."""
    return Query(
        f"""SELECT countIf(opened AND only_mpp) AS mpp_only, countIf(clicked AND NOT opened) AS implied
            FROM (
              SELECT message_id, max(kind = 'open') AS opened,
                     max(kind = 'click' AND verdict = 'human') AS clicked,
                     min(kind != 'open' OR (verdict = 'machine' AND reason IN {{mpp_reasons:Array(String)}}))
                       AS only_mpp
              FROM {db}.events WHERE {CAMPAIGN_SCOPE}
              GROUP BY message_id)""",
        {"account": account, "campaign_id": campaign_id, "mpp_reasons": list(MPP_REASONS)},
    )
