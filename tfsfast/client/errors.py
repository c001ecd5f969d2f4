"""``RequestError``: what every client call raises when it gets no answer.

One exception for both transports, so that code handling errors does not depend on the one in
use. It carries the canonical status code (``Code``: absl's and gRPC's codes, the numbers of
``grpc.StatusCode``), the server's message as the server wrote it, and for REST the HTTP
status.
"""

from __future__ import annotations

from tfsfast.util.status import Code

__all__ = ["Code", "RequestError", "code_of_http_status"]

# The inverse of TF Serving's ``ToHTTPStatusCode`` (http_server.cc), which tfsfast's REST API
# follows. It is many-to-one (400 is INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE; 500
# is UNKNOWN, INTERNAL or DATA_LOSS): a status maps back to its most common code. 413 is
# tfsfast's answer to a body over --rest_api_max_body_bytes.
_CODE_OF_HTTP_STATUS: dict[int, Code] = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    409: Code.ABORTED,
    413: Code.RESOURCE_EXHAUSTED,
    429: Code.RESOURCE_EXHAUSTED,
    499: Code.CANCELLED,
    500: Code.INTERNAL,
    501: Code.UNIMPLEMENTED,
    503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}


def code_of_http_status(status: int) -> Code:
    """The canonical code TF Serving's REST API answers ``status`` for (UNKNOWN for a status
    it never sends)."""
    return _CODE_OF_HTTP_STATUS.get(status, Code.UNKNOWN)


class RequestError(Exception):
    """A call that failed: the server's error, or the client's own when no answer came.

    - ``code``: a ``Code``. Over gRPC, the call's status code. Over REST, the code the HTTP
      status stands for (``code_of_http_status``; the status itself is ``http_status``).
      The client's own failures: DEADLINE_EXCEEDED when the call's deadline passed,
      UNAVAILABLE when no connection could be made or it broke before the answer, INTERNAL
      for an answer that is not what the API sends.
    - ``message``: the server's message (REST's ``{"error": ...}``, gRPC's details), or the
      client's description of its own failure.
    - ``http_status``: the REST answer's status; None over gRPC and when no answer came.
    """

    def __init__(self, code: Code, message: str, http_status: int | None = None) -> None:
        super().__init__(code, message, http_status)
        self.code = Code(code)
        self.message = message
        self.http_status = http_status

    def __str__(self) -> str:
        status = f" (HTTP {self.http_status})" if self.http_status is not None else ""
        return f"{self.code.name}{status}: {self.message}"

    def __repr__(self) -> str:
        return f"RequestError({self.code.name}, {self.message!r}, http_status={self.http_status})"
