"""``CallContext``: the part of a gRPC call's context that tfsfast's handlers read, for tests
that call a handler directly rather than through a server; and ``outcome``, what such a call
ended with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfsfast.util.status import ServingError

__all__ = ["CallContext", "outcome"]


class CallContext:
    """A call whose deadline is ``remaining`` seconds away (None: no deadline; zero or less:
    passed), as ``grpc.ServicerContext.time_remaining`` reports it."""

    def __init__(self, remaining: float | None = None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


def outcome(call: Callable[[bytes, Any], Any], data: bytes, context: Any) -> Any:
    """What a unary handler (or a fast path: None when it declines) ends with for ``data``: the
    bytes answered (a continuation is run first), or the (code, message) it raised."""
    try:
        answer = call(data, context)
        return answer if answer is None or type(answer) is bytes else answer()
    except ServingError as e:
        return e.code, e.message
