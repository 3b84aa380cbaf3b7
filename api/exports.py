"""Exports (issue 20): ``/v1/exports``, an account's events, filtered hits, delivery events or segment
members as CSV, JSON lines or Parquet, written by a job (`api.export_jobs`) and downloaded when done.

Every route is scoped to the caller's account: another account's export is a 404, as one that never was.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException, TooManyRequestsException
from litestar.params import FromPath, JSONBody
from litestar.response import File
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT, HTTP_409_CONFLICT

from api.context import ApiContext, account_dependency
from api.export_jobs import FORMATS, ExportJob, ExportJobs, TooManyExports
from api.openapi import NotFound, bad_request
from api.segment_bodies import SegmentIn, segment_of
from api.sql import campaigns as campaign_sql
from api.sql import engagement as engagement_sql
from api.sql.common import BadQuery

CampaignId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ExportIn(msgspec.Struct, forbid_unknown_fields=True):
    """What to export. ``kind``: ``events`` (counted opens and clicks), ``filtered_hits`` (bots, invalid
    tokens), ``deliveries`` (the mail services' delivery events) or ``segment`` (the members of ``segment``,
    with their engagement: its conditions as `POST /v1/segments/query` takes them, whose page fields `limit`,
    `cursor` and `count` an export ignores); ``campaign_id``, ``since``, ``until`` narrow the first three
    (received, or for delivery events occurred, in [since, until); without ``until``: up to the request)."""

    kind: Literal["events", "filtered_hits", "deliveries", "segment"]
    format: Literal["csv", "jsonl", "parquet"] = "csv"
    campaign_id: CampaignId | None = None
    since: datetime | None = None
    until: datetime | None = None
    segment: SegmentIn | None = None


_RULES: Final = (
    "`since` after `until`; `campaign_id`, `since` or `until` with kind `segment`; `segment` with another "
    "kind; a segment's `clicked` naming both `link_index` and `url`"
)
ExportRules = bad_request(_RULES)


class TooManyExportsQueued(TooManyRequestsException):
    detail = "the account has 4 exports queued or running; wait for one to finish"


class NotDone(ClientException):
    status_code = HTTP_409_CONFLICT
    detail = "the export is not done: queued, running or failed"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _segment(db: str, account: str, segment: SegmentIn | None) -> dict[str, Any]:
    """The segment's conditions as the job keeps them (`api.sql.engagement.Segment`'s fields), checked as
    `POST /v1/segments/query` checks them (`api.engagement.segment_of`, and the SQL builder's own rules)."""
    try:
        seg = segment_of(segment or SegmentIn())
        engagement_sql.segment_count(db, account, seg)  # refuses what no query can answer
        return dataclasses.asdict(seg)
    except BadQuery as exc:
        raise ClientException(f"segment: {exc}") from exc


def _jobs(ctx: ApiContext) -> ExportJobs:
    if ctx.exports is None:  # an API process always has them (pixelpipe.app); a bare context may not
        raise NotFoundException("exports are not served by this process")
    return ctx.exports


def _job(ctx: ApiContext, account: str, export_id: str) -> ExportJob:
    job = _jobs(ctx).get(account, export_id)
    if job is None:
        raise NotFoundException(f"no export {export_id!r}")
    return job


class ExportController(Controller):
    path = "/v1/exports"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["exports"]  # noqa: RUF012

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        sync_to_thread=True,
        raises=[ExportRules, NotFound, TooManyExportsQueued],
    )
    def create_export(
        self, data: JSONBody[ExportIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Ask for an export; it is written in the background (`GET /v1/exports/{id}` shows its progress:
        `rows_written` of `rows_total`), then downloaded from `download_url` until `expires_at`.

        Columns: events and filtered hits — `kind`, `received_at`, `campaign_id`, `message_id`, `hit_id`,
        `recipient` (the send's address), `recipient_tag`, `sent_at`, `link_index`, `url`, `verdict`,
        `reason`, `via_proxy`, `country`, `city`, `time_zone`, `asn`, `as_org`, `ip` (as stored: truncated
        unless configured otherwise), `device`, `os`, `client`, `user_agent` (filtered hits: and
        `token_head`); deliveries — `event`, `occurred_at`, `campaign_id`, `message_id`, `delivery_id`,
        `recipient`, `recipient_tag`, `provider`, `provider_event_id`, `provider_message_id`, `bounce_type`,
        `smtp_status`, `smtp_code`, `diagnostic`, `matched_by`, `unmatched_reason`, `received_at`; segment —
        `recipient_tag`, `recipient` and the numbers of `POST /v1/segments/query`. Rows in the table's key
        order (campaign, message, kind or event, id); times in UTC (ISO 8601 in CSV and JSON lines)."""
        since, until = _utc(data.since), _utc(data.until)
        segment: dict[str, Any] | None = None
        if data.kind == "segment":
            if data.campaign_id is not None or since is not None or until is not None:
                raise ClientException(
                    "campaign_id, since and until do not apply to kind segment: use segment"
                )
            segment = _segment(ctx.store.database, account, data.segment)
        else:
            if data.segment is not None:
                raise ClientException(f"segment applies to kind segment only, not {data.kind}")
            if since is not None and until is not None and since > until:
                raise ClientException("since is after until")
            if data.campaign_id is not None and not ctx.read(
                campaign_sql.campaign_known(ctx.store.database, account, data.campaign_id)
            ):
                raise NotFoundException(f"no campaign {data.campaign_id!r}")
        try:
            job = _jobs(ctx).submit(
                account,
                data.kind,
                data.format,
                campaign_id=data.campaign_id,
                since=since,
                until=until,
                segment=segment,
            )
        except TooManyExports as exc:
            raise TooManyExportsQueued(str(exc)) from exc
        return job.answer()

    @get("/", sync_to_thread=True)
    def list_exports(self, account: NamedDependency[str], ctx: NamedDependency[ApiContext]) -> dict[str, Any]:
        """The account's exports, newest first (expired ones are gone)."""
        return {"exports": [job.answer() for job in _jobs(ctx).of_account(account)]}

    @get("/{export_id:str}", sync_to_thread=True)
    def get_export(
        self, export_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """One export: `status` (queued, running, done, failed), `rows_written` of `rows_total`,
        `progress` (0-1), `bytes`, `download_url` once done, `error` if it failed."""
        return _job(ctx, account, export_id).answer()

    @get("/{export_id:str}/download", sync_to_thread=True, raises=[NotFound, NotDone])
    def download_export(
        self, export_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> File:
        """The export's file, streamed (`text/csv`, `application/x-ndjson` or
        `application/vnd.apache.parquet`, as an attachment); 409 while it is not done."""
        job = _job(ctx, account, export_id)
        if job.status != "done":
            raise NotDone(f"export {export_id!r} is {job.status}, not done")
        path = _jobs(ctx).path(job)
        if not path.exists():  # expired or erased between the two reads
            raise NotFoundException(f"no export {export_id!r}")
        return File(
            path=path,
            filename=job.file_name,
            media_type=FORMATS[job.format].media_type,
            content_disposition_type="attachment",
        )

    @delete("/{export_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def delete_export(
        self, export_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> None:
        """Delete an export and its file (a running one stops)."""
        if not _jobs(ctx).delete(account, export_id):
            raise NotFoundException(f"no export {export_id!r}")
