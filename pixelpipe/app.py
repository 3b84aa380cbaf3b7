"""Assemble the roles into one ASGI app: the edge's fast path in front, Litestar behind it.

Roles: ``edge`` (pixels and clicks → bus), ``process`` (bus → ClickHouse), ``api`` (ClickHouse → answers).
Any combination runs in one process; every process also answers ``/healthz``, ``/readyz`` and ``/metrics``.
Without Kafka the bus is in memory, so the edge needs the processor in the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from litestar import Litestar, MediaType, Response, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components as OpenAPIComponents
from litestar.openapi.spec import SecurityScheme
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import campaign_answers
from api.account import AccountController, SettingsIn, SettingsPatch
from api.campaigns import CampaignAnalyticsController, CampaignController
from api.consent import ConsentController, ConsentIn
from api.context import ApiContext
from api.dashboard import dashboard
from api.dashboard_files import DashboardFiles, WatchedBuild
from api.docs_pages import docs_router, render_plugins
from api.engagement import recipient_engagement, segment_query
from api.engagement_backfill import EngagementBackfill
from api.errors import EXCEPTION_HANDLERS, check_request
from api.export_jobs import ExportJobs
from api.exports import ExportController, ExportIn
from api.live import LiveController
from api.mail_services import MailServiceController, MailServiceIn, MailServicePropagation
from api.message_bodies import BatchIn, InstrumentIn, MessageIn
from api.messages import MessageController, MessageTimelineController, list_messages
from api.openapi import document
from api.preferences_routes import choose, preferences_page
from api.privacy import PrivacyController, PrivacyPropagation, load_suppressed, migrate_plain_suppressions
from api.recipient_path import raw_recipient, recipient_paths
from api.recipients import recipient_view
from api.report_warmer import ReportAsk, ReportWarmer
from api.segment_bodies import SegmentIn
from api.session import COOKIE, Sessions
from api.session_routes import SessionController, SignIn
from api.sql import campaigns as campaigns_sql
from api.sql.rollup_upkeep import rollup_retention
from api.webhooks import WebhookController, WebhookIn
from bus.dead_letters import DeadLetters
from bus.memory import MemoryBus
from bus.port import HitPublisher, HitSource
from deliveries.bus import MemoryDeliveryBus
from deliveries.certificates import SnsRequests
from deliveries.ingest import DeliveryIngest, ingest_routes
from deliveries.loader import DeliveryLoader, OnStored
from deliveries.port import DeliveryPublisher, MailServiceDirectory
from ingest import native
from ingest.client_ip import client_ip
from ingest.edge import ASGIApp, Edge
from ingest.holder_link import ReadHolders
from ingest.preferences_redirect import preferences_redirect
from ingest.read_time import HeldPixels
from notices.live import LiveFeed
from notices.reminders import ReminderTiming
from notices.wiring import Notifications, in_process, on_kafka
from pixelpipe.mail_services import MailServiceWiring, mail_service_wiring
from pixelpipe.privacy import PrivacyWiring, privacy_wiring
from pixelpipe.settings import Settings, SettingsError
from processors.cloud_ranges import REFRESHED_DIR, cloud_summary, load_classification_ranges
from processors.flood import ReplayFlood
from processors.geo import GeoLookup
from processors.pipeline import HitProcessor
from processors.reads import OnReadsStored, StoredRead
from processors.runner import HitRunner, Stored
from schemas.delivery_events import DeliveryEvent
from schemas.errors import PixelpipeError
from schemas.live import LiveNotices
from schemas.store import Store, StoreError
from schemas.suppression import DoNotTrack
from schemas.topics import Topics

if TYPE_CHECKING:
    import httpx

    from bus.kafka_config import KafkaConfig
    from bus.topics import TopicSetup
    from processors.kafka_source import KafkaSource

log = logging.getLogger(__name__)

ROLES = ("edge", "process", "api")
STOP_DEADLINE_S = 8.0
SUPPRESSION_REFRESH_S = 5.0


class RoleError(PixelpipeError, ValueError):
    pass


def parse_roles(text: str) -> frozenset[str]:
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = roles - set(ROLES)
    if not roles or unknown:
        raise RoleError(f"--roles takes any of {', '.join(ROLES)} (got {text!r})")
    return roles


@dataclass
class Components:
    """What one process runs, and how to start and stop it."""

    settings: Settings
    roles: frozenset[str]
    store: Store | None = None
    publisher: HitPublisher | None = None
    source: HitSource | None = None
    runner: HitRunner | None = None
    on_stored: list[Callable[[Stored], None]] = field(default_factory=list)
    on_reads_stored: list[OnReadsStored] = field(default_factory=list)  # the read notices' listeners
    do_not_track: DoNotTrack | None = None
    notifications: Notifications | None = None
    privacy: PrivacyWiring | None = None
    kafka: KafkaConfig | None = None  # None: the bus is in memory
    topic_setup: TopicSetup | None = None  # the Kafka topics of these roles, ensured at start
    delivery_publisher: DeliveryPublisher | None = None  # the edge's: its delivery ingest publishes here
    mail_services: MailServiceDirectory | None = None  # the edge's: whose ingest URL is whose
    mail_service_wiring: MailServiceWiring | None = None  # what feeds it, and the API's propagation
    sns_transport: httpx.AsyncBaseTransport | None = None  # None: Amazon's hosts (tests hand in answers)
    delivery_loader: DeliveryLoader | None = None  # the process role's: deliveries bus -> store
    held_pixels: HeldPixels | None = None  # the edge's read-time pixels held open (ingest.read_time)
    exports: ExportJobs | None = None  # the API role's export jobs and their files (api.export_jobs)
    engagement_backfill: EngagementBackfill | None = None  # rows stored before 0012, tagged from start
    on_deliveries_stored: list[OnStored] = field(default_factory=list)  # the delivery notices' listeners
    _runner_task: asyncio.Task[None] | None = None
    _delivery_task: asyncio.Task[None] | None = None
    _refresh_task: asyncio.Task[None] | None = None

    def readiness(self) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        if self.publisher is not None:
            checks["bus"] = self.publisher.ready()
        if self.delivery_publisher is not None:
            checks["delivery_bus"] = self.delivery_publisher.ready()
        if self.runner is not None:
            checks["processor"] = self._runner_task is not None and not self._runner_task.done()
            checks["store_writes"] = self.runner.store_ok
        if self.delivery_loader is not None:
            checks["delivery_loader"] = self._delivery_task is not None and not self._delivery_task.done()
        if "api" in self.roles and self.store is not None:
            checks["store"] = self.store.ping()
        if self.privacy is not None:
            checks.update(self.privacy.readiness())
        if self.mail_service_wiring is not None:
            checks.update(self.mail_service_wiring.readiness())
        return checks

    async def start(self) -> None:
        if self.engagement_backfill is not None:
            self.engagement_backfill.start()  # its own thread: the process serves meanwhile
        if self.topic_setup is not None:
            self.topic_setup.start()  # in the background: a broker away at start must not stop the process
        if self.privacy is not None:
            self.privacy.hold_back_suppressed()
        if self.notifications is not None:
            await self.notifications.start()  # before the processor: it publishes into the hub
        if self.privacy is not None:
            await self.privacy.start()  # after the notice path: an erasure purges its outbox
        if self.mail_service_wiring is not None:
            await self.mail_service_wiring.start()
        if self.publisher is not None:
            await self.publisher.start()
        if self.delivery_publisher is not None:
            await self.delivery_publisher.start()
        if self.runner is not None:
            self._runner_task = asyncio.create_task(self.runner.run(), name="pixelpipe-processor")
            self._runner_task.add_done_callback(_log_crash)
        if self.delivery_loader is not None:  # after the notice path, like the processor: it publishes there
            self._delivery_task = asyncio.create_task(self.delivery_loader.run(), name="pixelpipe-deliveries")
            self._delivery_task.add_done_callback(_log_crash)
        if self.exports is not None:
            self.exports.start()  # the jobs a stop interrupted start over
        if self.store is not None and self.do_not_track is not None:
            self._refresh_task = asyncio.create_task(
                _refresh_suppressions(self.store, self.do_not_track), name="pixelpipe-dnt"
            )

    def stop_soon(self) -> None:
        """The server's graceful stop begins (uvicorn's signal handler): what would hold its shutdown up ends
        now: the live streams (each open one would hold it for its whole timeout), and the read-time pixels
        held by holder processes (as the server ends those the edge holds, with its connections)."""
        if self.notifications is not None and self.notifications.live is not None:
            self.notifications.live.close_soon()
        if self.held_pixels is not None:
            self.held_pixels.stop_soon()

    async def stop(self) -> None:
        """Stop taking hits, drain what is in flight, commit, close. Bounded by STOP_DEADLINE_S."""
        if self.held_pixels is not None:
            # First: their read records (``stopped``) go to the bus before the processor drains it and the
            # publisher stops. The edge's HTTP protocol ended those it held at the server's shutdown already.
            await self.held_pixels.stop()
        if self.privacy is not None:
            await self.privacy.stop()
        if self.mail_service_wiring is not None:
            await self.mail_service_wiring.stop()
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
        if self.runner is not None and self._runner_task is not None:
            self.runner.stop()
        if self.delivery_loader is not None and self._delivery_task is not None:
            self.delivery_loader.stop()
        # Both drain at once, each within the deadline.
        await asyncio.gather(
            _drained(self._runner_task, "the processor"), _drained(self._delivery_task, "the delivery loader")
        )
        if self.notifications is not None:
            # After the processor's last batch was stored (and handed to the hub), before the store closes.
            await self.notifications.stop()
        if self.publisher is not None and self.publisher is not cast(object, self.source):
            await self.publisher.stop()
        if self.delivery_publisher is not None:
            await self.delivery_publisher.stop()
        if self.topic_setup is not None:
            await self.topic_setup.stop()
        if self.exports is not None:  # after its current chunk; before the store closes
            await asyncio.to_thread(self.exports.stop)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)


async def _refresh_suppressions(store: Store, do_not_track: DoNotTrack) -> None:
    """Another process (the API role) may change do-not-track: reload it from the store now and then."""
    while True:
        await asyncio.sleep(SUPPRESSION_REFRESH_S)
        try:
            # A change applied while the store was read (the API here, the privacy topic) is newer: keep it.
            version = do_not_track.version
            do_not_track.replace(await asyncio.to_thread(load_suppressed, store), if_version=version)
        except StoreError as exc:
            log.warning("could not refresh do-not-track (%s); keeping the last list", exc)


async def _drained(task: asyncio.Task[None] | None, what: str) -> None:
    """Wait at most STOP_DEADLINE_S for a told-to-stop loop to drain, then cancel it."""
    if task is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), STOP_DEADLINE_S)
    except TimeoutError:
        log.warning("%s did not drain within %.0fs; stopping it", what, STOP_DEADLINE_S)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    except Exception:  # noqa: S110 - its crash was logged when it happened (`_log_crash`)
        pass


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())


def _store_stored(components: Components) -> Callable[[Stored], None]:
    def fan_out(stored: Stored) -> None:
        for listener in components.on_stored:
            listener(stored)

    return fan_out


def _reads_stored(components: Components) -> OnReadsStored:
    def fan_out(stored: Sequence[StoredRead]) -> None:
        for listener in components.on_reads_stored:
            listener(stored)

    return fan_out


def _deliveries_stored(components: Components) -> OnStored:
    def fan_out(stored: Sequence[DeliveryEvent]) -> None:
        for listener in components.on_deliveries_stored:
            listener(stored)

    return fan_out


def _notices_durable(components: Components) -> Callable[[], Awaitable[None]]:
    def durable() -> Awaitable[None]:
        # Looked up at each call: the notice path is built after the runner (and may be replaced).
        n = components.notifications
        return n.durable() if n is not None else Notifications().durable()

    return durable


def _prepare_store(store: Store, settings: Settings) -> None:
    """Retention of every table, rollups included (the DDL is applied by `Store.connect`)."""
    store.apply_retention(events_days=settings.retention_days, filtered_days=settings.filtered_retention_days)
    for statement in rollup_retention(
        store.database, events_days=settings.retention_days, filtered_days=settings.filtered_retention_days
    ):
        store.command(statement)


def _check_roles(settings: Settings, roles: frozenset[str]) -> None:
    """What the roles need of the settings beyond what `load` checks, before anything is built."""
    if "edge" in roles and "process" not in roles and not settings.kafka_bootstrap:
        raise RoleError("the edge alone needs Kafka (set PIXELPIPE_KAFKA_BOOTSTRAP) or --roles edge,process")
    if "process" in roles and "edge" not in roles and not settings.kafka_bootstrap:
        raise RoleError(
            "the processor alone needs Kafka (set PIXELPIPE_KAFKA_BOOTSTRAP) or --roles edge,process"
        )
    if "edge" in roles and settings.native_edge == "on" and not native.available():
        raise SettingsError(
            "PIXELPIPE_NATIVE_EDGE",
            "is on, but the native fast path (pixelpipe-native) is not installed: build it with "
            "`uv sync --group native` (needs cargo)",
        )


def build_components(
    settings: Settings,
    roles: frozenset[str],
    *,
    store: Store | None = None,
) -> Components:
    topics = (
        Topics.with_prefix(settings.topic_prefix, settings.kafka_retention)
        if settings.topic_prefix
        else Topics(retention=settings.kafka_retention)
    )
    c = Components(settings, roles)
    _check_roles(settings, roles)
    if roles & {"process", "api"}:
        c.store = store or Store.connect(settings.store)
        _prepare_store(c.store, settings)
        c.do_not_track = DoNotTrack(settings.keyring)
        migrate_plain_suppressions(c.store, settings.keyring)  # before any reload: the store keeps tags only
        # rows stored before 0012: their recipients' tags, in the background from start (`Components.start`)
        c.engagement_backfill = EngagementBackfill(c.store, settings.keyring)
        c.do_not_track.replace(load_suppressed(c.store))
    if "api" in roles and c.store is not None:
        c.exports = ExportJobs(settings.data_dir / "exports", c.store, ttl=settings.export_ttl)  # issue 20
    kafka_source: KafkaSource | None = None
    dead_letters: DeadLetters | None = None
    delivery_source: HitSource | None = None
    delivery_kafka: tuple[KafkaSource, DeadLetters] | None = None
    if settings.kafka_bootstrap:
        c.kafka, c.topic_setup = _kafka(settings.kafka_bootstrap, topics, roles)
        kafka_source, dead_letters = _kafka_bus(c, c.kafka, topics)
        delivery_kafka = _kafka_deliveries(c, c.kafka, topics)
        delivery_source = delivery_kafka[0] if delivery_kafka is not None else None
    c.privacy = _privacy(c, topics)
    c.mail_service_wiring = mail_service_wiring(c.topic_setup, roles, settings.keyring, c.store)
    c.mail_services = c.mail_service_wiring.directory
    memory: MemoryBus | None = None
    if c.kafka is None:
        memory = MemoryBus(settings.bus_capacity)
        c.publisher, c.source = memory, memory
    if "edge" not in roles and memory is not None:
        c.publisher = None
    if "edge" in roles and c.publisher is not None:
        c.held_pixels = _held_pixels(c.publisher, settings)
    if c.kafka is None and roles & {"edge", "process"} == {"edge", "process"}:
        # One process: the in-memory queue is the ingest's publisher and the loader's source.
        delivery_bus = MemoryDeliveryBus(settings.bus_capacity)
        c.delivery_publisher, delivery_source = delivery_bus, delivery_bus
    if "process" in roles and c.source is not None and c.store is not None:
        c.runner = HitRunner(
            source=c.source,
            store=c.store,
            processor=_hit_processor(settings),
            ip_storage=settings.ip_storage,
            click_window_ms=settings.click_window_ms,
            flood=ReplayFlood(settings.replay_flood_limit, settings.replay_flood_window_s * 1000),
            flush_interval_s=settings.flush_interval_ms / 1000,
            dead_letters=dead_letters,
            on_stored=_store_stored(c),
            on_reads_stored=_reads_stored(c),
            # Kafka: raw offsets wait until the notices are on the enriched topic. The memory bus commits
            # nothing and cannot replay: waiting there would only turn a stuck outbox into dropped hits.
            notices_durable=_notices_durable(c) if kafka_source is not None else None,
            drain_on_stop=memory is not None,
            do_not_track=c.do_not_track,
        )
        if kafka_source is not None:
            kafka_source.on_revoked = c.runner.on_revoked
    if "process" in roles and delivery_source is not None and c.store is not None:
        c.delivery_loader = DeliveryLoader(
            source=delivery_source,
            store=c.store,
            dead_letters=delivery_kafka[1] if delivery_kafka is not None else None,
            on_stored=_deliveries_stored(c),
            # As the hit runner: on Kafka the offsets wait for the notices; in memory nothing is committed.
            notices_durable=_notices_durable(c) if kafka_source is not None else None,
            do_not_track=c.do_not_track,
            flush_interval_s=settings.flush_interval_ms / 1000,
            drain_on_stop=c.kafka is None,
        )
        if delivery_kafka is not None:
            delivery_kafka[0].on_revoked = c.delivery_loader.on_revoked
    if c.store is not None:
        c.notifications = _notifications(c, c.store, topics)
        c.on_stored.extend(c.notifications.listeners())
        c.on_reads_stored.extend(c.notifications.read_listeners())
        c.on_deliveries_stored.extend(c.notifications.delivery_listeners())
    return c


def _held_pixels(publisher: HitPublisher, settings: Settings) -> HeldPixels:
    """The edge's held read-time pixels, and its holder processes (started at the first hand-over: none
    while nothing is held)."""
    pixels = HeldPixels(publisher, cap_s=settings.read_time_cap_s, max_held=settings.read_time_max_held)
    if settings.read_time_holders:
        pixels.holders = ReadHolders(
            pixels, settings.read_time_holders, settings.read_time_cap_s, settings.read_time_holder_cpus
        )
    return pixels


def _hit_processor(settings: Settings) -> HitProcessor:
    """The processors' pure step with its GeoIP databases and classification ranges (the curated ones and
    the cloud platforms', refreshed or the bundled samples: said in the log)."""
    geo = GeoLookup(settings.geoip_city_db, settings.geoip_asn_db)
    if geo.bundled_snapshot:
        log.warning(
            "GeoIP: using the bundled GeoLite2-City snapshot from 2018; locations will be dated. "
            "Point PIXELPIPE_GEOIP_CITY_DB at a current GeoLite2/GeoIP2 City file."
        )
    ranges, clouds = load_classification_ranges(settings.data_dir / REFRESHED_DIR)
    log.info("cloud ranges: %s", "; ".join(cloud_summary(cloud) for cloud in clouds))
    samples = [cloud.platform for cloud in clouds if not cloud.complete]
    if samples:
        log.warning(
            "cloud ranges: %s use the bundled samples (a few ranges each); download the published lists "
            "and run `pixelpipe ranges refresh` (README, Cloud scanners)",
            ", ".join(samples),
        )
    return HitProcessor(geo, ranges)


def _kafka(bootstrap: str, topics: Topics, roles: frozenset[str]) -> tuple[KafkaConfig, TopicSetup]:
    """How this process's clients reach Kafka, and the topics of its roles (created at start)."""
    from bus.kafka_config import KafkaConfig  # noqa: PLC0415 - only distributed roles need aiokafka loaded
    from bus.topics import TopicSetup, role_topics  # noqa: PLC0415

    kafka = KafkaConfig(bootstrap)
    return kafka, TopicSetup(kafka, topics, role_topics(topics, roles))


def _kafka_bus(
    c: Components, kafka: KafkaConfig, topics: Topics
) -> tuple[KafkaSource | None, DeadLetters | None]:
    """The Kafka adapters of the bus for the roles: the edge's publisher, the processors' source and dead
    letters (returned: the runner is built later)."""
    from ingest.kafka_publisher import KafkaPublisher  # noqa: PLC0415 - only distributed roles need aiokafka
    from processors.kafka_source import DeadLetterPublisher, KafkaSource  # noqa: PLC0415

    setup = c.topic_setup
    if "edge" in c.roles:
        c.publisher = KafkaPublisher(kafka, topics, spool_dir=c.settings.data_dir / "spool", setup=setup)
    if "process" not in c.roles:
        return None, None
    source = KafkaSource(kafka, topics, group_id=c.settings.consumer_group, setup=setup)
    c.source = source
    return source, DeadLetterPublisher(kafka, topics)


def _kafka_deliveries(
    c: Components, kafka: KafkaConfig, topics: Topics
) -> tuple[KafkaSource, DeadLetters] | None:
    """The Kafka adapters of the delivery events: the edge's publisher; the loader's source, the processors'
    source on the deliveries topic in its own group, and its dead letters (returned: the loader is built
    later)."""
    from deliveries.bus import KafkaDeliveryPublisher  # noqa: PLC0415 - only distributed roles need aiokafka
    from deliveries.spool import DeliverySpool  # noqa: PLC0415
    from processors.kafka_source import DeadLetterPublisher, KafkaSource  # noqa: PLC0415

    if "edge" in c.roles:
        spool = DeliverySpool(c.settings.data_dir / "delivery-spool")  # while the broker is away
        c.delivery_publisher = KafkaDeliveryPublisher(kafka, topics, setup=c.topic_setup, spool=spool)
    if "process" not in c.roles:
        return None
    group = f"{c.settings.consumer_group}-deliveries"
    source = KafkaSource(
        kafka, topics, group, setup=c.topic_setup, topic=topics.deliveries, role="delivery-loader"
    )
    return source, DeadLetterPublisher(kafka, topics)


def _privacy(c: Components, topics: Topics) -> PrivacyWiring | None:
    """With Kafka every process follows the privacy topic (an edge alone has no other source)."""
    if c.kafka is not None and c.do_not_track is None:
        c.do_not_track = DoNotTrack(c.settings.keyring)
    if c.do_not_track is None:
        return None
    wiring = privacy_wiring(c.topic_setup, c.roles, c.do_not_track, lambda: c.notifications)
    wiring.exports = c.exports  # an erasure another API process answered deletes this one's export files
    wiring.engagement_backfill = c.engagement_backfill
    return wiring


def _notifications(c: Components, store: Store, topics: Topics) -> Notifications:
    """The notice path of this process (see `notices.wiring`).

    In-process bus: the hub feeds the live feed and the webhook dispatcher directly (`in_process`); Kafka:
    through the enriched topic (`on_kafka`).
    """
    settings, roles, kafka, setup = c.settings, c.roles, c.kafka, c.topic_setup
    outbox = settings.data_dir / "webhooks" / "outbox.sqlite3"
    if kafka is None:
        if "process" not in roles:
            return Notifications(live=LiveFeed())
        return in_process(
            store,
            outbox,
            keyring=settings.keyring,
            allow_private=settings.webhook_allow_private,
            do_not_track=c.do_not_track,
            reminder_timing=_reminder_timing(settings),
        )
    return on_kafka(
        store,
        outbox,
        roles=roles,
        kafka=kafka,
        topics=topics,
        setup=setup,
        topic_prefix=settings.topic_prefix,
        keyring=settings.keyring,
        allow_private=settings.webhook_allow_private,
        do_not_track=c.do_not_track,
        reminder_timing=_reminder_timing(settings),
    )


def _reminder_timing(settings: Settings) -> ReminderTiming:
    return ReminderTiming(poll_s=settings.reminder_poll_s, grace_s=settings.reminder_grace_s)


def _health_handlers(components: Components) -> list[Any]:
    @get("/healthz", include_in_schema=False, sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", include_in_schema=False, sync_to_thread=True)
    def readyz() -> Response[dict[str, Any]]:
        checks = components.readiness()
        ready = all(checks.values())
        body: dict[str, Any] = {"ready": ready, "checks": checks}
        state = getattr(components.publisher, "state", None)
        if callable(state):  # the Kafka edge: broker reachable, delivery mode, spool depth, replay progress
            body["edge"] = {k: v.value if hasattr(v, "value") else v for k, v in asdict(state()).items()}
        privacy = components.privacy.state() if components.privacy is not None else None
        if privacy is not None:  # the privacy topic: caught up, records read, recipients suppressed
            body["privacy"] = privacy
        wiring = components.mail_service_wiring
        mail_services = wiring.state() if wiring is not None else None
        if mail_services is not None:  # the mail-services topic: caught up, records read, configs known
            body["mail_services"] = mail_services
        return Response(body, status_code=200 if ready else 503)

    @get("/metrics", include_in_schema=False, sync_to_thread=False, media_type=MediaType.TEXT)
    def metrics() -> Response[bytes]:
        # Litestar adds the charset of a text/* type itself: given it twice, the header would say it twice.
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST.replace("; charset=utf-8", ""))

    return [healthz, readyz, metrics]


def api_context(components: Components, store: Store, sessions: Sessions) -> ApiContext:
    """The API's context, from what the process built: its `ReportWarmer` unless
    ``PIXELPIPE_REPORT_WARM_CAMPAIGNS`` is 0, its export jobs, its backfill, and its dispatcher's webhook
    directory told of webhooks the API creates or deletes."""
    settings, n = components.settings, components.notifications
    webhooks_changed = (
        n.dispatcher.directory.invalidate if n is not None and n.dispatcher is not None else None
    )
    per_account = settings.report_warm_campaigns
    warmer = report_warmer(lambda: ctx, settings.accounts, per_account) if per_account else None
    ctx = ApiContext(
        store,
        settings.keyring,
        settings.public_url,
        settings.api_keys,
        do_not_track=components.do_not_track,
        webhook_allow_private=settings.webhook_allow_private,
        retention_days=settings.retention_days,
        reminder_min_after_s=settings.reminder_min_after_s,
        sessions=sessions,
        report_warmer=warmer,
        exports=components.exports,
        webhooks_changed=webhooks_changed,
        engagement_backfill=components.engagement_backfill,
    )
    return ctx


def report_warmer(
    context: Callable[[], ApiContext], accounts: Iterable[str], per_account: int
) -> ReportWarmer:
    """The API's `ReportWarmer`: it computes a report as the report route does, and seeds each account's
    ``per_account`` largest and ``per_account`` newest campaigns."""

    def compute(ask: ReportAsk) -> object:
        machine, bucket, tz = ask.include_machine, ask.bucket, ask.tz
        return campaign_answers.campaign_report(
            context(), ask.account, ask.campaign_id, include_machine=machine, bucket=bucket, tz=tz
        )

    def seed() -> list[ReportAsk]:
        ctx = context()
        db = ctx.store.database
        asks: dict[ReportAsk, None] = {}
        for account in sorted(accounts):
            largest = ctx.read(campaigns_sql.largest_campaigns(db, account, limit=per_account))
            newest_page = campaigns_sql.campaign_list(db, account, limit=per_account, cursor=None, q=None)
            newest = ctx.read(newest_page)
            for row in [*largest, *newest[:per_account]]:
                asks[ReportAsk(account, str(row[0]))] = None
        return list(asks)

    return ReportWarmer(compute, seed)


def build_app(components: Components) -> tuple[ASGIApp, Litestar]:  # noqa: PLR0915 - the roles' one wiring
    """The ASGI app to serve, and the Litestar app inside it."""
    settings = components.settings
    handlers: list[Any] = _health_handlers(components)
    dependencies: dict[str, Provide] = {}
    store = components.store if "api" in components.roles else None
    files = DashboardFiles(settings.dashboard_dir, {})  # the dashboard's build: the API role serves it
    warmer: ReportWarmer | None = None
    if store is not None:
        files = DashboardFiles.scan(settings.dashboard_dir)  # its files, and the API docs' assets
        sessions = Sessions.of(
            settings.keyring,
            settings.api_keys,
            lifetime_s=settings.session_seconds,
            public_url=settings.public_url,
        )
        ctx = api_context(components, store, sessions)
        warmer = ctx.report_warmer
        # The plain handlers join paths the controllers made (GET /v1/messages, GET /v1/recipients/{r}):
        # register them after. The order is the OpenAPI document's (its paths, and the operation ids
        # Litestar derives for a path that gains a handler).
        handlers += [MessageController, CampaignController, PrivacyController, WebhookController]
        handlers += [CampaignAnalyticsController, MessageTimelineController, list_messages, recipient_view]
        handlers += [MailServiceController, AccountController, ConsentController]  # 19: settings, consent
        handlers += [preferences_page, choose]  # /p/{token}: a recipient's page
        handlers += [
            recipient_engagement,
            segment_query,
            ExportController,
            SessionController,
        ]  # issue 20 (and exports); the dashboard's sign-in
        dependencies["ctx"] = Provide(lambda: ctx, use_cache=True, sync_to_thread=False)
        proxies = settings.trusted_proxies
        sign_in = SignIn(
            sessions, settings.public_url, lambda peer, forwarded: client_ip(peer, forwarded, proxies)
        )
        dependencies["sign_in"] = Provide(lambda: sign_in, use_cache=True, sync_to_thread=False)
        propagation = components.privacy.propagation() if components.privacy else PrivacyPropagation()
        dependencies["privacy"] = Provide(lambda: propagation, use_cache=True, sync_to_thread=False)
        wired = components.mail_service_wiring
        accounts = wired.propagation() if wired is not None else MailServicePropagation()
        dependencies["mail_services"] = Provide(lambda: accounts, use_cache=True, sync_to_thread=False)
        # The API reaches the feed only through its port: `api/` never imports the notice stage.
        live: LiveNotices | None = components.notifications.live if components.notifications else None
        if live is not None:
            handlers.append(LiveController)
            dependencies["live"] = Provide(lambda: live, use_cache=True, sync_to_thread=False)
    publisher, directory = components.delivery_publisher, components.mail_services
    if "edge" in components.roles and publisher is not None and directory is not None:
        sns = SnsRequests(components.sns_transport)
        limit = settings.delivery_max_body_bytes
        handlers += ingest_routes(DeliveryIngest(directory, publisher, sns=sns, max_body_bytes=limit))
    if "edge" in components.roles and store is None:  # the preferences page lives with the API (issue 19)
        handlers.append(preferences_redirect(settings.api_public_url))

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await components.start()
        if warmer is not None:
            warmer.start()
        try:
            yield
        finally:
            if warmer is not None:
                await asyncio.to_thread(warmer.stop)
            await components.stop()

    litestar = Litestar(
        route_handlers=handlers,
        dependencies=dependencies,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="pixelpipe",
            version="0.1.0",
            description="Email open and click tracking: register sends, read opens and clicks.",
            path="/schema",
            render_plugins=render_plugins(files),  # offline: their scripts from the dashboard's build
            openapi_router=docs_router("/schema"),
            components=OpenAPIComponents(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer"),
                    # The dashboard's: `POST /session` sets it (README, "The dashboard").
                    "session": SecurityScheme(type="apiKey", name=COOKIE, security_scheme_in="cookie"),
                }
            ),
            security=[{"bearer": []}, {"session": []}],
            use_handler_docstrings=True,
        ),
        exception_handlers=dict(EXCEPTION_HANDLERS),
        before_request=check_request,
        debug=False,
        middleware=[raw_recipient],  # `recipient` path parameters as the client encoded them
    )
    document(
        litestar,
        bodies=[
            MessageIn,
            BatchIn,
            InstrumentIn,
            WebhookIn,
            MailServiceIn,
            SettingsIn,
            SettingsPatch,
            ConsentIn,
            SegmentIn,
            ExportIn,
        ],
    )
    inner = recipient_paths(cast(ASGIApp, litestar))  # a recipient's '/' stays in its path segment
    if store is not None:
        # `/`, `/assets/…`: the dashboard's build, in front of the API (a rebuild is served without a restart)
        inner = dashboard(WatchedBuild(files), inner)
    if "edge" not in components.roles or components.publisher is None:
        return inner, litestar
    edge = Edge(
        keyring=settings.keyring,
        publisher=components.publisher,
        trusted_proxies=settings.trusted_proxies,
        fallback=inner,
        do_not_track=components.do_not_track,
        native=settings.native_edge,
        read_time=components.held_pixels,
    )
    return edge, litestar
