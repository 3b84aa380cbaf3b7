"""The notice stage: real-time notices of counted hits, after the processors stored them.

Makes one notice per stored counted hit (`making`), hands them on through the hub (`hub`) to the live feed
(`live`, behind `GET /v1/live`) and to webhooks: planned per webhook (`deliveries`), kept in an SQLite outbox
(`outbox`), retried on a schedule (`retries`), signed (`signing`), posted only to vetted addresses
(`transport`) by the dispatcher (`dispatcher`), which logs each attempt (`attempts`) and reads the registered
webhooks from the directory (`directory`). On Kafka the notices travel on the ``enriched`` topic (`kafka`).
An erasure purges what the stage keeps of a recipient (`erasure`). `wiring` assembles one process's part.

Depends on `schemas/` and on the processors' result type it consumes (`processors.pipeline.ProcessedHit`);
never the other way round: the processors hand stored hits to a plain callback (`HitRunner.on_stored`), and
the API reaches the live feed through `schemas.live.LiveNotices`.
"""
