"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar, Request, Response, post

from tests.serving import serving


@pytest.fixture
def failing_receiver() -> Iterator[tuple[list[bytes], str]]:
    """A webhook endpoint that always answers 500: deliveries to it stay pending in the outbox."""
    bodies: list[bytes] = []

    @post("/hook", status_code=500)
    async def hook(request: Request[Any, Any, Any]) -> Response[None]:
        bodies.append(await request.body())
        return Response(None, status_code=500)

    with serving(Litestar(route_handlers=[hook])) as base:
        yield bodies, f"{base}/hook"
