"""An account's webhooks and their delivery attempts: the reads behind ``/v1/webhooks`` (the ``webhooks`` rows
themselves are written by `api.webhooks`, the attempts by the dispatcher). Pure.
"""

from __future__ import annotations

from typing import Any

from api.sql.common import Query, iso


def live_webhooks(db: str, account: str, webhook_id: str | None = None) -> Query:
    """The account's webhooks not deleted (or the one ``webhook_id``), oldest first:
    ``(webhook_id, url, events, created_at, sealed secret)``."""
    where = "account = {account:String} AND NOT deleted"
    parameters: dict[str, Any] = {"account": account}
    if webhook_id is not None:
        where += " AND webhook_id = {webhook_id:String}"
        parameters["webhook_id"] = webhook_id
    return Query(
        f"""SELECT webhook_id, url, events, created_at, secret
            FROM {db}.webhooks FINAL WHERE {where}
            ORDER BY created_at, webhook_id""",  # a validated database name; values are bound
        parameters,
    )


def deliveries(db: str, account: str, webhook_id: str, *, limit: int) -> Query:
    """The latest delivery attempts to a webhook, newest first (read as dicts: `shape_deliveries`)."""
    return Query(
        f"""SELECT delivery_id, notice_id, message_id, type, attempt, status, response_code, error,
                   attempted_at, next_attempt_at, duration_ms
            FROM {db}.webhook_deliveries
            WHERE account = {{account:String}} AND webhook_id = {{webhook_id:String}}
            ORDER BY attempted_at DESC, attempt DESC LIMIT {{limit:UInt32}}""",
        {"account": account, "webhook_id": webhook_id, "limit": limit},
    )


def shape_deliveries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`deliveries`' rows with their times in ISO-8601."""
    for row in rows:
        row["attempted_at"] = iso(row["attempted_at"])
        if row["next_attempt_at"] is not None:
            row["next_attempt_at"] = iso(row["next_attempt_at"])
    return rows
