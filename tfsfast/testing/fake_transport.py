"""An in-memory asyncio transport for driving HTTP protocols in unit tests."""

from __future__ import annotations

import asyncio


class FakeTransport(asyncio.Transport):
    """Collects what a protocol writes and records close/pause calls; sends nothing anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
