"""The exports' SQL (`api.sql.exports`), pure: the key ranges a chunk reads, written column by column."""

from __future__ import annotations

from api.sql import exports as sql


def test_after_a_cursor_is_the_key_compared_column_by_column() -> None:
    cond, params = sql._beyond(sql.TABLES["events"], ("c", "m", 1, "h"), "after", ">")
    assert cond == (
        "((campaign_id > {after0:String}) OR "
        "(campaign_id = {after0:String} AND message_id > {after1:String}) OR "
        "(campaign_id = {after0:String} AND message_id = {after1:String} "
        "AND toInt8(kind) > {after2:Int8}) OR "
        "(campaign_id = {after0:String} AND message_id = {after1:String} AND toInt8(kind) = {after2:Int8} "
        "AND hit_id > {after3:String}))"
    )
    assert params == {"after0": "c", "after1": "m", "after2": 1, "after3": "h"}


def test_up_to_a_cursor_includes_it() -> None:
    cond, _ = sql._beyond(sql.TABLES["deliveries"], ("c", "m"), "upto", "<=", alias="h.")
    assert (
        cond == "((h.campaign_id < {upto0:String}) OR "
        "(h.campaign_id = {upto0:String} AND h.message_id <= {upto1:String}))"
    )


def test_a_chunk_joins_only_its_messages_sends() -> None:
    scope = sql.Scope("acme", "big")
    q = sql.chunk_rows("db", "events", scope, ("big", "m1", 2, "h9"), ("big", "m7", 1, "h3"), text=True)
    assert "FROM db.events AS h FINAL LEFT JOIN" in q.sql
    assert "message_id >= {safter1:String}" in q.sql
    assert "message_id <= {supto1:String}" in q.sql
    assert q.sql.endswith(sql.TEXT_SETTINGS)
    assert (q.parameters["safter1"], q.parameters["supto1"]) == ("m1", "m7")
    assert sql.column_names("events")[:6] == (
        "kind",
        "received_at",
        "campaign_id",
        "message_id",
        "hit_id",
        "recipient",
    )


def test_the_first_chunk_has_no_cursor() -> None:
    q = sql.chunk_end("db", "deliveries", sql.Scope("acme"), (), 50_000)
    assert "OFFSET 49999" in q.sql
    assert "after" not in q.sql
    assert q.parameters == {"account": "acme"}
