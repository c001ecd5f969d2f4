"""``gs://`` model base paths, through google-cloud-storage (see ``object_store_file_system`` for
the choice).

Credentials are Google's Application Default Credentials, as TF Serving's (TensorFlow's GCS file
system's) are: ``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account or external-account JSON
file), then gcloud's own file, then the metadata server (GCE, GKE's Workload Identity). When
none is found and ``GOOGLE_APPLICATION_CREDENTIALS`` is not set, buckets are read anonymously
(public buckets), as TensorFlow does; a ``GOOGLE_APPLICATION_CREDENTIALS`` that cannot be used is
an error (UNAUTHENTICATED, naming the file and the cause). ``STORAGE_EMULATOR_HOST`` (``host:port``
or a URL) sends every request to a GCS emulator, without credentials, as the Google SDKs do.

Objects are downloaded by generation (the one listed), and the SDK verifies each download's
checksum when the store sends one.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from tfsfast.sources.version_completeness import FileInfo
from tfsfast.storage.file_system import StorageError
from tfsfast.storage.object_store_file_system import ObjectStoreFileSystem
from tfsfast.util.status import Code

_log = logging.getLogger(__name__)

_READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# (connect, read) seconds per HTTP request; the SDK's retries of transient errors stop after
# _RETRY_SECONDS, after which the server's own backoff takes over.
_TIMEOUT = (10.0, 60.0)
_RETRY_SECONDS = 5.0

_HTTP_CODES = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    412: Code.ABORTED,
    429: Code.UNAVAILABLE,
}


class GcsFileSystem(ObjectStoreFileSystem):
    """``gs://bucket/key``. The client is created on first use and shared."""

    scheme = "gs"

    def __init__(self) -> None:
        self._client: Any = None
        self._retry: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud.storage.retry import DEFAULT_RETRY

                self._client = _make_client()
                self._retry = DEFAULT_RETRY.with_timeout(_RETRY_SECONDS)
            return self._client

    def _list(self, bucket: str, prefix: str,
              recursive: bool) -> tuple[list[str], dict[str, FileInfo]]:
        where = f"gs://{bucket}/{prefix}"
        objects: dict[str, FileInfo] = {}
        try:
            client = self.client()
            blobs = client.list_blobs(bucket, prefix=prefix or None,
                                      delimiter=None if recursive else "/",
                                      timeout=_TIMEOUT, retry=self._retry)
            for blob in blobs:
                objects[blob.name] = FileInfo(int(blob.size or 0), blob.generation)
            prefixes = sorted(blobs.prefixes)
        except Exception as e:
            raise _storage_error(e, f"listing {where}", bucket) from None
        return prefixes, objects

    def _read(self, bucket: str, key: str) -> bytes:
        try:
            blob = self.client().bucket(bucket).blob(key)
            return blob.download_as_bytes(timeout=_TIMEOUT, retry=self._retry)
        except Exception as e:
            raise _storage_error(e, f"reading gs://{bucket}/{key}", bucket) from None

    def _download(self, bucket: str, key: str, info: FileInfo, local_path: str) -> None:
        generation = info.stamp if isinstance(info.stamp, int) else None
        try:
            blob = self.client().bucket(bucket).blob(key, generation=generation)
            blob.download_to_filename(local_path, timeout=_TIMEOUT, retry=self._retry)
        except Exception as e:
            raise _storage_error(e, f"downloading gs://{bucket}/{key}", bucket) from None


def _make_client() -> Any:
    """A storage client with Application Default Credentials, the emulator's anonymous access,
    or anonymous access when no credentials exist (public buckets only)."""
    from google.auth import exceptions as auth_exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        # The SDK sends every request to the emulator; it takes no credentials.
        emulated_project = os.environ.get("GOOGLE_CLOUD_PROJECT") or "tfsfast"
        return storage.Client(project=emulated_project, credentials=AnonymousCredentials())
    try:
        import google.auth

        credentials, project = google.auth.default(scopes=[_READ_ONLY_SCOPE])
    except auth_exceptions.DefaultCredentialsError as e:
        path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            raise StorageError(Code.UNAUTHENTICATED,
                               f"the credentials in GOOGLE_APPLICATION_CREDENTIALS={path} cannot "
                               f"be used: {e}") from None
        _log.warning("No Google credentials found (no GOOGLE_APPLICATION_CREDENTIALS, no gcloud "
                     "credentials, no metadata server): reading gs:// anonymously, which works "
                     "for public buckets only")
        return storage.Client.create_anonymous_client()
    return storage.Client(project=project or "<none>", credentials=credentials)


def _storage_error(e: Exception, doing: str, bucket: str) -> StorageError:
    """A google-cloud / google-auth / network exception as a ``StorageError``."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    if isinstance(e, StorageError):
        return e
    if isinstance(e, api_exceptions.RetryError) and isinstance(e.cause, Exception):
        return _storage_error(e.cause, doing, bucket)  # the SDK gave up retrying: why
    if isinstance(e, api_exceptions.GoogleAPICallError):
        status = int(e.code or 0) if isinstance(e.code, int) else 0
        code = _HTTP_CODES.get(status, Code.UNAVAILABLE if status >= 500 else Code.UNKNOWN)
        message = e.message or type(e).__name__
        if status == 404 and doing.startswith("listing"):
            # Listing a prefix that holds nothing is not an error: only the bucket can be missing.
            message = f"bucket {bucket} does not exist"
        elif status == 429:
            message = f"throttled by the store: {message}"
        return StorageError(code, f"{doing} failed: HTTP {status}: {message}")
    if isinstance(e, auth_exceptions.RefreshError):
        return StorageError(Code.UNAUTHENTICATED,
                            f"{doing} failed: the Google credentials were refused: {e}")
    if isinstance(e, auth_exceptions.GoogleAuthError):
        return StorageError(Code.UNAUTHENTICATED, f"{doing} failed: {type(e).__name__}: {e}")
    if _is_network_error(e):
        return StorageError(Code.UNAVAILABLE, f"{doing} failed: network error: {e}")
    if isinstance(e, OSError):
        return StorageError(Code.INTERNAL, f"{doing} failed: {e}")
    return StorageError(Code.UNKNOWN, f"{doing} failed: {type(e).__name__}: {e}")


def _is_network_error(e: Exception) -> bool:
    import requests

    if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                      requests.exceptions.ChunkedEncodingError, ConnectionError, TimeoutError)):
        return True
    try:
        from google.resumable_media import common

        return isinstance(e, common.DataCorruption)
    except ImportError:
        return False
