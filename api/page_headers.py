"""The security headers of the pages a browser renders: the dashboard (and its not-built page), the API
docs and the tracking preferences page. Pure constants.

Content-Security-Policy, same origin only: scripts from this process's files, never inline (an injected
``<script>`` does not run) and never eval; requests (``fetch``, ``EventSource``) to this origin only; no
plugin, no ``<base>``, and no framing (``frame-ancestors 'none'``, with ``X-Frame-Options`` for older
browsers). Styles may be inline: chart and map libraries write ``style`` attributes, and a style cannot run
code. The docs' pages also allow ``blob:`` workers and ``data:`` fonts, which their packages use.
"""

from __future__ import annotations

from typing import Final

_COMMON: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DASHBOARD_CSP: Final = f"{_COMMON}; img-src 'self' data:; font-src 'self'"
DOCS_CSP: Final = f"{_COMMON}; img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:"
# The tracking preferences page (`api.preferences`): no script, no image, no request at all; its own inline
# style; its form posts to itself.
PREFERENCES_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def page_headers(csp: str) -> dict[str, str]:
    """The headers of an HTML page under ``csp``."""
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


# Every file served: its type is the one we say.
FILE_HEADERS: Final = {"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin"}
