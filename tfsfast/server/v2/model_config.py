"""Triton's model configuration extension: a served SavedModel described as Triton configures a
model, for clients that read it before they send anything (Triton's ``perf_analyzer``,
``tritonclient``'s ``get_model_config``).

One message, Triton's ``inference.ModelConfig`` (``model_config.proto``, from the private pool of
``grpc_protocol``), built by ``model_config`` and written two ways: gRPC's ModelConfig answers it
inside a ``ModelConfigResponse``; REST's ``GET /v2/models/<name>[/versions/<v>]/config`` answers
``config_json`` of it, the JSON Triton writes (protobuf's JSON with the proto field names and
every field of a message that is set, ``"max_batch_size": 0`` and empty lists included, but
64-bit integers as JSON numbers where protobuf writes strings).

What a SavedModel's configuration says:

- ``name``; ``platform`` ``tensorflow_savedmodel`` and ``backend`` ``tensorflow``, what Triton
  reports for a TensorFlow SavedModel.
- ``version_policy``: the model's ``model_version_policy`` in the server's config (TF Serving's
  ``latest``/``all``/``specific``, which are Triton's three; unset is ``latest`` 1, the default
  of both).
- ``max_batch_size``: 0 when the ``serving_default`` signature is not batched (batching off, or
  a signature without inputs, whose runs bypass the batcher): clients then send whole tensors.
  When it is batched, the largest request the batcher takes (the batching parameters'
  ``max_batch_size``), every tensor's ``dims`` lose their first dimension (the batch one, which
  Triton leaves out of the configuration), and ``dynamic_batching`` says how long a batch waits
  to fill (``max_queue_delay_microseconds``: ``batch_timeout_micros``).
- ``input`` and ``output``: the signature's tensors in alias order, each with its alias as
  ``name``, its Triton ``data_type`` (``TYPE_`` and its protocol datatype, ``TYPE_STRING`` for
  ``BYTES``; ``TYPE_INVALID`` for a TF dtype the protocol cannot carry, whose metadata names it
  ``DT_...``) and its ``dims``, as model metadata gives the shape (-1 for an unknown dimension,
  ``[-1]`` for an unknown rank). ``dims`` is never empty in Triton's configuration: a tensor
  with none left (a scalar, or a batched tensor of rank 1) is ``dims: [1]`` with ``reshape {
  shape: [] }``, as Triton's TensorFlow backend fills it in.

The configuration is of the version that answers the lookup (the one asked for, else the latest
AVAILABLE one); a model or version not served is NOT_FOUND with TF Serving's text, as model
metadata answers it.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor, json_format

from tfsfast.runtime.signature import Signature, TensorInfo
from tfsfast.server.predict.predict_signatures import SignatureCache
from tfsfast.server.server_core import ServerCore
from tfsfast.server.v2 import model_metadata
from tfsfast.server.v2.datatypes import BYTES, datatype
from tfsfast.server.v2.grpc_protocol import message_class
from tfsfast.sources.servable_version_policy import ServableVersionPolicy

__all__ = ["BACKEND", "PLATFORM", "config_data_type", "config_json", "model_config",
           "served_model_config", "version_policy"]

PLATFORM = model_metadata.PLATFORM
BACKEND = "tensorflow"
# protobuf's JSON writes these as strings; Triton's JSON, as numbers.
_INT64_TYPES = frozenset({
    descriptor.FieldDescriptor.TYPE_INT64, descriptor.FieldDescriptor.TYPE_UINT64,
    descriptor.FieldDescriptor.TYPE_SINT64, descriptor.FieldDescriptor.TYPE_FIXED64,
    descriptor.FieldDescriptor.TYPE_SFIXED64})


def config_data_type(dtype: int) -> str:
    """The name of Triton's ``DataType`` for a tensor of TF DataType ``dtype``."""
    name = datatype(dtype)
    if name is None:
        return "TYPE_INVALID"
    return "TYPE_STRING" if name == BYTES else f"TYPE_{name}"


def _add_tensor(field: Any, info: TensorInfo, batched: bool) -> None:
    shape = model_metadata.tensor_metadata(info)["shape"]
    # Unknown rank stays one variable dimension, batched or not.
    dims = shape[1:] if batched and info.shape else shape
    tensor = field.add(name=info.alias, data_type=config_data_type(info.dtype), dims=dims or [1])
    if not dims:
        tensor.reshape.SetInParent()


def model_config(name: str, signature: Signature, policy: ServableVersionPolicy,
                 batching: Any = None) -> Any:
    """The ``inference.ModelConfig`` of model ``name`` whose interface is ``signature``, served
    under version ``policy``; ``batching``: the ``QueueOptions`` of the signature's batch queue
    (None: not batched)."""
    config = message_class("ModelConfig")(name=name, platform=PLATFORM, backend=BACKEND)
    config.version_policy.CopyFrom(version_policy(policy))
    batched = batching is not None
    if batched:
        config.max_batch_size = batching.max_batch_size
        config.dynamic_batching.max_queue_delay_microseconds = batching.batch_timeout_micros
    for tensors, field in ((signature.inputs, config.input), (signature.outputs, config.output)):
        for alias in sorted(tensors):
            _add_tensor(field, tensors[alias], batched)
    return config


def version_policy(policy: ServableVersionPolicy) -> Any:
    """Triton's ``ModelVersionPolicy`` of TF Serving's ``policy`` (the same three choices)."""
    message = message_class("ModelVersionPolicy")()
    if policy.kind == ServableVersionPolicy.LATEST:
        message.latest.num_versions = policy.num_versions
    elif policy.kind == ServableVersionPolicy.ALL:
        message.all.SetInParent()
    else:
        message.specific.SetInParent()
        message.specific.versions.extend(policy.versions)
    return message


def config_json(config: Any) -> dict[str, Any]:
    """``config`` as Triton's REST route writes it (see the module docstring)."""
    body = json_format.MessageToDict(config, always_print_fields_with_no_presence=True,
                                     preserving_proto_field_name=True)
    _numbers(config.DESCRIPTOR, body)
    return body


def _numbers(message: descriptor.Descriptor, body: dict[str, Any]) -> None:
    """Turns the 64-bit integers of ``body``, a message of type ``message`` as protobuf's JSON,
    into numbers (map keys stay strings: JSON has no other)."""
    for name, value in body.items():
        field = message.fields_by_name[name]
        if field.type in _INT64_TYPES:
            body[name] = [int(v) for v in value] if isinstance(value, list) else int(value)
        elif field.message_type is None:
            continue
        elif field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                if value_field.type in _INT64_TYPES:
                    value[key] = int(item)
                elif value_field.message_type is not None:
                    _numbers(value_field.message_type, item)
        elif field.message_type.full_name.startswith("google.protobuf."):
            continue  # well-known types have JSON forms of their own
        else:
            for item in value if isinstance(value, list) else [value]:
                _numbers(field.message_type, item)


def _policy_of(core: ServerCore, name: str) -> ServableVersionPolicy:
    config = core.config
    if config.WhichOneof("config") == "model_config_list":
        for model in config.model_config_list.config:
            if model.name == name:
                return ServableVersionPolicy.from_proto(model.model_version_policy)
    return ServableVersionPolicy.latest()


def served_model_config(core: ServerCore, signatures: SignatureCache, name: str,
                        version: int | None) -> Any:
    """The ``inference.ModelConfig`` of model ``name`` (``version``, None: the latest) as
    ``core`` serves it, its interface and batching those of the ``serving_default`` signature of
    the version that answers the lookup, resolved through ``signatures``. NOT_FOUND (TF
    Serving's text) for a model or version not served."""
    with core.get_servable_handle(name, version, None) as handle:
        bundle = signatures.of(handle.servable, handle.id)
        signature = bundle.get("")
        batching = (bundle.batching.queue_options
                    if bundle.batching is not None and signature.batcher is not None else None)
    return model_config(name, signature.signature, _policy_of(core, name), batching)
