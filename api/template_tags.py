"""Template placeholders in a link: what a template engine or mail service fills in after pixelpipe has seen
the email (``{{ url }}``, ``*|UNSUB|*``, ``<%asm_group_unsubscribe_raw_url%>``, ``[unsubscribe]``). Pure.

A click token signs its destination, so a link holding a placeholder must never be tracked: the redirect
would go to the placeholder itself, since the engine fills in the email's HTML and never the signed token.
So `api.link_controls` leaves such a link as it is (reason ``template``, or ``unsubscribe`` when the
placeholder names an unsubscribe or preferences URL).

Recognised: Handlebars, Mustache, Liquid, Jinja, Twig and Go templates (``{{ x }}``, ``{{{ x }}}``,
``{% x %}``: SendGrid's dynamic templates, Postmark's ``{{{ pm:unsubscribe }}}``, HubSpot, Klaviyo, Brevo,
SES templates), ``${x}``, Mautic's and Smarty's ``{x}``, ``{contactfield=email}``, ``{$x}``, Mailchimp's
``*|X|*``, SendGrid's legacy ``<%x%>`` and substitution tags in brackets (``[unsubscribe]``,
``[%first_name%]``), Mailjet's ``[[X]]``, Salesforce Marketing Cloud's ``%%x%%``, Mailgun's
``%recipient.x%`` and ``%unsubscribe_url%``. Brackets that are an IPv6 host (``https://[fe80::1]/``) or
follow a name (``?filter[color]=red``, a PHP or Rails array parameter) are not placeholders.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

_PLACEHOLDER: Final = re.compile(
    r"""\{\{.*?\}\}                          # {{ x }}, {{{ x }}}
      | \{%.*?%\}                            # {% x %}
      | \$\{[^{}]*\}                         # ${x}
      | \{\$?[A-Za-z_][\w.:=-]*\}            # {x}, {$x}, {contactfield=email}
      | \*\|[^|]*\|\*                        # *|X|*
      | <%.*?%>                              # <%x%>
      | %%.+?%%                              # %%x%%, %%=x=%%
      | \[\[[^\[\]]*\]\]                     # [[X]]
      | (?<![\w\]%])\[%?[A-Za-z_][\w:.-]*%?\]  # [x], [%x%]
      | %recipient\.[\w.]+%                  # %recipient.x%
      | %(?:tag_|mailing_list_)?unsubscribe_url%
    """,
    re.VERBOSE | re.DOTALL,
)


def placeholders(url: str) -> list[str]:
    """Each placeholder in ``url``, as written (delimiters included), in order."""
    return [match[0] for match in _PLACEHOLDER.finditer(url) if not _is_ip_literal(match[0])]


def _is_ip_literal(found: str) -> bool:
    """Whether ``[...]`` is an IPv6 host (with an optional zone), not a substitution tag."""
    if not (found.startswith("[") and found.endswith("]")):
        return False
    address = found[1:-1].split("%", 1)[0]
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True
