"""The webhook dispatcher: delivers notices to webhooks over HTTP, at least once, in order per message, with
retries (`WebhookDispatcher`; its docstring has the delivery order and guarantees).

Must never let an endpoint's failure or slowness reach the hub or the processor (endpoints wait on the
outbox), never call an address the SSRF rule refuses (`notices.transport`), never sign with an empty secret.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from prometheus_client import Counter, Gauge

from notices.attempts import AttemptLog
from notices.deliveries import plan_deliveries
from notices.directory import WebhookDirectory
from notices.outbox import Outbox, PendingDelivery
from notices.retries import RetryPolicy
from notices.signing import ATTEMPT_HEADER, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from notices.transport import GuardedBackend, GuardedTransport, Resolver, system_resolver
from schemas.backoff import Backoff, Retry
from schemas.errors import retriable
from schemas.notices import Notice, Webhook
from schemas.store import StoreError
from schemas.webhook_guard import BlockedTarget, check_url

log = logging.getLogger(__name__)

T = TypeVar("T")

WEBHOOK_ATTEMPTS = Counter("pixelpipe_webhook_attempts_total", "Webhook delivery attempts", ["status"])
# A lane whose run failed (not an attempt: the outbox or the dispatcher itself) is run again after this.
LANE_BACKOFF = Backoff(5.0, 60.0)
OUTBOX_PENDING = Gauge("pixelpipe_webhook_outbox_pending", "Webhook deliveries waiting in the outbox")


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield


@dataclass(frozen=True, slots=True)
class _Outcome:
    next_due: float | None  # None: the lane goes on at once


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one attempt got: the status code (0: no answer), what went wrong, and whether trying again can
    help (a target the SSRF rule refuses is failed at once, not retried)."""

    status_code: int
    error: str = ""
    retriable: bool = True


class WebhookDispatcher:
    """Delivers notices to webhooks over HTTP, at least once, in order per message, with retries.

    Delivery order and guarantees:

    1. `accept` plans one delivery per (notice, matching webhook of the notice's account), with a
       deterministic id, and writes them to the outbox (SQLite, fsync'd) before it returns; a delivery id
       already in the outbox (a replayed notice, pending or finished within ``keep_finished_s``) is ignored.
       In Kafka mode the consumer commits only after `accept` returned.
    2. Deliveries of one webhook and one message form a lane; a lane sends one delivery at a time, oldest
       first, and the next only once the one before it was delivered or given up. Lanes run concurrently
       (at most ``max_in_flight`` in all, ``max_in_flight_per_webhook`` per webhook), so one failing endpoint
       holds up only its own lanes, and never the processor.
    3. An attempt is ``POST url`` with the JSON body ``{"id", "type", "created_at", "data"}`` and the headers
       ``Pixelpipe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
       ``Pixelpipe-Delivery-Id``, ``Pixelpipe-Event-Id`` (= body ``id``) and ``Pixelpipe-Attempt``. A 2xx
       answer within ``timeout_s`` delivers it; anything else (another status, a timeout, a refused
       connection; redirects are not followed) is a failure, retried on ``policy`` (1 s, 2 s, 4 s … 10 min,
       for over an hour by default), then given up (``failed``). A delivery whose webhook was deleted is
       dropped (``cancelled``). A target the SSRF rule refuses (`schemas.webhook_guard`: checked on the URL,
       then on every address at connect time, see `notices.transport`) is ``failed`` at once,
       with the reason as its error; unless ``allow_private``, only public addresses are called.
    4. Every attempt is logged to ``webhook_deliveries`` (when a store is given). A stop cancels attempts in
       flight; they stay pending in the outbox and are sent again at the next start — so a receiver may see
       a delivery twice and deduplicates on the body's ``id``.
    """

    def __init__(
        self,
        *,
        outbox_path: Path,
        directory: WebhookDirectory,
        policy: RetryPolicy | None = None,
        attempt_log: AttemptLog | None = None,
        timeout_s: float = 10.0,
        max_in_flight: int = 64,
        max_in_flight_per_webhook: int = 4,
        keep_finished_s: float = 86_400.0,
        housekeeping_s: float = 1.0,
        sweep_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = "pixelpipe-webhooks/0.1",
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.outbox_path = outbox_path
        self.directory = directory
        self.policy = policy or RetryPolicy()
        self.attempt_log = attempt_log or AttemptLog(None)
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.max_in_flight_per_webhook = max_in_flight_per_webhook
        self.keep_finished_s = keep_finished_s
        self.housekeeping_s = housekeeping_s
        self.sweep_s = sweep_s
        self.clock = clock
        self._transport = transport  # given (tests): used as it is; by default a `GuardedTransport`
        self._user_agent = user_agent
        self.allow_private = allow_private
        self._resolver = resolver
        self._rng = random.SystemRandom()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._outbox: Outbox | None = None
        self._client: httpx.AsyncClient | None = None
        self._due: list[tuple[float, str]] = []  # heap of (due at, lane); stale entries are skipped
        self._scheduled: dict[str, float] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._lane_failures: dict[str, Retry] = {}  # lanes whose last runs failed, and how often
        self._per_webhook: dict[str, asyncio.Semaphore] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.delivered = 0
        self.failed = 0

    # -- lifecycle

    async def start(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pixelpipe-outbox")
        self._outbox = await self._call(Outbox, self.outbox_path)
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=32)
        backend = GuardedBackend(allow_private=self.allow_private, resolver=self._resolver)
        self._client = httpx.AsyncClient(
            transport=self._transport or GuardedTransport(backend, limits=limits),
            timeout=httpx.Timeout(self.timeout_s),
            follow_redirects=False,
            trust_env=False,  # no proxy and no .netrc credentials from the environment
            headers={"User-Agent": self._user_agent, "Content-Type": "application/json"},
        )
        self._wake = asyncio.Event()
        try:
            await self.directory.fresh()
        except StoreError as exc:  # start anyway: `accept` raises (and is retried) until the store answers
            log.warning("webhooks: the directory is not loaded yet (%s)", exc)
        heads = await self._call(self._outbox.heads)
        for lane, due in heads:
            self._schedule(lane, due)
        if heads:
            log.info("webhooks: %d lanes pending in the outbox from an earlier run", len(heads))
        self._task = asyncio.create_task(self._dispatch(), name="pixelpipe-webhooks")

    async def stop(self, deadline_s: float = 3.0) -> None:
        """Let attempts in flight finish within ``deadline_s`` (the rest stay pending), then close."""
        if self._task is None:
            return
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        await asyncio.wait({self._task}, timeout=1.0)
        running = set(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=deadline_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self.attempt_log.flush()
        if self._client is not None:
            await self._client.aclose()
        if self._outbox is not None:
            await self._call(self._outbox.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # -- intake

    async def accept(self, notices: Sequence[Notice]) -> None:
        """As a hub sink (or the Kafka consumer's handler): durable in the outbox when it returns."""
        await self.directory.fresh()
        deliveries = plan_deliveries(notices, self.directory.of_account)
        if not deliveries:
            return
        assert self._outbox is not None  # noqa: S101 - start() opened it
        lanes = await self._call(self._outbox.add, deliveries, self.clock())
        now = self.clock()
        for lane in lanes:
            if lane not in self._running and lane not in self._scheduled:
                self._schedule(lane, now)

    async def pending(self) -> int:
        assert self._outbox is not None  # noqa: S101
        return await self._call(self._outbox.pending)

    def forget(
        self, account: str, recipient_tags: Iterable[str], message_ids: Iterable[str] = ()
    ) -> concurrent.futures.Future[dict[str, int]]:
        """`Outbox.forget` on the outbox's thread, from any thread (a lane finds its deleted head gone)."""
        assert self._executor is not None  # noqa: S101 - start() made it
        assert self._outbox is not None  # noqa: S101
        tags, messages = list(recipient_tags), list(message_ids)
        outbox = self._outbox

        def purge() -> dict[str, int]:
            # Erased by tag too (another process's erasure, through the privacy topic): their attempts
            # neither. Here, off the event loop: `AttemptLog.forget` waits for a flush in progress.
            self.attempt_log.forget(account, [*messages, *outbox.messages_of(account, tags)])
            return outbox.forget(account, tags, messages)

        return self._executor.submit(purge)

    async def states(self) -> dict[str, int]:
        """Outbox rows by state (pending, delivered, failed, cancelled)."""
        assert self._outbox is not None  # noqa: S101
        return await self._call(self._outbox.states)

    # -- the loop

    def _schedule(self, lane: str, at: float) -> None:
        current = self._scheduled.get(lane)
        if current is not None and current <= at:
            return
        self._scheduled[lane] = at
        heapq.heappush(self._due, (at, lane))
        if self._wake is not None:
            self._wake.set()

    async def _dispatch(self) -> None:
        assert self._wake is not None  # noqa: S101 - start() made it
        assert self._outbox is not None  # noqa: S101
        next_housekeeping = next_sweep = time.monotonic()
        while not self._stopping:
            self._wake.clear()
            now = self.clock()
            while self._due and len(self._running) < self.max_in_flight:
                at, lane = self._due[0]
                if at > now:
                    break
                heapq.heappop(self._due)
                if self._scheduled.get(lane) != at or lane in self._running:
                    continue  # superseded by an earlier schedule, or already going
                del self._scheduled[lane]
                task = asyncio.create_task(self._run_lane(lane), name=f"webhook-lane-{lane[:40]}")
                self._running[lane] = task
            if time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + self.housekeeping_s
                await self._housekeeping()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.sweep_s
                # Heals a lane the in-memory schedule lost track of (it never should; cheap insurance).
                for lane, due in await self._call(self._outbox.heads):
                    if lane not in self._running:
                        self._schedule(lane, due)
            timeout = self.housekeeping_s
            if self._due and len(self._running) < self.max_in_flight:
                timeout = min(timeout, max(0.0, self._due[0][0] - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _housekeeping(self) -> None:
        assert self._outbox is not None  # noqa: S101
        await self.attempt_log.flush()
        await self._call(self._outbox.purge, self.clock() - self.keep_finished_s)
        OUTBOX_PENDING.set(await self._call(self._outbox.pending))

    async def _run_lane(self, lane: str) -> None:
        """Send the lane's deliveries in order until it is empty or its head waits for a retry."""
        assert self._outbox is not None  # noqa: S101
        next_due: float | None = None
        try:
            while not self._stopping:
                head = await self._call(self._outbox.head, lane)
                if head is None:
                    break
                if head.next_attempt_at > self.clock():
                    next_due = head.next_attempt_at
                    break
                outcome = await self._attempt(head)
                if outcome.next_due is not None:
                    next_due = outcome.next_due
                    break
        except Exception as exc:  # the outbox's disk, a bug: the lane's deliveries stay pending, tried again
            may_pass = retriable(exc)
            retry = self._lane_failures.setdefault(lane, Retry(LANE_BACKOFF))
            delay = retry.failed() if may_pass else LANE_BACKOFF.max_s
            log.log(
                logging.WARNING if may_pass else logging.ERROR,
                "webhooks: lane %r failed; trying again in %.0f s", lane, delay, exc_info=True,
            )  # fmt: skip
            next_due = self.clock() + delay
        else:
            self._lane_failures.pop(lane, None)
        finally:
            del self._running[lane]
            if next_due is not None and not self._stopping:
                self._schedule(lane, next_due)
            elif self._wake is not None:
                self._wake.set()  # a slot is free

    async def _attempt(self, head: PendingDelivery) -> _Outcome:
        assert self._outbox is not None  # noqa: S101 - start() opened it
        assert self._client is not None  # noqa: S101
        d = head.delivery
        await self.directory.fresh()  # a webhook deleted meanwhile is seen within refresh_s
        webhook = self.directory.get(d.webhook_id)
        now = self.clock()
        if webhook is None:
            await self._call(self._outbox.finish, head.seq, "cancelled", head.attempts, now)
            self.attempt_log.record(
                pending=head, attempt=head.attempts, status="cancelled", response_code=0,
                error="webhook deleted", at=now, next_attempt_at=None, duration_ms=0,
            )  # fmt: skip
            WEBHOOK_ATTEMPTS.labels("cancelled").inc()
            return _Outcome(None)
        attempt = head.attempts + 1
        semaphore = self._per_webhook.setdefault(
            d.webhook_id, asyncio.Semaphore(self.max_in_flight_per_webhook)
        )
        async with semaphore:
            started = time.monotonic()
            answer = await self._post(webhook, head, attempt)
            duration_ms = int((time.monotonic() - started) * 1000)
        status_code, error = answer.status_code, answer.error
        now = self.clock()
        if 200 <= status_code < 300:
            await self._call(self._outbox.finish, head.seq, "delivered", attempt, now)
            self.attempt_log.record(
                pending=head, attempt=attempt, status="delivered", response_code=status_code, error="",
                at=now, next_attempt_at=None, duration_ms=duration_ms,
            )  # fmt: skip
            WEBHOOK_ATTEMPTS.labels("delivered").inc()
            self.delivered += 1
            return _Outcome(None)
        if attempt >= self.policy.max_attempts or not answer.retriable:
            await self._call(self._outbox.finish, head.seq, "failed", attempt, now)
            self.attempt_log.record(
                pending=head, attempt=attempt, status="failed", response_code=status_code, error=error,
                at=now, next_attempt_at=None, duration_ms=duration_ms,
            )  # fmt: skip
            WEBHOOK_ATTEMPTS.labels("failed").inc()
            self.failed += 1
            log.warning(
                "webhooks: gave up on %s to %s after %d attempts (%s)",
                d.delivery_id,
                webhook.url,
                attempt,
                error,
            )
            return _Outcome(None)
        next_due = now + self.policy.backoff.jittered(attempt, self._rng.random)
        await self._call(self._outbox.retry_at, head.seq, attempt, next_due)
        self.attempt_log.record(
            pending=head, attempt=attempt, status="retrying", response_code=status_code, error=error,
            at=now, next_attempt_at=next_due, duration_ms=duration_ms,
        )  # fmt: skip
        WEBHOOK_ATTEMPTS.labels("retrying").inc()
        log.info("webhooks: %s to %s failed (%s); attempt %d in %.1fs", d.delivery_id, webhook.url, error,
                 attempt + 1, next_due - now)  # fmt: skip
        return _Outcome(next_due)

    async def _post(self, webhook: Webhook, head: PendingDelivery, attempt: int) -> _Answer:
        """One HTTP attempt: the status code (0 when there was no answer) and what went wrong."""
        assert self._client is not None  # noqa: S101
        d = head.delivery
        if not webhook.secret:
            return _Answer(0, "the signing secret cannot be read with the keys in PIXELPIPE_SECRET")
        try:  # again here: rows from before the rule, or from an API that allowed what this one does not
            check_url(webhook.url, allow_private=self.allow_private)
        except BlockedTarget as exc:
            return _Answer(0, f"refused: {exc}"[:500], retriable=False)
        headers = {
            SIGNATURE_HEADER: sign(webhook.secret.reveal(), int(self.clock()), d.body),
            DELIVERY_HEADER: d.delivery_id,
            EVENT_HEADER: d.notice_id,
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            async with self._client.stream("POST", webhook.url, content=d.body, headers=headers) as response:
                read = 0
                # Drain a little of the answer, so the connection can be reused; never all of a huge one.
                async for chunk in response.aiter_raw() if not response.is_stream_consumed else _nothing():
                    read += len(chunk)
                    if read > 65_536:
                        break
                code = response.status_code
        except BlockedTarget as exc:  # raised by `GuardedBackend` at connect time, after resolving the name
            return _Answer(0, f"refused: {exc}"[:500], retriable=False)
        except httpx.HTTPError as exc:
            return _Answer(0, f"{type(exc).__name__}: {exc}"[:500])
        return _Answer(code, "" if 200 <= code < 300 else f"HTTP {code}")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run an outbox call on the outbox's own thread (SQLite connections stay on one thread)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
