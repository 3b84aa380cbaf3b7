"""Secrets never show in a repr, a str or a start-up error: not the signing keys, not the API keys, not the
ClickHouse password. Each case plants a distinctive secret and looks for its bytes in what a log, a traceback
or a terminal would show."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.routes import ApiContext
from pixelpipe.settings import Settings, SettingsError, load
from schemas.store import parse_store_url
from schemas.tokens import Keyring

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


def _leaks(text: str) -> list[str]:
    # A secret could also show as its bytes' repr (b'...') or in part: look for every 8-character piece.
    pieces = {s[i : i + 8] for s in SECRETS for i in range(len(s) - 7)}
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
    with pytest.raises(SettingsError) as info:
        load({**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path), variable: value})
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: ")
    assert _leaks(str(info.value)) == []
    assert _leaks(repr(info.value)) == []
    # A traceback would also print a chained exception (the parser's own, with the value): there is none
    shown_context = None if info.value.__suppress_context__ else info.value.__context__
    assert (info.value.__cause__, shown_context) == (None, None)


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
