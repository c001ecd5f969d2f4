"""``ObjectStoreFileSystem``: what ``gs://`` and ``s3://`` share: bucket/key paths, prefixes as
directories, and downloads that check what arrived against what was listed.

Library choice (argued once for both stores): the stores' own SDKs, ``google-cloud-storage`` and
``boto3``, rather than fsspec with gcsfs/s3fs or KServe's ``kserve-storage``:

- Credentials are resolved exactly as the users of these stores expect, because it is the SDKs'
  own chains that resolve them: Google's Application Default Credentials (``google.auth``:
  ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's file, the metadata server of GKE's Workload
  Identity) and botocore's chain (environment keys, profiles, EKS's IRSA web identity, instance
  roles). TensorFlow's own S3 variables are mapped onto botocore's settings in one place
  (``s3_file_system``).
- They are synchronous: each call runs on the thread that makes it (the poll thread, a load
  thread), with no event loop of their own. gcsfs and s3fs run an asyncio loop in a thread of
  theirs and s3fs pins ``aiobotocore``, which holds ``botocore`` several releases back (a dry
  run of the project's requirements resolved boto3 1.43 with s3fs against 1.44 without);
  gcsfs installs google-cloud-storage anyway.
- kserve-storage downloads a whole URI in one call; the server needs to list versions, read
  single files (the variables index, for the completeness rule) and download the exact objects
  it checked.

Listing a prefix is one paginated request per 1000 keys; every call has a timeout, and the SDKs'
own retries are kept short, so that an unreachable store fails a poll or a load within seconds and
the server's own backoff (the source's, the loader harness's) takes over.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Mapping

from tfsfast.sources.version_completeness import FileInfo
from tfsfast.storage.file_system import FileSystem, StorageError
from tfsfast.util.status import Code

_log = logging.getLogger(__name__)


class ObjectStoreFileSystem(FileSystem):
    """Paths are ``<scheme>://bucket/key``. Subclasses implement the four primitives."""

    scheme: str = ""

    def split(self, path: str) -> tuple[str, str]:
        """``(bucket, key)`` of ``<scheme>://bucket/key``; the key has no leading ``/``."""
        prefix = f"{self.scheme}://"
        if not path.startswith(prefix):
            raise StorageError(Code.INVALID_ARGUMENT, f"{path} is not a {prefix} path")
        bucket, _, key = path[len(prefix):].partition("/")
        if not bucket:
            raise StorageError(Code.INVALID_ARGUMENT, f"{path} names no bucket")
        return bucket, key.lstrip("/")

    @staticmethod
    def _dir_prefix(key: str) -> str:
        return f"{key.rstrip('/')}/" if key.strip("/") else ""

    # ---- primitives ----

    @abc.abstractmethod
    def _list(self, bucket: str, prefix: str,
              recursive: bool) -> tuple[list[str], dict[str, FileInfo]]:
        """``(child prefixes, objects)`` under ``prefix``: with ``recursive`` every object (by
        full key) and no prefixes; without, the keys' next path components that have objects
        below them (full prefixes ending in ``/``) and the objects directly under ``prefix``."""

    @abc.abstractmethod
    def _read(self, bucket: str, key: str) -> bytes:
        """The whole object."""

    @abc.abstractmethod
    def _download(self, bucket: str, key: str, info: FileInfo, local_path: str) -> None:
        """Writes the object, as it was when listed as ``info`` (its stamp), to ``local_path``."""

    # ---- FileSystem ----

    def get_child_directories(self, path: str) -> list[str]:
        bucket, key = self.split(path)
        prefix = self._dir_prefix(key)
        prefixes, objects = self._list(bucket, prefix, recursive=False)
        if not prefixes and not objects:
            raise StorageError(Code.NOT_FOUND, f"{path}; no object has the prefix "
                                               f"{self.scheme}://{bucket}/{prefix}")
        names = []
        for child in prefixes:
            name = child[len(prefix):].rstrip("/")
            if name:
                names.append(name)
        return names

    def list_files(self, path: str) -> dict[str, FileInfo]:
        bucket, key = self.split(path)
        prefix = self._dir_prefix(key)
        _, objects = self._list(bucket, prefix, recursive=True)
        files = {}
        for object_key, info in objects.items():
            relative = object_key[len(prefix):]
            # "Folder" placeholder objects (consoles create them) hold nothing.
            if relative and not relative.endswith("/"):
                files[relative] = info
        return files

    def read_file(self, path: str) -> bytes:
        bucket, key = self.split(path)
        return self._read(bucket, key)

    def download(self, path: str, files: Mapping[str, FileInfo], local_dir: str) -> None:
        bucket, key = self.split(path)
        prefix = self._dir_prefix(key)
        for relative, info in sorted(files.items()):
            target = os.path.join(local_dir, *relative.split("/"))
            if os.path.commonpath([local_dir, os.path.abspath(target)]) != local_dir:
                raise StorageError(Code.INVALID_ARGUMENT,
                                   f"object {self.scheme}://{bucket}/{prefix}{relative} has a "
                                   f"key that leaves its version directory")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self._download(bucket, prefix + relative, info, target)
            size = os.path.getsize(target)
            if size != info.size:
                raise StorageError(Code.DATA_LOSS,
                                   f"{self.scheme}://{bucket}/{prefix}{relative}: downloaded "
                                   f"{size} bytes, the listing said {info.size}")
