"""Mail-service accounts over real HTTP through the real app and a real chDB: each provider registered, the
answers' shapes, generated credentials shown once and never again (nor in the log), the keys sealed at rest,
another account's config a 404, bad keys refused naming the field, and the edge's directory of the same
process changed at once by each registration, rotation and deletion."""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from deliveries.directory import MailServices
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.mail_services import GENERIC_SECRET_PREFIX
from schemas.store import Store
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
GLOBEX = {"Authorization": "Bearer globex-key-456"}
PUBLIC_URL = "https://t.example.com"
ARN = "arn:aws:sns:eu-west-1:123456789012:ses-events"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def p256_der() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return base64.b64encode(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()


@dataclass
class Running:
    client: httpx.Client
    components: Components
    store: Store

    @property
    def directory(self) -> MailServices:
        directory = self.components.mail_services
        assert isinstance(directory, MailServices)
        return directory


@contextlib.contextmanager
def pixelpipe(env: dict[str, str]) -> Iterator[Running]:
    settings = settings_mod.load({**env, "PIXELPIPE_PUBLIC_URL": PUBLIC_URL})
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    assert components.store is not None
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield Running(client, components, components.store)


def ingest_id(answer: dict[str, Any]) -> str:
    return urlsplit(answer["ingest_url"]).path.rsplit("/", 1)[1]


def put(
    c: httpx.Client, provider: str, body: dict[str, Any], headers: dict[str, str] = ACME
) -> httpx.Response:
    return c.put(f"/v1/mail-services/{provider}", json=body, headers=headers)


def test_each_provider_registers_and_the_directory_knows_it_at_once(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sendgrid_key = p256_der()
    with pixelpipe(env) as p:
        c = p.client
        created = {
            "sendgrid": put(c, "sendgrid", {"credentials": {"public_key": sendgrid_key}}),
            "mailgun": put(c, "mailgun", {"credentials": {"signing_key": MAILGUN_KEY}}),
            "postmark": put(c, "postmark", {}),
            "report": put(c, "report", {"credentials": {"username": "dsn-upload", "password": "p" * 20}}),
            "generic": put(c, "generic", {}),
            "ses": put(c, "ses", {"options": {"topic_arns": [ARN, ARN]}}),
        }
        assert {name: r.status_code for name, r in created.items()} == dict.fromkeys(created, 201)
        answers = {name: r.json() for name, r in created.items()}
        base = {"provider", "ingest_url", "credentials_hint", "options", "created_at"}
        assert {name: set(a) for name, a in answers.items()} == {
            **dict.fromkeys(answers, base),
            "generic": base | {"secret"},
        }
        ids = {name: ingest_id(a) for name, a in answers.items()}
        assert len(set(ids.values())) == 6
        assert all(len(i) == 32 for i in ids.values())

        assert answers["sendgrid"]["ingest_url"] == f"{PUBLIC_URL}/in/sendgrid/{ids['sendgrid']}"
        assert answers["sendgrid"]["credentials_hint"] == {"public_key": "..." + sendgrid_key[-4:]}
        assert answers["mailgun"]["credentials_hint"] == {"signing_key": "...eol0"}
        assert answers["ses"]["options"] == {"topic_arns": [ARN]}
        assert answers["ses"]["credentials_hint"] == {}
        postmark = urlsplit(answers["postmark"]["ingest_url"])  # generated, in the URL to give Postmark
        assert (postmark.scheme, postmark.hostname, postmark.path) == (
            "https", "t.example.com", f"/in/postmark/{ids['postmark']}",
        )  # fmt: skip
        assert postmark.username is not None
        assert postmark.password is not None
        assert len(postmark.password) == 32
        report = urlsplit(answers["report"]["ingest_url"])
        assert (report.username, report.password) == ("dsn-upload", "p" * 20)
        secret = answers["generic"]["secret"]
        assert secret.startswith(GENERIC_SECRET_PREFIX)
        assert len(secret) == len(GENERIC_SECRET_PREFIX) + 43

        # The edge of this process knows every one at once, with the keys unsealed.
        found = {name: p.directory.find(i) for name, i in ids.items()}
        assert {n: (s.account, s.provider) for n, s in found.items() if s} == {n: ("acme", n) for n in ids}
        revealed = {n: {k: v.reveal() for k, v in s.credentials.items()} for n, s in found.items() if s}
        assert revealed == {
            "sendgrid": {"public_key": sendgrid_key},
            "mailgun": {"signing_key": MAILGUN_KEY},
            "postmark": {"username": postmark.username, "password": postmark.password},
            "report": {"username": "dsn-upload", "password": "p" * 20},
            "generic": {"secret": secret},
            "ses": {},
        }
        assert found["ses"] is not None
        assert found["ses"].options == {"topic_arns": [ARN]}

        # Never again: not in the list, not in one, nor in a replacement's answer, at rest or in the log.
        keys = [sendgrid_key, MAILGUN_KEY, postmark.password, "p" * 20, secret]
        listed = c.get("/v1/mail-services", headers=ACME)
        assert [m["provider"] for m in listed.json()["mail_services"]] == sorted(ids)
        assert listed.json()["mail_services"][1]["ingest_url"] == f"{PUBLIC_URL}/in/mailgun/{ids['mailgun']}"
        one = c.get("/v1/mail-services/postmark", headers=ACME)
        assert one.json() == {
            **answers["postmark"],
            "ingest_url": f"{PUBLIC_URL}/in/postmark/{ids['postmark']}",
        }
        again = put(c, "generic", {})
        assert again.status_code == 200
        assert "secret" not in again.json()
        assert ingest_id(again.json()) == ids["generic"]  # a replacement keeps the URL and the keys
        assert p.directory.find(ids["generic"]).credentials["secret"].reveal() == secret  # type: ignore[union-attr]
        stored = p.store.query(f"SELECT credentials, hint, options FROM {p.store.database}.mail_services")
        assert all(row[0].startswith("enc:v1:") for row in stored)
        shown = listed.text + one.text + again.text + repr(stored) + caplog.text
        assert [key for key in keys if key in shown] == []
        assert repr(found["mailgun"]).count(MAILGUN_KEY) == 0


def test_a_rotation_and_a_deletion_reach_the_directory_at_once(env: dict[str, str]) -> None:
    with pixelpipe(env) as p:
        c = p.client
        first = put(c, "postmark", {}).json()
        old = ingest_id(first)
        rotated = c.post("/v1/mail-services/postmark/rotate", headers=ACME)
        assert rotated.status_code == 200, rotated.text
        new = ingest_id(rotated.json())
        url = urlsplit(rotated.json()["ingest_url"])
        assert new != old
        assert url.password not in (None, urlsplit(first["ingest_url"]).password)
        assert rotated.json()["created_at"] == first["created_at"]
        assert p.directory.find(old) is None
        service = p.directory.find(new)
        assert service is not None
        assert service.credentials["password"].reveal() == url.password

        put(c, "mailgun", {"credentials": {"signing_key": MAILGUN_KEY}})
        rotated = c.post("/v1/mail-services/mailgun/rotate", headers=ACME).json()
        assert set(rotated) == {"provider", "ingest_url", "credentials_hint", "options", "created_at"}
        mailgun = p.directory.find(ingest_id(rotated))  # the provider's own key is kept
        assert mailgun is not None
        assert mailgun.credentials["signing_key"].reveal() == MAILGUN_KEY

        assert c.delete("/v1/mail-services/postmark", headers=ACME).status_code == 204
        assert p.directory.find(new) is None
        assert c.get("/v1/mail-services/postmark", headers=ACME).status_code == 404
        assert c.delete("/v1/mail-services/postmark", headers=ACME).status_code == 404
        assert c.post("/v1/mail-services/postmark/rotate", headers=ACME).status_code == 404
        assert [m["provider"] for m in c.get("/v1/mail-services", headers=ACME).json()["mail_services"]] == [
            "mailgun"
        ]
        db = p.store.database
        gone = p.store.query(
            f"SELECT credentials, deleted FROM {db}.mail_services FINAL WHERE provider = 'postmark'"
        )
        assert gone == [("", 1)]  # the deleted row keeps no credentials, sealed or not
        recreated = put(c, "postmark", {})
        assert recreated.status_code == 201
        assert ingest_id(recreated.json()) not in (old, new)


def test_a_restarted_process_loads_its_directory_from_the_store(env: dict[str, str]) -> None:
    with pixelpipe(env) as p:
        kept = ingest_id(put(p.client, "generic", {}).json())
        dropped = ingest_id(put(p.client, "postmark", {}).json())
        assert p.client.delete("/v1/mail-services/postmark", headers=ACME).status_code == 204
    with pixelpipe(env) as p:
        assert p.directory.find(dropped) is None
        service = p.directory.find(kept)
        assert service is not None
        assert (service.account, service.provider) == ("acme", "generic")
        assert len(p.directory) == 1


def test_an_account_sees_only_its_own(env: dict[str, str]) -> None:
    with pixelpipe(env) as p:
        c = p.client
        assert put(c, "mailgun", {"credentials": {"signing_key": MAILGUN_KEY}}).status_code == 201
        assert c.get("/v1/mail-services", headers=GLOBEX).json() == {"mail_services": []}
        assert c.get("/v1/mail-services/mailgun", headers=GLOBEX).status_code == 404
        assert c.delete("/v1/mail-services/mailgun", headers=GLOBEX).status_code == 404
        assert c.post("/v1/mail-services/mailgun/rotate", headers=GLOBEX).status_code == 404
        theirs = put(c, "mailgun", {"credentials": {"signing_key": "globex-signing-key-1"}}, GLOBEX)
        assert theirs.status_code == 201  # their own config, not a replacement of acme's
        assert c.get("/v1/mail-services/mailgun", headers=ACME).json()["credentials_hint"] == {
            "signing_key": "...eol0"
        }
        assert c.get("/v1/mail-services").status_code == 401
        assert put(c, "mailgun", {"credentials": {"signing_key": MAILGUN_KEY}}, {}).status_code == 401


def _rsa_der() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return base64.b64encode(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()


def _p384_pem() -> str:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


BAD = [
    ("sendgrid", {"credentials": {"public_key": "not-a-key"}}, "credentials.public_key"),
    ("sendgrid", {"credentials": {"public_key": _rsa_der()}}, "credentials.public_key"),
    ("sendgrid", {"credentials": {"public_key": _p384_pem()}}, "credentials.public_key"),
    ("sendgrid", {}, "credentials.public_key"),
    ("sendgrid", {"credentials": {"signing_key": MAILGUN_KEY}}, "credentials.signing_key"),
    ("sendgrid", {"options": {"topic_arns": [ARN]}}, "options.topic_arns"),
    ("mailgun", {}, "credentials.signing_key"),
    ("mailgun", {"credentials": {"signing_key": "has spaces in it"}}, "credentials.signing_key"),
    ("postmark", {"credentials": {"username": "alone"}}, "credentials.password"),
    ("postmark", {"credentials": {"username": "u", "password": "short"}}, "credentials.password"),
    ("report", {"credentials": {"username": "a:b@c", "password": "p" * 20}}, "credentials.username"),
    ("generic", {"credentials": {"secret": "mine-mine-mine-mine"}}, "credentials.secret"),
    ("ses", {}, "options.topic_arns"),
    ("ses", {"options": {"topic_arns": []}}, "options.topic_arns"),
    (
        "ses",
        {"options": {"topic_arns": [ARN, "arn:aws:sqs:eu-west-1:123456789012:q"]}},
        "options.topic_arns[1]",
    ),
    ("ses", {"options": {"topic_arns": ["arn:aws:sns:eu-west-1:1234:t"]}}, "options.topic_arns[0]"),
    ("mailgun", {"credentials": {"api_key": "x"}}, "api_key"),
    ("mailgun", {"extra": 1}, "extra"),
]


def test_bad_keys_are_refused_naming_the_field_never_the_value(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pixelpipe(env) as p:
        refused = {}
        for provider, body, _ in BAD:
            r = put(p.client, provider, body)
            refused[(provider, repr(body))] = (r.status_code, r.json()["detail"])
            for value in body.get("credentials", {}).values():
                if len(value) >= 8:  # a short one ("u") is in any text
                    assert value not in r.text + caplog.text
        wrong = {
            case: answer
            for (provider, body, field) in BAD
            for case, answer in [((provider, repr(body)), refused[(provider, repr(body))])]
            if answer[0] != 400 or field not in answer[1]
        }
        assert wrong == {}
        assert p.client.get("/v1/mail-services", headers=ACME).json() == {"mail_services": []}
        assert len(p.directory) == 0


def test_an_unknown_provider_is_refused(env: dict[str, str]) -> None:
    with pixelpipe(env) as p:
        r = put(p.client, "sparkpost", {})
        assert r.status_code == 400, r.text
        assert r.json()["detail"] == "provider: Invalid enum value 'sparkpost'"
        assert p.client.get("/v1/mail-services/sparkpost", headers=ACME).status_code == 400
