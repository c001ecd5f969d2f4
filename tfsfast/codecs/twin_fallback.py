"""What the compiled codecs share for handing a body over to their pure-Python twin.

A compiled codec (``_json``, ``_msgpack``) gives a body it does not take on its fast path to the
twin's codec it made with its own ``CodecLimits``, which then decides the answer or the error.
When the hand-over comes after the compiled codec has looked the signature up, the twin is given
a ``SignatureLookup``, so that it answers exactly as the twin alone would, without a second
lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SignatureLookup:
    """``input_dtypes`` for the twin once the compiled codec has already asked: the same name
    gets the same answer without a second lookup (TF Serving looks the signature up once per
    request)."""

    __slots__ = ("answer", "fn", "name")

    def __init__(self, fn: Callable[[str], Any], name: str, answer: Any) -> None:
        self.fn = fn
        self.name = name
        self.answer = answer

    def __call__(self, name: str) -> Any:
        if name == self.name:
            return self.answer
        return self.fn(name)
