"""Recognising unsubscribe links (`api.unsubscribe_links`) and template placeholders (`api.template_tags`),
over links as real senders' emails carry them, and over ordinary links that must stay tracked."""

from __future__ import annotations

import pytest

from api.template_tags import placeholders
from api.unsubscribe_links import is_unsubscribe_link

BY_URL = [
    # Mail services' and newsletter tools' own unsubscribe pages
    "https://acme.us21.list-manage.com/unsubscribe?u=5f1c0a&id=9e2b7c&e=3a4b5c&c=1d2e3f",
    "https://u12345.ct.sendgrid.net/asm/unsubscribe/?user_id=12345&data=Zm9vYmFy",
    "https://email.example.com/wf/unsubscribe?upn=abc-123",
    "https://news.example.org/newsletter/unsubscribe.php?id=42&hash=9f8e",
    "https://example.com/email/optout?token=eyJhbGciOi",
    "https://example.com/opt-out/8c1d",
    "https://example.com/account/emailUnsubscribe?sig=1",
    "https://example.com/account/OptOut?sig=1",
    "https://example.com/l/UnSubscribe",
    "https://example.com/mail?action=unsub&id=77",
    "https://example.com/manage-preferences?contact=12",
    "https://example.com/email-preferences/abc",
    "https://example.com/preference-center/?id=3",
    "https://example.com/subscription_center?id=3",
    "https://example.com/manage_subscriptions",
    "https://shop.example.de/newsletter/abmelden?e=x",
    "https://shop.example.de/Newsletter-Abmeldung/7",
    "https://shop.example.de/newsletter/abbestellen",
    "https://boutique.example.fr/se-desabonner?u=1",
    "https://boutique.example.fr/d%C3%A9sabonnement/1",  # désabonnement, percent-encoded
    "https://boutique.example.fr/desinscription",
    "https://tienda.example.es/darse-de-baja?id=1",
    "https://tienda.example.es/cancelar-suscripcion",
    "https://negozio.example.it/disiscriviti",
    "https://winkel.example.nl/nieuwsbrief/afmelden",
    "https://loja.example.com.br/descadastrar",
    "mailto:unsubscribe@lists.example.com?subject=unsubscribe",
    # Template placeholders that stand for an unsubscribe or preferences URL
    "<%asm_group_unsubscribe_raw_url%>",
    "<%asm_global_unsubscribe_raw_url%>",
    "<%asm_preferences_raw_url%>",
    "[unsubscribe]",
    "[Unsubscribe_Preferences]",
    "{{{unsubscribe}}}",
    "{{{ pm:unsubscribe }}}",
    "*|UNSUB|*",
    "*|UPDATE_PROFILE|*",
    "%unsubscribe_url%",
    "%tag_unsubscribe_url%",
    "[[UNSUB_LINK_EN]]",
    "{{ unsubscribe_link }}",
    "{{ update_profile }}",
    "{% unsubscribe_url %}",
    "{% manage_preferences_url %}",
    "%%unsub_center_url%%",
    "%%profile_center_url%%",
    "{unsubscribe_url}",
    "https://example.com/r?to=*|UNSUB|*",
]

BY_TEXT = [
    ("https://example.createsend1.com/t/r-u-jhdukl-l-r/", "Unsubscribe"),  # nothing in the URL says it
    ("https://click.example.com/ls/click?upn=xyz", "unsubscribe from this list"),
    ("https://click.example.com/ls/click?upn=xyz", "Opt out of these emails"),
    ("https://click.example.com/ls/click?upn=xyz", "Manage preferences"),
    ("https://click.example.com/ls/click?upn=xyz", "Update your email preferences"),
    ("https://click.example.com/ls/click?upn=xyz", "Manage your subscriptions"),
    ("https://click.example.com/ls/click?upn=xyz", "Abmelden"),
    ("https://click.example.com/ls/click?upn=xyz", "Newsletter abbestellen"),
    ("https://click.example.com/ls/click?upn=xyz", "Hier austragen"),
    ("https://click.example.com/ls/click?upn=xyz", "Se désabonner"),
    ("https://click.example.com/ls/click?upn=xyz", "SE DÉSINSCRIRE"),
    ("https://click.example.com/ls/click?upn=xyz", "Darse de baja"),
    ("https://click.example.com/ls/click?upn=xyz", "Cancelar suscripción"),
    ("https://click.example.com/ls/click?upn=xyz", "Annulla l'iscrizione"),
    ("https://click.example.com/ls/click?upn=xyz", "Afmelden"),
    ("https://click.example.com/ls/click?upn=xyz", "Avregistrera"),
    ("https://click.example.com/ls/click?upn=xyz", "Wypisz się"),
]

BY_ATTRIBUTE = [
    ("https://click.example.com/x", [("class", "footer-link unsubscribe-link")]),
    ("https://click.example.com/x", [("id", "optOut")]),
    ("https://click.example.com/x", [("title", "Unsubscribe")]),
    ("https://click.example.com/x", [("aria-label", "Se désabonner de la newsletter")]),
    ("https://click.example.com/x", [("data-link-name", "manage-preferences")]),
]

ORDINARY = [
    ("https://shop.example.com/sale?utm_source=mail", "Shop the sale", []),
    ("https://example.com/products/opt-outdoor-jacket", "Outdoor jacket", []),  # "opt-out" + "door"
    ("https://example.com/subscribe?plan=pro", "Subscribe now", []),
    ("https://example.com/account/preferences", "Your account", []),  # an app's settings page
    ("https://example.com/profile/update", "Update profile", []),  # only in a placeholder
    ("https://example.com/search?filter[color]=red", "Red ones", []),
    ("https://[fe80::1]/status", "Status", []),
    ("https://unsubscribe.example.com/blog/post-1", "Read more", []),  # the host is not read
    ("https://example.com/blog#unsubscribe", "Read more", []),  # nor the fragment
    ("https://example.com/p", "Read more", [("style", "unsubscribe"), ("href", "/unsubscribe")]),
    ("https://example.com/baja-california", "Baja California trips", []),
    ("https://example.com/preferred-partners", "Our partners", []),
]


@pytest.mark.parametrize("url", BY_URL)
def test_recognised_by_its_url_or_a_placeholder(url: str) -> None:
    assert is_unsubscribe_link(url)


@pytest.mark.parametrize(("url", "text"), BY_TEXT)
def test_recognised_by_its_text(url: str, text: str) -> None:
    assert not is_unsubscribe_link(url)
    assert is_unsubscribe_link(url, text=text)


@pytest.mark.parametrize(("url", "attributes"), BY_ATTRIBUTE)
def test_recognised_by_an_attribute_of_its_tag(url: str, attributes: list[tuple[str, str | None]]) -> None:
    assert is_unsubscribe_link(url, attributes=attributes)


@pytest.mark.parametrize(("url", "text", "attributes"), ORDINARY)
def test_ordinary_links_are_not_unsubscribe_links(
    url: str, text: str, attributes: list[tuple[str, str | None]]
) -> None:
    assert not is_unsubscribe_link(url, text=text, attributes=attributes)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/u/{{ user.id }}/welcome", ["{{ user.id }}"]),
        ("{{{ pm:unsubscribe }}}", ["{{{ pm:unsubscribe }}"]),
        ("https://example.com/?e={% raw %}x", ["{% raw %}"]),
        ("https://example.com/${token}", ["${token}"]),
        ("https://example.com/?e={contactfield=email}", ["{contactfield=email}"]),
        ("{unsubscribe_url}", ["{unsubscribe_url}"]),
        ("https://example.com/?u={$uid}", ["{$uid}"]),
        ("*|ARCHIVE|*", ["*|ARCHIVE|*"]),
        ("<%asm_group_unsubscribe_raw_url%>", ["<%asm_group_unsubscribe_raw_url%>"]),
        ("https://example.com/%%=RedirectTo(@url)=%%", ["%%=RedirectTo(@url)=%%"]),
        ("https://example.com/?n=[%first_name%]", ["[%first_name%]"]),
        ("[unsubscribe]", ["[unsubscribe]"]),
        ("[[UNSUB_LINK_EN]]", ["[[UNSUB_LINK_EN]]"]),
        ("https://example.com/?v=%recipient.vid%", ["%recipient.vid%"]),
        ("%mailing_list_unsubscribe_url%", ["%mailing_list_unsubscribe_url%"]),
        ("https://[fe80::1]/status", []),
        ("https://[2001:db8::1]:8443/", []),
        ("https://example.com/search?filter[color]=red&ids[]=1", []),
        ("https://example.com/a%20b?q=%E2%82%AC#x", []),
        ("https://example.com/sale?utm_source=mail&x=1", []),
    ],
)
def test_placeholders(url: str, expected: list[str]) -> None:
    assert placeholders(url) == expected
