"""Command-line flags of ``python -m tfsfast``, compatible with ``tensorflow_model_server``.

One :class:`ServerOptions` field per TF Serving flag (``model_servers/main.cc``, defaults from
``Server::Options`` in ``server.h``), plus seven tfsfast extensions
(``--rest_api_max_body_bytes``, ``--drain_timeout_seconds``, ``--rest_api_num_workers``,
``--grpc_max_message_bytes``, ``--shutdown_delay_seconds``, ``--reload_config_timeout_seconds``,
``--access_log_file``).
The flag table lives in the dataclass fields themselves (type name and help text in each field's
metadata), so adding a flag is adding one field.

Parsing follows TF's ``command_line_flags`` (``tsl/util/command_line_flags.cc``) and the way
``main.cc`` reacts to its result; see :func:`parse_command_line`. Semantic checks done by
``Server::BuildAndStart`` are in :func:`validate`. Flags whose feature tfsfast does not serve yet
are listed in :data:`NOT_YET_SERVED` and reported by :func:`unserved_flags` (which stops the
start); flags whose TF Serving default asks for such a feature, in :data:`DEFAULTS_NOT_YET_SERVED`
and reported by :func:`unserved_defaults` (which the server logs).

Nothing here exits the process or imports TensorFlow: ``__main__`` acts on the returned values.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import re
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TextIO

import tfsfast
from tfsfast.util.status import Code, ServingError

__all__ = [
    "DEFAULTS_NOT_YET_SERVED",
    "FLAGS",
    "FLAGS_BY_NAME",
    "NOT_YET_SERVED",
    "Flag",
    "FlagType",
    "ParseResult",
    "ServerOptions",
    "grpc_channel_arguments_dict",
    "num_schedulable_cpus",
    "parse_command_line",
    "saved_model_tags_list",
    "unserved_defaults",
    "unserved_flags",
    "usage_text",
    "validate",
    "version_text",
]

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

FlagType = Literal["int32", "int64", "bool", "string", "float"]

DEFAULT_PROGRAM: Final = "python -m tfsfast"


def num_schedulable_cpus() -> int:
    """The CPUs this process may run on (TF's ``port::NumSchedulableCPUs``), at least 1.

    TF counts the affinity mask, not the machine's CPUs, so a container pinned to 2 of 64 cores
    gets 2; ``os.cpu_count()`` is only the fallback where affinity is unavailable.
    """
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _four_per_cpu() -> int:
    # TF computes 4.0 * NumSchedulableCPUs() and truncates to int32.
    return 4 * num_schedulable_cpus()


def _flag(
    type_name: FlagType,
    help_text: str,
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    extension: bool = False,
) -> Any:
    """A dataclass field carrying its flag type and help text in ``metadata``."""
    metadata = {"type": type_name, "help": help_text, "extension": extension}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ServerOptions:
    """Every ``tensorflow_model_server`` flag, same name, type and default (compat doc §1.1).

    Field order is the order of TF's usage text; tfsfast extensions come last. Defaults that
    depend on the CPU count are computed when an instance is created. The instance is frozen so
    that options validated at startup cannot drift; derive variants with ``dataclasses.replace``.
    """

    port: int = _flag("int32", "TCP port of the gRPC API; 0 disables gRPC over TCP.", 8500)
    grpc_socket_path: str = _flag(
        "string",
        "If non-empty, also serve the gRPC API on this UNIX socket path (relative or absolute).",
        "",
    )
    rest_api_port: int = _flag(
        "int32",
        "TCP port of the HTTP/REST API; 0 disables it. Must differ from --port.",
        0,
    )
    rest_api_num_threads: int = _flag(
        "int32",
        "Number of HTTP/REST handler threads; defaults to 4 per schedulable CPU.",
        factory=_four_per_cpu,
    )
    rest_api_timeout_in_ms: int = _flag(
        "int32", "Timeout of an HTTP/REST call in milliseconds; used only when > 0.", 30000
    )
    rest_api_enable_cors_support: bool = _flag(
        "bool", "Add CORS (Access-Control-Allow-*) headers to HTTP/REST responses.", False
    )
    enable_batching: bool = _flag("bool", "Enable server-side batching of requests.", False)
    allow_version_labels_for_unavailable_models: bool = _flag(
        "bool",
        "Allow a new version label to point at a version that is not available yet.",
        False,
    )
    batching_parameters_file: str = _flag(
        "string",
        "If non-empty, a text-format BatchingParameters file used instead of the default "
        "batching parameters. Requires --enable_batching.",
        "",
    )
    enable_per_model_batching_parameters: bool = _flag(
        "bool",
        "Read each model's batching parameters from batching_params.pbtxt in its SavedModel "
        "directory; only the thread-pool settings of --batching_parameters_file are then used. "
        "Applies only with --enable_batching.",
        False,
    )
    model_config_file: str = _flag(
        "string",
        "If non-empty, a text-format ModelServerConfig listing the models to serve "
        "(--model_name and --model_base_path are then ignored).",
        "",
    )
    model_config_file_poll_wait_seconds: int = _flag(
        "int32",
        "Seconds between re-reads of --model_config_file; 0 reads it once at startup.",
        0,
    )
    model_name: str = _flag(
        "string", "Name of the single served model (ignored with --model_config_file).", "default"
    )
    model_base_path: str = _flag(
        "string",
        "Directory holding the numbered version directories of the single served model "
        "(ignored with --model_config_file, required otherwise).",
        "",
    )
    num_load_threads: int = _flag(
        "int32",
        "Threads that load servables after the initial load; 0 loads serially (one at a "
        "time, as in TF Serving's manager thread, but on a load thread of its own).",
        0,
    )
    num_unload_threads: int = _flag(
        "int32", "Threads that unload servables; 0 unloads serially in the manager thread.", 0
    )
    max_num_load_retries: int = _flag(
        "int32",
        "Load retries after a failed first attempt; 0 means a single attempt.",
        5,
    )
    load_retry_interval_micros: int = _flag(
        "int64",
        "Microseconds between load retries; a negative value retries without waiting.",
        60_000_000,
    )
    file_system_poll_wait_seconds: int = _flag(
        "int32",
        "Seconds between polls of the base paths for new versions; 0 polls once, a negative "
        "value never polls (testing only).",
        1,
    )
    flush_filesystem_caches: bool = _flag(
        "bool",
        "Flush filesystem caches after the initial load, and after each reload when there is "
        "a single load thread.",
        True,
    )
    tensorflow_session_parallelism: int = _flag(
        "int64",
        "Threads of both TensorFlow intra-op and inter-op pools; 0 lets TensorFlow choose. "
        "Ignored with --platform_config_file.",
        0,
    )
    tensorflow_session_config_file: str = _flag(
        "string",
        "If non-empty, a text-format TensorFlow ConfigProto for sessions; the parallelism and "
        "GPU flags override parts of it.",
        "",
    )
    tensorflow_intra_op_parallelism: int = _flag(
        "int64",
        "Threads that run one op in parallel; 0 lets TensorFlow choose. Ignored with "
        "--platform_config_file.",
        0,
    )
    tensorflow_inter_op_parallelism: int = _flag(
        "int64",
        "Ops that may run at the same time; 0 lets TensorFlow choose. Ignored with "
        "--platform_config_file.",
        0,
    )
    use_alts_credentials: bool = _flag(
        "bool", "Use Google ALTS credentials for gRPC (not with --ssl_config_file).", False
    )
    ssl_config_file: str = _flag(
        "string", "If non-empty, a text-format SSLConfig that secures the gRPC listeners.", ""
    )
    platform_config_file: str = _flag(
        "string",
        "If non-empty, a text-format PlatformConfigMap used instead of the built-in TensorFlow "
        "platform (--enable_batching and the parallelism flags are then ignored).",
        "",
    )
    per_process_gpu_memory_fraction: float = _flag(
        "float",
        "Fraction of GPU memory the process takes, from 0.0 to 1.0; 0 lets TensorFlow choose.",
        0.0,
    )
    saved_model_tags: str = _flag(
        "string", "Comma-separated tags of the MetaGraph to load from each SavedModel.", "serve"
    )
    grpc_channel_arguments: str = _flag(
        "string",
        "Comma-separated key=value gRPC server channel arguments "
        "(e.g. grpc.max_connection_age_ms=2000).",
        "",
    )
    grpc_max_threads: int = _flag(
        "int32",
        "Maximum threads of the gRPC server; defaults to 4 per schedulable CPU.",
        factory=_four_per_cpu,
    )
    enable_model_warmup: bool = _flag(
        "bool",
        "Replay assets.extra/tf_serving_warmup_requests when a version loads, to cut "
        "first-request latency.",
        True,
    )
    num_request_iterations_for_warmup: int = _flag(
        "int32", "Times each warmup request is replayed; used only when > 0 (else 1).", 0
    )
    version: bool = _flag("bool", "Print the version and exit.", False)
    monitoring_config_file: str = _flag(
        "string",
        "If non-empty, a text-format MonitoringConfig (Prometheus endpoint on the REST port).",
        "",
    )
    remove_unused_fields_from_bundle_metagraph: bool = _flag(
        "bool",
        "Keep only the signature_def part of each loaded MetaGraphDef, to save memory.",
        True,
    )
    prefer_tflite_model: bool = _flag(
        "bool",
        "EXPERIMENTAL. Load model.tflite from the version directory when present, instead of "
        "saved_model.pb.",
        False,
    )
    num_tflite_pools: int = _flag(
        "int32",
        "EXPERIMENTAL. TFLite interpreter pools per model; defaults to the schedulable CPUs.",
        factory=num_schedulable_cpus,
    )
    num_tflite_interpreters_per_pool: int = _flag(
        "int32", "EXPERIMENTAL. TFLite interpreters in each pool.", 1
    )
    enable_signature_method_name_check: bool = _flag(
        "bool",
        "Check the SignatureDef method_name for predict/classify/regress; leave off to serve "
        "native TF2 classification/regression models.",
        False,
    )
    xla_cpu_compilation_enabled: bool = _flag(
        "bool",
        "EXPERIMENTAL. Enable XLA:CPU JIT compilation (default is disabled: a model that asks "
        "for XLA, e.g. a jit_compile=True function, then fails on its first run).",
        False,
    )
    xla_gpu_compilation_enabled: bool = _flag(
        "bool", "EXPERIMENTAL. Enable both XLA:CPU and XLA:GPU JIT compilation (default is "
        "disabled).", False
    )
    enable_profiler: bool = _flag(
        "bool",
        "Register the TensorFlow profiler service on the gRPC server.",
        True,
    )
    thread_pool_factory_config_file: str = _flag(
        "string",
        "If non-empty, a text-format ThreadPoolFactoryConfig for custom session thread pools.",
        "",
    )
    mixed_precision: str = _flag(
        "string", "Mixed precision mode; bfloat16 enables oneDNN BF16 auto mixed precision.", ""
    )
    skip_initialize_tpu: bool = _flag(
        "bool", "Skip initializing the TPU system at startup (TPU builds only).", False
    )
    enable_grpc_healthcheck_service: bool = _flag(
        "bool", "Serve the standard grpc.health.v1.Health service.", False
    )
    enable_serialization_as_tensor_content: bool = _flag(
        "bool", "Serialize gRPC Predict response tensors as tensor_content bytes.", False
    )
    # --- tfsfast extensions (not in TF Serving) ---
    rest_api_max_body_bytes: int = _flag(
        "int64",
        "Largest HTTP/REST request body accepted, in bytes; larger bodies get 413.",
        64 * 1024 * 1024,
        extension=True,
    )
    drain_timeout_seconds: int = _flag(
        "int32",
        "On SIGTERM, seconds in-flight requests get to finish before the server exits.",
        30,
        extension=True,
    )
    rest_api_num_workers: int = _flag(
        "int32",
        "Processes serving the REST port together (SO_REUSEPORT); each loads every model, so "
        "N workers hold N copies of the models. 1 serves REST from the server process alone.",
        1,
        extension=True,
    )
    grpc_max_message_bytes: int = _flag(
        "int64",
        "Largest gRPC request or response message, in bytes; larger ones get "
        "RESOURCE_EXHAUSTED. At most 2147483647.",
        64 * 1024 * 1024,
        extension=True,
    )
    shutdown_delay_seconds: int = _flag(
        "int32",
        "On SIGTERM or SIGINT, seconds the server keeps serving with readiness off "
        "(/v2/health/ready 503, gRPC health NOT_SERVING) before it drains, so load balancers "
        "stop sending first; a second SIGTERM or SIGINT ends the delay early. 0 drains at once.",
        0,
        extension=True,
    )
    reload_config_timeout_seconds: int = _flag(
        "int32",
        "Longest a model config reload (HandleReloadConfigRequest, or a change of "
        "--model_config_file) may take, waiting for the models it adds to load included; past "
        "it the reload fails and the previous config stays in force. A gRPC caller's deadline, "
        "if shorter, bounds it too.",
        600,
        extension=True,
    )
    model_repository_path: str = _flag(
        "string",
        "The model repository of the Open Inference Protocol's repository extension "
        "(/v2/repository/..., RepositoryModelLoad): a directory or gs:// or s3:// prefix whose "
        "subdirectories are models (each a base path of numbered versions), loaded and "
        "unloaded by name. Empty: the directory holding the configured models' base paths, "
        "when they share one (/models for --model_base_path=/models/m).",
        "",
        extension=True,
    )
    access_log_file: str = _flag(
        "string",
        "If non-empty, append one logfmt line per REST request and gRPC call (time, peer, "
        "protocol, method, route, model, version, status, bytes in and out, latency in "
        "microseconds) to this file; '-' writes to standard output. The file is reopened when "
        "it is moved (log rotation); REST workers append to the same file.",
        "",
        extension=True,
    )


@dataclass(frozen=True)
class Flag:
    """One row of the flag table, derived from a :class:`ServerOptions` field."""

    name: str
    type_name: FlagType
    help: str
    tfsfast_extension: bool
    _field: dataclasses.Field[Any] = dataclasses.field(repr=False, compare=False)

    def default(self) -> Any:
        """The default value now (CPU-dependent defaults are recomputed on each call)."""
        if self._field.default_factory is not dataclasses.MISSING:
            return self._field.default_factory()
        return self._field.default


FLAGS: Final[tuple[Flag, ...]] = tuple(
    Flag(f.name, f.metadata["type"], f.metadata["help"], f.metadata["extension"], f)
    for f in dataclasses.fields(ServerOptions)
)
FLAGS_BY_NAME: Final[Mapping[str, Flag]] = {flag.name: flag for flag in FLAGS}


# ---------------------------------------------------------------------------------------------
# Value parsing, as TF's command_line_flags (absl::SimpleAtoi / SimpleAtof / ParseBoolFlag).
# ---------------------------------------------------------------------------------------------

# absl strips exactly these (absl::ascii_isspace); str.strip() would also strip Unicode spaces.
_ASCII_WHITESPACE: Final = " \t\n\v\f\r"
# ASCII digits only: Python's int() would also accept "1_000" and non-ASCII digits.
_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
# absl::from_chars in general format (no hex) after SimpleAtof's optional single '+'.
_FLOAT_RE: Final = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)",
    re.IGNORECASE,
)
_INT_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    "int32": (INT32_MIN, INT32_MAX),
    "int64": (INT64_MIN, INT64_MAX),
}


def _parse_int(text: str, low: int, high: int) -> int | None:
    """Decimal integer in ``[low, high]`` as absl's ``SimpleAtoi``, or None if unparsable."""
    stripped = text.strip(_ASCII_WHITESPACE)
    if not _INT_RE.fullmatch(stripped):
        return None
    value = int(stripped)
    return value if low <= value <= high else None


def _to_float32(value: float) -> float:
    # The flag is a C float: round to single precision; beyond its range absl yields +-inf.
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def _parse_float(text: str) -> float | None:
    """A float as absl's ``SimpleAtof`` reads it, rounded to float32, or None if unparsable."""
    stripped = text.strip(_ASCII_WHITESPACE)
    if not _FLOAT_RE.fullmatch(stripped):
        return None
    if "nan" in stripped.lower():
        # float() refuses the "nan(payload)" form that from_chars accepts.
        return math.nan
    return _to_float32(float(stripped))


def _parse_bool(text: str) -> bool | None:
    # TSL's ParseBoolFlag: "true"/"false" in any case, or exactly "1"/"0".
    if text.lower() == "true" or text == "1":
        return True
    if text.lower() == "false" or text == "0":
        return False
    return None


def _parse_value(flag: Flag, text: str) -> tuple[bool, Any]:
    """``(ok, value)`` for the text after ``--name=``."""
    value: Any
    if flag.type_name == "string":
        return True, text
    if flag.type_name == "bool":
        value = _parse_bool(text)
    elif flag.type_name == "float":
        value = _parse_float(text)
    else:
        value = _parse_int(text, *_INT_RANGES[flag.type_name])
    return value is not None, value


# ---------------------------------------------------------------------------------------------
# Usage and version text.
# ---------------------------------------------------------------------------------------------


def _display_default(flag: Flag) -> str:
    value = flag.default()
    if flag.type_name == "bool":
        return "true" if value else "false"
    if flag.type_name == "string":
        return f'"{value}"'
    if flag.type_name == "float":
        return f"{value:f}"  # C's %f, e.g. 0.000000
    return str(value)


def usage_text(program: str = DEFAULT_PROGRAM) -> str:
    """The usage text, in TF ``Flags::Usage`` format.

    ``usage: <program>\\nFlags:\\n`` then, per flag in :data:`FLAGS` order, the line
    ``\\t%-33s\\t<type>\\t<help>\\n`` where ``%-33s`` is ``--name=<default>`` left-justified to 33
    columns; strings are quoted, bools are ``true``/``false``, floats use ``%f``. The help of a
    tfsfast-only flag starts with ``[tfsfast extension]``.
    """
    lines = [f"usage: {program}\nFlags:\n"]
    for flag in FLAGS:
        flag_string = f"--{flag.name}={_display_default(flag)}"
        help_text = f"[tfsfast extension] {flag.help}" if flag.tfsfast_extension else flag.help
        lines.append(f"\t{flag_string:<33}\t{flag.type_name}\t{help_text}\n")
    return "".join(lines)


# The distributions that install the `tensorflow` module, most likely first.
_TENSORFLOW_DISTRIBUTIONS: Final = ("tensorflow", "tensorflow-cpu")


def version_text() -> str:
    """What ``--version`` prints: TF Serving's two lines (``main.cc``), then tfsfast's own.

    ::

        TensorFlow ModelServer: 2.21.0+tfsfast.0.1.0
        TensorFlow Library: 2.21.0
        tfsfast: 0.1.0

    The ModelServer version is the TF Serving release whose API and behaviour tfsfast serves:
    TF Serving is released with, and versioned as, the TensorFlow it is built with, so it is the
    TensorFlow version, with tfsfast named in semver build metadata, as TF Serving's own builds
    carry theirs (``2.x.y+dev.sha.<hash>``). A script that reads the ModelServer or Library
    version of TF Serving's output reads a version it knows; the third line is tfsfast's release.
    The TensorFlow version comes from the installed distribution's metadata, so TensorFlow is not
    imported (that takes seconds): ``unknown`` if no TensorFlow distribution is installed, and
    then the ModelServer version is ``0.0.0+tfsfast.<v>`` (TF Serving's version when built
    without a release number).
    """
    tf_version = "unknown"
    for distribution in _TENSORFLOW_DISTRIBUTIONS:
        try:
            tf_version = importlib.metadata.version(distribution)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    serving = "0.0.0" if tf_version == "unknown" else tf_version
    return (f"TensorFlow ModelServer: {serving}+tfsfast.{tfsfast.__version__}\n"
            f"TensorFlow Library: {tf_version}\n"
            f"tfsfast: {tfsfast.__version__}\n")


# ---------------------------------------------------------------------------------------------
# Command-line parsing.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseResult:
    """What :func:`parse_command_line` decided; ``__main__`` prints and exits from it.

    - ``options``: the parsed options, environment defaults applied (valid even when exiting).
    - ``given``: names of the flags present on the command line with a parsable value.
    - ``unknown_arguments``: arguments no flag matched, in order (``--`` and all after it too).
    - ``output``: text for **stdout**; TF's ``main.cc`` writes the usage text, the
      ``unknown argument: X`` line and the version to ``std::cout``.
    - ``messages``: text for **stderr** (TF ``LOG(ERROR)``: ``Couldn't interpret value V for
      flag F.``), in the order the arguments were parsed.
    - ``exit_code``: ``None`` to keep going, ``0`` after ``--version``, ``-1`` after an
      unparsable value or a leading ``--help`` (``sys.exit(-1)`` gives status 255, like TF).

    Every entry of ``output`` and ``messages`` is a complete chunk ending with a newline; write
    them verbatim (see :meth:`emit`).
    """

    options: ServerOptions
    given: frozenset[str] = frozenset()
    unknown_arguments: tuple[str, ...] = ()
    output: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    exit_code: int | None = None

    @property
    def should_exit(self) -> bool:
        return self.exit_code is not None

    def emit(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        """Writes ``messages`` to stderr, then ``output`` to stdout (TF logs while parsing and
        prints afterwards), and flushes both."""
        err = sys.stderr if stderr is None else stderr
        out = sys.stdout if stdout is None else stdout
        for message in self.messages:
            err.write(message)
        err.flush()
        for chunk in self.output:
            out.write(chunk)
        out.flush()


def _match_flag(arg: str) -> tuple[Flag, str | None] | None:
    """The flag ``arg`` names and its raw value (None for a bare bool flag), or None.

    TF only recognises ``--name=value`` and, for bools, ``--name``: a single dash, a missing
    ``=`` on a non-bool flag or an unknown name all make the argument unknown.
    """
    if not arg.startswith("--"):
        return None
    name, sep, value = arg[2:].partition("=")
    flag = FLAGS_BY_NAME.get(name)
    if flag is None:
        return None
    if not sep:
        return (flag, None) if flag.type_name == "bool" else None
    return flag, value


def _environment_defaults(
    values: dict[str, Any], given: frozenset[str], environ: Mapping[str, str]
) -> None:
    """Applies TF Serving's Docker entrypoint defaults to ``values`` in place.

    The image runs ``tensorflow_model_server --model_name=${MODEL_NAME}
    --model_base_path=${MODEL_BASE_PATH}/${MODEL_NAME} "$@"``, so a flag given on the command
    line wins over the environment. See :func:`parse_command_line` for the exact rules.
    """
    env_name = environ.get("MODEL_NAME", "")
    env_base = environ.get("MODEL_BASE_PATH", "")
    if env_name and "model_name" not in given:
        values["model_name"] = env_name
    if env_base and "model_base_path" not in given and "model_config_file" not in given:
        # As in the entrypoint, the directory is named after $MODEL_NAME even when
        # --model_name overrides the served name; without $MODEL_NAME, the served name.
        directory = env_name or values.get("model_name", FLAGS_BY_NAME["model_name"].default())
        values["model_base_path"] = f"{env_base}/{directory}"


def parse_command_line(argv: Sequence[str], environ: Mapping[str, str] = os.environ,
                       program: str = DEFAULT_PROGRAM) -> ParseResult:
    """Parses ``argv`` (the arguments **after** the program name, i.e. ``sys.argv[1:]``).

    ``program`` is the name the usage text starts with (``usage: <program>``): TF Serving prints
    its own, so each command prints the name it was installed as.

    Follows TF's ``Flags::Parse`` and ``main.cc`` exactly:

    - Only ``--name=value`` is a flag; a bool flag may also be ``--name``. A bool value is
      ``true``/``false`` in any case, or ``1``/``0``. Integers are decimal with optional sign
      and surrounding ASCII whitespace, and must fit int32/int64. A flag given twice keeps the
      last value.
    - ``--`` ends flag parsing: it and every later argument are unknown.
    - An unparsable value logs ``Couldn't interpret value V for flag F.`` (stderr), the
      remaining arguments are still parsed, then the usage text is printed and the exit code
      is -1. The same happens, without the log line, when the first unknown argument is
      ``--help``.
    - Otherwise ``--version`` prints :func:`version_text` and exits 0.
    - Otherwise, if there are unknown arguments (positional, ``-name=value``, an unknown or
      value-less flag), ``unknown argument: <first unknown>`` and the usage text are printed
      and the server **keeps going** (exit code None).

    Environment defaults (TF Serving Docker image, compat doc §1.12), applied after parsing;
    an empty variable counts as unset:

    - ``MODEL_NAME`` set and ``--model_name`` not given: ``model_name = $MODEL_NAME``.
    - ``MODEL_BASE_PATH`` set and neither ``--model_base_path`` nor ``--model_config_file``
      given: ``model_base_path = $MODEL_BASE_PATH/$MODEL_NAME`` (plain string join, as the
      entrypoint's shell does). When ``MODEL_NAME`` is unset, the resolved ``model_name`` is
      used instead (``--model_name`` or ``default``).

    Never raises for bad input and never exits; see :class:`ParseResult`.
    """
    values: dict[str, Any] = {}
    given: set[str] = set()
    unknown: list[str] = []
    messages: list[str] = []
    values_ok = True

    for index, arg in enumerate(argv):
        if arg == "--":
            unknown.extend(argv[index:])
            break
        matched = _match_flag(arg)
        if matched is None:
            unknown.append(arg)
            continue
        flag, raw = matched
        ok, value = (True, True) if raw is None else _parse_value(flag, raw)
        if not ok:
            messages.append(f"Couldn't interpret value {raw} for flag {flag.name}.\n")
            values_ok = False
            continue
        values[flag.name] = value
        given.add(flag.name)

    frozen_given = frozenset(given)
    _environment_defaults(values, frozen_given, environ)
    options = ServerOptions(**values)

    output: list[str] = []
    exit_code: int | None = None
    if not values_ok or (unknown and unknown[0] == "--help"):
        output.append(usage_text(program))
        exit_code = -1
    elif options.version:
        output.append(version_text())
        exit_code = 0
    elif unknown:
        output.append(f"unknown argument: {unknown[0]}\n{usage_text(program)}")

    return ParseResult(
        options=options,
        given=frozen_given,
        unknown_arguments=tuple(unknown),
        output=tuple(output),
        messages=tuple(messages),
        exit_code=exit_code,
    )


# ---------------------------------------------------------------------------------------------
# Validation (Server::BuildAndStart) and derived values.
# ---------------------------------------------------------------------------------------------


def validate(options: ServerOptions) -> None:
    """Raises the :class:`ServingError` TF Serving's ``Server::BuildAndStart`` would return.

    Checks, in ``server.cc``'s order (all INVALID_ARGUMENT):

    1. ``port == 0`` and no ``grpc_socket_path``: ``At least one of server_options.grpc_port
       or server_options.grpc_socket_path must be set.``
    2. ``use_alts_credentials`` with an ``ssl_config_file``: ``Either use_alts_credentials
       must be false or ssl_config_file must be empty.``
    3. No ``model_base_path`` and no ``model_config_file``: ``Both
       server_options.model_base_path and server_options.model_config_file are empty!``
    4. Only without ``platform_config_file`` (TF skips the whole TensorFlow session setup
       otherwise): ``batching_parameters_file`` without ``enable_batching``, then
       ``tensorflow_session_parallelism`` > 0 together with both intra- and inter-op > 0.

    TF reads the model config file between 3 and 4 and the session config file inside 4; those
    files are read by the server, not here, so with a broken file and a bad flag combination
    tfsfast reports the flag error where TF would report the file error.

    Then tfsfast's own checks, which TF lacks (it fails later or misbehaves): ports within
    0..65535, ``rest_api_max_body_bytes`` > 0, ``drain_timeout_seconds`` >= 0,
    ``shutdown_delay_seconds`` >= 0, ``reload_config_timeout_seconds`` > 0,
    ``grpc_max_message_bytes`` in 1..2^31-1 (gRPC's own bound), a ``model_repository_path``
    that is absolute or a storage URI, and a well-formed ``grpc_channel_arguments`` (see
    :func:`grpc_channel_arguments_dict`).
    """
    if options.port == 0 and not options.grpc_socket_path:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "At least one of server_options.grpc_port or server_options.grpc_socket_path "
            "must be set.",
        )
    if options.use_alts_credentials and options.ssl_config_file:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "Either use_alts_credentials must be false or ssl_config_file must be empty.",
        )
    if not options.model_base_path and not options.model_config_file:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "Both server_options.model_base_path and server_options.model_config_file are empty!",
        )
    if not options.platform_config_file:
        if not options.enable_batching and options.batching_parameters_file:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "server_options.batching_parameters_file is set without setting "
                "server_options.enable_batching to true.",
            )
        if (
            options.tensorflow_intra_op_parallelism > 0
            and options.tensorflow_inter_op_parallelism > 0
            and options.tensorflow_session_parallelism > 0
        ):
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "Either configure server_options.tensorflow_session_parallelism or "
                "(server_options.tensorflow_intra_op_parallelism, "
                "server_options.tensorflow_inter_op_parallelism) separately. "
                "You cannot configure all.",
            )

    # tfsfast-only checks, after TF's so a TF-valid command line fails the same way as in TF.
    for name in ("port", "rest_api_port"):
        port = getattr(options, name)
        if not 0 <= port <= 65535:
            raise ServingError(
                Code.INVALID_ARGUMENT, f"--{name} must be between 0 and 65535, got {port}."
            )
    if options.rest_api_max_body_bytes <= 0:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"--rest_api_max_body_bytes must be positive, got {options.rest_api_max_body_bytes}.",
        )
    if options.drain_timeout_seconds < 0:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"--drain_timeout_seconds must not be negative, got {options.drain_timeout_seconds}.",
        )
    if options.shutdown_delay_seconds < 0:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"--shutdown_delay_seconds must not be negative, got "
            f"{options.shutdown_delay_seconds}.",
        )
    if options.reload_config_timeout_seconds <= 0:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"--reload_config_timeout_seconds must be positive, got "
            f"{options.reload_config_timeout_seconds}.",
        )
    if not 1 <= options.rest_api_num_workers <= 256:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"--rest_api_num_workers must be between 1 and 256, got "
            f"{options.rest_api_num_workers}.",
        )
    if not 0 < options.grpc_max_message_bytes <= INT32_MAX:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"--grpc_max_message_bytes must be between 1 and {INT32_MAX}, got "
            f"{options.grpc_max_message_bytes}.",
        )
    repository = options.model_repository_path
    if repository and not (os.path.isabs(repository)
                           or re.match(r"(?i)(gs|s3|file)://.", repository)):
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"--model_repository_path must be an absolute path or a gs://, s3:// or file:// "
            f"URI, got {repository}.",
        )
    grpc_channel_arguments_dict(options)


def saved_model_tags_list(options: ServerOptions) -> list[str]:
    """``--saved_model_tags`` as a list: split on commas, each tag stripped, empties dropped.

    TF keeps empty pieces (``"serve,"`` gives ``["serve", ""]``), which can only fail to match
    a MetaGraph; dropping them is deliberate. Order and duplicates are kept.
    """
    return [tag.strip() for tag in options.saved_model_tags.split(",") if tag.strip()]


def grpc_channel_arguments_dict(options: ServerOptions) -> dict[str, int | str]:
    """``--grpc_channel_arguments`` (``k=v,k=v``) as gRPC server options.

    A value that is a decimal int32 (absl ``safe_strto32`` rules: optional sign, surrounding
    ASCII whitespace) becomes an ``int``, anything else stays the raw string. A later duplicate
    key wins. Keys are stripped of surrounding whitespace (no gRPC key contains any).

    Where TF misbehaves, tfsfast is stricter or saner: an empty item (``a=1,,b=2`` or a trailing
    comma) is skipped; an item without ``=`` or with an empty key raises INVALID_ARGUMENT (TF
    reads past the end of its split vector); a value containing ``=`` is kept whole (TF keeps
    only the text up to the second ``=``).
    """
    result: dict[str, int | str] = {}
    for item in options.grpc_channel_arguments.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Invalid --grpc_channel_arguments item {item!r}: expected key=value.",
            )
        as_int = _parse_int(value, INT32_MIN, INT32_MAX)
        result[key] = value if as_int is None else as_int
    return result


# ---------------------------------------------------------------------------------------------
# Flags tfsfast accepts but does not act on yet.
# ---------------------------------------------------------------------------------------------

NOT_PLANNED: Final = "not planned"

# Flag name -> the feature that will serve it. Delete an entry when its feature lands; an entry
# starting with NOT_PLANNED is reported as unsupported for good.
NOT_YET_SERVED: dict[str, str] = {
    "platform_config_file": f"{NOT_PLANNED}: tfsfast serves TensorFlow SavedModels only",
    "thread_pool_factory_config_file": (
        f"{NOT_PLANNED}: custom TensorFlow thread-pool factories are not available to tfsfast"
    ),
}


def unserved_flags(options: ServerOptions) -> list[str]:
    """One message per :data:`NOT_YET_SERVED` flag whose value differs from its default.

    Messages come in flag-table order, e.g. ``--enable_batching is not supported yet by
    tfsfast (server-side batching); remove the flag or leave it at its default``; a not-planned
    flag reads ``is not supported by tfsfast (not planned: ...)``. Empty when the server can
    honour every flag. CPU-dependent defaults are compared with their value on this machine.
    """
    found: list[str] = []
    for flag in FLAGS:
        feature = NOT_YET_SERVED.get(flag.name)
        if feature is None or getattr(options, flag.name) == flag.default():
            continue
        status = "not supported" if feature.startswith(NOT_PLANNED) else "not supported yet"
        found.append(
            f"--{flag.name} is {status} by tfsfast ({feature}); "
            "remove the flag or leave it at its default"
        )
    return found


# Flag name -> the feature its TF Serving default asks for, which tfsfast does not serve yet.
# Refusing the default would refuse every TF Serving command line (a default is also what users
# pass explicitly), so the server logs the message of :func:`unserved_defaults` at startup
# instead; the other value, which asks for the feature to be off, is served as it is. Delete an
# entry when its feature lands.
DEFAULTS_NOT_YET_SERVED: dict[str, str] = {}


def unserved_defaults(options: ServerOptions) -> list[str]:
    """One message per :data:`DEFAULTS_NOT_YET_SERVED` bool flag left at its default, given or
    not, in flag-table order, e.g. ``--enable_foo=true has no effect: tfsfast does not serve
    <the feature> yet; --enable_foo=false turns this message off``. Empty when every such flag
    asks for its feature to be off."""
    found: list[str] = []
    for flag in FLAGS:
        feature = DEFAULTS_NOT_YET_SERVED.get(flag.name)
        if feature is None or getattr(options, flag.name) != flag.default():
            continue
        value = _display_default(flag)
        other = "false" if value == "true" else "true"
        found.append(
            f"--{flag.name}={value} has no effect: tfsfast does not serve {feature} yet; "
            f"--{flag.name}={other} turns this message off"
        )
    return found
