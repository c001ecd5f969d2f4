"""What the compiled codecs share for handing a body over to their pure-Python twin.

A compiled codec (``_json``, ``_msgpack``) gives a body it does not take on its fast path to its
twin, which then decides the answer or the error; both pieces here keep that hand-over
answering exactly as the twin alone would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import ModuleType
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


def reference_parse(twin: ModuleType, limit_names: Iterable[str], limits: dict[str, Any],
                    lock: threading.RLock, body: Any, input_dtypes: Any) -> Any:
    """``twin.parse_predict_request(body, input_dtypes)`` under the compiled module's limits.

    ``limits`` is the compiled module's namespace: tests and deployments set the limits there,
    and the twin must judge the body by the same ones. When they differ from the twin's own,
    they are lent to it for the call, under ``lock`` (one hand-over at a time).
    """
    names = tuple(limit_names)
    mine = [limits[name] for name in names]
    if all(getattr(twin, name) == value for name, value in zip(names, mine, strict=True)):
        return twin.parse_predict_request(body, input_dtypes)
    with lock:
        saved = [getattr(twin, name) for name in names]
        try:
            for name, value in zip(names, mine, strict=True):
                setattr(twin, name, value)
            return twin.parse_predict_request(body, input_dtypes)
        finally:
            for name, value in zip(names, saved, strict=True):
                setattr(twin, name, value)
