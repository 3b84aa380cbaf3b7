"""pixelpipe's edge fast path for pixels, in Rust (native/src/lib.rs)."""

WIRE_VERSION: int  # the "v" of its lines: `schemas.events.SCHEMA_VERSION` (checked by ingest.native)

class PixelPath:
    def __init__(self, keys: list[tuple[int, bytes]], proxies: list[tuple[bytes, int]]) -> None: ...
    def discard_random(self) -> None: ...
    def answer(
        self, data: bytes, ip: str, forwarded_for_matters: bool, now_ms: int
    ) -> tuple[bool, bytes, bytes, bytes] | None: ...
