from __future__ import annotations

import pytest

from processors.privacy import stored_ip


@pytest.mark.parametrize(
    ("ip", "policy", "expected"),
    [
        ("81.2.69.160", "truncate", "81.2.69.0"),
        ("2001:db8:1234:5678::1", "truncate", "2001:db8:1234::"),
        ("81.2.69.160", "drop", ""),
        ("81.2.69.160", "full", "81.2.69.160"),
        ("garbage", "truncate", ""),
        ("", "full", ""),
    ],
)
def test_stored_ip(ip: str, policy: str, expected: str) -> None:
    assert stored_ip(ip, policy) == expected  # type: ignore[arg-type]
