"""An in-memory asyncio transport for driving HTTP protocols in unit tests."""

from __future__ import annotations

import asyncio
import socket
from typing import Any


class FakeTransport(asyncio.Transport):
    """Collects what a protocol writes and records close/pause/half-close calls; sends nothing
    anywhere. ``sock`` (optional) is what ``get_extra_info("socket")`` returns: a test that
    writes to its peer makes bytes wait unread "in the kernel"."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.paused = False
        self.eof = False  # write_eof was called (the protocol sent its FIN)
        self.sock = sock

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.eof, "write after write_eof"
        self.data += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" and self.sock is not None else default
