"""The batching queue: the compiled :mod:`~tfsfast.batching._batch_queue`, else its Python twin.

Re-exports ``BatchTask``, ``Batch``, ``BatchQueue``, ``SchedulerCore``, ``monotonic``,
``task_too_large``, ``QUEUE_FULL_MESSAGE`` and ``QUEUE_CLOSED_MESSAGE`` from the implementation
chosen by :func:`tfsfast._extensions.load` (``TFSFAST_NO_EXTENSIONS=1`` forces the twin);
``IMPLEMENTATION`` says which (``"compiled"`` or ``"python"``) and ``implementation`` is the module
itself. Contracts are in the compiled module's docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfsfast import _extensions

implementation = _extensions.load("tfsfast.batching._batch_queue",
                                  "tfsfast.batching._batch_queue_py")
IMPLEMENTATION: str = _extensions.implementation(implementation)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.batching._batch_queue_py import (
        QUEUE_CLOSED_MESSAGE,
        QUEUE_FULL_MESSAGE,
        Batch,
        BatchQueue,
        BatchTask,
        SchedulerCore,
        monotonic,
        task_too_large,
    )
else:
    BatchTask = implementation.BatchTask
    Batch = implementation.Batch
    BatchQueue = implementation.BatchQueue
    SchedulerCore = implementation.SchedulerCore
    monotonic = implementation.monotonic
    task_too_large = implementation.task_too_large
    QUEUE_FULL_MESSAGE = implementation.QUEUE_FULL_MESSAGE
    QUEUE_CLOSED_MESSAGE = implementation.QUEUE_CLOSED_MESSAGE

__all__ = [
    "IMPLEMENTATION",
    "QUEUE_CLOSED_MESSAGE",
    "QUEUE_FULL_MESSAGE",
    "Batch",
    "BatchQueue",
    "BatchTask",
    "SchedulerCore",
    "implementation",
    "monotonic",
    "task_too_large",
]
