"""The dashboard's build on disk and what `/` answers from it, pure: which files are listed (never a dot
file or a symlink out of the build), their types and caching, and the answer to each path."""

from __future__ import annotations

from pathlib import Path

from api.dashboard import answer
from api.dashboard_files import IMMUTABLE, REVALIDATE, DashboardFiles, WatchedBuild, content_type
from api.docs_pages import SWAGGER_JS, locate


def build(root: Path) -> DashboardFiles:
    (root / "assets" / "docs" / "swagger-ui").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html>")
    (root / "assets" / "index-Ab12.js").write_text("1")
    (root / "assets" / "docs" / "swagger-ui" / "swagger-ui-bundle.js").write_text("2")
    (root / ".secret").write_text("3")
    (root.parent / "outside.txt").write_text("4")
    (root / "link.txt").symlink_to(root.parent / "outside.txt")
    (root / "inside.js").symlink_to(root / "assets" / "index-Ab12.js")  # inside, but under another name
    return DashboardFiles.scan(root)


def test_the_scan_lists_the_builds_own_files_only(tmp_path: Path) -> None:
    files = build(tmp_path / "dist")
    assert sorted(files.files) == [
        "/assets/docs/swagger-ui/swagger-ui-bundle.js",
        "/assets/index-Ab12.js",
        "/index.html",
    ]
    assert files.built
    assert files.files["/assets/index-Ab12.js"].cache_control == IMMUTABLE
    assert files.files["/assets/docs/swagger-ui/swagger-ui-bundle.js"].cache_control == REVALIDATE  # unhashed
    assert files.files["/index.html"].cache_control == REVALIDATE
    assert locate(files, SWAGGER_JS) == "/assets/docs/swagger-ui/swagger-ui-bundle.js"
    assert not DashboardFiles.scan(tmp_path / "nowhere").built


def test_content_types() -> None:
    assert content_type("a.JS") == "text/javascript; charset=utf-8"
    assert content_type("a.woff2") == "font/woff2"
    assert content_type("a.map") == "application/json"
    assert content_type("a.unknown") == "application/octet-stream"


def test_the_answer_to_each_path(tmp_path: Path) -> None:
    files = build(tmp_path / "dist")
    index = answer(files, "GET", "/", None)
    assert index is not None
    assert index.status == 200
    assert index.file == files.files["/index.html"]
    assert index.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self';")
    etag = files.files["/index.html"].etag
    assert answer(files, "HEAD", "/index.html", f'"x", {etag}') == answer(files, "GET", "/", etag)
    assert answer(files, "GET", "/", etag).status == 304  # type: ignore[union-attr]
    assert answer(files, "DELETE", "/", None).status == 405  # type: ignore[union-attr]
    assert answer(files, "GET", "/assets/nope.js", None).status == 404  # type: ignore[union-attr]
    assert answer(files, "GET", "/assets/../index.html", None).status == 404  # type: ignore[union-attr]
    assert answer(files, "GET", "/favicon.ico", None).status == 204  # type: ignore[union-attr]
    for api_path in ("/v1/campaigns", "/schema", "/healthz", "/o/x.gif", "/session", "/link.txt", "/.secret"):
        assert answer(files, "GET", api_path, None) is None, api_path
    empty = DashboardFiles.scan(tmp_path / "nowhere")
    not_built = answer(empty, "GET", "/", None)
    assert not_built is not None
    assert not_built.status == 200
    assert b"The dashboard is not built" in not_built.body


def test_a_rebuild_is_listed_again_once_its_page_changed_or_a_file_was_missed(tmp_path: Path) -> None:
    root = tmp_path / "dist"
    root.mkdir()
    now = [100.0]
    watched = WatchedBuild(DashboardFiles.scan(root), every_s=1.0, clock=lambda: now[0])
    assert not watched.current().built  # no build yet
    (root / "assets").mkdir()
    (root / "assets" / "index-Ab12.js").write_text("1")
    (root / "index.html").write_text("<script src=/assets/index-Ab12.js>")
    assert not watched.current().built  # looked less than a second ago
    now[0] += 1.0
    assert sorted(watched.current().files) == ["/assets/index-Ab12.js", "/index.html"]
    # A file written after the page (the build's last step), asked for: listed on the next look.
    (root / "docs-assets").mkdir()
    (root / "docs-assets" / "redoc.js").write_text("2")
    now[0] += 1.0
    assert "/docs-assets/redoc.js" not in watched.current().files  # the page is the same: not listed again
    now[0] += 1.0
    assert "/docs-assets/redoc.js" in watched.current(missed=True).files
    # A new build: new hashed names, a new page (another size); the old names are gone.
    (root / "assets" / "index-Ab12.js").unlink()
    (root / "assets" / "index-Cd34.js").write_text("3")
    (root / "index.html").write_text("<script src=/assets/index-Cd34.js></script>")
    now[0] += 1.0
    rebuilt = sorted(watched.current().files)
    assert rebuilt == ["/assets/index-Cd34.js", "/docs-assets/redoc.js", "/index.html"]
