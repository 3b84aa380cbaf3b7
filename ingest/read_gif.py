"""The image of a pixel that measures read time: a transparent 1x1 animated GIF89a, sent a frame at a time.

Every frame is the same transparent pixel shown for `FRAME_DELAY_CS` (a second), so a mail client renders the
same invisible 1x1 image as the plain pixel (`ingest.edge.PIXEL_GIF`) while the edge sends the rest of it
slowly: `head` at once (the header, the colour table and the first frame), one `FRAME` per interval, then
`TRAILER`. The length is declared up front (``Content-Length``), so a response that runs to the cap ends
like any other and the connection stays usable (keep-alive, pipelining); one the client abandons is closed
by the client, which is the measurement. Pure: bytes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

FRAME_DELAY_CS: Final = 100  # each frame's delay, in hundredths of a second

_HEADER: Final = (
    b"GIF89a"
    + b"\x01\x00\x01\x00"  # 1x1
    + b"\x80\x00\x00"  # a global colour table of 2 entries, background 0, square pixels
    + b"\x00\x00\x00\xff\xff\xff"  # black, white
)
# Graphic control: dispose "leave in place", transparent colour 0, the delay; then the 1x1 image of colour 0.
FRAME: Final = (
    b"\x21\xf9\x04\x05"
    + FRAME_DELAY_CS.to_bytes(2, "little")
    + b"\x00\x00"
    + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"
    + b"\x02\x02\x44\x01\x00"
)
TRAILER: Final = b"\x3b"


@dataclass(frozen=True, slots=True)
class ReadGif:
    """The animation of ``frames`` frames (one per second of the cap): what the edge sends of it, when."""

    frames: int

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError("a read-time GIF has at least one frame")

    @property
    def head(self) -> bytes:
        """What is sent at once: the header and the first frame."""
        return _HEADER + FRAME

    @property
    def content_length(self) -> int:
        return len(_HEADER) + self.frames * len(FRAME) + len(TRAILER)

    @property
    def whole(self) -> bytes:
        """The whole animation at once: what a client gets when the edge does not hold it (`ReadEnd.BUSY`,
        `ReadEnd.PROXY`), so every answer to a timed open has the same length."""
        return _HEADER + FRAME * self.frames + TRAILER
