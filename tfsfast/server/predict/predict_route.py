"""Step 1 of REST predict: the URL to a ModelSpec (TF Serving's ``http_rest_api_handler.cc``).

``parse_predict_route`` is the one parser of ``POST /v1/models/<name>[/versions/<n> |
/labels/<l>]:(predict|classify|regress)``: the REST handler routes with it, and both REST fast
paths call it for a URL they have not seen last (they keep the last URL's route). gRPC has no
route: its ModelSpec is a field of the request.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from tfsfast.util.status import Code, ServingError

# TF Serving's route pattern (an RE2 full match, case-insensitive).
_PREDICT_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE)
INT64_MAX = (1 << 63) - 1

# (model name, version or None, label or None, method: "predict", "classify" or "regress" in any
# case)
PredictRoute = tuple[str, "int | None", "str | None", str]


def request_path(target: bytes) -> str:
    """The path of a request target without its query, as the text the routes match (every
    byte is one character, as TF Serving's byte strings)."""
    return target.split(b"?", 1)[0].decode("latin-1")


def parse_predict_route(path: str) -> PredictRoute | None:
    """The route of a ``request_path``, or None when ``path`` is not a predict, classify or
    regress URL. The method is as written (the pattern ignores case, TF Serving's dispatch on
    it does not), the name and the label percent-decoded; a version above int64 is
    INVALID_ARGUMENT ``Failed to convert version: <digits> to numeric.``."""
    match = _PREDICT_RE.fullmatch(path)
    if match is None:
        return None
    name, version, label = model_spec(match.group(1), match.group(2), match.group(3))
    return name, version, label, match.group(4)


def model_spec(name: str, version: str | None,
               label: str | None) -> tuple[str, int | None, str | None]:
    """(name, version, label) of a route's matched groups: the name and the label
    percent-decoded (invalid UTF-8 replaced), the version a number within int64."""
    number = None
    if version is not None:
        number = int(version)
        if number > INT64_MAX:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Failed to convert version: {version} to numeric.")
    return (unquote(name, errors="replace"), number,
            unquote(label, errors="replace") if label else None)


def predict_model_spec(target: bytes) -> tuple[str, int | None] | None:
    """(model name, version or None) of a request target that routes to predict by a name and
    maybe a version (no label), else None (a label, classify or regress, another URL, or a
    version past int64, whose error the handler reports). What the REST fast paths take."""
    try:
        route = parse_predict_route(request_path(target))
    except ServingError:
        return None
    if route is None or route[2] is not None or route[3] != "predict":
        return None
    return route[0], route[1]
