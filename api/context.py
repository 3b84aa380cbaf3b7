"""What every resource of the API shares about a request: the context it is answered in (`ApiContext`: the
store, the keyring, the settings the handlers read), the caller's account (`account_dependency`: from the
bearer key, else from the dashboard's session cookie, `api.cookie_auth`), the rule for a recipient as the
API takes it (in a body or a path), and the one way a handler runs a read (`ApiContext.read`), and the
parameters of a page of a list.

Imports no resource module: the resource modules (`api.messages`, `api.campaigns`, `api.recipients`,
`api.privacy`, `api.webhooks`, `api.live`) import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.params import Parameter, QueryParameter

from api.account_settings import AccountSettings, AccountSettingsCache
from api.auth import account_of
from api.campaign_reads import CampaignReads
from api.cookie_auth import session_account
from api.delivery_numbers import DeliveryNumbers
from api.engagement_backfill import EngagementBackfill
from api.errors import PATTERN_WORDS
from api.export_jobs import ExportJobs
from api.open_numbers import OpenNumbers
from api.report_warmer import ReportWarmer
from api.session import COOKIE, Sessions
from api.sql.common import Query
from api.sql.exact import ExactRead, read_exact
from api.sql.pages import MAX_PAGE
from schemas.store import Store
from schemas.suppression import DoNotTrack
from schemas.tokens import Keyring


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    keyring: Keyring
    public_url: str
    api_keys: Mapping[str, str] = field(repr=False)  # bearer key -> account: secrets, kept out of the repr
    do_not_track: DoNotTrack | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    webhook_allow_private: bool = False  # PIXELPIPE_WEBHOOK_ALLOW_PRIVATE: see `schemas.webhook_guard`
    retention_days: int = 396  # PIXELPIPE_RETENTION_DAYS: a send older than this is refused
    # PIXELPIPE_REMINDER_MIN_AFTER_SECONDS: the shortest `remind_if_unopened_after` (issue 20)
    reminder_min_after_s: int = 60
    sessions: Sessions | None = None  # the dashboard's sign-in sessions (None: bearer keys only)
    # The campaigns' delivery numbers counted so far, per bucket (`api.delivery_numbers`): this process's.
    delivery_numbers: DeliveryNumbers = field(default_factory=DeliveryNumbers, repr=False)
    # The campaigns' MPP-only messages and implied opens counted so far, per bucket (`api.open_numbers`).
    open_numbers: OpenNumbers = field(default_factory=OpenNumbers, repr=False)
    # Each campaign's stats inputs, kept while the parts holding its rollup rows stay (`api.campaign_reads`).
    campaign_reads: CampaignReads = field(default_factory=CampaignReads, repr=False)
    # Each account's settings (consent mode, tracking base URL), read at most once a second
    # (`api.account_settings`): this process's.
    account_settings: AccountSettingsCache = field(default_factory=AccountSettingsCache, repr=False)
    # The campaign reports kept ready in the background (`api.report_warmer`; None: off).
    report_warmer: ReportWarmer | None = field(default=None, repr=False)
    # Tells this process's webhook dispatcher that a webhook was created or deleted (`notices.directory`'s
    # `invalidate`; None: no dispatcher here, other processes reload within a second).
    webhooks_changed: Callable[[], None] | None = field(default=None, repr=False)
    # The backfill of rows stored before 0012 while it runs in this process (`api.engagement_backfill`): an
    # erasure tells it, so the recipient's engagement rows are deleted again when it ends.
    engagement_backfill: EngagementBackfill | None = field(default=None, repr=False)
    # This process's export jobs and their files (`api.export_jobs`; issue 20). None: exports not served.
    exports: ExportJobs | None = field(default=None, repr=False)

    def settings(self, account: str) -> AccountSettings:
        """The account's settings, as this process last read them (at most `SETTINGS_TTL_S` old)."""
        return self.account_settings.get(self.read, self.store.database, account)

    def read(self, q: Query | ExactRead) -> list[tuple[Any, ...]]:
        """The rows of ``q``: one query, or the one or two of an exact read of the rollups."""
        if isinstance(q, ExactRead):
            return read_exact(self.store.query, q)
        return self.store.query(q.sql, q.parameters)


def _account(request: Request[Any, Any, Any], ctx: NamedDependency[ApiContext]) -> str:
    authorization = request.headers.get("authorization")
    # A bearer header wins over the cookie: a script's request is never held to the browser's rules.
    if authorization is None and ctx.sessions is not None and COOKIE in request.cookies:
        return session_account(request, ctx.sessions, ctx.public_url)
    return account_of(authorization, ctx.api_keys)


# Every controller of the API resolves the caller's account with this.
account_dependency = Provide(_account, sync_to_thread=False)


# What `schemas.recipient.checked_recipient` accepts, as the schema says it: something not blank, without
# control characters or line separators.
_CONTROLS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
RECIPIENT_PATTERN = rf"^[^{_CONTROLS}]*[^\s{_CONTROLS}][^{_CONTROLS}]*$"
PATTERN_WORDS[RECIPIENT_PATTERN] = "an address that is not blank and holds no control character or line break"
Recipient = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=512,
        pattern=RECIPIENT_PATTERN,
        description="The recipient's address. Compared trimmed and in lower case (one recipient however "
        "it is written); refused (400) when blank or holding a control character or line break.",
    ),
]
# The same rule for a recipient named in a path (`/v1/recipients/{recipient}`, percent-encoded).
RecipientPath = Annotated[
    str,
    Parameter(
        max_length=512,
        pattern=RECIPIENT_PATTERN,
        description="The recipient's address, percent-encoded (`/` as `%2F`); any case, trimmed.",
    ),
]

# The pages of the campaign and message lists (`api.sql.pages`).
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description="Rows per page.")]
Cursor = Annotated[
    str | None,
    QueryParameter(
        max_length=512,
        description="`next_cursor` of the previous page, as given (opaque); omit for the first page. "
        "Any other value is refused (400).",
    ),
]
