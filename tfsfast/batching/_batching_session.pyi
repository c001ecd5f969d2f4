"""Type stubs for the batching session's compiled per-task module (the twin,
``_batching_session_py``, is typed inline)."""

import asyncio
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Final

from tfsfast.util.run_cost import RunCost, RunCostPolicy

IMPLEMENTATION: Final[str]

class Request:
    arrays: list[Any]
    output_aliases: tuple[str, ...] | None
    group: tuple[Any, ...]
    def __init__(self, arrays: list[Any], output_aliases: tuple[str, ...] | None,
                 group: tuple[Any, ...]) -> None: ...

def group_key(arrays: list[Any], pad: bool) -> tuple[Any, ...]: ...
def resolve_futures(items: list[tuple[Any, Any, BaseException | None]]) -> None: ...

class Completions:
    def __init__(self, current_loop: asyncio.AbstractEventLoop | None = None) -> None: ...
    def succeed(self, task: Any, result: dict[str, Any]) -> None: ...
    def fail(self, task: Any, error: Any) -> None: ...
    def fail_unanswered(self, tasks: list[Any], error: Any) -> None: ...
    def deliver(self) -> None: ...

class SignatureBatcher:
    key: str
    signature: Any
    input_aliases: tuple[str, ...]
    feed_dtypes: tuple[int, ...]
    output_aliases: tuple[str, ...]
    output_set: frozenset[str]
    queue: Any
    cost: RunCost
    flushing: set[asyncio.AbstractEventLoop]
    timers: set[asyncio.AbstractEventLoop]
    def __init__(self, key: str, signature: Any, run: Callable[..., Any], options: Any,
                 queue_implementation: ModuleType,
                 flush_on_loop: Callable[[Any, asyncio.AbstractEventLoop], Any],
                 run_cost_policy: RunCostPolicy) -> None: ...
    def schedule(self, inputs: Mapping[str, Any], output_aliases: Sequence[str] | None,
                 timeout_in_ms: float, deadline: float | None, waiter: Any) -> Any: ...
    def process_batch(self, batch: Any, loop: asyncio.AbstractEventLoop | None = None) -> None: ...
