"""Protos the gRPC server needs that no installed package provides, built at import.

``grpc.health.v1`` (health.proto), ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``
(reflection.proto), ``tensorflow.serving.SSLConfig`` (ssl_config.proto) and
``tensorflow.serving.MonitoringConfig`` (monitoring_config.proto) are defined here
field for field as published, in a private descriptor pool (so they cannot clash with
grpcio-health-checking or grpcio-reflection if those are installed too). So is the part of TSL's
``tensorflow.ProfilerService`` (profiler_service.proto, profiler_options.proto) that the
profiler service reads and writes: the TensorFlow wheel ships its C++ headers, not its Python
module; the field numbers are those headers'. Fields left out of a message are kept as unknown
fields by a parse, and an ``XSpace`` travels as the bytes of one (its wire form).

``POOL`` holds them; ``message_class(full_name)`` returns a message class.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
OPTIONAL, REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
STRING, BYTES, BOOL, INT32, INT64, UINT32, UINT64, ENUM, MESSAGE = (
    _F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_BOOL, _F.TYPE_INT32, _F.TYPE_INT64, _F.TYPE_UINT32,
    _F.TYPE_UINT64, _F.TYPE_ENUM, _F.TYPE_MESSAGE)

POOL = descriptor_pool.DescriptorPool()


def _message(file: Any, name: str, fields: list[tuple], oneof: str | None = None,
             oneof_fields: tuple[str, ...] = ()) -> Any:
    """Adds a message: ``fields`` are (name, number, type, label[, type_name])."""
    m = file.message_type.add(name=name)
    if oneof:
        m.oneof_decl.add(name=oneof)
    for spec in fields:
        field_name, number, kind, label = spec[:4]
        f = m.field.add(name=field_name, number=number, type=kind, label=label)
        if len(spec) > 4:
            f.type_name = spec[4]
        if field_name in oneof_fields:
            f.oneof_index = 0
    return m


def _health_file() -> Any:
    f = descriptor_pb2.FileDescriptorProto(name="grpc/health/v1/health.proto",
                                           package="grpc.health.v1", syntax="proto3")
    _message(f, "HealthCheckRequest", [("service", 1, STRING, OPTIONAL)])
    response = _message(f, "HealthCheckResponse", [
        ("status", 1, ENUM, OPTIONAL, ".grpc.health.v1.HealthCheckResponse.ServingStatus")])
    status = response.enum_type.add(name="ServingStatus")
    for number, name in enumerate(("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")):
        status.value.add(name=name, number=number)
    service = f.service.add(name="Health")
    service.method.add(name="Check", input_type=".grpc.health.v1.HealthCheckRequest",
                       output_type=".grpc.health.v1.HealthCheckResponse")
    service.method.add(name="Watch", input_type=".grpc.health.v1.HealthCheckRequest",
                       output_type=".grpc.health.v1.HealthCheckResponse",
                       server_streaming=True)
    return f


def _reflection_file(version: str) -> Any:
    package = f"grpc.reflection.{version}"
    name = ("grpc/reflection/v1/reflection.proto" if version == "v1"
            else "grpc/reflection/v1alpha/reflection.proto")
    f = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    p = f".{package}."
    request_fields = ("file_by_filename", "file_containing_symbol", "file_containing_extension",
                      "all_extension_numbers_of_type", "list_services")
    _message(f, "ServerReflectionRequest", [
        ("host", 1, STRING, OPTIONAL),
        ("file_by_filename", 3, STRING, OPTIONAL),
        ("file_containing_symbol", 4, STRING, OPTIONAL),
        ("file_containing_extension", 5, MESSAGE, OPTIONAL, p + "ExtensionRequest"),
        ("all_extension_numbers_of_type", 6, STRING, OPTIONAL),
        ("list_services", 7, STRING, OPTIONAL),
    ], "message_request", request_fields)
    _message(f, "ExtensionRequest", [("containing_type", 1, STRING, OPTIONAL),
                                     ("extension_number", 2, INT32, OPTIONAL)])
    response_fields = ("file_descriptor_response", "all_extension_numbers_response",
                       "list_services_response", "error_response")
    _message(f, "ServerReflectionResponse", [
        ("valid_host", 1, STRING, OPTIONAL),
        ("original_request", 2, MESSAGE, OPTIONAL, p + "ServerReflectionRequest"),
        ("file_descriptor_response", 4, MESSAGE, OPTIONAL, p + "FileDescriptorResponse"),
        ("all_extension_numbers_response", 5, MESSAGE, OPTIONAL,
         p + "ExtensionNumberResponse"),
        ("list_services_response", 6, MESSAGE, OPTIONAL, p + "ListServiceResponse"),
        ("error_response", 7, MESSAGE, OPTIONAL, p + "ErrorResponse"),
    ], "message_response", response_fields)
    _message(f, "FileDescriptorResponse", [("file_descriptor_proto", 1, BYTES, REPEATED)])
    _message(f, "ExtensionNumberResponse", [("base_type_name", 1, STRING, OPTIONAL),
                                            ("extension_number", 2, INT32, REPEATED)])
    _message(f, "ListServiceResponse", [("service", 1, MESSAGE, REPEATED,
                                         p + "ServiceResponse")])
    _message(f, "ServiceResponse", [("name", 1, STRING, OPTIONAL)])
    _message(f, "ErrorResponse", [("error_code", 1, INT32, OPTIONAL),
                                  ("error_message", 2, STRING, OPTIONAL)])
    service = f.service.add(name="ServerReflection")
    service.method.add(name="ServerReflectionInfo", input_type=p + "ServerReflectionRequest",
                       output_type=p + "ServerReflectionResponse", client_streaming=True,
                       server_streaming=True)
    return f


def _ssl_config_file() -> Any:
    f = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto", package="tensorflow.serving",
        syntax="proto3")
    _message(f, "SSLConfig", [("server_key", 1, STRING, OPTIONAL),
                              ("server_cert", 2, STRING, OPTIONAL),
                              ("custom_ca", 3, STRING, OPTIONAL),
                              ("client_verify", 4, BOOL, OPTIONAL)])
    return f


def _profiler_service_file() -> Any:
    f = descriptor_pb2.FileDescriptorProto(
        name="tsl/profiler/protobuf/profiler_service.proto", package="tensorflow",
        syntax="proto3")
    options = _message(f, "ProfileOptions", [
        ("include_dataset_ops", 1, BOOL, OPTIONAL),
        ("host_tracer_level", 2, UINT32, OPTIONAL),
        ("device_tracer_level", 3, UINT32, OPTIONAL),
        ("python_tracer_level", 4, UINT32, OPTIONAL),
        ("version", 5, UINT32, OPTIONAL),
        ("duration_ms", 9, UINT64, OPTIONAL),
        ("repository_path", 10, STRING, OPTIONAL),
        ("advanced_configuration", 12, MESSAGE, REPEATED,
         ".tensorflow.ProfileOptions.AdvancedConfigurationEntry"),
        ("session_id", 14, STRING, OPTIONAL),
        ("override_hostname", 15, STRING, OPTIONAL),
    ])
    value = options.nested_type.add(name="AdvancedConfigValue")
    value.oneof_decl.add(name="value")
    for field_name, number, kind in (("string_value", 1, STRING), ("bool_value", 2, BOOL),
                                     ("int64_value", 3, INT64)):
        value.field.add(name=field_name, number=number, type=kind, label=OPTIONAL,
                        oneof_index=0)
    entry = options.nested_type.add(name="AdvancedConfigurationEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=STRING, label=OPTIONAL)
    entry.field.add(name="value", number=2, type=MESSAGE, label=OPTIONAL,
                    type_name=".tensorflow.ProfileOptions.AdvancedConfigValue")
    _message(f, "ProfileRequest", [
        ("duration_ms", 1, UINT64, OPTIONAL),
        ("max_events", 2, UINT64, OPTIONAL),
        ("tools", 3, STRING, REPEATED),
        ("opts", 4, MESSAGE, OPTIONAL, ".tensorflow.ProfileOptions"),
        ("repository_root", 5, STRING, OPTIONAL),
        ("session_id", 6, STRING, OPTIONAL),
        ("host_name", 7, STRING, OPTIONAL),
        ("emit_xspace", 9, BOOL, OPTIONAL),
    ])
    _message(f, "ProfileToolData", [("name", 1, STRING, OPTIONAL), ("data", 2, BYTES, OPTIONAL)])
    _message(f, "ProfileResponse", [
        ("tool_data", 6, MESSAGE, REPEATED, ".tensorflow.ProfileToolData"),
        ("empty_trace", 7, BOOL, OPTIONAL),
        ("xspace", 8, BYTES, OPTIONAL),  # a tensorflow.profiler.XSpace
    ])
    _message(f, "TerminateRequest", [("session_id", 1, STRING, OPTIONAL)])
    _message(f, "TerminateResponse", [])
    _message(f, "MonitorRequest", [("duration_ms", 1, UINT64, OPTIONAL),
                                   ("monitoring_level", 2, INT32, OPTIONAL),
                                   ("timestamp", 3, BOOL, OPTIONAL)])
    _message(f, "MonitorResponse", [("data", 1, STRING, OPTIONAL)])
    service = f.service.add(name="ProfilerService")
    for method, request, response in (("Profile", "ProfileRequest", "ProfileResponse"),
                                      ("Terminate", "TerminateRequest", "TerminateResponse"),
                                      ("Monitor", "MonitorRequest", "MonitorResponse")):
        service.method.add(name=method, input_type=f".tensorflow.{request}",
                           output_type=f".tensorflow.{response}")
    return f


def _monitoring_config_file() -> Any:
    f = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto", package="tensorflow.serving",
        syntax="proto3")
    _message(f, "PrometheusConfig", [("enable", 1, BOOL, OPTIONAL),
                                     ("path", 2, STRING, OPTIONAL)])
    _message(f, "MonitoringConfig", [("prometheus_config", 1, MESSAGE, OPTIONAL,
                                      ".tensorflow.serving.PrometheusConfig")])
    return f


FILES: dict[str, Any] = {}
for _file in (_health_file(), _reflection_file("v1"), _reflection_file("v1alpha"),
              _ssl_config_file(), _monitoring_config_file(), _profiler_service_file()):
    POOL.Add(_file)
    FILES[_file.name] = _file

_classes: dict[str, Any] = {}


def message_class(full_name: str) -> Any:
    cls = _classes.get(full_name)
    if cls is None:
        cls = _classes[full_name] = message_factory.GetMessageClass(
            POOL.FindMessageTypeByName(full_name))
    return cls
