"""The model server config (``ModelServerConfig`` text proto): reading and validating it.

Uses TF Serving's own proto (from the ``tensorflow-serving-api`` package), so existing config
files work unchanged; messages are TF Serving's.
"""

from __future__ import annotations

import os
from typing import TypeAlias

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfsfast.storage.file_system import OBJECT_STORE_SCHEMES, uri_scheme
from tfsfast.util.status import Code, ServingError

# Aliases (the generated protobuf module has no type information: to a checker they are Any).
ModelServerConfig: TypeAlias = model_server_config_pb2.ModelServerConfig
ModelConfig: TypeAlias = model_server_config_pb2.ModelConfig

TENSORFLOW_PLATFORM = "tensorflow"
SUPPORTED_PLATFORMS = (TENSORFLOW_PLATFORM,)
# Base paths: local paths, file:// URIs and the object stores (tfsfast.storage).
SUPPORTED_BASE_PATH_SCHEMES = ("file", *OBJECT_STORE_SCHEMES)


def parse_model_server_config(text: str) -> ModelServerConfig:
    """Parses the text format; errors as TF Serving reports them at startup."""
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Error parsing text-format tensorflow.serving.ModelServerConfig: {e}") from None
    return config


def read_model_server_config(path: str) -> ModelServerConfig:
    """Reads and parses the file; NOT_FOUND if it cannot be read, INVALID_ARGUMENT if it is not
    a text-format ModelServerConfig (UTF-8 text included)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ServingError(Code.NOT_FOUND, f"Failed to read ModelServerConfig file: {path}: "
                                           f"{e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Error parsing text-format tensorflow.serving.ModelServerConfig: {path} is not "
            f"UTF-8 text (byte {e.start})") from None
    return parse_model_server_config(text)


def single_model_config(model_name: str, base_path: str) -> ModelServerConfig:
    """What ``--model_name`` / ``--model_base_path`` stand for."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = base_path
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def get_platform(model: ModelConfig) -> str:
    """The model's platform (``model_platform``, or the deprecated ``model_type``)."""
    if model.model_platform:
        if model.model_type:
            raise ServingError(Code.INVALID_ARGUMENT,
                               "Illegal setting both model_type(deprecated) and model_platform.")
        return model.model_platform
    if model.model_type == model_server_config_pb2.TENSORFLOW:
        return TENSORFLOW_PLATFORM
    raise ServingError(
        Code.INVALID_ARGUMENT,
        f"Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
        f"ModelServerConfig::model_platform, model name is {model.name}")


def _is_absolute_or_uri(path: str) -> bool:
    return os.path.isabs(path) or "://" in path


def validate_model_config_list(config: ModelServerConfig) -> None:
    """TF Serving's ``ValidateModelConfigList`` checks, with its messages."""
    names: set[str] = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Illegal to list model {model.name} multiple times in config list")
        names.add(model.name)
        if not _is_absolute_or_uri(model.base_path):
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected model {model.name} to have an absolute path or URI; got "
                f"base_path()={model.base_path}")
        scheme = uri_scheme(model.base_path)
        if scheme is not None and scheme not in SUPPORTED_BASE_PATH_SCHEMES:
            # TensorFlow's message for a file system it has no implementation for.
            raise ServingError(
                Code.UNIMPLEMENTED,
                f"File system scheme '{model.base_path.split('://', 1)[0]}' not implemented "
                f"(file: '{model.base_path}')")
        platform = get_platform(model)
        if platform not in SUPPORTED_PLATFORMS:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Model {model.name} requests unsupported platform {platform}")
        if model.HasField("logging_config"):
            raise ServingError(Code.FAILED_PRECONDITION, "No request-logger-creator provided.")


def validate_no_models_change_platforms(old: ModelServerConfig, new: ModelServerConfig) -> None:
    old_platforms = {m.name: get_platform(m) for m in old.model_config_list.config}
    for model in new.model_config_list.config:
        before = old_platforms.get(model.name)
        after = get_platform(model)
        if before is not None and before != after:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Illegal to change a model's platform. For model {model.name} platform was "
                f"{before} and new platform requested is {after}")
