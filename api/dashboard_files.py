"""The dashboard's build on disk (``web/dist``, written by ``make install`` with Node, `web/`): which files
there are, under which URL path, with which content type, validator and caching.

`DashboardFiles.scan` lists the build: only a file it listed is ever served, by its exact URL path, so no
path a client writes (``..``, ``%2e%2e``, a symlink out of the build) reaches anything else. A rebuild
(``make install`` while pixelpipe runs) is served without a restart: `WatchedBuild` lists it again when its
``index.html`` changed, or when a file was asked for that the listing lacks (a build still being written),
looking at most once a second.

Caching: ``/assets/…`` are Vite's content-hashed names (a new build, new names): cached for a year,
``immutable``. Everything else (``index.html``, the API docs' copied assets under ``/docs-assets/…``, files at
the top) keeps its name across builds: ``no-cache`` (revalidated by ``ETag``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

INDEX: Final = "index.html"
HASHED_DIR: Final = "assets"
_UNHASHED: Final = f"{HASHED_DIR}/docs/"  # the docs' packages, should a build copy them there: same names
MAX_FILES: Final = 20_000
IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"

# The types of what a Vite build and the docs' packages hold; `mimetypes` depends on the host's tables.
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".pbf": "application/x-protobuf",
    ".geojson": "application/geo+json",
    ".topojson": "application/json",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: Path
    content_type: str
    cache_control: str
    etag: str
    size: int


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


def _etag(stat: os.stat_result) -> str:
    # Size and modification time: what changes when a build rewrites a file, without reading it.
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    return f'"{digest}"'


@dataclass(frozen=True, slots=True)
class DashboardFiles:
    """The files of a build by URL path (``/index.html``, ``/assets/index-3f2a.js``, ...). ``root`` is where
    the build was looked for; ``files`` is empty when there is none."""

    root: Path
    files: dict[str, StaticFile]

    @property
    def built(self) -> bool:
        return f"/{INDEX}" in self.files

    def get(self, url_path: str) -> StaticFile | None:
        return self.files.get(url_path)

    def find(self, *candidates: str) -> str | None:
        """The first of ``candidates`` (URL paths) the build holds."""
        return next((c for c in candidates if c in self.files), None)

    @classmethod
    def scan(cls, root: Path) -> DashboardFiles:
        """The regular files under ``root`` (none when it does not exist), skipping dot files and anything
        that resolves outside ``root``."""
        files: dict[str, StaticFile] = {}
        try:
            base = root.resolve(strict=True)
        except OSError:
            return cls(root, files)
        for directory, dirs, names in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith(".") or len(files) >= MAX_FILES:
                    continue
                path = Path(directory, name)
                try:
                    real = path.resolve(strict=True)
                    relative = real.relative_to(base).as_posix()
                    stat = real.stat()
                except (OSError, ValueError):  # vanished, or a link out of the build
                    continue
                if not path.is_file() or relative != path.relative_to(base).as_posix():
                    continue
                hashed = relative.startswith(f"{HASHED_DIR}/") and not relative.startswith(_UNHASHED)
                cache = IMMUTABLE if hashed else REVALIDATE
                files[f"/{relative}"] = StaticFile(real, content_type(name), cache, _etag(stat), stat.st_size)
        return cls(root, files)


def _index_mark(root: Path) -> tuple[int, int] | None:
    """What changes when a build rewrites its page: ``index.html``'s modification time and size."""
    try:
        stat = (root / INDEX).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class WatchedBuild:
    """The build at ``root`` as last listed, listed again (`DashboardFiles.scan`) when its ``index.html`` has
    changed (looked at every ``every_s`` seconds, and at once when a request ``missed`` a file: the page may
    be new), or when a file was missed and ``every_s`` has passed (a file the build wrote after its page): a
    stat of one file, a listing of a few dozen files per rebuild and at most one a second."""

    def __init__(
        self, first: DashboardFiles, *, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s = every_s
        self._clock = clock
        self._files = first
        self._mark = _index_mark(first.root)
        self._looked = clock()
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self._files.root

    def current(self, *, missed: bool = False) -> DashboardFiles:
        """The files to serve now; ``missed``: a file was asked for that the current listing lacks."""
        now = self._clock()
        due = now - self._looked >= self.every_s
        if not (due or missed):
            return self._files
        with self._lock:
            mark = _index_mark(self._files.root)  # a miss looks at once: the page may be new
            if mark != self._mark or (missed and due):
                self._files = DashboardFiles.scan(self._files.root)
            if due or mark != self._mark:
                self._looked = now
            self._mark = mark
        return self._files
