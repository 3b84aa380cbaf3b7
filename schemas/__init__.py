"""What the stages share: the token format, the records on the wire (raw hits, notices, privacy changes) and
their strict decoding, verdicts, topic names, the ClickHouse DDL, the ports between stages (the store, the
live feed), the rules every stage applies (the recipient, do-not-track, webhook targets), and the error tree,
its one backoff and the `Secret` that never shows.

Nothing here does I/O except `schemas.store`, the thin port onto ClickHouse that both the processors (writes)
and the API (reads) use.
"""
