"""UTM parameters appended to a tracked link's destination (`api.utm`): exact URLs."""

from __future__ import annotations

import pytest

from api.utm import Utm, with_utm

SPRING = Utm(source="newsletter", medium="email", campaign="spring-sale")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "https://shop.example.com/sale",
            "https://shop.example.com/sale?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale",
            id="no-query",
        ),
        pytest.param(
            "https://shop.example.com/sale?color=red&size=m",
            "https://shop.example.com/sale?color=red&size=m"
            "&utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale",
            id="after-the-query",
        ),
        pytest.param(
            "https://shop.example.com/sale#details",
            "https://shop.example.com/sale?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale#details",
            id="fragment-stays-last",
        ),
        pytest.param(
            "https://shop.example.com/sale?color=red#reviews?page=2&x=1",
            "https://shop.example.com/sale?color=red"
            "&utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale#reviews?page=2&x=1",
            id="query-and-a-fragment-holding-?-and-&",
        ),
        pytest.param(
            "https://shop.example.com/sale?",
            "https://shop.example.com/sale?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale",
            id="empty-query",
        ),
        pytest.param(
            "https://shop.example.com/sale?a=1&",
            "https://shop.example.com/sale?a=1&utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale",
            id="query-ending-in-&",
        ),
        pytest.param(
            "https://example.com",
            "https://example.com?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale",
            id="no-path",
        ),
        pytest.param(
            "https://shop.example.com/s?q=caf%C3%A9+cr%C3%A8me&tags=a%2Cb;c",
            "https://shop.example.com/s?q=caf%C3%A9+cr%C3%A8me&tags=a%2Cb;c"
            "&utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale",
            id="existing-encoding-kept-byte-for-byte",
        ),
        pytest.param(
            "https://shop.example.com/sale?utm_source=partner&x=1",
            "https://shop.example.com/sale?utm_source=partner&x=1&utm_medium=email&utm_campaign=spring-sale",
            id="existing-utm_source-never-overridden",
        ),
        pytest.param(
            "https://shop.example.com/sale?UTM_Medium=print&utm%5Fcampaign=x",
            "https://shop.example.com/sale?UTM_Medium=print&utm%5Fcampaign=x&utm_source=newsletter",
            id="names-in-any-case-or-encoding-count-as-present",
        ),
        pytest.param(
            "https://shop.example.com/sale?utm_source=a&utm_medium=b&utm_campaign=c#top",
            "https://shop.example.com/sale?utm_source=a&utm_medium=b&utm_campaign=c#top",
            id="all-present-nothing-added",
        ),
        pytest.param(
            "https://shop.example.com/sale?utm_source=&x=1",
            "https://shop.example.com/sale?utm_source=&x=1&utm_medium=email&utm_campaign=spring-sale",
            id="an-empty-value-is-present-too",
        ),
    ],
)
def test_with_utm(url: str, expected: str) -> None:
    assert with_utm(url, SPRING) == expected


def test_values_are_percent_encoded_so_they_never_end_the_parameter() -> None:
    utm = Utm(
        source="news & offers", medium="e-mail", campaign="Été 2026 #1", term="a=b+c/d?", content="~x_y.z"
    )
    assert with_utm("https://shop.example.com/p?id=7#buy", utm) == (
        "https://shop.example.com/p?id=7&utm_source=news%20%26%20offers&utm_medium=e-mail"
        "&utm_campaign=%C3%89t%C3%A9%202026%20%231&utm_term=a%3Db%2Bc%2Fd%3F&utm_content=~x_y.z#buy"
    )


def test_parameters_come_in_a_fixed_order_and_only_those_set() -> None:
    assert Utm(content="hero", source="mail").parameters() == (
        ("utm_source", "mail"),
        ("utm_content", "hero"),
    )
    assert with_utm("https://example.com/a", Utm()) == "https://example.com/a"
    assert with_utm("https://example.com/a", Utm(term="shoes")) == "https://example.com/a?utm_term=shoes"
