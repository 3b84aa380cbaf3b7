"""The exact read of a set rollup (``schemas/ddl/0002_rollups.sql``): `ExactRead` plans it, `read_exact` runs
it through the function it is given (it does no I/O of its own). Every campaign answer reads the rollups
through it.

Exactness: a rollup row holds *sets* (hashes of hit and message ids); a key with one row is counted by its
array lengths, a key with several rows (parts not merged yet, or a replayed hit) by the union of its arrays.
Keys never share a hit (hits are keyed by the hour or minute they were received) nor a message (messages by
a bucket of their hash), so the sum over keys is the exact number of distinct hits or messages: a hit stored
twice counts once, as ``uniqExact(hit_id)`` over ``events`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from api.sql.common import Query

# The rest of the rollups' sorting key, after (account, campaign_id, rollup): see 0002_rollups.sql.
ROLLUP_KEYS: Final = ("kind", "who", "label", "at", "bucket")

RunQuery = Callable[[str, Mapping[str, Any]], list[tuple[Any, ...]]]  # e.g. `Store.query`


@dataclass(frozen=True, slots=True)
class ExactRead:
    """Distinct elements of array columns of a set rollup, per ``out`` group, in one query or two.

    ``keys`` must be the rest of the table's sorting key once ``where`` fixes its prefix, so a key with one
    row holds its whole set. The first query sums the array lengths of keys with one row (once background
    merges have caught up: all of them) and names the keys with several; only then does a second query union
    those keys' arrays. The second query takes the key names from the first, so a key that gains a row in
    between is counted once, as the first query saw it. A key is named by the 64-bit hash of its columns
    (hashing is several times cheaper than formatting the tuple, and the filter runs on every row of the
    scope); two keys of one campaign sharing a hash (p < 1e-10) would count one key twice.
    """

    table: str
    where: str
    keys: tuple[str, ...]
    sizes: tuple[tuple[str, str], ...]  # (name, array column)
    parameters: Mapping[str, Any]
    out: tuple[tuple[str, str], ...] = ()  # (alias, expression over keys)

    def _outer(self, sums: str) -> tuple[str, str]:
        aliases = ", ".join(alias for alias, _ in self.out)
        select = ", ".join([*(f"{expr} AS {alias}" for alias, expr in self.out), sums])
        return select, (f" GROUP BY {aliases} ORDER BY {aliases}" if self.out else "")

    def first(self) -> Query:
        keys = ", ".join(self.keys)
        lengths = ", ".join(f"sum(length({column})) AS n_{name}" for name, column in self.sizes)
        sums = ", ".join(f"sumIf(n_{name}, copies = 1) AS {name}" for name, _ in self.sizes)
        select, tail = self._outer(f"{sums}, groupArrayIf(key, copies > 1) AS several")
        sql = f"""SELECT {select} FROM (
            SELECT {keys}, cityHash64({keys}) AS key, count() AS copies, {lengths}
            FROM {self.table} WHERE {self.where} GROUP BY {keys}){tail}"""
        return Query(sql, dict(self.parameters))

    def second(self, several: Sequence[int]) -> Query:
        keys = ", ".join(self.keys)
        unions = ", ".join(
            f"length(arrayDistinct(arrayFlatten(groupArray({column})))) AS n_{name}"
            for name, column in self.sizes
        )
        select, tail = self._outer(", ".join(f"sum(n_{name}) AS {name}" for name, _ in self.sizes))
        sql = f"""SELECT {select} FROM (
            SELECT {keys}, {unions} FROM {self.table}
            WHERE {self.where} AND cityHash64({keys}) IN {{several_keys:Array(UInt64)}}
            GROUP BY {keys}){tail}"""
        return Query(sql, {**self.parameters, "several_keys": list(several)})


def read_exact(run: RunQuery, read: ExactRead) -> list[tuple[Any, ...]]:
    """Rows ``(*out, *sizes)`` of ``read``, in ``out`` order, running its one or two queries with ``run``."""
    width = len(read.out)
    first = read.first()
    rows = run(first.sql, first.parameters)
    totals = {tuple(row[:width]): [int(n) for n in row[width:-1]] for row in rows}
    several = [key for row in rows for key in row[-1]]
    if several:
        second = read.second(several)
        for row in run(second.sql, second.parameters):
            sums = totals.setdefault(tuple(row[:width]), [0] * len(read.sizes))
            for i, n in enumerate(row[width:]):
                sums[i] += int(n)
    return [(*group, *sums) for group, sums in totals.items() if width or rows]
