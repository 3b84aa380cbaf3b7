"""The notice stage: real-time notices of counted hits, after the processors stored them, and of the
delivered, bounce and complaint events of sent messages, after the delivery loader stored them.

Makes one notice per stored counted hit (`making`) and per such delivery event (`delivery_making`), hands them
on through the hub (`hub`) to the live feed
(`live`, behind `GET /v1/live`) and to webhooks: planned per webhook (`deliveries`), kept in an SQLite outbox
(`outbox`), retried on a schedule (`retries`, which also says how the notice loops retry), signed
(`signing`), posted only to vetted addresses (`transport`) by the dispatcher (`dispatcher`), which logs each
attempt (`attempts`) and reads the registered webhooks from the directory (`directory`). On Kafka the
notices travel on the ``enriched`` topic (`kafka`). An erasure purges what the stage keeps of a recipient
(`erasure`). `wiring` assembles one process's part and starts and stops it in order.

Depends on `schemas/`, on the processors' result type it consumes (`processors.pipeline.ProcessedHit`) and,
in `kafka`, on the Kafka helpers every role shares; never the other way round: the processors hand stored
hits to a plain callback (`HitRunner.on_stored`), and the API reaches the live feed through the port
`schemas.live.LiveNotices`, which the wiring (`pixelpipe.app`) fills with `live.LiveFeed`.
"""
