"""``CallContext``: the part of a gRPC call's context that tfsfast's handlers read, for tests
that call a handler directly rather than through a server."""

from __future__ import annotations

__all__ = ["CallContext"]


class CallContext:
    """A call whose deadline is ``remaining`` seconds away (None: no deadline; zero or less:
    passed), as ``grpc.ServicerContext.time_remaining`` reports it."""

    def __init__(self, remaining: float | None = None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining
