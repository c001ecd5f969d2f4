"""``ModelCache``: local copies of the versions that live on object stores.

TensorFlow loads a SavedModel from local files, so a ``gs://`` or ``s3://`` version is first
downloaded here, on the load thread that loads it (never on a request path, never holding the
manager), and loaded from its copy; the copy is deleted when the version is unloaded (or its load
fails).

Layout: ``<root>/server-<pid>-<random>/<servable name>/<version>``. The root is
``$TFSFAST_MODEL_CACHE_DIR``, else ``<temp dir>/tfsfast-model-cache``; each server process has a
directory of its own there (removed when it stops), so processes sharing a root never collide.
A version is downloaded into a hidden temporary directory next to its final place and renamed
into place only once every file has arrived with the size its listing gave: a copy under its
final name is always whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import urllib.parse

from tfsfast.core.servable_id import ServableId
from tfsfast.sources.version_completeness import incomplete_reason
from tfsfast.storage.file_system import FileSystem, StorageError, object_store_for
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)

CACHE_DIR_ENVIRONMENT_VARIABLE = "TFSFAST_MODEL_CACHE_DIR"


def default_cache_root() -> str:
    return (os.environ.get(CACHE_DIR_ENVIRONMENT_VARIABLE)
            or os.path.join(tempfile.gettempdir(), "tfsfast-model-cache"))


class ModelCache:
    """Downloads object-store versions into a per-process directory. Thread-safe: versions are
    fetched and removed concurrently by load and unload threads."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_cache_root())
        self._dir: str | None = None
        self._lock = threading.Lock()

    @property
    def directory(self) -> str:
        """This process's directory under the root (created on first use)."""
        with self._lock:
            if self._dir is None:
                os.makedirs(self.root, exist_ok=True)
                self._dir = tempfile.mkdtemp(prefix=f"server-{os.getpid()}-", dir=self.root)
            return self._dir

    def fetch(self, servable_id: ServableId, uri: str,
              file_system: FileSystem | None = None) -> str:
        """Downloads the version at ``uri`` and returns its local directory.

        The version is listed afresh and must still be complete (``version_completeness``);
        what is downloaded is exactly that listing, each object as listed. Raises
        ``ServingError`` naming the version, the URI and the cause (the store's code: NOT_FOUND,
        PERMISSION_DENIED, UNAVAILABLE for a network error...); nothing is left behind then.
        """
        fs = file_system or object_store_for(uri)
        context = f"Could not download version {servable_id.version} of servable " \
                  f"{servable_id.name} from {uri}: "
        try:
            files = fs.list_files(uri)
        except StorageError as e:
            raise e.to_serving_error(context) from None
        if not files:
            raise ServingError(Code.NOT_FOUND, f"{context}no object has that prefix any more")
        reason = incomplete_reason(files, lambda path: fs.read_file(fs.join(uri, path)))
        if reason is not None:
            raise ServingError(Code.NOT_FOUND, f"{context}the version is not complete: {reason}")
        parent = os.path.join(self.directory, urllib.parse.quote(servable_id.name, safe=""))
        os.makedirs(parent, exist_ok=True)
        final = os.path.join(parent, str(servable_id.version))
        partial = tempfile.mkdtemp(prefix=f".{servable_id.version}.partial-", dir=parent)
        try:
            _log.info("Downloading version %d of servable %s from %s (%d files, %d bytes) into "
                      "%s", servable_id.version, servable_id.name, uri, len(files),
                      sum(f.size for f in files.values()), final)
            fs.download(uri, files, partial)
            if os.path.exists(final):  # left by an unload that could not delete it
                shutil.rmtree(final, ignore_errors=True)
            os.rename(partial, final)
        except StorageError as e:
            shutil.rmtree(partial, ignore_errors=True)
            raise e.to_serving_error(context) from None
        except OSError as e:
            shutil.rmtree(partial, ignore_errors=True)
            raise ServingError(Code.INTERNAL, f"{context}{e}") from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return final

    def remove(self, local_dir: str) -> None:
        """Deletes a fetched version's copy (a path outside this cache is left alone)."""
        with self._lock:
            mine = self._dir
        if mine is None or os.path.dirname(os.path.dirname(local_dir)) != mine:
            return
        shutil.rmtree(local_dir, ignore_errors=True)
        _log.info("Removed the local copy %s", local_dir)

    def close(self) -> None:
        """Deletes this process's directory (every copy in it)."""
        with self._lock:
            mine, self._dir = self._dir, None
        if mine is not None:
            shutil.rmtree(mine, ignore_errors=True)
