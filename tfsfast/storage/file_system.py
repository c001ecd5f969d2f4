"""``FileSystem``: where model base paths live (local disk, ``gs://``, ``s3://``), as TensorFlow's
``tensorflow::FileSystem`` is for TF Serving: the storage path source lists versions and reads
files through it, the object-store loader downloads through it.

A path is a plain absolute path (or ``file://`` URI) on local disk, or ``<scheme>://bucket/key`` on
an object store. Object stores have no directories: a "directory" is a key prefix ending in
``/``, and a version directory's files are the objects under its prefix.

Every failure is a ``StorageError``: a canonical code and a message that names the path and the
cause (``NOT_FOUND: bucket b does not exist``) and never holds a credential (``redact_secrets``).
"""

from __future__ import annotations

import abc
import errno
import os
import re
import stat
import threading
from collections.abc import Mapping

from tfsfast.sources.version_completeness import FileInfo, Listing, local_listing
from tfsfast.util.status import Code, ServingError

# The schemes base paths may use. file:// is local disk.
OBJECT_STORE_SCHEMES = ("gs", "s3")
_URI_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)

# Environment variables whose values are credentials: never logged, never in a message.
SECRET_ENVIRONMENT_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID")
# Credentials that can appear inside texts that libraries put in their exceptions: presigned
# URL signatures, bearer tokens, OAuth access tokens, private keys of service-account files.
_SECRET_PATTERNS = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
               re.DOTALL),
    re.compile(r"(?i)(x-amz-signature=|x-amz-security-token=|x-amz-credential=|signature=|"
               r"access_token=|refresh_token=|client_secret=)[^&\s\"']+"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(\"?(?:private_key|secret_access_key|aws_secret_access_key|session_token)"
               r"\"?\s*[:=]\s*\"?)[^\",\s]+"),
)
REDACTED = "<redacted>"


def redact_secrets(text: str) -> str:
    """``text`` with every credential replaced by ``<redacted>``: the values of
    ``SECRET_ENVIRONMENT_VARIABLES`` wherever they appear, and the secret parts of signatures,
    tokens and keys."""
    for name in SECRET_ENVIRONMENT_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, REDACTED)
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class StoragePath(str):
    """A version's path as the storage path source emits it: a string (TF Serving's
    ``StoragePath``). For a version on an object store it also carries ``files``, the listing
    the source found complete, which sizes the load's resource estimate without a request on the
    manager's thread."""

    files: Listing | None

    def __new__(cls, path: str, files: Listing | None = None) -> StoragePath:
        self = super().__new__(cls, path)
        self.files = files
        return self


class StorageError(Exception):
    """A storage operation failed. ``str()`` is ``CODE: message`` (as TF's ``Status``)."""

    def __init__(self, code: Code, message: str) -> None:
        message = redact_secrets(message)
        super().__init__(message)
        self.code = Code(code)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def to_serving_error(self, context: str = "") -> ServingError:
        return ServingError(self.code, f"{context}{self.message}")


class FileSystem(abc.ABC):
    """What the storage path source and the loaders need from a storage. Thread-safe."""

    #: True for local disk: versions are loaded in place, not downloaded.
    is_local: bool = False

    @abc.abstractmethod
    def get_child_directories(self, path: str) -> list[str]:
        """Names of the directories directly under ``path`` (symlinks followed). Raises
        ``StorageError`` (NOT_FOUND for a path that does not exist)."""

    @abc.abstractmethod
    def list_files(self, path: str) -> dict[str, FileInfo]:
        """Every file under ``path``, recursively, by POSIX path relative to it."""

    @abc.abstractmethod
    def read_file(self, path: str) -> bytes:
        """The whole content of the file ``path``."""

    def download(self, path: str, files: Mapping[str, FileInfo], local_dir: str) -> None:
        """Copies ``files`` (a listing of ``path``) into ``local_dir``, checking each size.

        Object stores only; raises ``StorageError`` (a file that changed since it was listed
        included).
        """
        raise NotImplementedError(f"{type(self).__name__} loads versions in place")

    @staticmethod
    def join(path: str, child: str) -> str:
        if "://" in path:
            return f"{path.rstrip('/')}/{child}"
        return os.path.join(path, child)


class LocalFileSystem(FileSystem):
    """The local file system (paths are plain absolute paths)."""

    is_local = True

    def get_child_directories(self, path: str) -> list[str]:
        try:
            names = []
            with os.scandir(path) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=True)
                    except OSError:
                        is_dir = False
                    if is_dir:
                        names.append(entry.name)
            return names
        except OSError as e:
            raise os_storage_error(e) from None

    def list_files(self, path: str) -> dict[str, FileInfo]:
        try:
            return local_listing(path)
        except OSError as e:
            raise os_storage_error(e) from None

    def read_file(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise os_storage_error(e) from None


def os_storage_error(e: OSError) -> StorageError:
    """An OSError as TF's ``Status::ToString`` prints a file-system error:
    ``NOT_FOUND: <path>; No such file or directory``."""
    code = {errno.ENOENT: Code.NOT_FOUND, errno.EACCES: Code.PERMISSION_DENIED,
            errno.EPERM: Code.PERMISSION_DENIED,
            errno.ENOTDIR: Code.FAILED_PRECONDITION}.get(e.errno or 0, Code.UNKNOWN)
    where = e.filename if e.filename is not None else ""
    return StorageError(code, f"{where}; {e.strerror or e}")


def is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


_local = LocalFileSystem()
_object_stores: dict[str, FileSystem] = {}
_object_stores_lock = threading.Lock()


def uri_scheme(path: str) -> str | None:
    """The scheme of a URI (lower case), None for a plain path."""
    m = _URI_SCHEME_RE.fullmatch(path)
    return m.group(1).lower() if m else None


def is_object_store_path(path: str) -> bool:
    return uri_scheme(path) in OBJECT_STORE_SCHEMES


def resolve(servable_name: str, base_path: str) -> tuple[FileSystem, str]:
    """The file system of a model's ``base_path`` and the path in it.

    ``file://`` URIs become plain paths. Raises ``ServingError``: INVALID_ARGUMENT for a relative
    path (TF Serving's ``Expected model <name> to have an absolute path or URI``); UNIMPLEMENTED
    for a scheme other than ``file``, ``gs`` and ``s3`` (TensorFlow's message for a file system it
    has no implementation for); INVALID_ARGUMENT for an object-store URI without a bucket.
    """
    m = _URI_SCHEME_RE.fullmatch(base_path)
    if m is None:
        path = base_path
    else:
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme in OBJECT_STORE_SCHEMES:
            bucket = rest.split("/", 1)[0]
            if not bucket:
                raise ServingError(Code.INVALID_ARGUMENT,
                                   f"Model {servable_name} has base path {base_path}, which "
                                   f"names no bucket")
            return object_store(scheme), f"{scheme}://{rest}"
        if scheme != "file":
            raise ServingError(Code.UNIMPLEMENTED, f"File system scheme '{m.group(1)}' not "
                                                   f"implemented (file: '{base_path}')")
        path = rest
    if not os.path.isabs(path):
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Expected model {servable_name} to have an absolute path or URI; "
                           f"got base_path()={base_path}")
    return _local, path


def object_store(scheme: str) -> FileSystem:
    """The process's one client of an object store, created on first use (credentials are read
    from the environment then)."""
    with _object_stores_lock:
        fs = _object_stores.get(scheme)
        if fs is None:
            if scheme == "s3":
                from tfsfast.storage.s3_file_system import S3FileSystem

                fs = S3FileSystem()
            elif scheme == "gs":
                from tfsfast.storage.gcs_file_system import GcsFileSystem

                fs = GcsFileSystem()
            else:
                raise ServingError(Code.UNIMPLEMENTED,
                                   f"File system scheme '{scheme}' not implemented")
            _object_stores[scheme] = fs
        return fs


def register_object_store(scheme: str, fs: FileSystem) -> None:
    """Makes ``fs`` the client of ``scheme`` for the rest of the process (an embedding program's
    own configured client; tests pointing a client at a local emulator)."""
    with _object_stores_lock:
        _object_stores[scheme] = fs


def forget_object_stores() -> None:
    """Drops the clients created so far: the next use creates them again from the environment."""
    with _object_stores_lock:
        _object_stores.clear()


def object_store_for(path: str) -> FileSystem:
    scheme = uri_scheme(path)
    if scheme not in OBJECT_STORE_SCHEMES:
        raise ValueError(f"not an object-store path: {path}")
    return object_store(scheme)


def total_size(files: Listing) -> int:
    return sum(info.size for info in files.values())
