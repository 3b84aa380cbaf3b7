"""The dashboard at ``/``: the built front end (`web/`) served as static files, in front of the API.

- ``GET /`` (and ``/index.html``): the dashboard's one page (client-side routes are in the URL's hash), with
  ``Cache-Control: no-cache`` and the pages' security headers (`api.page_headers`). Without a build, a small
  page saying how to make one; everything else runs as it does.
- ``/assets/…`` (hashed, cached a year), ``/docs-assets/…`` (the API docs' scripts and styles, copied from
  pinned npm packages by the build) and the build's top-level files (``/favicon.svg``, ...): the file, or a
  JSON 404 under ``/assets/`` and ``/docs-assets/``. ``/favicon.ico`` without one in the build: 204.
- GET and HEAD (no body), ``If-None-Match`` → 304; another method → 405.

Any other path goes on to the API. `answer` decides (pure, over `DashboardFiles`); `dashboard` moves bytes,
over the build as it is on disk now (`api.dashboard_files.WatchedBuild`: a rebuild is served without a
restart).
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from api.dashboard_files import REVALIDATE, DashboardFiles, StaticFile, WatchedBuild
from api.page_headers import DASHBOARD_CSP, FILE_HEADERS, page_headers

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FILE_PREFIXES: Final = ("/assets/", "/docs-assets/")
BUILD_HOWTO: Final = "make install (with Node 20+ and npm), or: cd web && npm ci && npm run build"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: StaticFile | None = None  # the body is this file's content


def not_built_page(files: DashboardFiles) -> bytes:
    """What ``/`` says when the dashboard was not built: where it was looked for and how to build it."""
    where = html.escape(str(files.root))
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pixelpipe: the dashboard is not built</title></head>
<body>
<main>
<h1>The dashboard is not built</h1>
<p>pixelpipe is running: the API, the pixels and the clicks work. The dashboard's page was not found in
<code>{where}</code>.</p>
<p>Build it with Node.js 20 or newer: run <code>make install</code> (or <code>make run</code>), or
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>; then restart pixelpipe.
<code>PIXELPIPE_DASHBOARD_DIR</code> points elsewhere when the build lives in another place.</p>
<p>Meanwhile: the API's documentation is at <a href="/schema">/schema</a>
(the document itself: <a href="/schema/openapi.json">/schema/openapi.json</a>).</p>
</main>
</body>
</html>
""".encode()


def _error(status: int, detail: str, **headers: str) -> Answer:
    body = msgspec.json.encode({"status_code": status, "detail": detail})
    return Answer(status, {"Content-Type": "application/json", **headers}, body)


def _file(file: StaticFile, if_none_match: str | None, extra: dict[str, str]) -> Answer:
    headers = {"Cache-Control": file.cache_control, "ETag": file.etag, **FILE_HEADERS, **extra}
    if if_none_match is not None and file.etag in (t.strip() for t in if_none_match.split(",")):
        return Answer(304, headers)
    return Answer(200, {"Content-Type": file.content_type, **headers}, file=file)


def answer(files: DashboardFiles, method: str, path: str, if_none_match: str | None) -> Answer | None:
    """The dashboard's answer to ``method path``, or None when the path is the API's. Pure."""
    page = path in ("/", "/index.html")
    top_level_file = path.count("/") == 1 and path in files.files
    if not (page or path.startswith(FILE_PREFIXES) or path == "/favicon.ico" or top_level_file):
        return None
    if method not in ("GET", "HEAD"):
        return _error(405, "Method Not Allowed", Allow="GET, HEAD")
    file = files.get("/index.html" if page else path)
    if file is not None:
        extra = page_headers(DASHBOARD_CSP) if file.content_type.startswith("text/html") else {}
        return _file(file, if_none_match, extra)
    if page:  # no build
        headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": REVALIDATE}
        return Answer(200, {**headers, **page_headers(DASHBOARD_CSP)}, not_built_page(files))
    if path == "/favicon.ico":  # no icon built: nothing, rather than a JSON 404 in the browser's console
        return Answer(204, {"Cache-Control": "public, max-age=86400"})
    return _error(404, "Not Found")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def dashboard(build: WatchedBuild, app: ASGIApp) -> ASGIApp:
    """``app`` with the dashboard in front of it: the build as it is on disk now (`WatchedBuild`)."""

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        method, path, etag = scope["method"], scope["path"], _header(scope, b"if-none-match")
        files = build.current()
        found = answer(files, method, path, etag)
        if found is not None and found.status == 404 and build.current(missed=True) is not files:
            found = answer(build.current(), method, path, etag)  # a file of a newer build
        if found is None:
            await app(scope, receive, send)
            return
        body = found.body
        if found.file is not None:
            try:
                body = await asyncio.to_thread(found.file.path.read_bytes)
            except OSError:  # removed since the scan
                found, body = _error(404, "Not Found"), _error(404, "Not Found").body
        headers = [(k.lower().encode(), v.encode()) for k, v in found.headers.items()]
        if found.status not in (204, 304):
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": found.status, "headers": headers})
        head = scope["method"] == "HEAD" or found.status in (204, 304)
        await send({"type": "http.response.body", "body": b"" if head else body})

    return served
