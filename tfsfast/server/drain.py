"""What a draining server answers the requests it refuses and those it could not finish.

After SIGTERM (and ``--shutdown_delay_seconds``) the server drains: the listeners stop accepting,
the requests in progress finish within ``--drain_timeout_seconds``, and the process exits (see
``server.Server``). Two kinds of request get an answer other than their result, over REST as 503
and over gRPC as UNAVAILABLE, both codes a client may retry on another server: one that arrives
on an open gRPC connection once the drain has begun is refused before it runs (``REFUSED``), and
one still running at the deadline is answered without its result (``timed_out``). Each message
names the drain and says whether the request ran, which is what a client needs to know before it
retries.
"""

from __future__ import annotations

REFUSED = ("The server is shutting down (draining) and did not run this request; send it to "
           "another server")


def timed_out(drain_timeout_seconds: float) -> str:
    """The answer to a request still running when the drain's deadline came."""
    return (f"The server is shutting down and this request did not finish within the drain "
            f"timeout (--drain_timeout_seconds={drain_timeout_seconds:g}); it may or may not "
            f"have run")
