"""CodecLimits: the request codecs' limits, one frozen object a server builds once."""

from __future__ import annotations

import dataclasses

import pytest

from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits


def test_defaults_are_the_hardening_limits() -> None:
    assert DEFAULT_CODEC_LIMITS == CodecLimits(
        max_json_depth=100, max_msgpack_depth=100, max_tensor_rank=32,
        max_tensor_elements=2**28, max_request_elements=2**29, max_int_digits=20)


@pytest.mark.parametrize("value", [-1, 4.0, 3.5, True, "4", None])
@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(CodecLimits)])
def test_every_limit_is_an_int_of_at_least_zero(name: str, value: object) -> None:
    with pytest.raises(ValueError) as info:
        CodecLimits(**{name: value})
    assert str(info.value) == f"CodecLimits.{name} must be an int >= 0, got {value!r}"


def test_zero_and_huge_limits_are_limits() -> None:
    assert CodecLimits(max_tensor_elements=0).max_tensor_elements == 0
    assert CodecLimits(max_request_elements=2**70).max_request_elements == 2**70


def test_limits_cannot_change_under_a_codec() -> None:
    limits = CodecLimits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_json_depth = 3  # type: ignore[misc]
