"""One settings object, read from the environment in one place, frozen, with secrets kept out of reprs.

A malformed value raises `SettingsError`, whose message starts with the variable's name; the CLI prints it
as one line and exits 2 before anything starts.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlparse

from ingest.connection_bounds import ConnectionBounds
from pixelpipe import limits
from schemas.errors import PixelpipeError
from schemas.store import StoreTarget, parse_store_url
from schemas.tokens import Keyring
from schemas.topics import TopicRetention

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IpStorage = Literal["truncate", "drop", "full"]
# The edge's native fast path (ingest.native's own `NativeEdge`): only the choice is read here; whether its
# module is installed is asked where the edge is built (`pixelpipe.app`): settings import no stage's runtime.
NativeEdge = Literal["auto", "on", "off"]
NATIVE_EDGE_CHOICES: Final = ("auto", "on", "off")


# The dashboard's build, `make install` writes it (web/dist, next to this package in a checkout).
DEFAULT_DASHBOARD_DIR: Final = Path(__file__).resolve().parents[1] / "web" / "dist"
MAX_SESSION_HOURS: Final = 720


class SettingsError(PixelpipeError, ValueError):
    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    keyring: Keyring = field(repr=False)
    api_keys: Mapping[str, str] = field(repr=False)  # bearer key -> account
    public_url: str
    trusted_proxies: tuple[Network, ...]
    data_dir: Path
    kafka_bootstrap: str | None
    store: StoreTarget
    geoip_city_db: Path | None
    geoip_asn_db: Path | None
    ip_storage: IpStorage = "truncate"
    click_window_ms: int = 1500
    replay_flood_limit: int = 10  # counted hits of one pixel or link from one network per window; 0: off
    replay_flood_window_s: int = 60
    flush_interval_ms: int = 250
    bus_capacity: int = 100_000
    topic_prefix: str = ""
    consumer_group: str = "pixelpipe-processors"
    retention_days: int = 396  # sends and counted events: 13 months
    filtered_retention_days: int = 90
    webhook_allow_private: bool = False  # development only: webhooks may call loopback and private addresses
    native_edge: NativeEdge = "auto"  # the edge's native fast path for pixels (ingest.native)
    # What one client may hold of the HTTP server (ingest.connection_bounds), every role.
    header_timeout_ms: int = 10_000
    idle_timeout_ms: int = 5_000
    max_head_bytes: int = 32_768
    max_connections: int = 10_000
    fd_reserve: int = 1_024  # file descriptors kept free of connections, for the store, the bus, the spool
    delivery_max_body_bytes: int = 25 * 1024 * 1024  # the delivery ingest's body limit (deliveries.ingest)
    # Read time (ingest.read_time): how long a timed open's pixel is held at most, and how many at once.
    read_time_cap_s: int = 25
    read_time_max_held: int = 5_000
    read_time_holders: int = 1  # processes that write held pixels' frames (ingest.holder_link); 0: the edge
    read_time_holder_cpus: frozenset[int] = frozenset()  # where the holders run; empty: where the edge may
    secret_generated: bool = False
    api_keys_generated: bool = False
    public_url_given: bool = False  # PIXELPIPE_PUBLIC_URL was set (else http://HOST:PORT of this process)
    kafka_retention: TopicRetention = field(default_factory=TopicRetention)  # hours each topic keeps a hit
    session_seconds: int = 12 * 3600  # PIXELPIPE_SESSION_HOURS: how long a dashboard sign-in lasts
    dashboard_dir: Path = DEFAULT_DASHBOARD_DIR  # the dashboard's build (api.dashboard_files)
    # Reports kept ready per account at start, and refreshed while asked (api.report_warmer); 0: none.
    report_warm_campaigns: int = 5
    # Where readers' browsers reach an API process: an edge without the API role redirects the tracking
    # preferences page (`/p/…`, issue 19) there ("": it answers that the page is not served here).
    api_public_url: str = ""
    # Reminders (issue 20, `notices.reminders`): the shortest `remind_if_unopened_after` a registration may
    # ask (60 s; lower only for tests and demos), how often the scheduler looks, and how long after a
    # reminder's due time it decides (the hits received before then are stored by then).
    reminder_min_after_s: int = 60
    reminder_poll_s: int = 5
    reminder_grace_s: int = 60
    export_ttl_hours: int = 24  # PIXELPIPE_EXPORT_TTL_HOURS: how long an export's file stays

    @property
    def export_ttl(self) -> timedelta:
        """How long an export's file is kept: `export_ttl_hours`, never longer than the retention of what it
        may hold (the filtered hits' is the shorter)."""
        days = min(self.retention_days, self.filtered_retention_days)
        return min(timedelta(hours=self.export_ttl_hours), timedelta(days=days))

    @property
    def accounts(self) -> frozenset[str]:
        return frozenset(self.api_keys.values())

    @property
    def connection_bounds(self) -> ConnectionBounds:
        return ConnectionBounds(
            header_timeout_s=self.header_timeout_ms / 1000,
            idle_timeout_s=self.idle_timeout_ms / 1000,
            max_head_bytes=self.max_head_bytes,
            max_connections=self.max_connections,
        )


def unreachable_from_a_mail_client(public_url: str) -> str | None:
    """Why a reader's mail client cannot fetch links under ``public_url`` (its host is loopback, unspecified
    or link-local, or ``localhost``); None when it may be able to."""
    host = (urlparse(public_url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is this machine (loopback)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: whether it resolves for a reader is for DNS to say
    if address.is_unspecified:
        return f"{host} means 'every interface' to a server and no address at all to a client"
    if address.is_loopback:
        return f"{host} is this machine (loopback)"
    if address.is_link_local:
        return f"{host} is link-local (reachable only on this network segment)"
    return None


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(name, f"{value} is outside {low}..{high}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"{raw!r} is not true or false (1/0, yes/no, on/off)")


def _session_seconds(env: Mapping[str, str]) -> int:
    """PIXELPIPE_SESSION_HOURS in seconds: hours, fractions allowed (0.5 is 30 minutes), at least 1 s."""
    name = "PIXELPIPE_SESSION_HOURS"
    raw = env.get(name, "").strip()
    if not raw:
        return 12 * 3600
    try:
        hours = float(raw)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not a number of hours") from None
    if not 0 < hours <= MAX_SESSION_HOURS or round(hours * 3600) < 1:
        raise SettingsError(name, f"{raw} is outside 1 second..{MAX_SESSION_HOURS} hours")
    return round(hours * 3600)


def _dashboard_dir(env: Mapping[str, str]) -> Path:
    raw = env.get("PIXELPIPE_DASHBOARD_DIR", "")
    if not raw:
        return DEFAULT_DASHBOARD_DIR
    path = Path(raw)
    if not path.is_dir():
        raise SettingsError("PIXELPIPE_DASHBOARD_DIR", f"{raw} is not a directory")
    return path


def _native_edge(env: Mapping[str, str]) -> NativeEdge:
    raw = env.get("PIXELPIPE_NATIVE_EDGE", "").strip().lower() or "auto"
    if raw not in NATIVE_EDGE_CHOICES:
        raise SettingsError("PIXELPIPE_NATIVE_EDGE", f"{raw!r} is not one of auto, on, off")
    return raw  # type: ignore[return-value]


_DEFAULT_MAX_CONNECTIONS = 10_000


def _max_connections(env: Mapping[str, str], fd_reserve: int, open_files: int) -> int:
    """The connection cap: what ``PIXELPIPE_MAX_CONNECTIONS`` asks (10,000 by default, less if the
    open-file limit leaves less beside the reserve), never more than the limit less the reserve."""
    room = open_files - fd_reserve
    if room < 1:
        raise SettingsError(
            "PIXELPIPE_FD_RESERVE",
            f"{fd_reserve} file descriptors kept for the store and the bus leave none for connections under "
            f"the open-file limit {open_files}",
        )
    raw = env.get("PIXELPIPE_MAX_CONNECTIONS")
    if raw is None or raw == "":
        return min(_DEFAULT_MAX_CONNECTIONS, room)
    value = _int(env, "PIXELPIPE_MAX_CONNECTIONS", _DEFAULT_MAX_CONNECTIONS, 1, 10_000_000)
    if value > room:
        raise SettingsError(
            "PIXELPIPE_MAX_CONNECTIONS",
            f"{value} connections and the {fd_reserve} file descriptors kept for the store and the bus "
            f"(PIXELPIPE_FD_RESERVE) exceed the open-file limit {open_files}",
        )
    return value


def _cpu_list(env: Mapping[str, str], variable: str) -> frozenset[int]:
    """A set of CPUs as ``taskset -c`` writes it (``1``, ``1,3``, ``2-5``); empty when unset."""
    raw = env.get(variable, "").strip()
    if not raw:
        return frozenset()
    count = os.cpu_count() or 1
    cpus: set[int] = set()
    for part in raw.split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise SettingsError(variable, f"{part.strip()!r} is not a CPU number or a range like 2-5")
        low, high = int(first), int(last or first)
        if low > high or high >= count:
            raise SettingsError(variable, f"{part.strip()!r}: this machine's CPUs are 0..{count - 1}")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def _read_time_max_held(env: Mapping[str, str], max_connections: int, holders: int) -> int:
    """The cap on held read-time pixels: ``PIXELPIPE_READ_TIME_MAX_HELD``, by default half the connection cap
    (held connections are connections: the other half stays for everything else). Held by the edge itself
    (no holders), never over the cap; held by holder processes, they are the holders' descriptors, not the
    edge's connections."""
    default = max(1, max_connections // 2)
    raw = env.get("PIXELPIPE_READ_TIME_MAX_HELD")
    if raw is None or raw == "":
        return default
    value = _int(env, "PIXELPIPE_READ_TIME_MAX_HELD", default, 0, 10_000_000)
    if value > max_connections and not holders:
        raise SettingsError(
            "PIXELPIPE_READ_TIME_MAX_HELD",
            f"{value} held pixels exceed the connection cap {max_connections} (PIXELPIPE_MAX_CONNECTIONS) "
            "and no holder processes hold them (PIXELPIPE_READ_TIME_HOLDERS=0)",
        )
    return value


# The parsers of secret-bearing settings never put any part of the value into an error: a wrong separator
# can make a key look like an account name or a key id, and start-up errors end up in terminals, CI logs and
# crash reports. They say which entry (1-based) is wrong and why, and name only accounts already validated.


def parse_secret(raw: str) -> Keyring:
    """``SECRET`` (key id 1) or ``ID:SECRET,ID:SECRET`` (the first signs, all verify)."""
    keys: list[tuple[int, bytes]] = []
    parts = raw.split(",")
    for n, part in enumerate(parts, 1):
        entry = f"entry {n} of {len(parts)}" if len(parts) > 1 else "the value"
        kid_text, sep, secret = part.strip().partition(":")
        if not sep:
            kid_text, secret = "1", part.strip()
        if not kid_text.isdigit() or not 0 <= int(kid_text) <= 255:
            raise ValueError(
                f"{entry}: what precedes ':' must be a key id in 0..255 (ID:SECRET; the value is not shown)"
            )
        if len(secret) < 16:
            raise ValueError(f"{entry}: each secret must be at least 16 characters")
        keys.append((int(kid_text), secret.encode()))
    if len({kid for kid, _ in keys}) != len(keys):
        raise ValueError("key ids must be unique")
    return Keyring(tuple(keys))


_BEARER_TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _is_account_name(text: str) -> bool:
    return bool(text) and text.replace("-", "").replace("_", "").isalnum()


def parse_api_keys(raw: str) -> dict[str, str]:
    """``account=key,account2=key2`` -> {key: account}."""
    out: dict[str, str] = {}
    parts = raw.split(",")
    for n, part in enumerate(parts, 1):
        entry = f"entry {n} of {len(parts)}"
        account, sep, key = part.strip().partition("=")
        account, key = account.strip(), key.strip()
        if not sep or not account or not key:
            raise ValueError(f"{entry} is not account=key (separated by '='; the value is not shown)")
        if not _is_account_name(account):
            raise ValueError(f"{entry}: an account name must be letters, digits, '-' and '_'")
        if len(key) < 8:
            raise ValueError(f"the key of account {account!r} is shorter than 8 characters")
        if not _BEARER_TOKEN.fullmatch(key):  # a ';' or a space where a ',' was meant joins two entries
            raise ValueError(
                f"the key of account {account!r} may hold only letters, digits, '-._~+/' and a trailing '=' "
                "(a bearer token, RFC 6750)"
            )
        if key in out:
            raise ValueError(f"accounts {out[key]!r} and {account!r} share a key")
        out[key] = account
    return out


def parse_networks(raw: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in raw.split(",") if p.strip())


def _file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "")
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(name, f"{raw} is not a readable file")
    return path


def private_data_dir(data_dir: Path) -> None:
    """Create the data dir readable by its owner alone (0700): it holds the generated signing secret and dev
    API key, the edge's spool (hits with full client addresses) and the embedded store. An existing
    directory is left as it is (a mount point, or shared on purpose), with a warning if others can read it."""
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True)
        data_dir.chmod(0o700)  # mkdir's mode is cut by the umask, never widened; make it exact
        return
    mode = data_dir.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning(
            "PIXELPIPE_DATA_DIR %s is readable by others (mode %o): it holds secrets and personal data; "
            "chmod 700 it",
            data_dir,
            mode,
        )


def _kept(path: Path, make: Callable[[], str]) -> str:
    """The value kept in ``path`` (owner-only, 0600), made and written there the first time. The file appears
    whole or not at all, with its final mode (never readable by others, even for a moment): written to a
    temporary file, then linked into place, which fails if another process starting at the same time was
    first; its value is then the one read."""
    if not path.exists():
        value = make()
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(value + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass
        else:
            return value
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


# Generated values are kept in the data dir, so a restart signs with the same key and the dev API key printed
# at the first start keeps working.


def _keyring(env: Mapping[str, str], data_dir: Path) -> tuple[Keyring, bool]:
    """PIXELPIPE_SECRET, or the secret generated and kept in the data dir; and whether it was generated."""
    raw = env.get("PIXELPIPE_SECRET", "")
    generated = not raw
    if generated:
        try:
            raw = _kept(data_dir / "secret", lambda: secrets.token_urlsafe(32))
        except OSError as exc:
            raise SettingsError("PIXELPIPE_DATA_DIR", f"cannot keep the generated secret: {exc}") from None
    try:
        return parse_secret(raw), generated
    except ValueError as exc:
        where = f" (kept in {data_dir / 'secret'})" if generated else ""
        raise SettingsError("PIXELPIPE_SECRET", f"{exc}{where}") from None


def _api_keys(env: Mapping[str, str], data_dir: Path) -> tuple[dict[str, str], bool]:
    """PIXELPIPE_API_KEYS, or a ``demo`` key generated and kept in the data dir; and whether it was."""
    raw = env.get("PIXELPIPE_API_KEYS", "")
    generated = not raw
    if generated:
        try:
            raw = _kept(data_dir / "api_keys", lambda: f"demo={secrets.token_urlsafe(24)}")
        except OSError as exc:
            raise SettingsError("PIXELPIPE_DATA_DIR", f"cannot keep the dev API key: {exc}") from None
    try:
        return parse_api_keys(raw), generated
    except ValueError as exc:
        where = f" (kept in {data_dir / 'api_keys'})" if generated else ""
        raise SettingsError("PIXELPIPE_API_KEYS", f"{exc}{where}") from None


def _public_url(env: Mapping[str, str], host: str, port: int) -> tuple[str, bool]:
    """PIXELPIPE_PUBLIC_URL, or this process's own address; and whether it was set."""
    given = env.get("PIXELPIPE_PUBLIC_URL", "")
    public_url = given or f"http://{host}:{port}"
    return _base_url("PIXELPIPE_PUBLIC_URL", public_url), bool(given)


def _base_url(variable: str, url: str) -> str:
    """``url`` if it is an http(s) base URL without credentials (readers are sent to it)."""
    parsed = urlparse(url)
    if "@" in parsed.netloc:  # it goes into every email: a password there would be sent to every reader
        raise SettingsError(variable, "must not carry credentials (user:password@); not shown")
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
        raise SettingsError(variable, f"{url!r} is not an http(s) base URL")
    return url


def data_dir_of(env: Mapping[str, str] | None = None) -> Path:
    """`PIXELPIPE_DATA_DIR` alone, neither created nor checked: for commands that only write a file there
    (`pixelpipe ranges refresh`) and need none of the other settings."""
    env = os.environ if env is None else env
    return Path(env.get("PIXELPIPE_DATA_DIR") or "./data")


def load(env: Mapping[str, str] | None = None, *, host: str = "127.0.0.1", port: int = 8000) -> Settings:
    """Read every setting; raise `SettingsError` naming the first variable that is malformed."""
    env = os.environ if env is None else env
    data_dir = data_dir_of(env)
    try:
        private_data_dir(data_dir)
    except OSError as exc:
        raise SettingsError("PIXELPIPE_DATA_DIR", f"cannot create it: {exc}") from None

    keyring, secret_generated = _keyring(env, data_dir)
    api_keys, api_keys_generated = _api_keys(env, data_dir)
    public_url, public_url_given = _public_url(env, host, port)

    try:
        trusted = parse_networks(env.get("PIXELPIPE_TRUSTED_PROXIES", ""))
    except ValueError as exc:
        raise SettingsError("PIXELPIPE_TRUSTED_PROXIES", str(exc)) from None

    bootstrap = env.get("PIXELPIPE_KAFKA_BOOTSTRAP") or None
    if bootstrap is not None:
        for server in bootstrap.split(","):
            hostpart, sep, portpart = server.strip().rpartition(":")
            if not sep or not hostpart or not portpart.isdigit():
                raise SettingsError("PIXELPIPE_KAFKA_BOOTSTRAP", f"{server.strip()!r} is not host:port")

    store_url = env.get("PIXELPIPE_CLICKHOUSE_URL") or f"chdb://{data_dir / 'clickhouse'}"
    try:
        store = parse_store_url(store_url)
    except ValueError as exc:
        raise SettingsError("PIXELPIPE_CLICKHOUSE_URL", str(exc)) from None

    topic_prefix = env.get("PIXELPIPE_TOPIC_PREFIX", "")
    if topic_prefix and not all(ch.isalnum() or ch in "._-" for ch in topic_prefix):
        raise SettingsError(
            "PIXELPIPE_TOPIC_PREFIX", f"{topic_prefix!r} may hold only letters, digits, '.', '_', '-'"
        )
    consumer_group = env.get("PIXELPIPE_CONSUMER_GROUP") or "pixelpipe-processors"

    ip_storage = env.get("PIXELPIPE_IP_STORAGE", "truncate")
    if ip_storage not in ("truncate", "drop", "full"):
        raise SettingsError("PIXELPIPE_IP_STORAGE", f"{ip_storage!r} is not one of truncate, drop, full")

    open_files = limits.open_file_limit()
    # By default a quarter of a low limit (a test process, a laptop's 256 or 1024), so the defaults start.
    fd_reserve = _int(env, "PIXELPIPE_FD_RESERVE", min(1_024, open_files // 4), 16, 1_000_000)
    max_connections = _max_connections(env, fd_reserve, open_files)
    delivery_max_body_bytes = _int(env, "PIXELPIPE_DELIVERY_MAX_BODY_BYTES", 26_214_400, 1_024, 1_073_741_824)
    read_time_holders = _int(env, "PIXELPIPE_READ_TIME_HOLDERS", 1, 0, 64)
    read_time_max_held = _read_time_max_held(env, max_connections, read_time_holders)
    api_url = env.get("PIXELPIPE_API_PUBLIC_URL", "")

    return Settings(
        keyring=keyring,
        api_keys=api_keys,
        public_url=public_url.rstrip("/"),
        trusted_proxies=trusted,
        data_dir=data_dir,
        kafka_bootstrap=bootstrap,
        store=store,
        geoip_city_db=_file(env, "PIXELPIPE_GEOIP_CITY_DB"),
        geoip_asn_db=_file(env, "PIXELPIPE_GEOIP_ASN_DB"),
        topic_prefix=topic_prefix,
        consumer_group=consumer_group,
        ip_storage=ip_storage,  # type: ignore[arg-type]
        click_window_ms=_int(env, "PIXELPIPE_CLICK_WINDOW_MS", 1500, 0, 10_000),
        replay_flood_limit=_int(env, "PIXELPIPE_REPLAY_FLOOD_LIMIT", 10, 0, 100_000),
        replay_flood_window_s=_int(env, "PIXELPIPE_REPLAY_FLOOD_WINDOW_S", 60, 1, 3_600),
        flush_interval_ms=_int(env, "PIXELPIPE_FLUSH_INTERVAL_MS", 250, 10, 5_000),
        bus_capacity=_int(env, "PIXELPIPE_BUS_CAPACITY", 100_000, 100, 10_000_000),
        retention_days=_int(env, "PIXELPIPE_RETENTION_DAYS", 396, 1, 36_500),
        filtered_retention_days=_int(env, "PIXELPIPE_FILTERED_RETENTION_DAYS", 90, 1, 36_500),
        webhook_allow_private=_bool(env, "PIXELPIPE_WEBHOOK_ALLOW_PRIVATE", False),
        native_edge=_native_edge(env),
        header_timeout_ms=_int(env, "PIXELPIPE_HEADER_TIMEOUT_MS", 10_000, 100, 600_000),
        idle_timeout_ms=_int(env, "PIXELPIPE_IDLE_TIMEOUT_MS", 5_000, 100, 3_600_000),
        max_head_bytes=_int(env, "PIXELPIPE_MAX_HEAD_BYTES", 32_768, 1_024, 1_048_576),
        max_connections=max_connections,
        fd_reserve=fd_reserve,
        delivery_max_body_bytes=delivery_max_body_bytes,
        read_time_cap_s=_int(env, "PIXELPIPE_READ_TIME_CAP_SECONDS", 25, 1, 300),
        read_time_max_held=read_time_max_held,
        read_time_holders=read_time_holders,
        read_time_holder_cpus=_cpu_list(env, "PIXELPIPE_READ_TIME_HOLDER_CPUS"),
        secret_generated=secret_generated,
        api_keys_generated=api_keys_generated,
        public_url_given=public_url_given,
        kafka_retention=TopicRetention(
            raw_hours=_int(env, "PIXELPIPE_KAFKA_RAW_RETENTION_HOURS", 72, 1, 720),
            dead_letter_hours=_int(env, "PIXELPIPE_KAFKA_DEAD_LETTER_RETENTION_HOURS", 168, 1, 2160),
            enriched_hours=_int(env, "PIXELPIPE_KAFKA_ENRICHED_RETENTION_HOURS", 24, 1, 720),
            deliveries_hours=_int(env, "PIXELPIPE_KAFKA_DELIVERIES_RETENTION_HOURS", 72, 1, 720),
        ),
        session_seconds=_session_seconds(env),
        dashboard_dir=_dashboard_dir(env),
        report_warm_campaigns=_int(env, "PIXELPIPE_REPORT_WARM_CAMPAIGNS", 5, 0, 100),
        api_public_url=_base_url("PIXELPIPE_API_PUBLIC_URL", api_url).rstrip("/") if api_url else "",
        reminder_min_after_s=_int(env, "PIXELPIPE_REMINDER_MIN_AFTER_SECONDS", 60, 1, 60),
        reminder_poll_s=_int(env, "PIXELPIPE_REMINDER_POLL_SECONDS", 5, 1, 300),
        reminder_grace_s=_int(env, "PIXELPIPE_REMINDER_GRACE_SECONDS", 60, 0, 3_600),
        export_ttl_hours=_int(env, "PIXELPIPE_EXPORT_TTL_HOURS", 24, 1, 720),
    )
