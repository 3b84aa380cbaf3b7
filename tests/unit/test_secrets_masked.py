"""Secrets never show in a repr, a str or a start-up error: not the signing keys, not the API keys, not the
ClickHouse password. Each case plants a distinctive secret and looks for its bytes in what a log, a traceback
or a terminal would show."""

from __future__ import annotations

import collections
import copy
import datetime as dt
import json
import logging
import pickle
import socket
import traceback
from pathlib import Path

import orjson
import pytest

from api.context import ApiContext
from pixelpipe.app import build_app, build_components
from pixelpipe.settings import Settings, SettingsError, load
from schemas.notices import WEBHOOK_COLUMNS
from schemas.secret import Secret
from schemas.store import Store, StoreError, parse_store_url
from schemas.tokens import Keyring
from schemas.webhook_secrets import seal
from tests.settings_env import refusal

SIGNING = "sig-Tq9vXw2LmPz8RkD4"  # 20 characters
OLD_SIGNING = "old-Hn3bVc7JsQe5Wy1A"
API_KEY = "sk_live_Zr8mK2pQ"
OTHER_KEY = "sk_live_Yt6nB4wE"
CH_PASSWORD = "chpw-Fj5gL0sUx"
SECRETS = (SIGNING, OLD_SIGNING, API_KEY, OTHER_KEY, CH_PASSWORD)

GOOD = {
    "PIXELPIPE_SECRET": f"2:{SIGNING},1:{OLD_SIGNING}",
    "PIXELPIPE_API_KEYS": f"acme={API_KEY},beta={OTHER_KEY}",
    "PIXELPIPE_CLICKHOUSE_URL": f"https://bob:{CH_PASSWORD}@ch.example.com:8443/mail",
}


def _leaks(text: str, *more: str) -> list[str]:
    # A secret could also show as its bytes' repr (b'...') or in part: look for every 8-character piece.
    pieces = {s[i : i + 8] for s in (*SECRETS, *more) for i in range(len(s) - 7)}
    return sorted(p for p in pieces if p in text)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load({**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path)})


def test_the_secrets_are_really_in_the_settings(settings: Settings) -> None:
    # Without this, a test that finds no secret in a repr could be looking at settings that hold none.
    assert settings.keyring.keys == ((2, SIGNING.encode()), (1, OLD_SIGNING.encode()))
    assert dict(settings.api_keys) == {API_KEY: "acme", OTHER_KEY: "beta"}
    assert settings.store.password.reveal() == CH_PASSWORD


def test_settings_repr_and_str_hold_no_secret(settings: Settings) -> None:
    assert _leaks(repr(settings)) == []
    assert _leaks(str(settings)) == []
    assert "ch.example.com" in repr(settings)  # the rest is still there to read


def test_store_target_repr_holds_no_password(settings: Settings) -> None:
    assert _leaks(repr(settings.store)) == []
    assert settings.store.redacted == "https://bob:***@ch.example.com:8443/mail"


def test_keyring_repr_and_str_show_key_ids_only(settings: Settings) -> None:
    assert repr(settings.keyring) == "Keyring(key_ids=(2, 1))"
    assert str(settings.keyring) == "Keyring(key_ids=(2, 1))"
    assert repr(Keyring(((7, SIGNING.encode()),))) == "Keyring(key_ids=(7,))"


def test_api_context_repr_holds_no_secret(settings: Settings) -> None:
    ctx = ApiContext(
        store=None,  # type: ignore[arg-type]  # the repr does not need a store
        keyring=settings.keyring,
        public_url="https://t.example.com",
        api_keys=settings.api_keys,
    )
    assert _leaks(repr(ctx)) == []
    assert _leaks(str(ctx)) == []
    assert "https://t.example.com" in repr(ctx)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # a wrong separator between account and key: the whole entry is the key as far as we know
        ("PIXELPIPE_API_KEYS", f"alpha:{API_KEY}"),
        ("PIXELPIPE_API_KEYS", f"acme={API_KEY},beta:{OTHER_KEY}"),
        ("PIXELPIPE_API_KEYS", f"acme={API_KEY};beta={OTHER_KEY}"),  # ';' makes acme's key hold beta's
        ("PIXELPIPE_API_KEYS", f"acme={API_KEY},{OTHER_KEY}"),
        ("PIXELPIPE_API_KEYS", f"{API_KEY}:acme=x"),  # not an account name
        ("PIXELPIPE_API_KEYS", f"acme={API_KEY},beta={API_KEY}"),  # shared
        ("PIXELPIPE_API_KEYS", f"={API_KEY}"),
        ("PIXELPIPE_SECRET", f"{SIGNING[:6]}:{SIGNING}"),  # a secret that holds ':' looks like a key id
        ("PIXELPIPE_SECRET", f"{SIGNING}:{OLD_SIGNING}"),
        ("PIXELPIPE_SECRET", f"2:{SIGNING},2:{OLD_SIGNING}"),
        ("PIXELPIPE_SECRET", f"1:{SIGNING},{OLD_SIGNING[:10]}"),  # too short
        ("PIXELPIPE_CLICKHOUSE_URL", f"https://bob:{CH_PASSWORD}@ch.example.com:notaport/mail"),
        ("PIXELPIPE_CLICKHOUSE_URL", f"https://bob:{CH_PASSWORD}@ch.example.com:8443/my-db"),
        ("PIXELPIPE_CLICKHOUSE_URL", f"mysql://bob:{CH_PASSWORD}@ch.example.com/mail"),
        ("PIXELPIPE_CLICKHOUSE_URL", f"https://bob:{CH_PASSWORD}@[ch.example.com/mail"),
        ("PIXELPIPE_PUBLIC_URL", f"https://bob:{CH_PASSWORD}@t.example.com"),
        ("PIXELPIPE_PUBLIC_URL", f"ftp://bob:{CH_PASSWORD}@t.example.com"),
    ],
)
def test_a_malformed_secret_setting_is_named_not_echoed(tmp_path: Path, variable: str, value: str) -> None:
    error = refusal(tmp_path, variable, value, GOOD)
    assert str(error).startswith(f"{variable}: ")
    assert _leaks(str(error)) == []
    assert _leaks(repr(error)) == []
    # A traceback would also print a chained exception (the parser's own, with the value): there is none
    shown_context = None if error.__suppress_context__ else error.__context__
    assert (error.__cause__, shown_context) == (None, None)


def test_a_wrong_separator_error_says_which_entry_and_why(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load({**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path), "PIXELPIPE_API_KEYS": f"acme={API_KEY},beta:x"})
    assert str(info.value) == (
        "PIXELPIPE_API_KEYS: entry 2 of 2 is not account=key (separated by '='; the value is not shown)"
    )


def test_the_store_url_parser_keeps_the_password_out_of_its_errors() -> None:
    with pytest.raises(ValueError, match="port") as info:
        parse_store_url(f"http://bob:{CH_PASSWORD}@h:99999999/db")
    assert _leaks(str(info.value)) == []


# -- everything the wiring builds, started, logged at DEBUG -----------------------------------------------

WEBHOOK_SECRET = "whsec_Kq3mZ8vRt2LpNb"
_OURS = ("api.", "bus.", "ingest.", "processors.", "notices.", "schemas.", "pixelpipe.")
_PLAIN = (str, bytes, bytearray, int, float, bool, type(None), Path)


def _reachable(root: object, depth: int = 6) -> list[object]:
    """Every object reachable from ``root`` through our packages' objects (their attributes and the
    containers they hold), each once; plain values (the secrets themselves, held where they must be) are not
    listed, and other libraries' objects are listed but not entered."""
    seen: set[int] = set()
    found: list[object] = []

    def walk(obj: object, left: int) -> None:
        if (
            isinstance(obj, _PLAIN)
            or id(obj) in seen
            or left < 0
            or (callable(obj) and isinstance(obj, type))
        ):
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            for key, value in obj.items():
                walk(key, left)
                walk(value, left)
            return
        if isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            for item in obj:
                walk(item, left)
            return
        found.append(obj)
        if not type(obj).__module__.startswith(_OURS):
            return
        names = list(getattr(obj, "__dict__", {}))
        for cls in type(obj).__mro__:
            names += [n for n in getattr(cls, "__slots__", ()) if isinstance(n, str)]
        for name in names:
            walk(getattr(obj, name, None), left - 1)

    walk(root, depth)
    return found


def _as_json(obj: object) -> str:
    """What orjson writes of ``obj`` (it writes a dataclass's every field, whatever its repr shows), or ""
    when it cannot (a `Secret` cannot be written)."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return ""


async def test_no_secret_in_any_repr_or_log_line_of_what_the_wiring_builds(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # The settings of a server deployment (a password in the store's URL); the store itself embedded.
    settings = load({**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path)})
    sealed = seal(settings.keyring, WEBHOOK_SECRET, account="acme", webhook_id="wh_0123456789abcdef")
    now = dt.datetime.now(dt.UTC)
    store.insert(
        "webhooks",
        WEBHOOK_COLUMNS,
        [["acme", "wh_0123456789abcdef", "https://hooks.example.com/in", ["open"], sealed, now, now, False]],
    )
    log = logging.getLogger("tests.secrets")
    with caplog.at_level(logging.DEBUG):
        own = Store.connect(store.target, migrate=False)  # the components close theirs when they stop
        components = build_components(settings, frozenset({"edge", "process", "api"}), store=own)
        app, litestar = build_app(components)
        logging.getLogger().addHandler(caplog.handler)  # Litestar's logging set-up replaced the root's
        logging.getLogger().setLevel(logging.DEBUG)  # and its level
        await components.start()
        try:
            assert components.notifications is not None
            assert components.notifications.dispatcher is not None
            directory = components.notifications.dispatcher.directory
            await directory.fresh()
            [webhook] = directory.of_account("acme")
            assert (
                webhook.secret.reveal() == WEBHOOK_SECRET
            )  # the secret is really held, unsealed, in a component
            objects = _reachable([settings, components, app, litestar.state])
            assert own.target in objects
            assert webhook in objects
            assert settings.store in objects
            assert components.runner in objects
            assert settings.keyring in objects
            for obj in objects:
                log.debug("%r %s", obj, obj)
                log.debug(f"{obj!r} {obj}")  # noqa: G004 - the f-string is what is tested
                assert _leaks(repr(obj) + str(obj) + _as_json(obj), WEBHOOK_SECRET) == [], type(obj)
        finally:
            await components.stop()
            logging.getLogger().removeHandler(caplog.handler)
    assert _leaks(caplog.text, WEBHOOK_SECRET) == []
    assert len(caplog.records) > 100  # the reprs were logged (and start and stop said what they did)


def test_a_store_error_holds_no_password(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = parse_store_url(f"http://bob:{CH_PASSWORD}@127.0.0.1:{port}/mail")
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreError) as info:
        Store.connect(target)
    logging.getLogger("tests.secrets").error("the store failed", exc_info=info.value)
    shown = "".join(traceback.format_exception(info.value))
    assert info.value.retriable
    assert info.value.away
    assert _leaks(str(info.value) + repr(info.value) + shown + caplog.text) == []
    assert f"127.0.0.1:{port}" in str(info.value)  # the rest is still there to read


def test_a_secret_shows_nowhere_but_reveal() -> None:
    secret = Secret(CH_PASSWORD)
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>20}",
        f"{secret} {secret!r}",
    ]
    assert shown == ["Secret('***')", "***", "***", "Secret('***')", f"{'***':>20}", "*** Secret('***')"]
    assert "%s %r" % (secret, secret) == "*** Secret('***')"  # noqa: UP031 - %-formatting is tested
    with pytest.raises(TypeError):
        orjson.dumps({"password": secret})
    with pytest.raises(TypeError):
        json.dumps({"password": secret})
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert copy.deepcopy(secret) is secret
    assert secret.reveal() == CH_PASSWORD
    assert secret == Secret(CH_PASSWORD)
    assert hash(secret) == hash(Secret(CH_PASSWORD))
    assert secret != Secret("other")
    assert secret != CH_PASSWORD
    assert _leaks(repr(StoreError("x", retriable=False, code=516, name="AUTHENTICATION_FAILED"))) == []
