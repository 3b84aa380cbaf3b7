"""The reminder scheduler (issue 20): decides each due reminder once and hands its notice to the notice sinks.

Owns the loop over ``reminders`` (0014) and its queries. A pass (`ReminderScheduler.run_once`), in this order:

1. **Read** up to ``batch`` reminders due (``due_at`` at least ``grace_s`` ago: room for the hits received
   before it to be stored) still ``pending`` or ``decided``, oldest first (``FINAL``: a row's newest state).
2. **Drop** those of recipients suppressed now (do-not-track, a refused consent, an erasure): their rows are
   deleted and nothing is sent (and again at the end of the pass for one suppressed during it). A person
   who said no to tracking since the send gets no claim about their opens, which were no longer recorded.
3. **Decide** the pending ones from the message's counted hits received up to its due time
   (`schemas.reminders.decide`: a person's open or click: ``opened``, nothing is sent; machine opens only:
   ``unknown``; nothing: ``not_opened``), and **record** every decision (state ``decided`` with the outcome,
   the machine opens and the decision's time; or ``opened``) before anything is emitted.
4. **Emit** the notices of every ``decided`` row — those just decided and those an earlier pass decided but
   did not mark sent (a crash, a stop) — to each sink (`until_taken`: never given up while running), with
   their recipient from ``sends`` (`notices.making.MessageLookup`).
5. **Mark** them ``sent``.

Exactly once per message: a decision is recorded before its notice leaves, and a notice is emitted again
only when its ``sent`` mark was not recorded — with the same id (`schemas.reminders.reminder_notice_id`) and
the same fields (read from the decision's row). The webhook outbox drops a delivery it has seen (by delivery
id, derived from the notice id) and the live feed a reminder it holds (`notices.live.LiveFeed`), so a second
emission reaches neither. On Kafka only the lease holder runs passes (``owner``: `notices.reminder_lease`);
a second decider during a rebalance emits the same ids, dropped the same way.

Must never hold up the processor (its own task, the store in worker threads), never emit a reminder of a
suppressed recipient, never give up a decided notice while running.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import Counter

from notices.hub import NoticeSink
from notices.making import MessageLookup
from notices.reminder_making import DueReminder, reminder_notice
from notices.retries import until_taken
from schemas.backoff import Backoff
from schemas.reminders import OPENED, REMINDER_COLUMNS, ReminderState, Seen, decide
from schemas.store import Store, StoreError
from schemas.suppression import DoNotTrack

log = logging.getLogger(__name__)

REMINDERS = Counter(
    "pixelpipe_reminders_total",
    "Reminders decided (not_opened, unknown, opened) or dropped (suppressed recipient)",
    ["outcome"],
)
MAX_BATCH: Final = 1000


@dataclass(frozen=True, slots=True)
class ReminderTiming:
    """How often the scheduler looks (``poll_s``), how long after a reminder's due time it decides
    (``grace_s``: the hits received before it are stored by then) and how many it takes per pass."""

    poll_s: float = 5.0
    grace_s: float = 60.0
    batch: int = 500


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass did: decided by outcome, emitted (notices handed to every sink), dropped (suppressed)."""

    decided: dict[str, int]
    emitted: int
    dropped: int

    @property
    def idle(self) -> bool:
        return not self.decided and not self.emitted and not self.dropped


def due_sql(db: str) -> str:
    return f"""SELECT account, campaign_id, message_id, recipient_tag, toUnixTimestamp64Milli(registered_at),
                   toUnixTimestamp64Milli(sent_at), toUnixTimestamp64Milli(due_at), state, outcome,
                   machine_opens, toUnixTimestamp64Milli(decided_at)
            FROM {db}.reminders FINAL
            WHERE due_at <= fromUnixTimestamp64Milli({{upto:Int64}}, 'UTC')
              AND state IN ('pending', 'decided')
            ORDER BY due_at, account, message_id
            LIMIT {{limit:UInt32}}"""  # noqa: S608 - db is a validated name; values are bound


def seen_sql(db: str) -> str:
    """A campaign's messages' counted hits received up to each one's due time (``dues``, ms, by position)."""
    return f"""SELECT message_id, uniqExactIf(hit_id, kind = 'open' AND verdict = 'human'),
                   uniqExactIf(hit_id, kind = 'click' AND verdict = 'human'),
                   uniqExactIf(hit_id, kind = 'open' AND verdict = 'machine')
            FROM {db}.events
            WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}
              AND message_id IN {{messages:Array(String)}}
              AND toUnixTimestamp64Milli(received_at)
                  <= transform(message_id, {{messages:Array(String)}}, {{dues:Array(Int64)}}, toInt64(0))
            GROUP BY message_id"""  # noqa: S608 - db is a validated name; values are bound


def delete_sql(db: str) -> str:
    return (
        f"DELETE FROM {db}.reminders "  # noqa: S608 - db is a validated name; values are bound
        "WHERE account = {account:String} AND message_id IN {messages:Array(String)}"
    )


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def state_row(due: DueReminder, state: ReminderState) -> list[Any]:
    """A ``reminders`` row of ``due`` in ``state`` (`schemas.reminders.REMINDER_COLUMNS`)."""
    return [
        due.account, due.campaign_id, due.message_id, due.recipient_tag, _time(due.registered_at_ms),
        _time(due.sent_at_ms), _time(due.due_at_ms), state.value, state.rank, due.outcome, due.machine_opens,
        _time(due.decided_at_ms),
    ]  # fmt: skip


class ReminderScheduler:
    """Decides due reminders and emits their notices (the module's docstring has the order and why).

    ``sinks`` is asked at each emission (the wiring wraps the hub's sinks to hold back suppressed
    recipients after this is built); ``owner`` says whether this process decides now (on Kafka the lease;
    alone, always). ``clock`` is epoch seconds: tests move it instead of waiting days.
    """

    def __init__(
        self,
        store: Store,
        *,
        sinks: Callable[[], Sequence[NoticeSink]],
        lookup: MessageLookup | None = None,
        do_not_track: DoNotTrack | None = None,
        owner: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
        timing: ReminderTiming | None = None,
        retry_s: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        timing = timing or ReminderTiming()
        if not 0 < timing.batch <= MAX_BATCH or timing.poll_s <= 0 or timing.grace_s < 0:
            raise ValueError(f"need 0 < batch <= {MAX_BATCH}, poll_s > 0 and grace_s >= 0")
        self.store = store
        self.sinks = sinks
        self.lookup = lookup
        self.do_not_track = do_not_track
        self.owner = owner
        self.clock = clock
        self.poll_s = timing.poll_s
        self.grace_s = timing.grace_s
        self.batch = timing.batch
        self._backoff = Backoff(*retry_s)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="pixelpipe-reminders")

    def poke(self) -> None:
        """Run a pass now (tests, after moving the clock)."""
        self._wake.set()

    async def stop(self) -> None:
        """End the loop; a pass under way may be cut short: what it decided and did not mark ``sent`` is
        emitted again by the next start's first pass (the same notices)."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=5.0)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None

    async def _run(self) -> None:
        retry = Backoff(1.0, 60.0)
        failures = 0
        while not self._stopping:
            delay = self.poll_s
            try:
                if self.owner():
                    result = await self.run_once()
                    if not result.idle and not self._stopping:
                        delay = 0.0  # a full batch: more may be due
                failures = 0
            except StoreError as exc:
                failures += 1
                delay = retry.delay(failures)
                log.warning("reminders: the store failed (%s); trying again in %.0f s", exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = retry.delay(failures)
                if self._stopping:
                    break
                log.exception("reminders: a pass failed; trying again in %.0f s", delay)
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def run_once(self) -> PassResult:
        """One pass (the module's docstring): read, drop, decide and record, emit, mark."""
        now_ms = int(self.clock() * 1000)
        upto = now_ms - int(self.grace_s * 1000)
        rows = await asyncio.to_thread(
            self.store.query, due_sql(self.store.database), {"upto": upto, "limit": self.batch}
        )
        due = [_due(row) for row in rows]
        if not due:
            return PassResult({}, 0, 0)
        suppressed = [d for d in due if self._suppressed(d)]
        if suppressed:
            await asyncio.to_thread(self._delete, suppressed)
            REMINDERS.labels("dropped").inc(len(suppressed))
        kept = [d for d in due if not self._suppressed(d)]
        pending = [d for d in kept if d.state == ReminderState.PENDING.value]
        decided = [d for d in kept if d.state == ReminderState.DECIDED.value]
        counts: collections.Counter[str] = collections.Counter()
        if pending:
            seen = await asyncio.to_thread(self._seen, pending)
            made = [self._decided(d, seen.get((d.account, d.message_id), Seen()), now_ms) for d in pending]
            rows_made = [
                state_row(d, ReminderState.OPENED if d.outcome == OPENED else ReminderState.DECIDED)
                for d in made
            ]
            await asyncio.to_thread(self.store.insert, "reminders", REMINDER_COLUMNS, rows_made)
            counts.update(d.outcome for d in made)
            for outcome, n in counts.items():
                REMINDERS.labels(outcome).inc(n)
            decided += [d for d in made if d.outcome != OPENED]
        sent: list[list[Any]] = []
        if decided:
            await self._emit(decided)  # the sinks hold back a recipient suppressed meanwhile
            sent = [state_row(d, ReminderState.SENT) for d in decided if not self._suppressed(d)]
            await asyncio.to_thread(self.store.insert, "reminders", REMINDER_COLUMNS, sent)
        # A recipient suppressed (erased) during the pass: the rows written since go too. The erasure's own
        # delete follows its suppression, so a row written after this check is deleted by it.
        late = [d for d in kept if self._suppressed(d)]
        if late:
            await asyncio.to_thread(self._delete, late)
            REMINDERS.labels("dropped").inc(len(late))
        return PassResult(dict(counts), len(sent), len(suppressed) + len(late))

    def _suppressed(self, due: DueReminder) -> bool:
        return bool(
            self.do_not_track is not None
            and due.recipient_tag
            and self.do_not_track.suppressed_hex(due.recipient_tag)
        )

    @staticmethod
    def _decided(due: DueReminder, seen: Seen, now_ms: int) -> DueReminder:
        return replace(due, outcome=decide(seen), machine_opens=seen.machine_opens, decided_at_ms=now_ms)

    def _seen(self, pending: Sequence[DueReminder]) -> dict[tuple[str, str], Seen]:
        by_campaign: dict[tuple[str, str], dict[str, int]] = collections.defaultdict(dict)
        for d in pending:
            by_campaign[(d.account, d.campaign_id)][d.message_id] = d.due_at_ms
        seen: dict[tuple[str, str], Seen] = {}
        for (account, campaign_id), dues in by_campaign.items():
            messages = list(dues)
            rows = self.store.query(
                seen_sql(self.store.database),
                {
                    "account": account,
                    "campaign_id": campaign_id,
                    "messages": messages,
                    "dues": [dues[m] for m in messages],
                },
            )
            for message_id, opens, clicks, machine in rows:
                seen[(account, str(message_id))] = Seen(int(opens), int(clicks), int(machine))
        return seen

    def _delete(self, dropped: Sequence[DueReminder]) -> None:
        by_account: dict[str, list[str]] = collections.defaultdict(list)
        for d in dropped:
            by_account[d.account].append(d.message_id)
        for account, messages in by_account.items():
            self.store.command(delete_sql(self.store.database), {"account": account, "messages": messages})

    async def _emit(self, decided: Sequence[DueReminder]) -> None:
        notices = [reminder_notice(d) for d in decided]
        lookup = self.lookup
        if lookup is not None:
            notices = await until_taken(
                lambda: asyncio.to_thread(lookup.complete, notices),
                what="reminders: message lookup",
                backoff=self._backoff,
                log=log,
                give_up=lambda: self._stopping,
            )
        for sink in self.sinks():
            await until_taken(
                functools.partial(sink, notices),
                what=f"reminders: {getattr(sink, '__qualname__', 'sink')}",
                backoff=self._backoff,
                log=log,
                give_up=lambda: self._stopping,
            )


def _due(row: Sequence[Any]) -> DueReminder:
    return DueReminder(
        account=str(row[0]),
        campaign_id=str(row[1]),
        message_id=str(row[2]),
        recipient_tag=str(row[3]),
        registered_at_ms=int(row[4]),
        sent_at_ms=int(row[5]),
        due_at_ms=int(row[6]),
        state=str(row[7]),
        outcome=str(row[8]),
        machine_opens=int(row[9]),
        decided_at_ms=int(row[10]),
    )
