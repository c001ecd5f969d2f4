"""An in-memory asyncio transport for driving HTTP protocols in unit tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from tfsfast.testing.wait import WAIT_SECONDS


class FakeTransport(asyncio.Transport):
    """Collects what a protocol writes and records close/pause/half-close calls; sends nothing
    anywhere. ``sock`` (optional) is what ``get_extra_info("socket")`` returns: a test that
    writes to its peer makes bytes wait unread "in the kernel".

    A test whose protocol answers later (an awaited handler, a batch) waits for the answer
    itself: ``await transport.wait_for(n)`` returns once ``n`` whole responses were written,
    ``await transport.wait_until(condition, what)`` once a condition on the transport holds.
    Both are woken by the writes, the half-close and the close, so a test waits exactly as long
    as the protocol takes. Like every asyncio transport, this one is used from its loop's thread.
    """

    def __init__(self, sock: socket.socket | None = None) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.paused = False
        self.eof = False  # write_eof was called (the protocol sent its FIN)
        self.sock = sock
        self._waiters: list[tuple[Callable[[], object], asyncio.Future[None]]] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.eof, "write after write_eof"
        self.data += data
        self._changed()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True
        self._changed()

    def close(self) -> None:
        self.closed = True
        self._changed()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" and self.sock is not None else default

    # --- what was written, and waiting for it -------------------------------------------------

    def responses(self) -> list[bytes]:
        """The whole HTTP/1.1 responses written so far, each head and body, in order; a
        response still being written is left out. Responses carry ``Content-Length``."""
        return split_responses(bytes(self.data))

    async def wait_for(self, count: int, timeout: float = WAIT_SECONDS) -> list[bytes]:
        """Returns :meth:`responses` once at least ``count`` whole responses were written;
        ``AssertionError`` naming what was written if they are not within ``timeout`` s."""
        await self.wait_until(lambda: len(self.responses()) >= count, f"{count} responses",
                              timeout)
        return self.responses()

    async def wait_until(self, condition: Callable[[], object], what: str,
                         timeout: float = WAIT_SECONDS) -> None:
        """Returns once ``condition()`` is true, checking it now and after every write,
        half-close and close; ``AssertionError`` naming ``what`` and what was written if it is
        still false after ``timeout`` s. The condition must depend on what this transport saw
        (nothing else wakes the wait)."""
        if condition():
            return
        future = asyncio.get_running_loop().create_future()
        waiter = (condition, future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AssertionError(
                f"gave up waiting for {what} after {timeout:g} s; written: "
                f"{bytes(self.data)[:2000]!r}, eof={self.eof}, closed={self.closed}") from None
        finally:
            self._waiters.remove(waiter)

    def _changed(self) -> None:
        for condition, future in self._waiters:
            if not future.done() and condition():
                future.set_result(None)


def split_responses(data: bytes) -> list[bytes]:
    """The whole HTTP responses at the start of ``data`` (each head and body), in order."""
    out = []
    start = 0
    while (head_end := data.find(b"\r\n\r\n", start)) >= 0:
        length = 0
        for line in data[start:head_end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        end = head_end + 4 + length
        if end > len(data):
            break
        out.append(data[start:end])
        start = end
    return out
