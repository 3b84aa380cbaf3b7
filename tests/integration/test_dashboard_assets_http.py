"""The dashboard's files and the API docs' pages over real HTTP, from a small build made here (tmp_path) in
place of `web/dist`: each file with its content type, caching and security headers, HEAD and conditional
requests, a JSON 404 for an unknown asset, no way out of the build (``..``, encoded, a symlink); without a
build, the page saying how to make one while the API runs; the docs' pages load only this process's files."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.integration.helpers import wait_for
from tests.serving import serving

DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; img-src 'self' data:; "
    "font-src 'self'"
)
INDEX = (
    b'<!doctype html><title>pixelpipe</title><script type="module" src="/assets/index-Ab12Cd34.js"></script>'
)
SCRIPT = b"document.title = 'pixelpipe';\n"
DOCS = {
    "swagger-ui/swagger-ui-bundle.js": b"window.SwaggerUIBundle = function () {};",
    "swagger-ui/swagger-ui-standalone-preset.js": b"window.SwaggerUIStandalonePreset = {};",
    "swagger-ui/swagger-ui.css": b".swagger-ui {}",
    "scalar/standalone.js": b"window.Scalar = {};",
    "redoc/redoc.standalone.js": b"window.Redoc = {};",
}
DOCS_PAGES = ["/schema", "/schema/scalar", "/schema/swagger", "/schema/redoc"]


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    """A build as `web/`'s makes it, small: index.html, hashed assets, the docs' packages, a top-level icon;
    and next to it a file that must never be served, reachable by a symlink from inside."""
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "assets" / "index-Ab12Cd34.js").write_bytes(SCRIPT)
    (root / "assets" / "index-Ef56Gh78.css").write_bytes(b"body { margin: 0 }")
    (root / "assets" / "logo-Zz99.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "assets" / "inter-Qq11.woff2").write_bytes(b"wOF2")
    (root / "favicon.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / ".env").write_bytes(b"SECRET=dotfile")
    for relative, content in DOCS.items():
        (root / "docs-assets" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs-assets" / relative).write_bytes(content)
    (tmp_path / "secret.txt").write_bytes(b"TOP SECRET")
    (root / "assets" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    return root


@contextlib.contextmanager
def api_process(env: dict[str, str], dashboard_dir: Path) -> Iterator[str]:
    settings = settings_mod.load({**env, "PIXELPIPE_DASHBOARD_DIR": str(dashboard_dir)})
    app, _ = build_app(build_components(settings, frozenset({"api"})))
    with serving(app) as base:
        yield base


@pytest.fixture
def built(env: dict[str, str], dist: Path) -> Iterator[httpx.Client]:
    with api_process(env, dist) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (httpx would normalise ``..``); the status and the whole answer."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def test_the_page_is_served_fresh_with_its_security_headers(built: httpx.Client) -> None:
    for path in ("/", "/index.html"):
        r = built.get(path)
        assert r.status_code == 200
        assert r.content == INDEX
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["content-security-policy"] == DASHBOARD_CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["content-length"] == str(len(INDEX))
    etag = built.get("/").headers["etag"]
    head = built.head("/")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(INDEX))
    assert head.headers["etag"] == etag
    again = built.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    posted = built.post("/")
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET, HEAD"


def test_assets_have_their_types_and_caching(built: httpx.Client) -> None:
    immutable = "public, max-age=31536000, immutable"
    expected = {
        "/assets/index-Ab12Cd34.js": ("text/javascript; charset=utf-8", immutable),
        "/assets/index-Ef56Gh78.css": ("text/css; charset=utf-8", immutable),
        "/assets/logo-Zz99.svg": ("image/svg+xml", immutable),
        "/assets/inter-Qq11.woff2": ("font/woff2", immutable),
        "/docs-assets/swagger-ui/swagger-ui-bundle.js": ("text/javascript; charset=utf-8", "no-cache"),
        "/docs-assets/swagger-ui/swagger-ui.css": ("text/css; charset=utf-8", "no-cache"),
        "/favicon.svg": ("image/svg+xml", "no-cache"),
    }
    for path, (content_type, cache) in expected.items():
        r = built.get(path)
        assert r.status_code == 200, path
        assert (r.headers["content-type"], r.headers["cache-control"]) == (content_type, cache), path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in r.headers  # a page's header, not a script's
    assert built.get("/assets/index-Ab12Cd34.js").content == SCRIPT
    head = built.head("/assets/index-Ab12Cd34.js")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(SCRIPT)))

    for missing in ("/assets/index-00000000.js", "/docs-assets/nope.js", "/assets/"):
        r = built.get(missing)
        assert r.status_code == 404, missing
        assert r.json() == {"status_code": 404, "detail": "Not Found"}
    favicon = built.get("/favicon.ico")  # none in this build: nothing, not a JSON 404
    assert favicon.status_code == 204
    assert favicon.content == b""

    # The API is behind it, as it was.
    assert built.get("/healthz").json() == {"status": "ok"}
    assert built.get("/v1/campaigns", headers={"Authorization": "Bearer acme-key-123"}).status_code == 200
    assert built.get("/nowhere").status_code == 404


def test_nothing_outside_the_build_is_reachable(built: httpx.Client) -> None:
    base = str(built.base_url).rstrip("/")
    for target in (
        "/assets/../../secret.txt",
        "/assets/../index.html",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/docs-assets/../../secret.txt",
        "/assets/leak.txt",  # a symlink out of the build
        "/assets//etc/passwd",
        "/.env",
        "/assets/%00.js",
    ):
        status, answer = raw_get(base, target)
        assert status in (400, 404), target
        assert b"TOP SECRET" not in answer
        assert b"SECRET=dotfile" not in answer
        assert b"root:" not in answer


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|data-url|spec-url)=["']([^"']+)["']""", html)


def test_the_docs_pages_load_only_this_process_files(built: httpx.Client) -> None:
    for page in DOCS_PAGES:
        r = built.get(page)
        assert r.status_code == 200, page
        assert r.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self';")
        assert r.headers["x-frame-options"] == "DENY"
        assert "<script>" not in r.text  # no inline script: each page starts its package from a file
        assert not re.search(r"https?://", r.text), page
        references = _references(r.text)
        assert "/schema/openapi.json" in references, page
        for url in references:
            assert url.startswith(("/", "data:")), url
            if url.startswith("/"):
                assert built.get(url).status_code == 200, url
    assert _references(built.get("/schema/swagger").text) == [
        "data:,",
        "/docs-assets/swagger-ui/swagger-ui.css",
        "/schema/openapi.json",
        "/docs-assets/swagger-ui/swagger-ui-bundle.js",
        "/docs-assets/swagger-ui/swagger-ui-standalone-preset.js",
        "/schema/swagger-init.js",
    ]
    assert _references(built.get("/schema").text) == [
        "data:,",
        "/schema/openapi.json",
        "/docs-assets/scalar/standalone.js",
        "/schema/scalar-init.js",
    ]
    init = built.get("/schema/scalar-init.js")
    assert init.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "createApiReference" in init.text


def test_without_a_build_the_page_says_how_to_make_one(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "no-build"
    empty.mkdir()
    with api_process(env, empty) as base, httpx.Client(base_url=base, timeout=10) as client:
        r = client.get("/")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["content-security-policy"] == DASHBOARD_CSP
        assert "The dashboard is not built" in r.text
        assert "make install" in r.text
        assert "cd web &amp;&amp; npm ci &amp;&amp; npm run build" in r.text
        assert "Node.js 20" in r.text
        assert str(empty) in r.text
        assert client.head("/").content == b""
        assert client.get("/assets/index-Ab12Cd34.js").status_code == 404
        # The API docs say the same, with a link to the document rather than a blank page.
        for page in DOCS_PAGES:
            docs = client.get(page)
            assert docs.status_code == 200
            assert "<script" not in docs.text
            assert not re.search(r"https?://", docs.text)
            assert '<a href="/schema/openapi.json">' in docs.text
        assert client.get("/schema/openapi.json").json()["info"]["title"] == "pixelpipe"
        # Everything else runs.
        registered = client.post(
            "/v1/messages",
            json={"campaign_id": "c", "recipient": "a@example.com", "message_id": "m1"},
            headers={"Authorization": "Bearer acme-key-123"},
        )
        assert registered.status_code == 201


def test_a_process_without_the_api_role_serves_no_dashboard(env: dict[str, str], dist: Path) -> None:
    settings = settings_mod.load({**env, "PIXELPIPE_DASHBOARD_DIR": str(dist)})
    app, _ = build_app(build_components(settings, frozenset({"edge", "process"})))
    with serving(app) as base:
        assert httpx.get(f"{base}/", timeout=10).status_code == 404
        assert httpx.get(f"{base}/assets/index-Ab12Cd34.js", timeout=10).status_code == 404


def test_a_rebuild_is_served_without_a_restart(env: dict[str, str], dist: Path) -> None:
    """`make install` while pixelpipe runs: the new page and its new hashed assets are served within a
    second or so (the build is looked at again at most once a second), the old assets are gone."""
    with api_process(env, dist) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/").content == INDEX
        new_index = INDEX.replace(b"index-Ab12Cd34.js", b"index-Zx98Wv76.js")
        (dist / "assets" / "index-Ab12Cd34.js").unlink()
        (dist / "assets" / "index-Zx98Wv76.js").write_bytes(b"document.title = 'rebuilt';\n")
        (dist / "index.html").write_bytes(new_index + b"<!-- rebuilt -->")
        wait_for(lambda: client.get("/").content, lambda page: page.endswith(b"<!-- rebuilt -->"), 10)
        assert client.get("/assets/index-Zx98Wv76.js").text == "document.title = 'rebuilt';\n"
        assert client.get("/assets/index-Ab12Cd34.js").status_code == 404
