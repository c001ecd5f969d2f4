"""The messages of the Open Inference Protocol's gRPC service, ``inference.GRPCInferenceService``.

Where the definition comes from: Triton's ``grpc_service.proto`` (with its dependency
``model_config.proto``), as generated into the modules ``tritonclient`` ships
(``tritonclient/grpc/service_pb2.py``, ``model_config_pb2.py``). It is the protocol's maintained
definition that the clients speak: package ``inference``, KServe's V2 messages field for field
(Triton's own methods besides, which this server does not serve: gRPC answers UNIMPLEMENTED).
The alternatives: KServe's generated ``kserve.protocol.grpc.grpc_predict_v2_pb2`` comes with
the whole KServe SDK (a model server of its own, too heavy to run beside this one), and a copy
written here would be a second definition to keep in step. ``tritonclient``'s base install is
small (numpy, python-rapidjson, urllib3) and ships the gRPC modules; its ``[grpc]`` extra is not
asked for, since it caps grpcio below the release the server needs.

Why the modules are not imported: each generated module adds its file to protobuf's *default*
descriptor pool at import, and KServe's generated module defines the same symbols
(``inference.ModelInferRequest``, ...) in a file of another name, so whichever of the two comes
second fails to import in a process that has the other (a KServe SDK or a Triton gRPC client
beside the server, as in the tests). So the serialized ``FileDescriptorProto`` each module
holds, the literal its ``AddSerializedFile`` call is given, is read from its source and added
to a private pool, ``POOL`` (as ``server.grpc.protos`` does for the protos no package provides):
the same definition, without touching the default pool.

``message_class(name)``: the class of message ``inference.<name>``.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["PACKAGE", "POOL", "SERVICE_NAME", "message_class"]

PACKAGE = "inference"
SERVICE_NAME = f"{PACKAGE}.GRPCInferenceService"
# The generated modules, each after those it depends on.
_MODULES = ("model_config_pb2.py", "service_pb2.py")

POOL = descriptor_pool.DescriptorPool()


def _serialized_file(source: Path) -> bytes:
    """The serialized FileDescriptorProto a generated module adds to the default pool."""
    tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile" and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, bytes)):
            return node.args[0].value
    raise ImportError(f"{source} holds no serialized file descriptor")


def _load() -> None:
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or spec.origin is None:
        raise ImportError("tritonclient, which defines the Open Inference Protocol's gRPC "
                          "messages, is not installed")
    directory = Path(spec.origin).parent / "grpc"
    for module in _MODULES:
        POOL.Add(descriptor_pb2.FileDescriptorProto.FromString(
            _serialized_file(directory / module)))


_load()


@cache
def message_class(name: str) -> Any:
    """The message class of ``inference.<name>`` (``ModelInferRequest``, ...)."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))
