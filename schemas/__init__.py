"""What the stages share: the token format, the event types on the wire, topic names and the ClickHouse DDL.

Nothing here does I/O except `schemas.store`, the thin port onto ClickHouse that both the processors (writes)
and the API (reads) use.
"""
