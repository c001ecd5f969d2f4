"""``BatchingParameters``: TF Serving's batching configuration, its defaults and its checks.

The file behind ``--batching_parameters_file`` (and a model's own ``batching_params.pbtxt`` under
``--enable_per_model_batching_parameters``) is a text-format ``tensorflow.serving.
BatchingParameters``. Its scalar fields are protobuf wrapper messages, so "unset" is visible and
means "TensorFlow's default"::

    max_batch_size { value: 128 }            # Int64Value, default 1000
    batch_timeout_micros { value: 0 }        # Int64Value, default 0
    max_enqueued_batches { value: 10 }       # Int64Value, default 10
    num_batch_threads { value: 8 }           # Int64Value, default: the CPUs this process may use
    thread_pool_name { value: "batch_threads" }       # StringValue
    allowed_batch_sizes: 32                  # repeated int64, increasing, last = max_batch_size
    pad_variable_length_inputs: false        # bool
    enable_large_batch_splitting { value: true }      # BoolValue, default false
    max_execution_batch_size { value: 64 }   # Int64Value, default max_batch_size (splitting only)

The proto module is not part of the ``tensorflow-serving-api`` wheel, so when
``tensorflow_serving.servables.tensorflow.session_bundle_config_pb2`` cannot be imported the
message is built here from its descriptor (same package, names, numbers and types), in a private
descriptor pool; text-format parsing and its errors are then protobuf's own.

The parsed message is split, as TF Serving splits it, into the options of the three parts that use
it: :class:`SchedulerOptions` (the shared batch threads), :class:`QueueOptions` (each queue) and
:class:`BatchingSessionOptions` (merging and padding). Invalid values raise ``ServingError``
INVALID_ARGUMENT with TensorFlow's messages.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from tfsfast.util.status import Code, ServingError

__all__ = [
    "BATCHING_PARAMS_FILENAME",
    "DEFAULT_BATCH_TIMEOUT_MICROS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_ENQUEUED_BATCHES",
    "DEFAULT_THREAD_POOL_NAME",
    "SERVER_THREAD_POOL_NAME",
    "BatchingParameters",
    "BatchingSessionOptions",
    "QueueOptions",
    "SchedulerOptions",
    "batching_session_options",
    "parse_batching_parameters",
    "queue_options",
    "read_batching_parameters",
    "scheduler_options",
    "server_default_batching_parameters",
    "validate",
]

MESSAGE_NAME = "tensorflow.serving.BatchingParameters"
BATCHING_PARAMS_FILENAME = "batching_params.pbtxt"

# TensorFlow's SharedBatchScheduler defaults (QueueOptions / Options).
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10
DEFAULT_THREAD_POOL_NAME = "batch_threads"
# What the model server sets when --enable_batching comes without a parameters file.
SERVER_THREAD_POOL_NAME = "model_server_batch_threads"

# (name, number, wrapper message or None for a plain field, plain type, repeated)
_FIELDS: tuple[tuple[str, int, str | None, str, bool], ...] = (
    ("max_batch_size", 1, "google.protobuf.Int64Value", "", False),
    ("batch_timeout_micros", 2, "google.protobuf.Int64Value", "", False),
    ("max_enqueued_batches", 3, "google.protobuf.Int64Value", "", False),
    ("num_batch_threads", 4, "google.protobuf.Int64Value", "", False),
    ("thread_pool_name", 5, "google.protobuf.StringValue", "", False),
    ("allowed_batch_sizes", 6, None, "int64", True),
    ("pad_variable_length_inputs", 7, None, "bool", False),
    ("enable_large_batch_splitting", 8, "google.protobuf.BoolValue", "", False),
    ("max_execution_batch_size", 9, "google.protobuf.Int64Value", "", False),
)


@functools.cache
def _message_class() -> type:
    try:
        from tensorflow_serving.servables.tensorflow import (
            session_bundle_config_pb2,
        )

        cls = session_bundle_config_pb2.BatchingParameters
        if all(f[0] in cls.DESCRIPTOR.fields_by_name for f in _FIELDS):
            return cls
    except ImportError:
        pass
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    message = file_proto.message_type.add(name="BatchingParameters")
    field_proto = descriptor_pb2.FieldDescriptorProto
    for name, number, wrapper, plain, repeated in _FIELDS:
        field = message.field.add(name=name, number=number, json_name=_camel(name))
        field.label = field_proto.LABEL_REPEATED if repeated else field_proto.LABEL_OPTIONAL
        if wrapper is not None:
            field.type = field_proto.TYPE_MESSAGE
            field.type_name = "." + wrapper
        else:
            field.type = (field_proto.TYPE_INT64 if plain == "int64" else field_proto.TYPE_BOOL)
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(MESSAGE_NAME))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def BatchingParameters(**fields: Any) -> Any:  # named after the proto message
    """A new ``tensorflow.serving.BatchingParameters`` message (keyword fields as protobuf's)."""
    return _message_class()(**fields)


def parse_batching_parameters(text: str, path: str = "") -> Any:
    """Parses the text format; INVALID_ARGUMENT naming ``path`` and protobuf's parse error."""
    from google.protobuf import text_format

    params = BatchingParameters()
    try:
        text_format.Parse(text, params)
    except text_format.ParseError as e:
        where = f"Invalid protobuf file: '{path}': " if path else ""
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"{where}Error parsing text-format {MESSAGE_NAME}: {e}") from None
    return params


def read_batching_parameters(path: str | os.PathLike[str]) -> Any:
    """Reads and parses a ``BatchingParameters`` text file (NOT_FOUND if it cannot be read)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ServingError(Code.NOT_FOUND, f"Failed to read BatchingParameters file: {path}: "
                                           f"{e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Invalid protobuf file: '{path}': {e}") from None
    return parse_batching_parameters(text, path)


def server_default_batching_parameters() -> Any:
    """What ``--enable_batching`` means without a file: only the thread pool name is set."""
    params = BatchingParameters()
    params.thread_pool_name.value = SERVER_THREAD_POOL_NAME
    return params


def _num_schedulable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _invalid(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


@dataclass(frozen=True)
class SchedulerOptions:
    """The shared batch threads (TF's ``SharedBatchScheduler::Options``)."""

    num_batch_threads: int
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME


@dataclass(frozen=True)
class QueueOptions:
    """One queue (TF's ``SharedBatchScheduler::QueueOptions``), in TF Serving's units.

    ``max_batch_size`` is TF's ``input_batch_size_limit``: the largest task a queue accepts,
    and, without splitting, the largest batch. With ``enable_large_batch_splitting`` batches hold
    at most ``max_execution_batch_size`` rows and larger tasks are split across batches; without
    it ``max_execution_batch_size`` equals ``max_batch_size``.
    """

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = DEFAULT_MAX_BATCH_SIZE


@dataclass(frozen=True)
class BatchingSessionOptions:
    """How a batch's inputs are merged (TF Serving's ``BatchingSessionOptions``)."""

    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False


def scheduler_options(params: Any) -> SchedulerOptions:
    """The batch thread pool; INVALID_ARGUMENT ``num_batch_threads must be positive; was N``."""
    threads = (params.num_batch_threads.value if params.HasField("num_batch_threads")
               else _num_schedulable_cpus())
    if threads < 1:
        raise _invalid(f"num_batch_threads must be positive; was {threads}")
    name = (params.thread_pool_name.value if params.HasField("thread_pool_name")
            else DEFAULT_THREAD_POOL_NAME)
    return SchedulerOptions(num_batch_threads=threads, thread_pool_name=name)


def queue_options(params: Any) -> QueueOptions:
    """A queue's options, defaults filled in, with TensorFlow's checks and messages."""
    max_batch_size = (params.max_batch_size.value if params.HasField("max_batch_size")
                      else DEFAULT_MAX_BATCH_SIZE)
    timeout = (params.batch_timeout_micros.value if params.HasField("batch_timeout_micros")
               else DEFAULT_BATCH_TIMEOUT_MICROS)
    max_enqueued = (params.max_enqueued_batches.value if params.HasField("max_enqueued_batches")
                    else DEFAULT_MAX_ENQUEUED_BATCHES)
    splitting = (params.HasField("enable_large_batch_splitting")
                 and params.enable_large_batch_splitting.value)
    max_execution = max_batch_size
    if splitting and params.HasField("max_execution_batch_size"):
        max_execution = params.max_execution_batch_size.value
    if max_batch_size <= 0:
        raise _invalid(f"max_batch_size must be positive; was {max_batch_size}")
    if timeout < 0:
        raise _invalid(f"batch_timeout_micros must be non-negative; was {timeout}")
    if max_enqueued == 0 and not splitting:
        # TensorFlow rewrites 0 to 1 here: low-traffic models in the wild depend on it.
        max_enqueued = 1
    if max_enqueued <= 0:
        raise _invalid(f"max_enqueued_batches must be positive; was {max_enqueued}")
    if splitting:
        if max_execution <= 0:
            raise _invalid(f"max_execution_batch_size must be positive; was {max_execution}")
        if max_execution > max_batch_size:
            raise _invalid(
                "When enable_large_batch_splitting is true, input_batch_size_limit must be "
                f"greater than or equal to max_execution_batch_size. (max_batch_size is "
                f"{max_batch_size}; max_execution_batch_size is {max_execution})")
    return QueueOptions(max_batch_size=max_batch_size, batch_timeout_micros=timeout,
                        max_enqueued_batches=max_enqueued,
                        enable_large_batch_splitting=bool(splitting),
                        max_execution_batch_size=max_execution)


def batching_session_options(params: Any) -> BatchingSessionOptions:
    """Merging options; ``allowed_batch_sizes`` must increase and end at ``max_batch_size``."""
    allowed = tuple(int(size) for size in params.allowed_batch_sizes)
    if allowed:
        last = 0
        for size in allowed:
            if size <= last:
                raise _invalid("allowed_batch_sizes entries must be monotonically increasing")
            last = size
        max_size = (params.max_batch_size.value if params.HasField("max_batch_size")
                    else DEFAULT_MAX_BATCH_SIZE)
        if allowed[-1] != max_size:
            raise _invalid(
                f"Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{allowed[-1]}; expected {max_size}")
    return BatchingSessionOptions(allowed_batch_sizes=allowed,
                                  pad_variable_length_inputs=params.pad_variable_length_inputs)


def validate(params: Any, *, threads_only: bool = False) -> None:
    """Raises INVALID_ARGUMENT for any invalid value.

    ``threads_only`` checks only what the scheduler uses: the global file under
    ``--enable_per_model_batching_parameters``, where each model brings its own queue options.
    """
    if not threads_only:
        batching_session_options(params)  # TF checks allowed_batch_sizes first
    scheduler_options(params)
    if not threads_only:
        queue_options(params)
