"""The ``pixelpipe`` command: ``serve`` (all roles in one process), and the roles ``edge``, ``process``,
``api``; ``loadgen`` and ``ranges refresh`` (the cloud platforms' address lists) beside them.

Settings come from the environment (`pixelpipe.settings`); a malformed one stops start-up with one line that
names the variable, exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

import uvicorn

from ingest.http_protocol import BoundedHttpProtocol, EdgeHttpProtocol, bounded
from pixelpipe import limits
from pixelpipe import settings as settings_mod
from pixelpipe.app import RoleError, build_app, build_components, parse_roles
from pixelpipe.loadgen import loadgen_argparser, loadgen_main
from pixelpipe.ranges_command import ranges_argparser, ranges_main
from schemas.store import StoreError

log = logging.getLogger("pixelpipe")


# --help is read in a terminal: plain text, no markup (the module docstring is for readers of the code).
_DESCRIPTION = """\
Email open and click tracking. "serve" runs everything in one process; "edge",
"process" and "api" are the roles of a distributed deployment (Kafka and a
ClickHouse server)."""
_EPILOG = """\
Settings are environment variables; the first ones to know:
  PIXELPIPE_PUBLIC_URL       base URL of pixel and click links: where a
                             reader's mail client reaches the edge
  PIXELPIPE_SECRET           key that signs tracking tokens
                             (default: generated, kept in the data dir)
  PIXELPIPE_API_KEYS         account=key,account2=key2
                             (default: a demo key, kept in the data dir)
  PIXELPIPE_DATA_DIR         embedded state (default: ./data)
  PIXELPIPE_KAFKA_BOOTSTRAP  Kafka servers (default: an in-process bus)
  PIXELPIPE_CLICKHOUSE_URL   http(s)://user:pass@host:8123/db
                             (default: embedded ClickHouse in the data dir)
README.md lists every setting. A malformed one stops start-up with one line
naming it (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelpipe",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run roles in one process (default: all of them, embedded bus and ClickHouse)"),
        ("edge", "answer pixels and clicks and publish hits to Kafka"),
        ("process", "consume hits from Kafka, classify them and load ClickHouse"),
        ("api", "answer the stats API from ClickHouse"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
        cmd.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
        cmd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        if name == "serve":
            cmd.add_argument("--roles", default="edge,process,api", help="any of edge,process,api")
    loadgen_argparser(sub)
    ranges_argparser(sub)
    return parser


def _banner(s: settings_mod.Settings, roles: frozenset[str], host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    lines = [f"pixelpipe: roles {','.join(sorted(roles))} on {base}"]
    if "edge" in roles:
        lines += [f"  pixel   {s.public_url}/o/<token>.gif", f"  click   {s.public_url}/c/<token>"]
    if "api" in roles:
        lines += [f"  API     {base}/v1   docs {base}/schema   OpenAPI {base}/schema/openapi.json"]
        if (s.dashboard_dir / "index.html").is_file():
            lines.append(f"  dashboard {base}/  (sign in with an API key)")
        else:  # as the native fast path without cargo: everything else runs
            lines.append(
                f"  dashboard not built ({s.dashboard_dir}): make install with Node 20+, then restart"
            )
        if s.api_keys_generated:
            (key, account), *_ = s.api_keys.items()
            lines.append(
                f"  API key (account {account}, generated and kept in {s.data_dir / 'api_keys'}; "
                f"set PIXELPIPE_API_KEYS to choose): {key}"
            )
    lines += [
        f"  health  {base}/healthz  {base}/readyz  {base}/metrics",
        f"  bus     {'kafka ' + s.kafka_bootstrap if s.kafka_bootstrap else 'in-process'}",
    ]
    if roles & {"process", "api"}:  # an edge alone opens no store: naming one would only mislead
        lines.append(f"  store   {s.store.redacted}")
    return "\n".join(lines)


def public_url_warning(s: settings_mod.Settings, roles: frozenset[str]) -> str | None:
    """What to tell a user whose pixel and click links will not work in an email; None when
    PIXELPIPE_PUBLIC_URL was chosen. The API makes the links (an edge only answers them), so only a process
    with the API role warns."""
    if s.public_url_given or "api" not in roles:
        return None
    if "edge" not in roles:
        return (
            f"PIXELPIPE_PUBLIC_URL is not set: pixel and click links point at this API process "
            f"({s.public_url}), which does not answer them; set it to the edges (or their load balancer)"
        )
    why = settings_mod.unreachable_from_a_mail_client(s.public_url)
    if why is None:
        return None
    return (
        f"PIXELPIPE_PUBLIC_URL is not set: pixel and click links point at {s.public_url}, and {why}, so they "
        f"will not work in an email; set PIXELPIPE_PUBLIC_URL to the address readers reach (fine for trying "
        f"pixelpipe on this machine)"
    )


class _OncePer:
    """Lets one aiokafka record of each message template through per ``seconds``: aiokafka logs a
    connection error every 100 ms while a broker is away, which would bury everything else."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka"):
            return True
        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, -self.seconds) < self.seconds:
            return False
        self._last[key] = now
        return True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "loadgen":
        return loadgen_main(args)
    if args.command == "ranges":
        return ranges_main(args)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_OncePer(10.0))
    limits.raise_open_file_limit()  # before settings: the connection cap is derived from it
    try:
        roles = parse_roles(args.roles) if args.command == "serve" else frozenset({args.command})
        settings = settings_mod.load(host=args.host, port=args.port)
    except (settings_mod.SettingsError, RoleError) as exc:
        print(f"pixelpipe: {exc}", file=sys.stderr)
        return 2
    if settings.secret_generated:
        log.warning(
            "PIXELPIPE_SECRET is not set: signing with a generated key kept in %s/secret", settings.data_dir
        )
    if settings.webhook_allow_private:
        log.warning("PIXELPIPE_WEBHOOK_ALLOW_PRIVATE is on: webhooks may call loopback and private addresses")
    unreachable = public_url_warning(settings, roles)
    if unreachable is not None:
        log.warning("%s", unreachable)
    try:
        components = build_components(settings, roles)
    except (settings_mod.SettingsError, RoleError) as exc:  # a setting only the roles asked for need
        print(f"pixelpipe: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"pixelpipe: PIXELPIPE_CLICKHOUSE_URL: cannot open the store: {exc}", file=sys.stderr)
        return 1
    app, _ = build_app(components)
    print(_banner(settings, roles, args.host, args.port), flush=True)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="auto",
        # The edge's protocol writes a pixel's head and body in one system call (ingest.http_protocol);
        # every role's connections are held to the same bounds (header and idle timeouts, head size, cap).
        http=bounded(
            EdgeHttpProtocol if "edge" in roles else BoundedHttpProtocol, settings.connection_bounds
        ),
        lifespan="on",
        access_log=False,
        log_level=args.log_level,
        timeout_graceful_shutdown=8,
        server_header=False,
        # The edge reads X-Forwarded-For itself, only from PIXELPIPE_TRUSTED_PROXIES; uvicorn must not
        # rewrite the client address from it first (by default it believes 127.0.0.1).
        proxy_headers=False,
    )
    tune_gc()
    # Open /v1/live streams would hold uvicorn's graceful shutdown for its whole timeout: end them first; the
    # read-time holders end their held pixels as the server ends its own.
    _Server(config, on_exit=components.stop_soon).run()
    return 0


# Collect the youngest generation every 50,000 net allocations instead of 700: a hit allocates a few dozen
# container objects, nearly all freed by reference counting, while each collection walks everything young
# that is still alive, so fewer collections do less work in total. Fewer young collections also mean far
# fewer full ones, which walk the processor's long-lived caches (message facts, user agents, live rings):
# at 10k hits/s the collector took a quarter of the core's busy samples, about 5 % after (BENCHMARKS.md).
_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """For every role's hot path: move what start-up allocated (modules, the apps, settings) out of the
    collector's sight with `gc.freeze`, so no collection walks it again, and collect less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(_GEN0_THRESHOLD, gen1, gen2)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process dies of the signal. A
    drained, clean stop is a success here: exit 0."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._on_exit is not None:
            self._on_exit()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


if __name__ == "__main__":
    sys.exit(main())
