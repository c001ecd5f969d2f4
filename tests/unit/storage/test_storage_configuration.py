"""Base-path resolution, credential redaction, the S3 client's settings from TensorFlow's
variables, and the model cache's atomic downloads (against a real local S3 server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfsfast.core.servable_id import ServableId
from tfsfast.storage import file_system
from tfsfast.storage.file_system import REDACTED, StorageError, redact_secrets, resolve
from tfsfast.storage.model_cache import ModelCache
from tfsfast.storage.s3_file_system import S3FileSystem, client_settings
from tfsfast.testing.object_store_emulators import S3Emulator
from tfsfast.util.status import Code, ServingError

S3_VARIABLES = ("S3_ENDPOINT", "S3_USE_HTTPS", "S3_VERIFY_SSL", "S3_REGION", "AWS_REGION",
                "S3_CONNECT_TIMEOUT_MSEC", "S3_REQUEST_TIMEOUT_MSEC")


@pytest.fixture
def clean_s3_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in S3_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_resolve_local_file_uri_and_object_stores() -> None:
    fs, path = resolve("m", "/models/m")
    assert (fs.is_local, path) == (True, "/models/m")
    fs, path = resolve("m", "file:///models/m")
    assert (fs.is_local, path) == (True, "/models/m")
    fs, path = resolve("m", "gs://bucket/models/m")
    assert (fs.is_local, path, type(fs).__name__) == (False, "gs://bucket/models/m",
                                                       "GcsFileSystem")
    fs, path = resolve("m", "S3://bucket/m")
    assert (path, type(fs).__name__) == ("s3://bucket/m", "S3FileSystem")


@pytest.mark.parametrize(("base_path", "code", "message"), [
    ("models/m", Code.INVALID_ARGUMENT,
     "Expected model m to have an absolute path or URI; got base_path()=models/m"),
    ("file://models/m", Code.INVALID_ARGUMENT,
     "Expected model m to have an absolute path or URI; got base_path()=file://models/m"),
    ("hdfs://nn/m", Code.UNIMPLEMENTED,
     "File system scheme 'hdfs' not implemented (file: 'hdfs://nn/m')"),
    ("gs:///m", Code.INVALID_ARGUMENT, "Model m has base path gs:///m, which names no bucket"),
])
def test_resolve_errors(base_path: str, code: Code, message: str) -> None:
    with pytest.raises(ServingError) as e:
        resolve("m", base_path)
    assert (e.value.code, e.value.message) == (code, message)


def test_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t/KEY+value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-123456")
    text = ("failed with s3cr3t/KEY+value and token-123456; "
            "url https://b.s3.amazonaws.com/k?X-Amz-Signature=abcdef&X-Amz-Expires=60 "
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIA/2026, Signature=0123 "
            "bearer ya29.a0AfH6SM "
            '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----"}')
    redacted = redact_secrets(text)
    for secret in ("s3cr3t/KEY+value", "token-123456", "abcdef", "AWS4-HMAC", "ya29",
                   "MIIE"):
        assert secret not in redacted
    assert redacted.startswith(f"failed with {REDACTED} and {REDACTED}; ")
    assert StorageError(Code.UNKNOWN, "x s3cr3t/KEY+value").message == f"x {REDACTED}"


def test_s3_settings_follow_tensorflow_variables(clean_s3_environment: pytest.MonkeyPatch
                                                 ) -> None:
    env = clean_s3_environment
    env.setenv("S3_ENDPOINT", "minio.local:9000")
    env.setenv("S3_USE_HTTPS", "0")
    env.setenv("S3_VERIFY_SSL", "0")
    env.setenv("S3_REGION", "eu-west-3")
    env.setenv("S3_CONNECT_TIMEOUT_MSEC", "1500")
    env.setenv("S3_REQUEST_TIMEOUT_MSEC", "30000")
    settings = client_settings("us-west-2")
    config = settings.pop("config")
    assert settings == {"endpoint_url": "http://minio.local:9000", "verify": False,
                        "region_name": "eu-west-3"}
    assert (config.connect_timeout, config.read_timeout) == (1.5, 30.0)
    assert config.s3 == {"addressing_style": "path"}
    env.setenv("AWS_REGION", "ap-south-1")  # TensorFlow's newer variable wins over S3_REGION
    env.setenv("S3_USE_HTTPS", "1")
    env.setenv("S3_ENDPOINT", "https://s3.example:443")
    settings = client_settings(None)
    assert (settings["region_name"], settings["endpoint_url"]) == (
        "ap-south-1", "https://s3.example:443")


def test_s3_settings_without_tensorflow_variables(clean_s3_environment: pytest.MonkeyPatch
                                                  ) -> None:
    settings = client_settings("us-west-2")
    config = settings.pop("config")
    # The endpoint and TLS are botocore's own (AWS_ENDPOINT_URL..., AWS_CA_BUNDLE).
    assert settings == {"region_name": "us-west-2"}
    assert config.s3 is None
    assert client_settings(None)["region_name"] == "us-east-1"


@pytest.fixture
def s3(clean_s3_environment: pytest.MonkeyPatch) -> Iterator[S3Emulator]:
    emulator = S3Emulator().start()
    for name, value in emulator.server_environment().items():
        clean_s3_environment.setenv(name, value)
    try:
        yield emulator
    finally:
        emulator.stop()


def test_model_cache_downloads_atomically_and_removes(tmp_path: Path, s3: S3Emulator,
                                                      exported_models: dict[str, Path]) -> None:
    client = s3.client()
    client.create_bucket(Bucket="models")
    src = exported_models["tf2"]
    for path in src.rglob("*"):
        if path.is_file():
            s3.upload("models", f"m/3/{path.relative_to(src).as_posix()}", path)
    cache = ModelCache(str(tmp_path / "cache"))
    fs = S3FileSystem()
    local = cache.fetch(ServableId("m", 3), "s3://models/m/3", fs)
    assert Path(local).parent.parent == Path(cache.directory)
    assert sorted(p.relative_to(local).as_posix() for p in Path(local).rglob("*")
                  if p.is_file()) == sorted(p.relative_to(src).as_posix()
                                            for p in src.rglob("*") if p.is_file())
    assert (Path(local) / "variables" / "variables.index").read_bytes() == (
        src / "variables" / "variables.index").read_bytes()
    cache.remove(local)
    assert not os.path.exists(local)

    # An incomplete version is refused before anything is downloaded; nothing is left behind.
    client.delete_object(Bucket="models", Key="m/3/variables/variables.index")
    with pytest.raises(ServingError) as e:
        cache.fetch(ServableId("m", 3), "s3://models/m/3", fs)
    assert (e.value.code, e.value.message) == (
        Code.NOT_FOUND,
        "Could not download version 3 of servable m from s3://models/m/3: the version is not "
        "complete: variables/variables.index is missing (its data shards "
        "variables/variables.data-00000-of-00001 are there)")
    assert os.listdir(Path(cache.directory) / "m") == []
    cache.close()
    assert not os.path.exists(tmp_path / "cache" / os.path.basename(local))


def test_download_of_an_object_replaced_since_listing_fails(tmp_path: Path,
                                                            s3: S3Emulator) -> None:
    client = s3.client()
    client.create_bucket(Bucket="models")
    client.put_object(Bucket="models", Key="m/1/model.tflite", Body=b"first")
    fs = S3FileSystem()
    files = fs.list_files("s3://models/m/1")
    client.put_object(Bucket="models", Key="m/1/model.tflite", Body=b"second copy")
    with pytest.raises(StorageError) as e:
        fs.download("s3://models/m/1", files, str(tmp_path))
    assert e.value.code == Code.ABORTED
    assert e.value.message.startswith(
        "downloading s3://models/m/1/model.tflite failed: PreconditionFailed: ")
    file_system.forget_object_stores()
