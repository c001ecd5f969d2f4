"""Statuses at the gRPC edge: TF Serving's ``grpc_status_util.cc``.

The code passes through unchanged (absl and gRPC codes are the same numbers); a message longer
than 1024 characters is cut there and ends with ``...TRUNCATED``, as TF Serving does.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from tfsfast.util.status import Code, ServingError

ERROR_MESSAGE_LIMIT = 1024

_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def truncated_message(message: str) -> str:
    if len(message) > ERROR_MESSAGE_LIMIT:
        return message[:ERROR_MESSAGE_LIMIT] + "...TRUNCATED"
    return message


def to_grpc_status(error: ServingError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and details for a ``ServingError``."""
    return _GRPC_CODES.get(int(error.code), grpc.StatusCode.UNKNOWN), truncated_message(
        error.message)


def abort(context: grpc.ServicerContext, error: ServingError) -> NoReturn:
    """Ends the call with ``error``'s status (raises, as ``context.abort`` does)."""
    code, message = to_grpc_status(error)
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort always raises


def internal_error(e: BaseException) -> ServingError:
    """An unexpected exception as the INTERNAL status a client sees."""
    return ServingError(Code.INTERNAL, f"{type(e).__name__}: {e}")


def parse_request(message_class: Any, data: bytes) -> Any:
    """A request of ``message_class`` from ``data``; INVALID_ARGUMENT when it does not parse."""
    try:
        return message_class.FromString(data)
    except Exception:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Could not parse the request as a "
                           f"{message_class.DESCRIPTOR.full_name}") from None
