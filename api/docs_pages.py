"""The interactive API docs, offline: Scalar at ``/schema`` (and ``/schema/scalar``), Swagger UI at
``/schema/swagger``, Redoc at ``/schema/redoc``, each loading its script and styles from this process.

The scripts come from pinned npm packages, copied by the dashboard's build (`web/`) into
``web/dist/docs-assets/``: ``swagger-ui/`` (swagger-ui-dist: ``swagger-ui-bundle.js``,
``swagger-ui-standalone-preset.js``, ``swagger-ui.css``), ``scalar/standalone.js`` (@scalar/api-reference's
browser bundle) and ``redoc/redoc.standalone.js`` (redoc). ``/assets/docs/…`` is looked in too, and a file of
the same name anywhere under either. The pages hold no inline script (the CSP, `api.page_headers`, forbids
it): each starts its package with a small script served here (``/schema/scalar-init.js``,
``/schema/swagger-init.js``), which reads the document's URL from a ``data-url`` attribute. Without the
build, each page says so and links to ``/schema/openapi.json``, rather than a blank page.

Litestar's own render plugins, but for the HTML they write; `docs_router` gives every ``/schema`` answer the
pages' security headers.
"""

from __future__ import annotations

import html
from typing import Any, Final

from litestar import Request, Router, get
from litestar.datastructures import ResponseHeader
from litestar.openapi.plugins import (
    OpenAPIRenderPlugin,
    RedocRenderPlugin,
    ScalarRenderPlugin,
    SwaggerRenderPlugin,
)

from api.dashboard_files import DashboardFiles
from api.page_headers import DOCS_CSP, page_headers

DOCS_DIRS: Final = ("/docs-assets/", "/assets/docs/")
SWAGGER_JS: Final = "swagger-ui/swagger-ui-bundle.js"
SWAGGER_PRESET_JS: Final = "swagger-ui/swagger-ui-standalone-preset.js"
SWAGGER_CSS: Final = "swagger-ui/swagger-ui.css"
SCALAR_JS: Final = "scalar/standalone.js"
REDOC_JS: Final = "redoc/redoc.standalone.js"
_NO_FAVICON: Final = "<link rel='icon' href='data:,'>"  # Litestar's default is an image on a CDN

# Offline: no AI agent calling Scalar's servers, no telemetry, no fonts from Scalar's CDN. The standalone
# bundle of @scalar/api-reference 1.46 still declares its fonts there; the CSP (font-src 'self' data:) keeps
# the browser from asking for them, and the page falls back to the system's fonts.
SCALAR_INIT: Final = b"""(function () {
  var target = document.getElementById("api-reference");
  window.Scalar.createApiReference(target, {
    url: target.dataset.url,
    withDefaultFonts: false,
    agent: { disabled: true },
    telemetry: false,
  });
})();
"""
SWAGGER_INIT: Final = b"""(function () {
  var target = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: target.dataset.url,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIStandalonePreset],
    plugins: [window.SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
})();
"""


def locate(files: DashboardFiles, relative: str) -> str | None:
    """The URL path of a docs asset in the build: at ``relative`` under a docs directory, else the first
    file of the same name under one; None when the build does not hold it."""
    found = files.find(*(f"{d}{relative}" for d in DOCS_DIRS))
    if found is not None:
        return found
    name = "/" + relative.rpartition("/")[2]
    return next((p for p in sorted(files.files) if p.startswith(DOCS_DIRS) and p.endswith(name)), None)


def _page(title: str, head: str, body: str) -> bytes:
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>{_NO_FAVICON}{head}</head>
<body>{body}</body>
</html>
""".encode()


def _unavailable(title: str, json_url: str, what: str) -> bytes:
    url = html.escape(json_url)
    return _page(
        title,
        "",
        f"""<main><h1>{html.escape(title)}</h1>
<p>{html.escape(what)} needs the dashboard's build, which holds its scripts (nothing is loaded from the
internet): run <code>make install</code> with Node.js 20 or newer, or
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, then restart pixelpipe.</p>
<p>The OpenAPI document itself: <a href="{url}">{url}</a>.</p></main>""",
    )


def _script(src: str, **data: str) -> str:
    attributes = "".join(f' data-{k}="{html.escape(v)}"' for k, v in data.items())
    return f'<script src="{html.escape(src)}"{attributes}></script>'


def _init_route(path: str, source: bytes) -> Any:
    @get(path, media_type="text/javascript", sync_to_thread=False, include_in_schema=False)
    def init() -> bytes:
        return source

    return init


class LocalScalar(ScalarRenderPlugin):
    def __init__(self, files: DashboardFiles) -> None:
        self.script = locate(files, SCALAR_JS)
        super().__init__(js_url=self.script or "", css_url="", path="/scalar", favicon=_NO_FAVICON)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = f"{openapi_schema['info']['title']} API"
        json_url = self.get_openapi_json_route(request)
        if self.script is None:
            return _unavailable(title, json_url, "The API reference (Scalar)")
        body = f'<div id="api-reference" data-url="{html.escape(json_url)}"></div>'
        body += _script(self.script) + _script("/schema/scalar-init.js")
        return _page(title, "", body)

    def receive_router(self, router: Router) -> None:
        router.register(_init_route("/scalar-init.js", SCALAR_INIT))


class LocalSwagger(SwaggerRenderPlugin):
    def __init__(self, files: DashboardFiles) -> None:
        self.assets = [
            locate(files, SWAGGER_JS),
            locate(files, SWAGGER_PRESET_JS),
            locate(files, SWAGGER_CSS),
        ]
        js, preset, css = (a or "" for a in self.assets)
        super().__init__(
            js_url=js, css_url=css, standalone_preset_js_url=preset, path="/swagger", favicon=_NO_FAVICON
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = f"{openapi_schema['info']['title']} API"
        json_url = self.get_openapi_json_route(request)
        if not all(self.assets):
            return _unavailable(title, json_url, "Swagger UI")
        head = f'<link rel="stylesheet" href="{html.escape(self.css_url)}">'
        body = f'<div id="swagger-ui" data-url="{html.escape(json_url)}"></div>'
        body += (
            _script(self.js_url) + _script(self.standalone_preset_js_url) + _script("/schema/swagger-init.js")
        )
        return _page(title, head, body)

    def receive_router(self, router: Router) -> None:
        # Not Swagger's OAuth2 redirect page (inline script, and no OAuth here).
        router.register(_init_route("/swagger-init.js", SWAGGER_INIT))


class LocalRedoc(RedocRenderPlugin):
    def __init__(self, files: DashboardFiles) -> None:
        self.script = locate(files, REDOC_JS)
        super().__init__(js_url=self.script or "", google_fonts=False, path="/redoc", favicon=_NO_FAVICON)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = f"{openapi_schema['info']['title']} API"
        json_url = self.get_openapi_json_route(request)
        if self.script is None:
            return _unavailable(title, json_url, "Redoc")
        # Redoc's standalone bundle starts on a <redoc spec-url> element by itself.
        return _page(title, "", f'<redoc spec-url="{html.escape(json_url)}"></redoc>{_script(self.script)}')


def render_plugins(files: DashboardFiles) -> list[OpenAPIRenderPlugin]:
    """Scalar first (so also at ``/schema``), Swagger UI, Redoc."""
    return [LocalScalar(files), LocalSwagger(files), LocalRedoc(files)]


def docs_router(path: str = "/schema") -> Router:
    """The router of ``/schema``, whose every answer carries the docs pages' security headers."""
    headers = [ResponseHeader(name=k, value=v) for k, v in page_headers(DOCS_CSP).items()]
    return Router(path, route_handlers=[], include_in_schema=False, response_headers=headers)
