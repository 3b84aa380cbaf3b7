"""Fixtures of the dashboard's real-browser tests: Debian's Chromium driven by Playwright (one browser per
session, a fresh context per test), the dashboard built once (`web/dist`), and one served pixelpipe per
module (edge, processors and API in one process, real chDB) with data made through the public API.

Nothing is downloaded: Playwright's own browsers are never installed (`playwright install` is not run);
Chromium is the system's (`/usr/bin/chromium`, or PIXELPIPE_TEST_CHROMIUM), installed by `make test`'s
set-up with apt-get when missing. What is missing fails the test under CI=true, naming the command that
installs it, and skips it otherwise (as the Kafka tests do)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.browser import dataset
from tests.conftest import DATA
from tests.integration.helpers import embedded_env
from tests.serving import serving

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
DIST = WEB / "dist"
CHROMIUM = "/usr/bin/chromium"
INSTALL_CHROMIUM = "apt-get install -y chromium"
BUILD_DASHBOARD = "cd web && npm ci && npm run build"


def required(what: str, command: str) -> NoReturn:
    """The browser tests never skip in CI: a missing browser or build there is a broken set-up."""
    message = f"{what}; install it with: {command}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests are required under CI=true: {message}", pytrace=False)
    pytest.skip(message)


def chromium_executable() -> str:
    """Debian's Chromium (or PIXELPIPE_TEST_CHROMIUM's); a missing one fails under CI=true, else skips."""
    executable = os.environ.get("PIXELPIPE_TEST_CHROMIUM") or CHROMIUM
    if not (Path(executable).is_file() and os.access(executable, os.X_OK)):
        required(f"Chromium is not installed at {executable}", INSTALL_CHROMIUM)
    return executable


def artifacts_dir() -> Path:
    """Where the tests write what a person looks at afterwards (screenshots); gitignored."""
    return Path(os.environ.get("PIXELPIPE_TEST_ARTIFACTS") or ROOT / "artifacts")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    path = artifacts_dir() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def dashboard_dist() -> Path:
    """The built dashboard; built here once (scripts/dashboard.sh: `npm ci && npm run build`) when
    `make install` did not."""
    if not (DIST / "index.html").is_file():
        if shutil.which("npm") is None:
            required("the dashboard is not built (web/dist) and npm is not installed", BUILD_DASHBOARD)
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "dashboard.sh")], capture_output=True, text=True, check=False
        )
        if not (DIST / "index.html").is_file():
            said = (done.stdout + done.stderr).strip()
            required(f"the dashboard could not be built: {said}", BUILD_DASHBOARD)
    return DIST


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium for the session: Debian's, never one Playwright downloads."""
    executable = chromium_executable()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        required("the playwright Python package is missing", "make install")
    # Chromium's sandbox needs an unprivileged user namespace, which root in a container does not get.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass(frozen=True)
class Served:
    """A running pixelpipe with the dashboard and the test data: its base URL and an HTTP client on it."""

    base: str
    client: httpx.Client
    data: dataset.Dataset

    def http(self, **settings: Any) -> httpx.AsyncClient:
        """A client of the served app, for the async tests (``cookies=``, ``headers=``...)."""
        return httpx.AsyncClient(base_url=self.base, timeout=10, **settings)

    async def api(self, path: str, **params: Any) -> Any:
        """What the API answers acme's bearer key at ``path``: the JSON the page must agree with."""
        async with self.http(headers=dataset.ACME) as client:
            r = await client.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()


def served_env(data_dir: Path, chdb_path: Path, dashboard_dist: Path) -> dict[str, str]:
    """The environment of a served pixelpipe of the browser tests: acme's and globex's keys, the ASN test
    DB, the loopback as a trusted proxy (the tests' pixels say where they come from), the dashboard build."""
    return embedded_env(
        data_dir,
        chdb_path,
        PIXELPIPE_API_KEYS=f"acme={dataset.ACME_KEY},globex={dataset.GLOBEX_KEY}",
        PIXELPIPE_GEOIP_ASN_DB=str(DATA / "GeoLite2-ASN-Test.mmdb"),
        PIXELPIPE_TRUSTED_PROXIES="127.0.0.0/8,::1/128",
        PIXELPIPE_DASHBOARD_DIR=str(dashboard_dist),
    )


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, chdb_path: Path, dashboard_dist: Path
) -> Iterator[Served]:
    """`pixelpipe serve` (edge, processors and API) as its CLI builds it, on a real socket, with one
    module's data; the dashboard is served from ``dashboard_dist``."""
    env = served_env(tmp_path_factory.mktemp("data"), chdb_path, dashboard_dist)
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield Served(base, client, dataset.make(client))
        assert components.store is not None
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


@pytest.fixture
async def page(browser: Any, served: Served) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies, no storage) and a page in it, at a desktop size."""
    context = await browser.new_context(base_url=served.base, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    opened = await context.new_page()
    try:
        yield opened
    finally:
        await context.close()
