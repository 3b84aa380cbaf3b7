"""The tracking preferences page at an edge without the API role (issue 19).

Preferences links are made under the pixel links' base URL (``PIXELPIPE_PUBLIC_URL``, or the account's
branded tracking domain, a CNAME to the edges), so a reader's browser brings ``/p/{token}`` to an edge. The
page reads and writes the store, which an edge alone does not open: it redirects (``307``: a POST stays a
POST, with its body) to the same path under ``PIXELPIPE_API_PUBLIC_URL``, where an API process answers it
(`api.preferences`). Without that setting it answers ``503`` with a short page saying so. A process with the
API role serves the page itself and never takes this route. Nothing is verified or recorded here.
"""

from __future__ import annotations

import re
from typing import Final

from litestar import HttpMethod, Response, route
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{1,4096}")  # base64url: safe in a Location header as it is
_HEADERS: Final = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
_NOT_SERVED: Final = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Unavailable</title></head>'
    "<body><h1>Unavailable</h1><p>Tracking preferences cannot be changed here right now. Try the link again "
    "later.</p></body></html>"
)
_NOT_FOUND: Final = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Link not found</title></head>'
    "<body><h1>Link not found</h1><p>This link is not valid.</p></body></html>"
)


def preferences_redirect(api_public_url: str) -> HTTPRouteHandler:
    """The edge's route for ``/p/{token}``: a redirect to ``api_public_url`` ("" : 503)."""

    @route(
        "/p/{token:str}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD, HttpMethod.POST],
        include_in_schema=False,
        media_type=MediaType.HTML,
    )
    async def redirect_preferences(token: FromPath[str]) -> Response[str]:
        if not _TOKEN.fullmatch(token):
            return Response(_NOT_FOUND, status_code=404, media_type=MediaType.HTML, headers=_HEADERS)
        if not api_public_url:
            return Response(_NOT_SERVED, status_code=503, media_type=MediaType.HTML, headers=_HEADERS)
        location = {"Location": f"{api_public_url}/p/{token}"}
        return Response("", status_code=307, media_type=MediaType.HTML, headers={**_HEADERS, **location})

    return redirect_preferences
