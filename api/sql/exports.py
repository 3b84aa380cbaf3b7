"""The SQL of exports (issue 20): an account's events, filtered hits or delivery events, by campaign and time
range, read in chunks along the table's key. Pure builders.

An export is written chunk by chunk, each chunk a query answered in ClickHouse's own output format, so its
memory is one chunk's whatever the export's size (chDB, the embedded engine, hands some formats whole: see
`api.export_jobs`). A chunk is the next ``size`` rows in key order after a cursor (the key of the last row
written): `chunk_end` finds the key of the chunk's last row (key columns only, in key order), `chunk_rows`
reads the rows up to it, `rest_count` counts what is left when no full chunk is. Rows are read ``FINAL``: a
hit or delivery event stored twice (a replayed batch before the merge) is exported once.

The range conditions on the key are written out column by column (``a > x OR (a = x AND b > y) ...``), which
ClickHouse's primary index reads as ranges of granules: a chunk reads from the cursor on, never the whole
account again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from api.sql import engagement
from api.sql.common import Query

ExportKind = Literal["events", "filtered_hits", "deliveries", "segment"]
TableKind = Literal["events", "filtered_hits", "deliveries"]


@dataclass(frozen=True, slots=True)
class KeyColumn:
    """A column of a table's key after ``account``: its name, the type of its cursor value, and the function
    that reads it as that type (an Enum as its number)."""

    column: str
    type: str
    read_as: str = ""

    def expr(self, alias: str = "") -> str:
        return f"{self.read_as}({alias}{self.column})" if self.read_as else f"{alias}{self.column}"


# (expression over the hits' side ``h`` of the join, column name) in the file's order.
_HIT_COLUMNS: Final = (
    ("toString(h.kind)", "kind"), ("h.received_at", "received_at"), ("h.campaign_id", "campaign_id"),
    ("h.message_id", "message_id"), ("h.hit_id", "hit_id"), ("s.recipient", "recipient"),
    *((f"h.{c}", c) for c in (
        "recipient_tag", "sent_at", "link_index", "url", "verdict", "reason", "via_proxy", "country", "city",
        "time_zone", "asn", "as_org", "ip", "device", "os", "client", "user_agent",
    )),
)  # fmt: skip
_HIT_KEY: Final = (
    KeyColumn("campaign_id", "String"), KeyColumn("message_id", "String"),
    KeyColumn("kind", "Int8", "toInt8"), KeyColumn("hit_id", "String"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Table:
    """One exported table: its key after ``account`` (each column's expression and parameter type), the time
    column the range applies to, and the columns written (in the file's order)."""

    name: str
    key: tuple[KeyColumn, ...]
    time: str
    columns: tuple[tuple[str, str], ...]
    join_sends: bool  # the recipient's address from the send (hits carry only their keyed tag)


TABLES: Final[dict[TableKind, Table]] = {
    "events": Table("events", _HIT_KEY, "received_at", _HIT_COLUMNS, join_sends=True),
    "filtered_hits": Table(
        "filtered_hits",
        _HIT_KEY,
        "received_at",
        (*_HIT_COLUMNS, ("h.token_head", "token_head")),
        join_sends=True,
    ),
    "deliveries": Table(
        "deliveries",
        (KeyColumn("campaign_id", "String"), KeyColumn("message_id", "String"),
         KeyColumn("event", "String", "toString"), KeyColumn("delivery_id", "String")),
        "occurred_at",
        (("toString(h.event)", "event"), *((f"h.{c}", c) for c in (
            "occurred_at", "campaign_id", "message_id", "delivery_id", "recipient", "recipient_tag",
            "provider", "provider_event_id", "provider_message_id", "bounce_type", "smtp_status", "smtp_code",
            "diagnostic", "matched_by", "unmatched_reason", "received_at"))),
        join_sends=False,
    ),
}  # fmt: skip

# The sends' key as far as the exports need it: the recipient of each (campaign, message).
_SENDS: Final = Table(
    "sends", (KeyColumn("campaign_id", "String"), KeyColumn("message_id", "String")), "sent_at", (), False
)

# Times as ISO 8601 in UTC in the text formats (Arrow and Parquet keep their own timestamp type).
TEXT_SETTINGS: Final = "SETTINGS date_time_output_format = 'iso', output_format_json_quote_64bit_integers = 0"

Cursor = tuple[Any, ...]  # the key (after account) of the last row written; () before the first


@dataclass(frozen=True, slots=True)
class Scope:
    """What an export covers: the account's rows, of one campaign or all, received (or, for delivery events,
    occurred) in [since, until)."""

    account: str
    campaign_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _where(table: Table, scope: Scope, alias: str = "") -> tuple[str, dict[str, Any]]:
    conditions = [f"{alias}account = {{account:String}}"]
    params: dict[str, Any] = {"account": scope.account}
    if scope.campaign_id is not None:
        conditions.append(f"{alias}campaign_id = {{campaign_id:String}}")
        params["campaign_id"] = scope.campaign_id
    if scope.since is not None:
        conditions.append(f"{alias}{table.time} >= {{since:DateTime64(3, 'UTC')}}")
        params["since"] = scope.since
    if scope.until is not None:
        conditions.append(f"{alias}{table.time} < {{until:DateTime64(3, 'UTC')}}")
        params["until"] = scope.until
    return " AND ".join(conditions), params


def _beyond(table: Table, cursor: Cursor, name: str, op: str, alias: str = "") -> tuple[str, dict[str, Any]]:
    """The key's first ``len(cursor)`` columns compared with ``cursor`` lexicographically (``op``: '>', '>='
    or '<='), written column by column so that the primary index reads it as ranges:
    ``a > x OR (a = x AND b >= y)``."""
    strict = "<" if op == "<=" else ">"
    terms = []
    params: dict[str, Any] = {}
    width = len(cursor)
    for i, key in enumerate(table.key[:width]):
        params[f"{name}{i}"] = cursor[i]
        equal = [f"{k.expr(alias)} = {{{name}{j}:{k.type}}}" for j, k in enumerate(table.key[:i])]
        last = op if i == width - 1 else strict
        terms.append(" AND ".join([*equal, f"{key.expr(alias)} {last} {{{name}{i}:{key.type}}}"]))
    return "(" + " OR ".join(f"({t})" for t in terms) + ")", params


def _scoped(table: Table, scope: Scope, after: Cursor, upto: Cursor | None, alias: str = "") -> Query:
    where, params = _where(table, scope, alias)
    if after:
        cond, more = _beyond(table, after, "after", ">", alias)
        where, params = f"{where} AND {cond}", {**params, **more}
    if upto is not None:
        cond, more = _beyond(table, upto, "upto", "<=", alias)
        where, params = f"{where} AND {cond}", {**params, **more}
    return Query(where, params)


def _key_order(table: Table, alias: str = "") -> str:
    """The table's key columns themselves (an Enum sorts by its number): ClickHouse reads them in order."""
    return ", ".join(f"{alias}{k.column}" for k in table.key)


def _key_values(table: Table, alias: str = "") -> str:
    """The key as a cursor holds it (an Enum as its number)."""
    return ", ".join(k.expr(alias) for k in table.key)


def count(db: str, kind: TableKind, scope: Scope) -> Query:
    """How many rows the export holds (its progress's denominator)."""
    table = TABLES[kind]
    where = _scoped(table, scope, (), None)
    return Query(f"SELECT count() FROM {db}.{table.name} FINAL WHERE {where.sql}", where.parameters)


def rest_count(db: str, kind: TableKind, scope: Scope, after: Cursor) -> Query:
    """How many rows are left after ``after`` (the last chunk's size)."""
    table = TABLES[kind]
    where = _scoped(table, scope, after, None)
    return Query(f"SELECT count() FROM {db}.{table.name} FINAL WHERE {where.sql}", where.parameters)


def chunk_end(db: str, kind: TableKind, scope: Scope, after: Cursor, size: int) -> Query:
    """The key of the ``size``-th row after ``after`` (no row: fewer are left)."""
    table = TABLES[kind]
    where = _scoped(table, scope, after, None)
    return Query(
        f"SELECT {_key_values(table)} FROM {db}.{table.name} FINAL WHERE {where.sql} "
        f"ORDER BY {_key_order(table)} LIMIT 1 OFFSET {int(size) - 1}",
        where.parameters,
    )


def chunk_rows(
    db: str,
    kind: TableKind,
    scope: Scope,
    after: Cursor,
    upto: Cursor | None,
    *,
    text: bool,
    limit: int | None = None,
) -> Query:
    """The rows after ``after`` up to ``upto`` (None: to the end) in key order, with the export's columns
    (``text``: with the settings of the text formats; ``limit``: at most so many). For hits, the recipient's
    address is joined from the sends of the chunk's messages only (a range of the sends' key), so the join is
    a chunk's size too."""
    table = TABLES[kind]
    where = _scoped(table, scope, after, upto, alias="h.")
    columns = ", ".join(f"{expr} AS {name}" for expr, name in table.columns)
    params = dict(where.parameters)
    joined = ""
    if table.join_sends:
        sends = ["account = {account:String}"]
        if scope.campaign_id is not None:
            sends.append("campaign_id = {campaign_id:String}")
        # from the cursor's own message on (`>=`): its later hits may be in this chunk
        for cursor, name, op in ((after, "safter", ">="), (upto, "supto", "<=")):
            if cursor:
                cond, more = _beyond(_SENDS, cursor[:2], name, op)
                sends.append(cond)
                params.update(more)
        joined = (
            " LEFT JOIN (SELECT campaign_id, message_id, argMax(recipient, registered_at) AS recipient "
            f"FROM {db}.sends WHERE {' AND '.join(sends)} GROUP BY campaign_id, message_id) AS s "
            "ON s.campaign_id = h.campaign_id AND s.message_id = h.message_id"
        )
    settings = f" {TEXT_SETTINGS}" if text else ""
    return Query(
        f"SELECT {columns} FROM {db}.{table.name} AS h FINAL{joined} WHERE {where.sql} "
        # after the join the chunk is sorted anyway: by the key's values, never by a column's alias
        f"ORDER BY {_key_values(table, 'h.')}{'' if limit is None else f' LIMIT {int(limit)}'}{settings}",
        params,
    )


def column_names(kind: TableKind) -> tuple[str, ...]:
    """The file's columns, in order."""
    return tuple(name for _, name in TABLES[kind].columns)


# -- segment members (kind segment): `api.sql.engagement`'s page of a window, with the answer's names

_SEGMENT_SELECT: Final = (
    ("tag", "recipient_tag"), ("address", "recipient"), ("sends", "sends"), ("delivered_n", "delivered"),
    ("opened", "opened"), ("human_opens", "human_opens"), ("implied_opens", "implied_opens"),
    ("clicked_n", "clicked"), ("clicks", "clicks"),
    ("machine_only", "machine_only"), ("mpp_only", "mpp_only"), ("bounces", "bounces"),
    ("complaints", "complaints"), ("tracked_n", "tracked"), ("engaged_n", "engaged"),
    ("not_tracked", "not_tracked"), ("status", "status"), ("score", "score"),
    ("if(toUnixTimestamp(lo) = 0, NULL, lo)", "last_open"),
    ("if(toUnixTimestamp(lc) = 0, NULL, lc)", "last_click"),
    ("if(toUnixTimestamp(ls) = 0, NULL, ls)", "last_sent"),
)  # fmt: skip
SEGMENT_COLUMNS: Final = tuple(name for _, name in _SEGMENT_SELECT)


def segment_rows(
    db: str, account: str, seg: engagement.Segment, after: str, upto: str, *, text: bool
) -> Query:
    """The segment's members with tags in (``after``, ``upto``] (one window, `engagement.segment_window`),
    in tag order, with the numbers of `POST /v1/segments/query` under its names."""
    page = engagement.segment_page(db, account, seg, after=after, upto=upto, limit=engagement.PAGE_WINDOW)
    columns = ", ".join(expr if expr == name else f"{expr} AS {name}" for expr, name in _SEGMENT_SELECT)
    settings = f" {TEXT_SETTINGS}" if text else ""
    return Query(f"SELECT {columns} FROM ({page.sql}) ORDER BY recipient_tag{settings}", page.parameters)


def counted(rows: Query) -> Query:
    """How many rows ``rows`` answers (its SETTINGS clause left out)."""
    sql = rows.sql.removesuffix(f" {TEXT_SETTINGS}")
    return Query(f"SELECT count() FROM ({sql})", rows.parameters)
