"""What one client may hold of a pixelpipe HTTP server: how long a request's head may take to arrive, how
long a kept-alive connection may wait for its next request, how large a head may grow, and how many
connections the process keeps open at once.

The bounds themselves (`ConnectionBounds`) and the one piece of state a server's connections share to
enforce the last one (`ConnectionTable`); `ingest.http_protocol.BoundedHttpProtocol` applies them.

Beyond the connection cap the longest-waiting connection (one with no request in progress: it has not
finished sending its head, or it is idle between requests) is closed to make room for the new one, and the
new one is closed only when every open connection has a request in progress. A real pixel's request
arrives within a round trip of its connection, so it is never the longest waiting: it is served at once,
while the connections that hold slots without finishing a request (slowloris) are the ones that go.
Stopping to accept instead would leave a real pixel in the kernel's backlog until a header timeout frees a
slot (seconds); closing every new connection would fail the real pixels while the slow ones keep theirs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Final, Protocol


@dataclass(frozen=True, slots=True)
class ConnectionBounds:
    """``header_timeout_s``: a request's head must be complete this long after the connection opened or,
    on a kept-alive connection, after the request's first byte. ``idle_timeout_s``: a kept-alive
    connection waits this long for its next request. ``max_head_bytes``: a longer head is refused with
    431. ``max_connections``: open connections beyond it make room as the module says."""

    header_timeout_s: float = 10.0
    idle_timeout_s: float = 5.0
    max_head_bytes: int = 32 * 1024
    max_connections: int = 10_000


DEFAULT_BOUNDS: Final = ConnectionBounds()


class Evictable(Protocol):
    def evict(self) -> None:
        """Close the connection to make room for a new one."""


class ConnectionTable:
    """One server's connections as the cap sees them: how many are open (evicted ones no longer count,
    though their close completes only in the loop's next iteration), and those with no request in
    progress, longest waiting first (a dict keeps insertion order: `wait` moves a connection to the end,
    `busy` takes it out)."""

    __slots__ = ("_open", "_waiting")

    def __init__(self) -> None:
        self._open: set[Evictable] = set()
        self._waiting: dict[Evictable, None] = {}

    def admit(self, connection: Evictable, cap: int) -> bool:
        """Count ``connection`` in, evicting the longest waiting if the cap is reached; False (not counted,
        to be closed) when the cap is reached and no connection is waiting."""
        if len(self._open) >= cap:
            if not self._waiting:
                return False
            victim = next(iter(self._waiting))
            self.gone(victim)
            victim.evict()
        self._open.add(connection)
        self._waiting[connection] = None
        return True

    def wait(self, connection: Evictable) -> None:
        if connection in self._open:  # not evicted meanwhile
            waiting = self._waiting
            waiting.pop(connection, None)
            waiting[connection] = None

    def busy(self, connection: Evictable) -> None:
        self._waiting.pop(connection, None)

    def gone(self, connection: Evictable) -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)

    @property
    def open(self) -> int:
        return len(self._open)

    @property
    def waiting(self) -> int:
        return len(self._waiting)


_by_server: weakref.WeakKeyDictionary[object, ConnectionTable] = weakref.WeakKeyDictionary()


def connection_table(server_state: object) -> ConnectionTable:
    """The `ConnectionTable` of the server whose uvicorn ``ServerState`` this is."""
    found = _by_server.get(server_state)
    if found is None:
        found = _by_server[server_state] = ConnectionTable()
    return found
