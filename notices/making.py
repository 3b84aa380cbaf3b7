"""Making notices: one per stored counted hit (`notices_of`, pure), completed with what a hit does not carry
(`MessageLookup`: the recipient, and whether an open is the message's first).

Must never decide delivery or keep more than a bounded cache; `first` is asked of ClickHouse, not remembered,
so that a restart or a replay gives the same answer.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from notices.read_making import named_all, unnamed
from processors.pipeline import ProcessedHit
from schemas.notices import DELIVERY_NOTICE_TYPES, NOTICE_VERSION, Notice, notice_type
from schemas.store import Store
from schemas.verdicts import Classification
from schemas.wire import fast_constructor, fast_replace

Stored = Sequence[tuple[ProcessedHit, Classification]]  # what the processor stored, as it hands it on


# Once per counted hit each: a frozen dataclass's __init__ and dataclasses.replace cost 3x these.
_notice: Final = fast_constructor(Notice)
_completed: Final = fast_replace(Notice, "recipient", "first")


def notices_of(stored: Stored, created_at_ms: int) -> list[Notice]:
    """The notices of a stored batch, in stored order; hits that count nowhere make none. Pure."""
    notices = []
    for processed, classification in stored:
        hit, agent = processed.hit, processed.agent
        kind = notice_type(hit.kind, classification.verdict.value)
        if kind is None:
            continue
        notices.append(
            _notice(
                id=hit.hit_id,
                type=kind,
                account=hit.account,
                campaign_id=hit.campaign_id,
                message_id=hit.message_id,
                at_ms=hit.received_at_ms,
                created_at_ms=created_at_ms,
                verdict=classification.verdict.value,
                reason=classification.reason,
                via_proxy=classification.via_proxy,
                sent_at_ms=hit.sent_at * 1000,
                link_index=hit.link_index,
                url=hit.url,
                client=agent.client,
                device=agent.device,
                os=agent.os,
                country=processed.geo.country,
                recipient_tag=hit.recipient_tag,
                first=False,
                recipient="",
                provider="",
                provider_message_id="",
                provider_type="",
                bounce_type="",
                smtp_status="",
                smtp_code=0,
                diagnostic="",
                read_of="",
                opened_at_ms=0,
                read_ms=0,
                read_end="",
                read_category="",
                v=NOTICE_VERSION,
            )
        )
    return notices


@dataclass(slots=True)
class _Facts:
    recipient: str | None = None  # None: not looked up yet
    first_open: str | None = None  # hit id of the message's first human open, once one is stored
    recipient_tag: str = ""  # the hits' recipient tag (hex): how an erasure by tag finds the message


class MessageLookup:
    """Adds what a hit does not carry: the recipient (from ``sends``) and ``first`` (from ``events``).

    ``first`` is asked of ClickHouse after the batch is stored — the earliest human open by ``received_at``
    (ties by hit id) — rather than remembered, so a restart or a replay gives the same answer. Known answers
    are kept in a bounded LRU: the first open of a message never changes once stored (short of an
    out-of-order hit from the edge's spool older than it, which then is marked first too). Blocking: run it in
    a worker thread. A delivery notice passes as it is: it comes complete from its matched event. A read
    notice gets its recipient as a hit's does; one whose open the processor did not judge is named by its
    open's verdict in ``events`` (one query per campaign of such notices), and left out when its open is not
    there (`notices.read_making.named`).
    """

    def __init__(self, store: Store, cache_size: int = 100_000) -> None:
        self.store = store
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[tuple[str, str], _Facts] = collections.OrderedDict()
        self._lock = threading.Lock()  # `forget` comes from another thread than `complete`

    def complete(self, notices: Sequence[Notice]) -> list[Notice]:
        want_recipient: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        want_first: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        want_verdict: dict[tuple[str, str], set[tuple[str, str]]] = collections.defaultdict(set)
        for n in notices:
            if n.type in DELIVERY_NOTICE_TYPES:
                continue
            facts = self._facts(n.message_key)
            facts.recipient_tag = n.recipient_tag or facts.recipient_tag
            if facts.recipient is None:
                want_recipient[(n.account, n.campaign_id)].add(n.message_id)
            if n.type == "open" and facts.first_open is None:
                want_first[(n.account, n.campaign_id)].add(n.message_id)
            if unnamed(n):
                want_verdict[(n.account, n.campaign_id)].add((n.message_id, n.read_of))
        db = self.store.database
        for (account, campaign_id), messages in want_recipient.items():
            rows = self.store.query(
                f"""SELECT message_id, any(recipient) FROM {db}.sends
                    WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}
                      AND message_id IN {{messages:Array(String)}}
                    GROUP BY message_id""",  # noqa: S608 - db is a validated name; values are bound
                {"account": account, "campaign_id": campaign_id, "messages": sorted(messages)},
            )
            found = dict(rows)
            for message_id in messages:
                self._facts((account, message_id)).recipient = str(found.get(message_id, ""))
        for (account, campaign_id), messages in want_first.items():
            rows = self.store.query(
                f"""SELECT message_id, argMin(hit_id, (received_at, hit_id)) FROM {db}.events
                    WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}
                      AND message_id IN {{messages:Array(String)}} AND kind = 'open' AND verdict = 'human'
                    GROUP BY message_id""",  # noqa: S608 - db is a validated name; values are bound
                {"account": account, "campaign_id": campaign_id, "messages": sorted(messages)},
            )
            for message_id, first_open in rows:
                self._facts((account, message_id)).first_open = str(first_open)
        open_verdicts: dict[str, str] = {}
        for (account, campaign_id), opens in want_verdict.items():
            rows = self.store.query(
                f"""SELECT hit_id, any(verdict) FROM {db}.events
                    WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}
                      AND message_id IN {{messages:Array(String)}} AND kind = 'open'
                      AND hit_id IN {{hits:Array(String)}}
                    GROUP BY hit_id""",  # noqa: S608 - db is a validated name; values are bound
                {
                    "account": account,
                    "campaign_id": campaign_id,
                    "messages": sorted({m for m, _ in opens}),
                    "hits": sorted({h for _, h in opens}),
                },
            )
            open_verdicts.update((str(hit_id), str(verdict)) for hit_id, verdict in rows)
        completed = []
        for n in notices:
            if n.type in DELIVERY_NOTICE_TYPES:
                completed.append(n)
                continue
            facts = self._facts(n.message_key)
            first = n.type == "open" and facts.first_open == n.id
            completed.append(_completed(n, recipient=facts.recipient or "", first=first))
        return named_all(completed, open_verdicts) if want_verdict else completed

    def __len__(self) -> int:
        """Messages whose facts are kept."""
        return len(self._cache)

    def forget(self, account: str, recipient_tags: Iterable[str], message_ids: Iterable[str] = ()) -> int:
        """Drop what is kept of an erased recipient's messages (by id, or by the hits' recipient tag).
        Returns how many messages were forgotten."""
        tags, messages = frozenset(recipient_tags), frozenset(message_ids)
        with self._lock:
            gone = [
                key
                for key, facts in self._cache.items()
                if key[0] == account and (key[1] in messages or facts.recipient_tag in tags)
            ]
            for key in gone:
                del self._cache[key]
        return len(gone)

    def _facts(self, key: tuple[str, str]) -> _Facts:
        with self._lock:
            facts = self._cache.get(key)
            if facts is None:
                facts = self._cache[key] = _Facts()
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
            return facts
