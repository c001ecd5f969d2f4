"""A SavedModel's own session overrides: ``<export>/assets.extra/saved_model_config.pb``.

The file is a binary ``tensorflow.serving.SavedModelConfig``::

    message SavedModelConfig {
      SessionOverrides session_overrides = 1;
      tensorflow.tfrt_stub.RuntimeConfigProto tfrt_runtime_config = 2;  // TFRT only: ignored
      bool critical = 3;                                                // ignored
    }
    message SessionOverrides {
      optional tools.RemoteOpRemapConfig remote_op_remap_config = 1;
      optional BatchOpRewriteConfig batch_op_rewriter_config = 2;
      optional bool disable_meta_optimizer = 3;
    }

As TF Serving does, each present override becomes a Grappler custom optimizer in the session's
``graph_options.rewrite_options`` (added, or replacing one of the same name) whose single
parameter is the base64 of the serialized sub-message; ``disable_meta_optimizer`` is copied.
These protos are not in the TensorFlow wheel, so the few fields needed are read from the wire
format here. A missing file means no overrides; a file that does not parse fails the load with
INTERNAL ``Unable to parse SavedModelConfig: <path>``.

tfsfast copies ``disable_meta_optimizer`` only when the file sets it, where TF Serving also resets
it to false when the file leaves it out.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from tfsfast.util import proto_wire
from tfsfast.util.status import Code, ServingError

SAVED_MODEL_CONFIG_PATH = os.path.join("assets.extra", "saved_model_config.pb")

REMOTE_OP_CONFIG_REWRITER = "remote_op_config_rewrite"
REMOTE_OP_REWRITE_CONFIG_PARAM_KEY = "remote_op_rewrite_config"
BATCH_OP_REWRITER = "batch_op_rewriter"
BATCH_OP_REWRITE_CONFIG_PARAM_KEY = "batch_op_rewrite_config"

class SessionOverrides:
    """The ``SessionOverrides`` fields, each None when absent (sub-messages as serialized)."""

    def __init__(self, remote_op_remap_config: bytes | None = None,
                 batch_op_rewriter_config: bytes | None = None,
                 disable_meta_optimizer: bool | None = None) -> None:
        self.remote_op_remap_config = remote_op_remap_config
        self.batch_op_rewriter_config = batch_op_rewriter_config
        self.disable_meta_optimizer = disable_meta_optimizer

    @classmethod
    def parse(cls, data: bytes) -> SessionOverrides:
        out = cls()
        for number, wire_type, value in proto_wire.fields(data):
            # A message field seen twice merges; concatenating the encodings is that merge.
            if number == 1 and wire_type == proto_wire.LEN:
                out.remote_op_remap_config = (out.remote_op_remap_config or b"") + bytes(value)
            elif number == 2 and wire_type == proto_wire.LEN:
                out.batch_op_rewriter_config = (out.batch_op_rewriter_config or b"") + bytes(value)
            elif number == 3 and wire_type == proto_wire.VARINT:
                out.disable_meta_optimizer = bool(value)
        return out


def read_session_overrides(export_dir: str) -> SessionOverrides | None:
    """The export's ``SessionOverrides``, or None when it has no ``saved_model_config.pb`` or
    the file sets none."""
    path = os.path.join(export_dir, SAVED_MODEL_CONFIG_PATH)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ServingError(Code.FAILED_PRECONDITION, f"{path}; {e.strerror}") from None
    overrides = None
    try:
        for number, wire_type, value in proto_wire.fields(data):
            if number == 1 and wire_type == proto_wire.LEN:
                parsed = SessionOverrides.parse(bytes(value))
                if overrides is None:
                    overrides = parsed
                else:  # repeated occurrences of a message field merge, later fields winning
                    for name, field_value in vars(parsed).items():
                        if field_value is not None:
                            setattr(overrides, name, field_value)
    except proto_wire.WireError:
        raise ServingError(Code.INTERNAL,
                           f"Unable to parse SavedModelConfig: {path}") from None
    return overrides


def _add_or_replace_optimizer(rewrite_options: Any, name: str, key: str, value: bytes) -> None:
    for optimizer in rewrite_options.custom_optimizers:
        if optimizer.name == name:
            break
    else:
        optimizer = rewrite_options.custom_optimizers.add()
        optimizer.name = name
    optimizer.parameter_map[key].s = base64.b64encode(value)


def apply_session_overrides(config: Any, overrides: SessionOverrides) -> Any:
    """Writes ``overrides`` into ``config`` (a ``ConfigProto``); returns it."""
    rewrite_options = config.graph_options.rewrite_options
    if overrides.remote_op_remap_config is not None:
        _add_or_replace_optimizer(rewrite_options, REMOTE_OP_CONFIG_REWRITER,
                                  REMOTE_OP_REWRITE_CONFIG_PARAM_KEY,
                                  overrides.remote_op_remap_config)
    if overrides.batch_op_rewriter_config is not None:
        _add_or_replace_optimizer(rewrite_options, BATCH_OP_REWRITER,
                                  BATCH_OP_REWRITE_CONFIG_PARAM_KEY,
                                  overrides.batch_op_rewriter_config)
    if overrides.disable_meta_optimizer is not None:
        rewrite_options.disable_meta_optimizer = overrides.disable_meta_optimizer
    return config


def apply_saved_model_config(config: Any, export_dir: str) -> Any:
    """Applies ``export_dir``'s ``saved_model_config.pb`` (if any) to ``config``; returns it."""
    overrides = read_session_overrides(export_dir)
    if overrides is not None:
        apply_session_overrides(config, overrides)
    return config
