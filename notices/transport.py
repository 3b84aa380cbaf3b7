"""The webhook dispatcher's HTTP transport: httpx, connecting only to addresses the SSRF rule vetted.

A check of the URL before the request is not enough: the name could resolve to a public address for the
check and to 169.254.169.254 for the connection (DNS rebinding). So the check sits where the connection is
made: `GuardedBackend` is the httpcore network backend, which resolves the host itself, refuses the connection
when any address is not allowed (`schemas.webhook_guard`) and connects to a vetted address. TLS still verifies
the certificate of, and sends SNI for, the name in the URL (httpcore passes the URL's host to ``start_tls``),
and the pool keys connections by that name, so a kept-alive connection is always one that was vetted.

A refusal raises `BlockedTarget` out of the request (httpx passes exceptions that are not httpcore's through);
a name that does not resolve is an ordinary `httpcore.ConnectError` (retried like a refused connection).
Redirects are never followed (the client is built with ``follow_redirects=False``) and no proxy or ``.netrc``
from the environment is used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from schemas.webhook_guard import BlockedTarget, IPAddress, check_addresses, literal_address

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (TCP), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            text = str(sockaddr[0])
            if family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:
                text = f"{text.partition('%')[0]}%{sockaddr[3]}"  # keep a link-local's scope: it is refused
            addresses.append(ipaddress.ip_address(text))
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, vet every address, connect to the first vetted one that answers."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await asyncio.wait_for(self._resolver(host, port), timeout)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout} s") from None
            except OSError as exc:  # socket.gaierror: no such name, or the resolver is away
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        vetted = check_addresses(host, addresses, allow_private=self.allow_private)
        failure: Exception | None = None
        for address in vetted:  # e.g. an IPv6 address on a host without an IPv6 route, then its IPv4 one
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # noqa: S101 - check_addresses never returns an empty tuple
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedTarget("a Unix socket is never a webhook target")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """`httpx.AsyncHTTPTransport` whose connections go through a `GuardedBackend`.

    httpx has no public way to hand its connection pool a network backend, so the pool it builds is swapped
    for the same pool with ours (HTTP/1.1, the given limits, certificate verification on). The guard's tests
    make real connections through this class, so an httpx that changes the pool's attribute fails them.
    """

    def __init__(self, backend: GuardedBackend, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
