"""Mail-service accounts, pure: each provider's credentials checked (the field named, never the value) or
generated, SES's topics, ingest ids, the credentials sealed under the account, provider and ingest id, the
record on the mail-services topic, and the edge's directory (`deliveries.directory.MailServices`): the newest
config wins, a deletion stays deleted, a rotation drops the old URL."""

from __future__ import annotations

import base64
import re

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from deliveries.directory import MailServices
from schemas.mail_services import (
    GENERIC_SECRET_PREFIX,
    BadMailService,
    MalformedMailService,
    StoredMailService,
    credential_hints,
    credentials_for,
    decode_mail_service,
    encode_mail_service,
    new_ingest_id,
    open_credentials,
    options_for,
    seal_credentials,
)
from schemas.secret import Secret
from schemas.tokens import Keyring
from schemas.webhook_secrets import SecretUnreadable

OLD = Keyring(((1, b"o" * 32),))
ROTATED = Keyring(((2, b"n" * 32), (1, b"o" * 32)))
NEW_ONLY = Keyring(((2, b"n" * 32),))
ARN = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
P256 = ec.generate_private_key(ec.SECP256R1()).public_key()
P256_DER = base64.b64encode(P256.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()
P256_PEM = P256.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def _der(key: object) -> str:
    return base64.b64encode(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()  # type: ignore[attr-defined]


def test_sendgrids_key_is_an_ec_p256_key_kept_as_base64_der_whichever_form_it_came_in() -> None:
    for given in (P256_DER, P256_PEM, P256_DER[:40] + "\n" + P256_DER[40:]):
        assert credentials_for("sendgrid", {"public_key": given}) == ({"public_key": P256_DER}, False)
    wrong = {
        "garbage": "not a key at all",
        "rsa": _der(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()),
        "p384": _der(ec.generate_private_key(ec.SECP384R1()).public_key()),
        "ed25519": _der(ed25519.Ed25519PrivateKey.generate().public_key()),
        "truncated": P256_DER[:-8],
    }
    for name, value in wrong.items():
        with pytest.raises(BadMailService, match=r"^credentials\.public_key: ") as refused:
            credentials_for("sendgrid", {"public_key": value})
        assert value not in str(refused.value), name
    with pytest.raises(BadMailService, match=r"^credentials\.public_key: required for sendgrid$"):
        credentials_for("sendgrid", {})


def test_mailgun_takes_its_signing_key_and_nothing_else() -> None:
    key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
    assert credentials_for("mailgun", {"signing_key": key}) == ({"signing_key": key}, False)
    for bad in ("short", "has a space in it", "é" * 10, "x" * 257):
        with pytest.raises(BadMailService, match=r"^credentials\.signing_key: 8 to 256 printable"):
            credentials_for("mailgun", {"signing_key": bad})
    with pytest.raises(BadMailService, match=r"^credentials\.public_key: not a mailgun credential"):
        credentials_for("mailgun", {"signing_key": key, "public_key": P256_DER})


@pytest.mark.parametrize("provider", ["postmark", "report"])
def test_basic_auth_is_generated_unless_given_as_a_pair(provider: str) -> None:
    made, generated = credentials_for(provider, {})
    assert generated
    assert re.fullmatch(r"pp[0-9a-f]{12}", made["username"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", made["password"])
    assert credentials_for(provider, {})[0] != made  # random each time
    given = {"username": "postmark-hooks", "password": "a.long_password~1"}
    assert credentials_for(provider, given) == (given, False)
    with pytest.raises(BadMailService, match=r"^credentials\.password: give both username and password"):
        credentials_for(provider, {"username": "alone"})
    with pytest.raises(BadMailService, match=r"^credentials\.username: give both"):
        credentials_for(provider, {"password": "p" * 20})
    with pytest.raises(BadMailService, match=r"^credentials\.password: at least 16 characters$"):
        credentials_for(provider, {"username": "u", "password": "p" * 15})
    with pytest.raises(BadMailService, match=r"^credentials\.username: only letters, digits"):
        credentials_for(provider, {"username": "a:b", "password": "p" * 20})
    # a config replaced without keys keeps the ones it had (the URL at the provider stays valid)
    assert credentials_for(provider, {}, kept=made) == (made, False)
    assert credentials_for(provider, given, kept=made) == (given, False)


def test_the_generic_secret_is_ours_only() -> None:
    made, generated = credentials_for("generic", {})
    assert generated
    assert made["secret"].startswith(GENERIC_SECRET_PREFIX)
    assert len(base64.urlsafe_b64decode(made["secret"].removeprefix(GENERIC_SECRET_PREFIX) + "=")) == 32
    with pytest.raises(BadMailService, match=r"^credentials\.secret: generated by pixelpipe"):
        credentials_for("generic", {"secret": "mine-mine-mine-mine"})
    assert credentials_for("generic", {}, kept=made) == (made, False)


def test_ses_takes_no_keys_and_the_sns_topics_that_are_the_senders() -> None:
    assert credentials_for("ses", {}) == ({}, False)
    arns = [
        ARN,
        "arn:aws-cn:sns:cn-north-1:123456789012:t.fifo",
        "arn:aws-us-gov:sns:us-gov-west-1:123456789012:x",
    ]
    assert options_for("ses", {"topic_arns": [*arns, ARN]}) == {"topic_arns": arns}
    refused = {
        "options.topic_arns: 1 to 100": [{}, {"topic_arns": []}, {"topic_arns": [ARN] * 101}],
        r"options.topic_arns\[0\]: not an SNS topic ARN": [
            {"topic_arns": ["arn:aws:sqs:us-east-1:123456789012:q"]},
            {"topic_arns": ["arn:aws:sns:us-east-1:12345:t"]},
            {"topic_arns": ["arn:aws:sns:us-east-1:123456789012:"]},
            {"topic_arns": ["arn:aws:sns:us-east-1:123456789012:a/b"]},
            {"topic_arns": [ARN + "\n"]},
        ],
    }
    for reason, cases in refused.items():
        for options in cases:
            with pytest.raises(BadMailService, match="^" + reason):
                options_for("ses", options)
    with pytest.raises(
        BadMailService, match=r"^options\.topic_arns: not a mailgun option \(it takes: none\)"
    ):
        options_for("mailgun", {"topic_arns": [ARN]})
    assert options_for("postmark", {}) == {}
    with pytest.raises(
        BadMailService, match=r"^provider: one of sendgrid, mailgun, ses, postmark, generic, report"
    ):
        credentials_for("sparkpost", {})


def test_ingest_ids_carry_192_random_bits() -> None:
    ids = {new_ingest_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", i) for i in ids)


def test_hints_show_the_last_four_characters_of_long_values_only() -> None:
    assert credential_hints({"signing_key": "key-0123456789abcd", "username": "short"}) == {
        "signing_key": "...abcd",
        "username": "...",
    }


def stored(
    keyring: Keyring = OLD,
    *,
    account: str = "acme",
    provider: str = "mailgun",
    ingest_id: str = "i" * 32,
    updated_at_ms: int = 2_000,
    deleted: bool = False,
    credentials: dict[str, str] | None = None,
) -> StoredMailService:
    credentials = {"signing_key": "key-0123456789abcd"} if credentials is None else credentials
    sealed = "" if deleted else seal_credentials(keyring, credentials, account=account, provider=provider,
                                                  ingest_id=ingest_id)  # fmt: skip
    return StoredMailService(account, provider, ingest_id, sealed, 1_000, updated_at_ms, deleted)


def test_credentials_are_sealed_under_their_account_provider_and_ingest_id() -> None:
    s = stored()
    assert s.credentials.startswith("enc:v1:1:")
    assert "0123456789abcd" not in s.credentials
    assert open_credentials(OLD, s) == {"signing_key": Secret("key-0123456789abcd")}
    assert open_credentials(ROTATED, s) == {"signing_key": Secret("key-0123456789abcd")}  # old key still held
    moved = [
        StoredMailService("globex", s.provider, s.ingest_id, s.credentials, 1_000, 2_000),
        StoredMailService(s.account, "sendgrid", s.ingest_id, s.credentials, 1_000, 2_000),
        StoredMailService(s.account, s.provider, "j" * 32, s.credentials, 1_000, 2_000),
        StoredMailService(s.account, s.provider, s.ingest_id, '{"signing_key": "plain"}', 1_000, 2_000),
    ]
    for other in moved:
        with pytest.raises(SecretUnreadable):
            open_credentials(OLD, other)
    with pytest.raises(SecretUnreadable, match="no longer holds"):
        open_credentials(NEW_ONLY, s)


def test_the_record_on_the_topic_is_the_stored_form_and_is_read_strictly() -> None:
    s = StoredMailService("acme", "ses", "i" * 32, "", 1_000, 2_000, options={"topic_arns": [ARN]})
    assert decode_mail_service(encode_mail_service(s)) == s
    assert s.key == b"acme\x1fses"
    assert StoredMailService.from_row(tuple(s.row())) == s
    good = orjson.loads(encode_mail_service(s))
    bad = {
        "unknown mail-service version 2": {**good, "v": 2},
        "missing fields: ingest_id": {k: v for k, v in good.items() if k != "ingest_id"},
        "field deleted has the wrong type": {**good, "deleted": 0},
        "unknown provider 'sparkpost'": {**good, "provider": "sparkpost"},
        "without its account or ingest id": {**good, "account": ""},
    }
    for reason, record in bad.items():
        with pytest.raises(MalformedMailService, match=re.escape(reason)):
            decode_mail_service(orjson.dumps(record))
    with pytest.raises(MalformedMailService, match="not JSON"):
        decode_mail_service(b"\xff")


def test_the_directory_keeps_the_newest_config_of_each_account_and_provider() -> None:
    directory = MailServices(OLD)
    first = stored(ingest_id="a" * 32, updated_at_ms=2_000)
    assert directory.apply([first]) == 1
    found = directory.find("a" * 32)
    assert found is not None
    assert (found.account, found.provider, found.credentials) == (
        "acme", "mailgun", {"signing_key": Secret("key-0123456789abcd")},
    )  # fmt: skip
    assert "0123456789abcd" not in repr(found)

    rotated = stored(ingest_id="b" * 32, updated_at_ms=3_000)
    assert directory.apply([rotated, first]) == 1  # the older one, late, changes nothing
    assert (directory.find("a" * 32), directory.find("b" * 32) is not None) == (None, True)

    other = stored(account="globex", ingest_id="c" * 32)
    deleted = stored(ingest_id="b" * 32, updated_at_ms=4_000, deleted=True)
    assert directory.apply([other, deleted]) == 2
    assert (directory.find("b" * 32), len(directory)) == (None, 1)
    assert directory.apply([rotated]) == 0  # a deletion stays: an older config does not come back
    assert directory.find("b" * 32) is None
    directory.apply_one(stored(ingest_id="d" * 32, updated_at_ms=5_000))  # created again, later
    assert directory.find("d" * 32) is not None


def test_a_config_that_does_not_open_is_left_out_and_the_others_stay() -> None:
    directory = MailServices(NEW_ONLY)
    directory.apply([stored(OLD, ingest_id="a" * 32), stored(NEW_ONLY, account="globex", ingest_id="b" * 32)])
    assert directory.find("a" * 32) is None
    assert directory.find("b" * 32) is not None
