"""``s3://`` model base paths, through boto3 (see ``object_store_file_system`` for the choice).

Configuration is read from the environment when the client is first used, the way TensorFlow's
S3 file system (what TF Serving reads ``s3://`` with) reads it, with botocore's standard
variables as well:

- Credentials: botocore's chain: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
  ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared files, web identity
  (``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``, EKS's IRSA), container and instance roles.
- Region: ``AWS_REGION``, else TensorFlow's ``S3_REGION``, else botocore's
  (``AWS_DEFAULT_REGION``, the profile), else ``us-east-1``.
- Endpoint: TensorFlow's ``S3_ENDPOINT`` (``host[:port]``, or a URL), with ``S3_USE_HTTPS``
  (``0``: http; default https) and path-style addressing, as TensorFlow's client uses for it;
  else botocore's ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; else AWS.
- TLS: ``S3_VERIFY_SSL=0`` turns certificate verification off (TensorFlow's variable);
  ``AWS_CA_BUNDLE`` names a CA bundle (botocore's).
- Timeouts: TensorFlow's ``S3_CONNECT_TIMEOUT_MSEC`` and ``S3_REQUEST_TIMEOUT_MSEC`` (defaults
  10 s to connect, 60 s between bytes of an answer).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from tfsfast.sources.version_completeness import FileInfo
from tfsfast.storage.file_system import StorageError
from tfsfast.storage.object_store_file_system import ObjectStoreFileSystem
from tfsfast.util.status import Code

_CHUNK_BYTES = 1 << 20

# S3 error codes (the <Code> of an error response) and what they mean here.
_ERROR_CODES = {
    "NoSuchBucket": Code.NOT_FOUND,
    "NoSuchKey": Code.NOT_FOUND,
    "404": Code.NOT_FOUND,
    "NotFound": Code.NOT_FOUND,
    "AccessDenied": Code.PERMISSION_DENIED,
    "AllAccessDisabled": Code.PERMISSION_DENIED,
    "403": Code.PERMISSION_DENIED,
    "InvalidAccessKeyId": Code.UNAUTHENTICATED,
    "SignatureDoesNotMatch": Code.UNAUTHENTICATED,
    "ExpiredToken": Code.UNAUTHENTICATED,
    "InvalidToken": Code.UNAUTHENTICATED,
    "TokenRefreshRequired": Code.UNAUTHENTICATED,
    "SlowDown": Code.UNAVAILABLE,
    "Throttling": Code.UNAVAILABLE,
    "ThrottlingException": Code.UNAVAILABLE,
    "RequestLimitExceeded": Code.UNAVAILABLE,
    "ServiceUnavailable": Code.UNAVAILABLE,
    "503": Code.UNAVAILABLE,
    "InternalError": Code.UNAVAILABLE,
    "PreconditionFailed": Code.ABORTED,
    "412": Code.ABORTED,
}


def _flag(name: str) -> bool | None:
    """TensorFlow's reading of a ``0``/``1`` variable: unset → None, first character ``0`` →
    False, anything else → True."""
    value = os.environ.get(name)
    if value is None:
        return None
    return not value.startswith("0")


def _milliseconds(name: str, default_seconds: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) / 1000.0 if value else default_seconds
    except ValueError:
        return default_seconds


def client_settings(default_region: str | None = None) -> dict[str, Any]:
    """The arguments the S3 client is created with, from the environment (no secret in them:
    credentials are left to botocore's chain). ``default_region``: botocore's own (from
    ``AWS_DEFAULT_REGION`` or the profile)."""
    from botocore.config import Config

    settings: dict[str, Any] = {}
    options: dict[str, Any] = {
        "connect_timeout": _milliseconds("S3_CONNECT_TIMEOUT_MSEC", 10.0),
        "read_timeout": _milliseconds("S3_REQUEST_TIMEOUT_MSEC", 60.0),
        # botocore's own retries are kept short: the poller and the loader back off themselves.
        "retries": {"max_attempts": 3, "mode": "standard"},
    }
    settings["region_name"] = (os.environ.get("AWS_REGION") or os.environ.get("S3_REGION")
                               or default_region or "us-east-1")
    endpoint = os.environ.get("S3_ENDPOINT", "").strip()
    if endpoint:
        if "://" not in endpoint:
            endpoint = ("http://" if _flag("S3_USE_HTTPS") is False else "https://") + endpoint
        settings["endpoint_url"] = endpoint
        options["s3"] = {"addressing_style": "path"}
    if _flag("S3_VERIFY_SSL") is False:
        settings["verify"] = False
    settings["config"] = Config(**options)
    return settings


class S3FileSystem(ObjectStoreFileSystem):
    """``s3://bucket/key``. The client is created on first use and shared (boto3 clients are
    thread-safe)."""

    scheme = "s3"

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                session = boto3.session.Session()
                self._client = session.client("s3", **client_settings(session.region_name))
            return self._client

    def _list(self, bucket: str, prefix: str,
              recursive: bool) -> tuple[list[str], dict[str, FileInfo]]:
        where = f"s3://{bucket}/{prefix}"
        prefixes: list[str] = []
        objects: dict[str, FileInfo] = {}
        try:
            arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if not recursive:
                arguments["Delimiter"] = "/"
            for page in self.client().get_paginator("list_objects_v2").paginate(**arguments):
                prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", ())]
                for item in page.get("Contents", ()):
                    objects[item["Key"]] = FileInfo(int(item["Size"]), item.get("ETag"))
        except Exception as e:
            raise _storage_error(e, f"listing {where}", bucket) from None
        return prefixes, objects

    def _read(self, bucket: str, key: str) -> bytes:
        try:
            response = self.client().get_object(Bucket=bucket, Key=key)
            return response["Body"].read()
        except Exception as e:
            raise _storage_error(e, f"reading s3://{bucket}/{key}", bucket) from None

    def _download(self, bucket: str, key: str, info: FileInfo, local_path: str) -> None:
        arguments: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if info.stamp:
            # The object as it was listed: a newer copy uploaded since fails the download.
            arguments["IfMatch"] = info.stamp
        try:
            response = self.client().get_object(**arguments)
            with open(local_path, "wb") as f:
                for chunk in response["Body"].iter_chunks(_CHUNK_BYTES):
                    f.write(chunk)
        except Exception as e:
            raise _storage_error(e, f"downloading s3://{bucket}/{key}", bucket) from None


def _storage_error(e: Exception, doing: str, bucket: str) -> StorageError:
    """A botocore (or network, or local file) exception as a ``StorageError`` naming its cause."""
    from botocore import exceptions as boto

    if isinstance(e, StorageError):
        return e
    if isinstance(e, boto.ClientError):
        error = e.response.get("Error", {})
        code_name = str(error.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = _ERROR_CODES.get(code_name) or _ERROR_CODES.get(str(status)) or (
            Code.UNAVAILABLE if isinstance(status, int) and status >= 500 else Code.UNKNOWN)
        message = str(error.get("Message") or "") or f"HTTP {status}"
        if code_name == "NoSuchBucket":
            message = f"bucket {bucket} does not exist"
        elif code_name in ("SlowDown", "Throttling", "ThrottlingException",
                           "RequestLimitExceeded"):
            message = f"throttled by the store: {message}"
        detail = f"{code_name}: {message}" if code_name else message
        return StorageError(code, f"{doing} failed: {detail}")
    if isinstance(e, (boto.NoCredentialsError, boto.PartialCredentialsError)):
        return StorageError(Code.UNAUTHENTICATED,
                            f"{doing} failed: no usable AWS credentials ({type(e).__name__}); "
                            f"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a "
                            f"role")
    if isinstance(e, (boto.EndpointConnectionError, boto.ConnectionError,
                      boto.ReadTimeoutError, boto.ConnectTimeoutError,
                      boto.ResponseStreamingError, boto.IncompleteReadError,
                      boto.HTTPClientError)):
        return StorageError(Code.UNAVAILABLE, f"{doing} failed: network error: {e}")
    if isinstance(e, OSError):
        return StorageError(Code.INTERNAL, f"{doing} failed: {e}")
    return StorageError(Code.UNAVAILABLE if "connection" in str(e).lower() else Code.UNKNOWN,
                        f"{doing} failed: {type(e).__name__}: {e}")
