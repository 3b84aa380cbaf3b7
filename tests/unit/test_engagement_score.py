"""The score and status of README's table of examples, computed by the very SQL the API runs
(`api.sql.engagement`'s SELECT list) over literal sets, on chDB; and the segment cursor."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from api.sql import engagement as sql
from api.sql.common import BadQuery
from schemas.store import Store, parse_store_url


@pytest.fixture(scope="module")
def store(chdb_path: Path) -> Store:
    return Store.connect(parse_store_url(f"chdb://{chdb_path}?database=t_score_{uuid.uuid4().hex[:8]}"))


def measured(
    store: Store, *, tracked: int, opened: int = 0, clicked: int = 0, mpp: int = 0, bounced: int = 0,
    refused: bool = False,
) -> dict[str, object]:  # fmt: skip
    """The status, score and implied opens of a recipient with ``tracked`` messages sent (1..n), the first
    ``opened`` opened by a person, the first ``clicked`` clicked (beyond ``opened``: implied opens unless
    Apple's prefetch opened them), the last ``mpp`` opened by Apple's prefetch."""
    sent = list(range(1, tracked + 1))

    def arr(values: list[int]) -> str:
        return f"CAST({values!r} AS Array(UInt64))"

    mpp_set = sent[len(sent) - mpp :] if mpp else []
    inner = (
        f"SELECT '' AS address, {arr(sent)} AS s, {arr(sent)} AS tr, {arr([])} AS d,"
        f" {arr(sent[:opened])} AS ho, {arr(sent[:opened])} AS hoh,"
        f" {arr(sent[:clicked])} AS cl, {arr(sent[:clicked])} AS clh,"
        f" {arr(mpp_set)} AS mo, {arr(mpp_set)} AS mpp, {arr(sent[:bounced])} AS hb, {arr([])} AS co,"
        " toDateTime(0, 'UTC') AS ls, toDateTime(0, 'UTC') AS lo, toDateTime(0, 'UTC') AS lc"
    )
    measures = sql.MEASURES.format(refused="1" if refused else "0")  # the API's own SELECT list
    (row,) = store.query(f"SELECT {measures} FROM ({inner})")
    shaped = sql.shape(row)
    return {"status": shaped["status"], "score": shaped["score"], "implied_opens": shaped["implied_opens"]}


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        ({"tracked": 5}, ("unengaged", 1)),
        ({"tracked": 5, "opened": 1}, ("engaged", 2)),
        ({"tracked": 3, "opened": 2, "clicked": 1}, ("engaged", 3)),
        ({"tracked": 4, "opened": 4}, ("engaged", 4)),
        ({"tracked": 2, "opened": 2, "clicked": 2}, ("engaged", 5)),
        ({"tracked": 3, "mpp": 3}, ("unknown", 3)),
        ({"tracked": 1, "bounced": 1}, ("bounced", 1)),
        ({"tracked": 2, "opened": 1, "clicked": 1, "refused": True}, ("not_tracked", None)),
        # a click on a message whose pixel never loaded: engaged (e = c = 1/2: 1 + floor(2.5) = 3)
        ({"tracked": 2, "clicked": 1}, ("engaged", 3)),
    ],
)
def test_the_readmes_examples(
    store: Store, numbers: dict[str, int], expected: tuple[str, int | None]
) -> None:
    got = measured(store, **numbers)
    assert (got["status"], got["score"]) == expected


@pytest.mark.parametrize(
    ("numbers", "implied"),
    [
        ({"tracked": 3, "opened": 1, "clicked": 1}, 0),  # clicked what the pixel showed opened
        ({"tracked": 3, "opened": 1, "clicked": 3}, 2),  # two clicks on messages whose pixel never loaded
        ({"tracked": 3, "clicked": 3, "mpp": 1}, 2),  # Apple's prefetch loaded the third one's pixel
    ],
)
def test_implied_opens_are_clicks_on_messages_no_pixel_load_reached(
    store: Store, numbers: dict[str, int], implied: int
) -> None:
    got = measured(store, **numbers)
    assert (got["implied_opens"], got["status"]) == (implied, "engaged")


def test_a_cursor_goes_back_to_its_tag_and_refuses_others() -> None:
    assert sql.decode_cursor(sql.encode_cursor("00ff")) == "00ff"
    assert sql.decode_cursor(None) == ""
    for bad in ("x", "not-ours", "ZTI6YWJj"):
        with pytest.raises(BadQuery):
            sql.decode_cursor(bad)
