"""An account's mail-service configs: the read behind ``/v1/mail-services`` (the rows are written by
`api.mail_services`). Pure."""

from __future__ import annotations

from typing import Any

from api.sql.common import Query
from schemas.mail_services import MAIL_SERVICE_COLUMNS


def mail_services(db: str, account: str, provider: str | None = None) -> Query:
    """The account's configs not deleted (or the one of ``provider``), by provider: rows of
    `schemas.mail_services.MAIL_SERVICE_COLUMNS` (`StoredMailService.from_row`)."""
    where = "account = {account:String} AND NOT deleted"
    parameters: dict[str, Any] = {"account": account}
    if provider is not None:
        where += " AND provider = {provider:String}"
        parameters["provider"] = provider
    return Query(
        f"""SELECT {", ".join(MAIL_SERVICE_COLUMNS)}
            FROM {db}.mail_services FINAL WHERE {where}
            ORDER BY provider""",  # a validated database name; values are bound
        parameters,
    )
