from __future__ import annotations

from pathlib import Path

import pytest

from ingest import native
from pixelpipe.app import build_components
from pixelpipe.settings import SettingsError, load
from tests.native import require_native
from tests.settings_env import GOOD, refusal


def test_defaults(tmp_path: Path) -> None:
    s = load({"PIXELPIPE_DATA_DIR": str(tmp_path)}, host="127.0.0.1", port=8000)
    assert s.public_url == "http://127.0.0.1:8000"
    assert s.secret_generated
    assert (tmp_path / "secret").exists()
    assert s.api_keys_generated
    assert list(s.api_keys.values()) == ["demo"]
    assert s.store.embedded
    assert s.store.path == str((tmp_path / "clickhouse").resolve())
    assert s.kafka_bootstrap is None
    # the generated secret is kept: a restart signs with the same key
    assert load({"PIXELPIPE_DATA_DIR": str(tmp_path)}).keyring == s.keyring


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    s = load({**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path)})
    assert "s" * 32 not in repr(s)
    assert "key-12345678" not in repr(s)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIXELPIPE_SECRET", "short"),
        ("PIXELPIPE_SECRET", "x:" + "s" * 32),
        ("PIXELPIPE_API_KEYS", "acme"),
        ("PIXELPIPE_API_KEYS", "acme=short"),
        ("PIXELPIPE_API_KEYS", "a=key-12345678,b=key-12345678"),
        ("PIXELPIPE_PUBLIC_URL", "ftp://x"),
        ("PIXELPIPE_PUBLIC_URL", "track.example.com"),
        ("PIXELPIPE_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("PIXELPIPE_TRUSTED_PROXIES", "localhost"),
        ("PIXELPIPE_KAFKA_BOOTSTRAP", "localhost"),
        ("PIXELPIPE_CLICKHOUSE_URL", "mysql://x"),
        ("PIXELPIPE_CLICKHOUSE_URL", "http://h:notaport/db"),
        ("PIXELPIPE_CLICKHOUSE_URL", "chdb://"),
        ("PIXELPIPE_GEOIP_CITY_DB", "/no/such/file.mmdb"),
        ("PIXELPIPE_GEOIP_ASN_DB", "/no/such/asn.mmdb"),
        ("PIXELPIPE_IP_STORAGE", "keep"),
        ("PIXELPIPE_FLUSH_INTERVAL_MS", "fast"),
        ("PIXELPIPE_CLICK_WINDOW_MS", "-1"),
        ("PIXELPIPE_WEBHOOK_ALLOW_PRIVATE", "maybe"),
        ("PIXELPIPE_WEBHOOK_ALLOW_PRIVATE", "2"),
        ("PIXELPIPE_NATIVE_EDGE", "fast"),
        ("PIXELPIPE_NATIVE_EDGE", "1"),
        ("PIXELPIPE_DELIVERY_MAX_BODY_BYTES", "25MiB"),
        ("PIXELPIPE_DELIVERY_MAX_BODY_BYTES", "1023"),
    ],
)
def test_a_malformed_setting_names_its_variable(tmp_path: Path, variable: str, value: str) -> None:
    assert str(refusal(tmp_path, variable, value)).startswith(f"{variable}: ")


def test_server_url_and_rotating_keys(tmp_path: Path) -> None:
    s = load(
        {
            **GOOD,
            "PIXELPIPE_SECRET": "2:" + "n" * 20 + ",1:" + "o" * 20,
            "PIXELPIPE_CLICKHOUSE_URL": "https://bob:p%40ss@ch.example.com:8443/mail",
            "PIXELPIPE_DATA_DIR": str(tmp_path),
        }
    )
    assert [kid for kid, _ in s.keyring.keys] == [2, 1]
    assert (s.store.host, s.store.port, s.store.username, s.store.password.reveal()) == (
        "ch.example.com", 8443, "bob", "p@ss",
    )  # fmt: skip
    assert s.store.database == "mail"
    assert s.store.secure
    assert "p@ss" not in s.store.redacted


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("true", True), ("1", True), ("Yes", True), ("on", True), ("false", False),
     ("0", False), ("no", False), ("OFF", False)],
)  # fmt: skip
def test_private_webhook_targets_are_allowed_only_when_asked_for(
    tmp_path: Path, value: str | None, expected: bool
) -> None:
    env = {**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path)}
    if value is not None:
        env["PIXELPIPE_WEBHOOK_ALLOW_PRIVATE"] = value
    assert load(env).webhook_allow_private is expected


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "auto"), ("", "auto"), ("ON", "on"), (" off ", "off")]
)
def test_the_native_edge_setting(tmp_path: Path, value: str | None, expected: str) -> None:
    env = {**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path)}
    if value is not None:
        env["PIXELPIPE_NATIVE_EDGE"] = value
    if expected == "on":
        require_native()
    assert load(env).native_edge == expected


def test_the_native_edge_cannot_be_on_where_it_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native, "PixelPath", None)
    with pytest.raises(SettingsError) as info:  # asked where the edge is built, before anything starts
        build_components(
            load({**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path), "PIXELPIPE_NATIVE_EDGE": "on"}),
            frozenset({"edge", "process"}),
        )
    assert info.value.variable == "PIXELPIPE_NATIVE_EDGE"
    assert "not installed" in str(info.value)


def test_the_notify_group_follows_the_topic_prefix() -> None:
    from notices.kafka import notify_group

    assert notify_group("") == "pixelpipe-notify"
    assert notify_group("staging") == "staging.pixelpipe-notify"


def test_the_native_edge_choices_read_are_the_ones_the_edge_takes() -> None:
    # Settings keep their own copy so that reading the environment imports no stage's runtime module.
    from typing import get_args

    from ingest import native
    from pixelpipe import settings

    assert settings.NATIVE_EDGE_CHOICES == native.NATIVE_EDGE_CHOICES
    assert get_args(settings.NativeEdge) == get_args(native.NativeEdge) == settings.NATIVE_EDGE_CHOICES
