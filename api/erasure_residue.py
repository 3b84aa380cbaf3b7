"""What an erasure would otherwise leave behind in ClickHouse, outside the recipient's own rows.

`api.privacy` deletes the recipient's sends, events and filtered hits and takes their hashes out of the
rollups. Two things still named them:

- **Link labels.** A `url` rollup row's label is the clicked URL, and URLs are often personal
  (`…/unsub?email=ann%40example.com`). After the erased hits are taken out, every `url` row of the
  recipient's campaigns that holds nothing any more (no hit, no message) is deleted: a link only they
  clicked goes, so `/links` lists what it would list had they never been sent anything. A `url` label
  that names the recipient's address (plain or percent-encoded, any case) goes from every campaign of the
  account even when another recipient clicked it (a referral link in someone else's email): the address
  is theirs; the other recipient's click still counts in the campaign's totals, only its line in `/links`
  goes.
- **The webhook attempt log** (`webhook_deliveries`, one row per attempt with message and hit ids, kept 30
  days): the erased messages' rows are deleted.
- **The engagement rollup** (issue 20: one row per account and recipient tag, keeping the address): the
  rows of the recipient's tags under every key of the keyring, and of the tags its rows keep under the
  address (a key since retired), read first so that the mutation names tags only.

Both are mutations (`ALTER TABLE … DELETE`, waited for), which rewrite the parts: a lightweight `DELETE`
would only mask the rows. Their text (ClickHouse keeps it in the table's `mutation_*.txt` files) names
account, campaign ids, message ids and 64-bit hashes of labels, never an address or a URL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import unquote, unquote_plus

from api.sql.rollup_upkeep import engagement_erasure, engagement_tags_of
from schemas.store import Store

_SYNC: Final = "SETTINGS mutations_sync = 2"


def names_recipient(label: str, recipient: str) -> bool:
    """Whether a URL names this recipient's whole address, written plainly or percent-encoded, in any case.
    Only addresses are looked for: a recipient id without an `@` (`u1`) would match unrelated URLs."""
    # A search, not an identity: a URL may carry the address in any case, whatever rule makes two spellings
    # one recipient (`schemas.recipient.normalize_recipient`), so both sides are case-folded.
    address = recipient.strip().casefold()
    if "@" not in address:
        return False
    # the whole address, not the tail of a longer one (joann@…) nor the head of a longer domain (….community)
    whole = re.compile(rf"(?<![\w.+%-]){re.escape(address)}(?![\w-]|\.\w)")
    return any(whole.search(form.casefold()) for form in (label, unquote(label), unquote_plus(label)))


def erase_link_labels(store: Store, account: str, recipient: str, campaigns: Sequence[str]) -> int:
    """Call after the erased hits left the rollups (`api.sql.rollup_upkeep.rollup_erasure`). Deletes the
    `url` rows of ``campaigns`` left empty and the account's `url` rows whose label names ``recipient``.
    Returns how many link labels (campaign, URL) are gone. (Other rollups' labels are not personal: reasons,
    countries, clients; their emptied rows stay, so a campaign whose only recipient was erased still answers
    its stats, with zeros.)"""
    db = store.database
    scope = {"account": account, "campaigns": list(campaigns)}
    emptied = store.query(
        f"SELECT campaign_id, label FROM {db}.rollups "
        "WHERE account = {account:String} AND campaign_id IN {campaigns:Array(String)} AND rollup = 'url' "
        "GROUP BY campaign_id, label HAVING max(length(hits)) = 0 AND max(length(messages)) = 0",
        scope,
    )
    naming = [
        (campaign, label, digest)
        for campaign, label, digest in store.query(
            f"SELECT DISTINCT campaign_id, label, cityHash64(label) FROM {db}.rollups "
            "WHERE account = {account:String} AND rollup = 'url'",
            {"account": account},
        )
        if names_recipient(label, recipient)
    ]
    if emptied:
        store.command(
            f"ALTER TABLE {db}.rollups DELETE WHERE account = {{account:String}} AND rollup = 'url' "
            f"AND campaign_id IN {{campaigns:Array(String)}} AND empty(hits) AND empty(messages) {_SYNC}",
            {"account": account, "campaigns": list(campaigns)},
        )
    if naming:
        store.command(
            f"ALTER TABLE {db}.rollups DELETE WHERE account = {{account:String}} AND rollup = 'url' "
            f"AND cityHash64(label) IN {{digests:Array(UInt64)}} {_SYNC}",
            {"account": account, "digests": sorted({digest for _, _, digest in naming})},
        )
    return len({*emptied, *((campaign, label) for campaign, label, _ in naming)})


def erase_webhook_attempts(store: Store, account: str, messages: Sequence[str]) -> int:
    """Deletes the attempt log's rows of these messages; how many there were. Call after the webhook
    outbox forgot them (`notices.dispatcher.WebhookDispatcher.forget`), so no new attempt is logged."""
    if not messages:
        return 0
    db = store.database
    scope = {"account": account, "messages": list(messages)}
    where = "account = {account:String} AND message_id IN {messages:Array(String)}"
    count = int(store.query(f"SELECT count() FROM {db}.webhook_deliveries WHERE {where}", scope)[0][0])
    if count:
        store.command(f"ALTER TABLE {db}.webhook_deliveries DELETE WHERE {where} {_SYNC}", scope)
    return count


def erase_engagement(store: Store, account: str, tags: Sequence[str], recipients: Sequence[str] = ()) -> None:
    """Delete recipients' engagement rows, in one mutation: by ``tags`` (hex, the keyring's) and by the tags
    of the rows that keep one of the addresses ``recipients`` (none: by tags only, as another process's
    erasure gives them)."""
    db = store.database
    found, query = set(tags), engagement_tags_of(db)
    for recipient in recipients:
        found.update(t for (t,) in store.query(query, {"account": account, "recipient": recipient}))
    for statement in engagement_erasure(db):
        store.command(statement, {"account": account, "tags": sorted(found)})
