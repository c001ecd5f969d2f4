"""Type stubs for the compiled RunCost (the twin, ``_run_cost_py``, holds the contract and is
typed inline)."""

from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

IMPLEMENTATION: str

class RunCost:
    seconds: float | None
    def __init__(self, seconds: float | None = None) -> None: ...
    def add(self, elapsed: float) -> None: ...
    def timed(self, run: Callable[..., _T], *args: Any) -> _T: ...
    def below(self, limit: float) -> bool: ...
    def allows(self, limit: float, now: float | None = None) -> bool: ...
