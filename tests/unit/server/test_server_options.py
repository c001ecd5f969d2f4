"""Command-line flags of tfsfast, checked against TF Serving's (compat doc §1.1, §1.2, §1.12)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import math
import os

import pytest

import tfsfast
from tfsfast.server import server_options as so
from tfsfast.server.server_options import (
    FLAGS,
    FLAGS_BY_NAME,
    NOT_YET_SERVED,
    ParseResult,
    ServerOptions,
    grpc_channel_arguments_dict,
    parse_command_line,
    saved_model_tags_list,
    unserved_defaults,
    unserved_flags,
    usage_text,
    validate,
    version_text,
)
from tfsfast.util.status import Code, ServingError

NPROC = len(os.sched_getaffinity(0))

# Compat doc §1.1: every TF Serving flag with its type and default, plus tfsfast's extensions.
EXPECTED: dict[str, tuple[str, object]] = {
    "port": ("int32", 8500),
    "grpc_socket_path": ("string", ""),
    "rest_api_port": ("int32", 0),
    "rest_api_num_threads": ("int32", 4 * NPROC),
    "rest_api_timeout_in_ms": ("int32", 30000),
    "rest_api_enable_cors_support": ("bool", False),
    "enable_batching": ("bool", False),
    "allow_version_labels_for_unavailable_models": ("bool", False),
    "batching_parameters_file": ("string", ""),
    "enable_per_model_batching_parameters": ("bool", False),
    "model_config_file": ("string", ""),
    "model_config_file_poll_wait_seconds": ("int32", 0),
    "model_name": ("string", "default"),
    "model_base_path": ("string", ""),
    "num_load_threads": ("int32", 0),
    "num_unload_threads": ("int32", 0),
    "max_num_load_retries": ("int32", 5),
    "load_retry_interval_micros": ("int64", 60_000_000),
    "file_system_poll_wait_seconds": ("int32", 1),
    "flush_filesystem_caches": ("bool", True),
    "tensorflow_session_parallelism": ("int64", 0),
    "tensorflow_session_config_file": ("string", ""),
    "tensorflow_intra_op_parallelism": ("int64", 0),
    "tensorflow_inter_op_parallelism": ("int64", 0),
    "use_alts_credentials": ("bool", False),
    "ssl_config_file": ("string", ""),
    "platform_config_file": ("string", ""),
    "per_process_gpu_memory_fraction": ("float", 0.0),
    "saved_model_tags": ("string", "serve"),
    "grpc_channel_arguments": ("string", ""),
    "grpc_max_threads": ("int32", 4 * NPROC),
    "enable_model_warmup": ("bool", True),
    "num_request_iterations_for_warmup": ("int32", 0),
    "version": ("bool", False),
    "monitoring_config_file": ("string", ""),
    "remove_unused_fields_from_bundle_metagraph": ("bool", True),
    "prefer_tflite_model": ("bool", False),
    "num_tflite_pools": ("int32", NPROC),
    "num_tflite_interpreters_per_pool": ("int32", 1),
    "enable_signature_method_name_check": ("bool", False),
    "xla_cpu_compilation_enabled": ("bool", False),
    "xla_gpu_compilation_enabled": ("bool", False),
    "enable_profiler": ("bool", True),
    "thread_pool_factory_config_file": ("string", ""),
    "mixed_precision": ("string", ""),
    "skip_initialize_tpu": ("bool", False),
    "enable_grpc_healthcheck_service": ("bool", False),
    "enable_serialization_as_tensor_content": ("bool", False),
    # tfsfast extensions
    "rest_api_max_body_bytes": ("int64", 67108864),
    "drain_timeout_seconds": ("int32", 30),
    "rest_api_num_workers": ("int32", 1),
    "grpc_max_message_bytes": ("int64", 67108864),
    "shutdown_delay_seconds": ("int32", 0),
    "reload_config_timeout_seconds": ("int32", 600),
    "model_repository_path": ("string", ""),
    "access_log_file": ("string", ""),
}
EXTENSIONS = {"rest_api_max_body_bytes", "drain_timeout_seconds", "rest_api_num_workers",
              "grpc_max_message_bytes", "shutdown_delay_seconds", "reload_config_timeout_seconds",
              "model_repository_path", "access_log_file"}

NO_ENV: dict[str, str] = {}


def parse(*args: str, env: dict[str, str] | None = None) -> ParseResult:
    return parse_command_line(list(args), NO_ENV if env is None else env)


def servable(**changes: object) -> ServerOptions:
    """Options that pass validate(): a base path is the only thing the defaults lack."""
    return dataclasses.replace(ServerOptions(model_base_path="/models/m"), **changes)


def error_of(options: ServerOptions) -> ServingError:
    with pytest.raises(ServingError) as info:
        validate(options)
    return info.value


# --- the flag table -------------------------------------------------------------------------------


class TestFlagTable:
    def test_every_flag_present_in_usage_order(self) -> None:
        assert [f.name for f in FLAGS] == list(EXPECTED)

    @pytest.mark.parametrize("name", list(EXPECTED))
    def test_type_and_default(self, name: str) -> None:
        type_name, default = EXPECTED[name]
        assert FLAGS_BY_NAME[name].type_name == type_name
        assert getattr(ServerOptions(), name) == default
        assert FLAGS_BY_NAME[name].default() == default

    def test_extensions_are_marked(self) -> None:
        assert {f.name for f in FLAGS if f.tfsfast_extension} == EXTENSIONS

    def test_every_flag_has_help(self) -> None:
        assert all(f.help.strip() for f in FLAGS)

    def test_cpu_defaults_follow_affinity(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
        options = ServerOptions()
        assert (options.rest_api_num_threads, options.grpc_max_threads) == (12, 12)
        assert options.num_tflite_pools == 3

    def test_options_are_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            ServerOptions().port = 1  # type: ignore[misc]


# --- parsing values -------------------------------------------------------------------------------


class TestValues:
    def test_no_arguments_gives_defaults(self) -> None:
        result = parse()
        assert result.options == ServerOptions()
        assert (result.exit_code, result.output, result.messages) == (None, (), ())
        assert result.given == frozenset()

    def test_one_of_each_type(self) -> None:
        result = parse(
            "--port=9000",
            "--load_retry_interval_micros=-5000000000",
            "--enable_batching=true",
            "--model_name=half_plus_two",
            "--per_process_gpu_memory_fraction=0.5",
        )
        options = result.options
        assert options.port == 9000
        assert options.load_retry_interval_micros == -5_000_000_000
        assert options.enable_batching is True
        assert options.model_name == "half_plus_two"
        assert options.per_process_gpu_memory_fraction == 0.5
        assert result.exit_code is None and result.output == ()
        assert result.given == {
            "port",
            "load_retry_interval_micros",
            "enable_batching",
            "model_name",
            "per_process_gpu_memory_fraction",
        }

    def test_string_value_keeps_equals_and_may_be_empty(self) -> None:
        options = parse("--grpc_channel_arguments=a=1,b=x=y", "--saved_model_tags=").options
        assert options.grpc_channel_arguments == "a=1,b=x=y"
        assert options.saved_model_tags == ""

    def test_last_occurrence_wins(self) -> None:
        assert parse("--port=1", "--port=2").options.port == 2

    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("2147483647", 2147483647),
            ("-2147483648", -2147483648),
            ("+42", 42),
            (" 7\t", 7),  # absl trims ASCII whitespace
            ("007", 7),
            ("-0", 0),
        ],
    )
    def test_int32_accepted(self, text: str, value: int) -> None:
        assert parse(f"--port={text}").options.port == value

    @pytest.mark.parametrize(
        "text",
        ["2147483648", "-2147483649", "abc", "", "1.0", "0x10", "1_000", "1e3", "+-1", "٣", "12a"],
    )
    def test_int32_rejected(self, text: str) -> None:
        result = parse(f"--port={text}")
        assert result.exit_code == -1
        assert result.options.port == 8500
        assert result.messages == (f"Couldn't interpret value {text} for flag port.\n",)

    def test_int64_range(self) -> None:
        ok = parse(f"--tensorflow_session_parallelism={2**63 - 1}")
        assert ok.options.tensorflow_session_parallelism == 2**63 - 1
        assert ok.exit_code is None
        assert parse(f"--tensorflow_session_parallelism={2**63}").exit_code == -1
        assert parse(f"--load_retry_interval_micros={-(2**63)}").exit_code is None
        assert parse(f"--load_retry_interval_micros={-(2**63) - 1}").exit_code == -1

    @pytest.mark.parametrize(
        ("arg", "value"),
        [
            ("--enable_batching", True),
            ("--enable_batching=true", True),
            ("--enable_batching=TRUE", True),
            ("--enable_batching=True", True),
            ("--enable_batching=1", True),
            ("--enable_model_warmup=false", False),
            ("--enable_model_warmup=False", False),
            ("--enable_model_warmup=0", False),
        ],
    )
    def test_bool_forms(self, arg: str, value: bool) -> None:
        result = parse(arg)
        name = arg[2:].partition("=")[0]
        assert getattr(result.options, name) is value
        assert result.exit_code is None and result.output == ()

    @pytest.mark.parametrize("text", ["yes", "", "t", "2", "01", " true"])
    def test_bool_rejected(self, text: str) -> None:
        result = parse(f"--enable_batching={text}")
        assert result.exit_code == -1
        assert result.messages == (f"Couldn't interpret value {text} for flag enable_batching.\n",)

    @pytest.mark.parametrize(
        ("text", "value"),
        [("0.5", 0.5), (".25", 0.25), ("1.", 1.0), ("+1e-1", 0.10000000149011612), (" 2 ", 2.0)],
    )
    def test_float_accepted_as_float32(self, text: str, value: float) -> None:
        assert parse(f"--per_process_gpu_memory_fraction={text}").options == ServerOptions(
            per_process_gpu_memory_fraction=value
        )

    @pytest.mark.parametrize(
        ("text", "value"), [("1e39", math.inf), ("-inf", -math.inf), ("Infinity", math.inf)]
    )
    def test_float_infinities(self, text: str, value: float) -> None:
        options = parse(f"--per_process_gpu_memory_fraction={text}").options
        assert options.per_process_gpu_memory_fraction == value

    @pytest.mark.parametrize("text", ["NaN", "-nan", "nan(0x1)"])
    def test_float_nan(self, text: str) -> None:
        result = parse(f"--per_process_gpu_memory_fraction={text}")
        assert result.exit_code is None
        assert math.isnan(result.options.per_process_gpu_memory_fraction)

    @pytest.mark.parametrize("text", ["abc", "", "1e", ".", "0x1p3", "1,5", "+-1", "1_0"])
    def test_float_rejected(self, text: str) -> None:
        result = parse(f"--per_process_gpu_memory_fraction={text}")
        assert result.exit_code == -1
        assert result.options.per_process_gpu_memory_fraction == 0.0


# --- what main.cc does with the parse result ------------------------------------------------------


class TestOutcome:
    def test_bad_value_prints_usage_and_exits_minus_one(self) -> None:
        result = parse("--port=abc", "--model_name=m", "stray")
        assert result.exit_code == -1 and result.should_exit
        assert result.output == (usage_text(),)  # usage only: no "unknown argument" line
        assert result.messages == ("Couldn't interpret value abc for flag port.\n",)
        # Later arguments are still parsed, as TF's loop does.
        assert result.options.model_name == "m"

    def test_every_bad_value_is_logged(self) -> None:
        result = parse("--port=x", "--rest_api_port=y")
        assert result.messages == (
            "Couldn't interpret value x for flag port.\n",
            "Couldn't interpret value y for flag rest_api_port.\n",
        )

    def test_unknown_positional_keeps_going(self) -> None:
        result = parse("serve", "--port=9000", "extra")
        assert result.exit_code is None and not result.should_exit
        assert result.output == (f"unknown argument: serve\n{usage_text()}",)
        assert result.unknown_arguments == ("serve", "extra")
        assert result.options.port == 9000  # flags after the unknown one still apply

    @pytest.mark.parametrize(
        "arg",
        [
            "-port=9000",  # single dash: TF requires "--"
            "--port",  # non-bool flag without a value
            "--no_such_flag=1",
            "--enable_batchingx",  # a bool flag's name is not a prefix match
            "--Port=9000",  # names are case-sensitive
        ],
    )
    def test_unknown_flags(self, arg: str) -> None:
        result = parse(arg)
        assert result.exit_code is None
        assert result.output == (f"unknown argument: {arg}\n{usage_text()}",)
        assert result.options == ServerOptions()

    def test_double_dash_ends_flags(self) -> None:
        result = parse("--port=1", "--", "--port=2")
        assert result.options.port == 1
        assert result.unknown_arguments == ("--", "--port=2")
        assert result.output[0].startswith("unknown argument: --\n")

    def test_leading_help_exits_with_usage(self) -> None:
        result = parse("--port=1", "--help")
        assert result.exit_code == -1
        assert result.output == (usage_text(),)
        assert result.messages == ()

    def test_help_after_another_unknown_is_just_unknown(self) -> None:
        result = parse("stray", "--help")
        assert result.exit_code is None
        assert result.output[0].startswith("unknown argument: stray\n")

    def test_version_prints_and_exits_zero(self) -> None:
        result = parse("--version", "stray")
        assert result.exit_code == 0
        assert result.output == (version_text(),)

    def test_bad_value_beats_version(self) -> None:
        result = parse("--version", "--port=x")
        assert result.exit_code == -1
        assert result.output == (usage_text(),)

    def test_version_false_does_not_exit(self) -> None:
        assert parse("--version=false").exit_code is None

    def test_version_text(self) -> None:
        # TF Serving's two lines first, each "<name>: <version>" with the version a script that
        # parses TF Serving's output expects (the TensorFlow release it serves); then tfsfast's.
        tf_version = importlib.metadata.version("tensorflow")
        assert version_text() == (
            f"TensorFlow ModelServer: {tf_version}+tfsfast.{tfsfast.__version__}\n"
            f"TensorFlow Library: {tf_version}\n"
            f"tfsfast: {tfsfast.__version__}\n"
        )

    def test_version_text_without_tensorflow(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def missing(name: str) -> str:
            raise importlib.metadata.PackageNotFoundError(name)

        monkeypatch.setattr(importlib.metadata, "version", missing)
        assert version_text() == (
            f"TensorFlow ModelServer: 0.0.0+tfsfast.{tfsfast.__version__}\n"
            "TensorFlow Library: unknown\n"
            f"tfsfast: {tfsfast.__version__}\n"
        )

    def test_emit_routes_streams(self) -> None:
        result = parse("--port=x")
        out, err = io.StringIO(), io.StringIO()
        result.emit(stdout=out, stderr=err)
        assert out.getvalue() == usage_text()
        assert err.getvalue() == "Couldn't interpret value x for flag port.\n"


# --- usage text -----------------------------------------------------------------------------------


class TestUsage:
    def test_header_and_one_line_per_flag(self) -> None:
        text = usage_text()
        assert text.startswith("usage: python -m tfsfast\nFlags:\n")
        lines = text.splitlines()[2:]
        assert len(lines) == len(FLAGS)
        assert [line.split("\t")[1].strip().partition("=")[0] for line in lines] == [
            f"--{f.name}" for f in FLAGS
        ]

    def test_tf_line_format(self) -> None:
        lines = usage_text().splitlines()
        port = FLAGS_BY_NAME["port"]
        assert f"\t{'--port=8500':<33}\tint32\t{port.help}" in lines
        model_name = '--model_name="default"'
        assert any(line.startswith(f"\t{model_name:<33}\tstring\t") for line in lines)
        assert any(line.startswith("\t--enable_model_warmup=true ") for line in lines)
        assert any(
            line.startswith("\t--per_process_gpu_memory_fraction=0.000000\tfloat\t")
            for line in lines
        )
        assert any(line.startswith(f"\t--grpc_max_threads={4 * NPROC} ") for line in lines)

    def test_extensions_are_labelled(self) -> None:
        for line in usage_text().splitlines()[2:]:
            name = line.split("\t")[1].strip()[2:].partition("=")[0]
            assert ("[tfsfast extension]" in line) == (name in EXTENSIONS), line

    def test_program_name(self) -> None:
        assert usage_text("tfsfast").startswith("usage: tfsfast\nFlags:\n")


# --- Docker environment defaults ------------------------------------------------------------------


class TestEnvironment:
    def test_model_name_from_env(self) -> None:
        options = parse(env={"MODEL_NAME": "resnet"}).options
        assert (options.model_name, options.model_base_path) == ("resnet", "")

    def test_base_path_from_both(self) -> None:
        options = parse(env={"MODEL_NAME": "resnet", "MODEL_BASE_PATH": "/models"}).options
        assert (options.model_name, options.model_base_path) == ("resnet", "/models/resnet")

    def test_base_path_without_model_name_uses_default_name(self) -> None:
        options = parse(env={"MODEL_BASE_PATH": "/models"}).options
        assert options.model_base_path == "/models/default"

    def test_base_path_without_model_name_uses_flag_name(self) -> None:
        options = parse("--model_name=m", env={"MODEL_BASE_PATH": "/models"}).options
        assert options.model_base_path == "/models/m"

    def test_flag_name_wins_but_directory_follows_env_like_the_entrypoint(self) -> None:
        env = {"MODEL_NAME": "model", "MODEL_BASE_PATH": "/models"}
        options = parse("--model_name=mine", env=env).options
        assert options.model_name == "mine"
        # The Docker entrypoint passes --model_base_path=${MODEL_BASE_PATH}/${MODEL_NAME}.
        assert options.model_base_path == "/models/model"

    def test_flag_base_path_wins(self) -> None:
        env = {"MODEL_NAME": "model", "MODEL_BASE_PATH": "/models"}
        assert parse("--model_base_path=/srv/x", env=env).options.model_base_path == "/srv/x"

    def test_explicit_empty_base_path_wins(self) -> None:
        env = {"MODEL_BASE_PATH": "/models"}
        assert parse("--model_base_path=", env=env).options.model_base_path == ""

    def test_config_file_suppresses_base_path(self) -> None:
        env = {"MODEL_NAME": "model", "MODEL_BASE_PATH": "/models"}
        options = parse("--model_config_file=/c/models.config", env=env).options
        assert options.model_base_path == ""
        assert options.model_name == "model"

    def test_empty_variables_count_as_unset(self) -> None:
        options = parse(env={"MODEL_NAME": "", "MODEL_BASE_PATH": ""}).options
        assert (options.model_name, options.model_base_path) == ("default", "")

    def test_plain_join_like_the_shell(self) -> None:
        env = {"MODEL_NAME": "m", "MODEL_BASE_PATH": "/models/"}
        assert parse(env=env).options.model_base_path == "/models//m"

    def test_env_not_counted_as_given(self) -> None:
        result = parse(env={"MODEL_NAME": "m", "MODEL_BASE_PATH": "/models"})
        assert result.given == frozenset()

    def test_defaults_to_process_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MODEL_NAME", "from_env")
        monkeypatch.setenv("MODEL_BASE_PATH", "/env")
        options = parse_command_line([]).options
        assert (options.model_name, options.model_base_path) == ("from_env", "/env/from_env")


# --- validation -----------------------------------------------------------------------------------

GRPC = "At least one of server_options.grpc_port or server_options.grpc_socket_path must be set."
ALTS = "Either use_alts_credentials must be false or ssl_config_file must be empty."
EMPTY = "Both server_options.model_base_path and server_options.model_config_file are empty!"
BATCHING = (
    "server_options.batching_parameters_file is set without setting "
    "server_options.enable_batching to true."
)
PARALLELISM = (
    "Either configure server_options.tensorflow_session_parallelism or "
    "(server_options.tensorflow_intra_op_parallelism, "
    "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all."
)


BODY_ZERO = "--rest_api_max_body_bytes must be positive, got 0."


class TestValidate:
    def test_valid_options_pass(self) -> None:
        assert validate(servable()) is None
        assert validate(ServerOptions(model_config_file="/c")) is None

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (servable(port=0), GRPC),
            (servable(use_alts_credentials=True, ssl_config_file="/ssl"), ALTS),
            (ServerOptions(), EMPTY),
            (servable(batching_parameters_file="/b"), BATCHING),
            (
                servable(
                    tensorflow_session_parallelism=2,
                    tensorflow_intra_op_parallelism=2,
                    tensorflow_inter_op_parallelism=2,
                ),
                PARALLELISM,
            ),
        ],
        ids=["grpc", "alts", "empty", "batching", "parallelism"],
    )
    def test_tf_errors(self, options: ServerOptions, message: str) -> None:
        error = error_of(options)
        assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)

    def test_socket_path_alone_is_enough(self) -> None:
        assert validate(servable(port=0, grpc_socket_path="/tmp/s.sock")) is None

    def test_alts_or_ssl_alone_is_fine(self) -> None:
        assert validate(servable(use_alts_credentials=True)) is None
        assert validate(servable(ssl_config_file="/ssl")) is None

    def test_batching_file_with_batching_is_fine(self) -> None:
        assert validate(servable(enable_batching=True, batching_parameters_file="/b")) is None

    @pytest.mark.parametrize(
        "levels",
        [(2, 2, 0), (2, 0, 2), (0, 2, 2), (2, 0, 0), (0, 2, 2)],
    )
    def test_parallelism_needs_all_three_to_fail(self, levels: tuple[int, int, int]) -> None:
        session, intra, inter = levels
        options = servable(
            tensorflow_session_parallelism=session,
            tensorflow_intra_op_parallelism=intra,
            tensorflow_inter_op_parallelism=inter,
        )
        assert validate(options) is None

    def test_platform_config_skips_session_checks(self) -> None:
        options = servable(
            platform_config_file="/p",
            batching_parameters_file="/b",
            tensorflow_session_parallelism=1,
            tensorflow_intra_op_parallelism=1,
            tensorflow_inter_op_parallelism=1,
        )
        assert validate(options) is None

    def test_order_follows_server_cc(self) -> None:
        everything_wrong = ServerOptions(
            port=0,
            use_alts_credentials=True,
            ssl_config_file="/ssl",
            batching_parameters_file="/b",
            tensorflow_session_parallelism=1,
            tensorflow_intra_op_parallelism=1,
            tensorflow_inter_op_parallelism=1,
            rest_api_max_body_bytes=0,
        )
        steps = [
            ({}, GRPC),
            ({"port": 8500}, ALTS),
            ({"use_alts_credentials": False}, EMPTY),
            ({"model_base_path": "/m"}, BATCHING),
            ({"enable_batching": True}, PARALLELISM),
            ({"tensorflow_session_parallelism": 0}, BODY_ZERO),
        ]
        options = everything_wrong
        for changes, message in steps:
            options = dataclasses.replace(options, **changes)
            assert error_of(options).message == message

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"port": 65536}, "--port must be between 0 and 65535, got 65536."),
            ({"port": -1}, "--port must be between 0 and 65535, got -1."),
            ({"rest_api_port": 70000}, "--rest_api_port must be between 0 and 65535, got 70000."),
            (
                {"rest_api_max_body_bytes": -1},
                "--rest_api_max_body_bytes must be positive, got -1.",
            ),
            (
                {"drain_timeout_seconds": -1},
                "--drain_timeout_seconds must not be negative, got -1.",
            ),
            (
                {"shutdown_delay_seconds": -1},
                "--shutdown_delay_seconds must not be negative, got -1.",
            ),
            (
                {"reload_config_timeout_seconds": 0},
                "--reload_config_timeout_seconds must be positive, got 0.",
            ),
            (
                {"rest_api_num_workers": 0},
                "--rest_api_num_workers must be between 1 and 256, got 0.",
            ),
            (
                {"model_repository_path": "models"},
                "--model_repository_path must be an absolute path or a gs://, s3:// or file:// "
                "URI, got models.",
            ),
            (
                {"grpc_channel_arguments": "grpc.x"},
                "Invalid --grpc_channel_arguments item 'grpc.x': expected key=value.",
            ),
            (
                {"grpc_max_message_bytes": 0},
                "--grpc_max_message_bytes must be between 1 and 2147483647, got 0.",
            ),
            (
                {"grpc_max_message_bytes": 2**31},
                "--grpc_max_message_bytes must be between 1 and 2147483647, got 2147483648.",
            ),
        ],
    )
    def test_tfsfast_errors(self, changes: dict[str, object], message: str) -> None:
        error = error_of(servable(**changes))
        assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)

    def test_tfsfast_limits_accept_edges(self) -> None:
        assert validate(servable(port=65535, rest_api_port=1, drain_timeout_seconds=0)) is None
        assert validate(servable(shutdown_delay_seconds=0)) is None
        assert validate(servable(shutdown_delay_seconds=2**31 - 1)) is None
        assert validate(servable(reload_config_timeout_seconds=1)) is None
        assert validate(servable(rest_api_max_body_bytes=1)) is None
        assert validate(servable(grpc_max_message_bytes=1)) is None
        assert validate(servable(grpc_max_message_bytes=2**31 - 1)) is None

    def test_grpc_flags_are_served(self) -> None:
        options = ServerOptions(grpc_socket_path="/s", grpc_channel_arguments="a=1",
                                grpc_max_threads=3, ssl_config_file="/c",
                                enable_grpc_healthcheck_service=True,
                                enable_serialization_as_tensor_content=True,
                                grpc_max_message_bytes=10)
        assert unserved_flags(options) == []


# --- helpers --------------------------------------------------------------------------------------


class TestHelpers:
    @pytest.mark.parametrize(
        ("tags", "expected"),
        [
            ("serve", ["serve"]),
            ("serve,gpu", ["serve", "gpu"]),
            (" serve , tpu ", ["serve", "tpu"]),
            ("serve,,", ["serve"]),
            ("", []),
            (" , ", []),
        ],
    )
    def test_saved_model_tags_list(self, tags: str, expected: list[str]) -> None:
        assert saved_model_tags_list(ServerOptions(saved_model_tags=tags)) == expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", {}),
            ("grpc.max_connection_age_ms=2000", {"grpc.max_connection_age_ms": 2000}),
            ("a=1,b=text", {"a": 1, "b": "text"}),
            ("a=-5, b = 7 ", {"a": -5, "b": 7}),  # safe_strto32 trims ASCII whitespace
            ("a=2147483647,b=2147483648", {"a": 2147483647, "b": "2147483648"}),
            ("a=1.5,b=0x10,c=", {"a": "1.5", "b": "0x10", "c": ""}),
            ("a=x=y", {"a": "x=y"}),
            ("a=1,,b=2,", {"a": 1, "b": 2}),
            ("a=1,a=2", {"a": 2}),
            (" grpc.k=v", {"grpc.k": "v"}),
        ],
    )
    def test_grpc_channel_arguments_dict(self, text: str, expected: dict[str, object]) -> None:
        result = grpc_channel_arguments_dict(ServerOptions(grpc_channel_arguments=text))
        assert result == expected
        assert [type(v) for v in result.values()] == [type(v) for v in expected.values()]

    @pytest.mark.parametrize("text", ["novalue", "=1", "a=1,b"])
    def test_grpc_channel_arguments_malformed(self, text: str) -> None:
        with pytest.raises(ServingError) as info:
            grpc_channel_arguments_dict(ServerOptions(grpc_channel_arguments=text))
        assert info.value.code == Code.INVALID_ARGUMENT


# --- flags not served yet -------------------------------------------------------------------------


class TestUnserved:
    def test_defaults_are_all_served(self) -> None:
        assert unserved_flags(ServerOptions()) == []

    def test_mapping_names_real_flags(self) -> None:
        assert set(NOT_YET_SERVED) <= set(FLAGS_BY_NAME)

    def test_initial_mapping(self) -> None:
        assert set(NOT_YET_SERVED) == {
            "platform_config_file",
            "thread_pool_factory_config_file",
        }

    def test_message(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A served flag put back in the table: the test does not depend on what is unserved now.
        monkeypatch.setitem(so.NOT_YET_SERVED, "enable_batching", "server-side batching")
        assert unserved_flags(ServerOptions(enable_batching=True)) == [
            "--enable_batching is not supported yet by tfsfast (server-side batching); "
            "remove the flag or leave it at its default"
        ]

    def test_not_planned_message(self) -> None:
        (message,) = unserved_flags(ServerOptions(platform_config_file="/p"))
        assert message.startswith(
            "--platform_config_file is not supported by tfsfast (not planned: "
        )
        assert message.endswith("); remove the flag or leave it at its default")

    def test_every_changed_flag_reported_in_table_order(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(so.NOT_YET_SERVED, "enable_batching", "server-side batching")
        monkeypatch.setitem(so.NOT_YET_SERVED, "num_tflite_pools", "TFLite models")
        options = ServerOptions(
            platform_config_file="/p", enable_batching=True, num_tflite_pools=NPROC + 1
        )
        names = [m.split(" ", 1)[0] for m in unserved_flags(options)]
        assert names == ["--enable_batching", "--platform_config_file", "--num_tflite_pools"]

    def test_explicit_default_is_fine(self) -> None:
        options = parse(
            "--enable_batching=false", f"--grpc_max_threads={4 * NPROC}", "--grpc_socket_path="
        ).options
        assert unserved_flags(options) == []

    def test_served_flags_never_reported(self) -> None:
        assert unserved_flags(ServerOptions(port=1, rest_api_port=2, model_name="x")) == []

    def test_removing_an_entry_serves_the_flag(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(so.NOT_YET_SERVED, "enable_batching", "server-side batching")
        assert unserved_flags(ServerOptions(enable_batching=True)) != []
        monkeypatch.delitem(so.NOT_YET_SERVED, "enable_batching")
        assert unserved_flags(ServerOptions(enable_batching=True)) == []


# --- defaults that ask for a feature not served yet ---------------------------------------------

class TestUnservedDefaults:
    def test_mapping_names_real_bool_flags(self) -> None:
        assert {FLAGS_BY_NAME[name].type_name
                for name in so.DEFAULTS_NOT_YET_SERVED} <= {"bool"}

    def test_every_default_is_served(self) -> None:
        assert unserved_defaults(ServerOptions()) == []

    def test_an_unserved_default_is_reported_not_refused(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A flag whose TF Serving default asks for a feature tfsfast lacks: a command line that
        # leaves the flag alone, or passes the default, still starts, and says what it does not
        # get; the other value is served silently.
        monkeypatch.setitem(so.DEFAULTS_NOT_YET_SERVED, "enable_profiler", "the profiler")
        message = ("--enable_profiler=true has no effect: tfsfast does not serve the profiler "
                   "yet; --enable_profiler=false turns this message off")
        for options in (ServerOptions(), parse("--enable_profiler").options,
                        parse("--enable_profiler=true").options):
            assert unserved_defaults(options) == [message]
            assert unserved_flags(options) == []
        options = parse("--enable_profiler=false").options
        assert unserved_defaults(options) == []
        assert unserved_flags(options) == []
