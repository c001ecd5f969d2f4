"""``predict_route``: the one parser of REST's predict, classify and regress URLs."""

from __future__ import annotations

import pytest

from tfsfast.server.predict.predict_route import (
    parse_predict_route,
    predict_model_spec,
    request_path,
)
from tfsfast.util.status import Code, ServingError


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/models/m:predict", ("m", None, None, "predict")),
    ("/v1/models/m:classify", ("m", None, None, "classify")),
    ("/v1/models/m:regress", ("m", None, None, "regress")),
    ("/v1/models/m/versions/7:predict", ("m", 7, None, "predict")),
    ("/v1/models/m/versions/007:predict", ("m", 7, None, "predict")),
    ("/v1/models/m/labels/stable:regress", ("m", None, "stable", "regress")),
    # RE2's case-insensitive match; the method keeps its spelling (the handler dispatches on it).
    ("/V1/MODELS/m/VERSIONS/2:PREDICT", ("m", 2, None, "PREDICT")),
    # Names and labels are percent-decoded, invalid UTF-8 replaced.
    ("/v1/models/a%2Fb%20c/labels/x%3Ay:predict", ("a/b c", None, "x:y", "predict")),
    ("/v1/models/%FF:predict", ("\ufffd", None, None, "predict")),
    ("/v1/models/m\xe9 #:predict", ("m\xe9 #", None, None, "predict")),
    ("/v1/models/m/versions/9223372036854775807:predict",
     ("m", 9223372036854775807, None, "predict")),
    # Not these routes.
    ("/v1/models/m", None),
    ("/v1/models/m/metadata", None),
    ("/v1/models/:predict", None),
    ("/v1/models/m:predictx", None),
    ("/v1/models/a:b:predict", None),
    ("/v1/models/m/versions/:predict", None),
    ("/v1/models/m/versions/1a:predict", None),
    ("/v1/models/m/labels/:predict", None),
    ("/v1/models/m/versions/1/labels/a:predict", None),
    ("/v2/models/m:predict", None),
    ("", None),
])
def test_parse_predict_route(path: str, expected: tuple | None) -> None:
    assert parse_predict_route(path) == expected


def test_a_version_past_int64_is_invalid_argument() -> None:
    with pytest.raises(ServingError) as caught:
        parse_predict_route("/v1/models/m/versions/9223372036854775808:predict")
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.message == ("Failed to convert version: 9223372036854775808 to "
                                    "numeric.")


@pytest.mark.parametrize(("target", "expected"), [
    (b"/v1/models/m:predict", "/v1/models/m:predict"),
    (b"/v1/models/m:predict?a=1?b", "/v1/models/m:predict"),
    (b"/v1/models/m\xe9:predict", "/v1/models/m\xe9:predict"),
    (b"?x", ""),
])
def test_request_path(target: bytes, expected: str) -> None:
    assert request_path(target) == expected


@pytest.mark.parametrize(("target", "expected"), [
    (b"/v1/models/m:predict", ("m", None)),
    (b"/v1/models/m/versions/3:predict?x=1", ("m", 3)),
    (b"/v1/models/%6D:predict", ("m", None)),
    # The rest is the handler's: labels, other methods, a method in another case (the handler's
    # "Malformed request"), a version past int64 (its error), other URLs.
    (b"/v1/models/m/labels/a:predict", None),
    (b"/v1/models/m:classify", None),
    (b"/v1/models/m:Predict", None),
    (b"/v1/models/m/versions/99999999999999999999:predict", None),
    (b"/v1/models/m", None),
])
def test_predict_model_spec(target: bytes, expected: tuple | None) -> None:
    assert predict_model_spec(target) == expected
