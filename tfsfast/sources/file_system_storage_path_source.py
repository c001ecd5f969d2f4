"""``FileSystemStoragePathSource``: polls model base paths and emits version directories to load.

TF Serving's ``sources/storage_path/file_system_storage_path_source.{h,cc}``, with tfsfast's
robustness rules on top (hardening P7): a version directory is offered only once it is complete
(``version_completeness``), and a base path that empties never unloads the last good version.
Base paths are local directories or ``gs://`` / ``s3://`` prefixes (``tfsfast.storage``); the same
rules apply to both.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfsfast.core.loader_harness import backoff_delay_seconds
from tfsfast.core.servable_data import ServableData
from tfsfast.core.servable_id import ServableId
from tfsfast.core.source import Source
from tfsfast.core.target import AspiredVersionsCallback
from tfsfast.sources.servable_version_policy import (
    ServableVersionPolicy,
    missing_specific_version_message,
)
from tfsfast.sources.version_completeness import (
    CompletenessCache,
    FileInfo,
    incomplete_reason,
)
from tfsfast.storage import file_system
from tfsfast.storage.file_system import FileSystem, StorageError, StoragePath
from tfsfast.util.status import (
    failed_precondition,
    invalid_argument,
    not_found,
)

_log = logging.getLogger(__name__)

# Any one of these in a version directory marks it as a model that can be loaded: a SavedModel
# (binary or text) or a TFLite flatbuffer.
DEFAULT_REQUIRED_FILES: tuple[str, ...] = ("saved_model.pb", "saved_model.pbtxt", "model.tflite")

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

# absl::SimpleAtoi(string_view, int64_t*) is safe_strto64_base(text, value, 10): it strips ASCII
# whitespace (absl::ascii_isspace: space \t \n \v \f \r) from both ends, accepts one leading '+' or
# '-', then requires at least one decimal digit and nothing else, rejecting int64 overflow. Python's
# int() is not a substitute: it also accepts '1_000' and non-ASCII digits such as '١٢'.
_SIMPLE_ATOI_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")

# How long a new version's listing must stay unchanged (besides being unchanged across two polls)
# before the version is offered: a copy that pauses between files for less than this is not
# taken for finished.
DEFAULT_VERSION_SETTLE_SECONDS = 2.0


def parse_version_number(name: str) -> int | None:
    """Parses a directory name as a version the way TF Serving does (``absl::SimpleAtoi``).

    ``'00000123'`` → 123, ``'+7'`` → 7, ``' 8 '`` → 8, ``'-1'`` → -1; ``'1.5'``, ``'1_000'``,
    ``'0x10'``, ``''`` and values outside int64 → None.
    """
    m = _SIMPLE_ATOI_RE.fullmatch(name)
    if m is None:
        return None
    value = int(m.group(1))
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return value


@dataclass(frozen=True)
class ServableToMonitor:
    """One servable stream: its name, the directory whose numbered children are its versions, and
    which of those versions to offer."""

    servable_name: str
    base_path: str
    version_policy: ServableVersionPolicy = field(default_factory=ServableVersionPolicy)


@dataclass(frozen=True)
class FileSystemStoragePathSourceConfig:
    """Configuration of a ``FileSystemStoragePathSource``.

    ``file_system_poll_wait_seconds``: > 0 polls every that many seconds, 0 polls exactly once,
    negative never polls on its own (tests step the source with
    ``poll_file_system_and_invoke_callback``). The default 1 is ``tensorflow_model_server``'s flag
    default (the proto's own default is 0).

    ``fail_if_zero_versions_at_startup``: TF Serving's (deprecated) option; when set, ``create`` and
    ``update_config`` fail with NOT_FOUND if a servable has no version to offer.

    tfsfast's additions (see ``FileSystemStoragePathSource``):

    ``required_files_any``: a version directory is complete only if it holds at least one of these
    files (directly, not in a subdirectory). Empty disables the check.

    ``require_stable_version_dirs``: a version directory that appears after a servable's first poll
    is offered only once its recursive listing was the same at two consecutive polls and for
    ``version_settle_seconds``.

    ``listing_retry_max_seconds``: an object-store base path whose listing fails is listed again
    after 1 s, 2 s, 4 s... up to this (the loader harness's backoff), not at every poll.

    ``clock``: the monotonic clock the settle time and the backoff are measured with.
    """

    servables: Sequence[ServableToMonitor] = ()
    file_system_poll_wait_seconds: int = 1
    fail_if_zero_versions_at_startup: bool = False
    required_files_any: tuple[str, ...] = DEFAULT_REQUIRED_FILES
    require_stable_version_dirs: bool = True
    version_settle_seconds: float = DEFAULT_VERSION_SETTLE_SECONDS
    listing_retry_max_seconds: float = 60.0
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Frozen and hashable-by-content: take private copies of the sequences we were given.
        object.__setattr__(self, "servables", tuple(self.servables))
        object.__setattr__(self, "required_files_any", tuple(self.required_files_any))

    @classmethod
    def from_proto(cls, proto: Any, **tfsfast_options: Any) -> FileSystemStoragePathSourceConfig:
        """Builds the config from TF Serving's ``FileSystemStoragePathSourceConfig`` proto.

        ``servable_versions_always_present`` is accepted and ignored: tfsfast never unloads the
        last versions of a servable because its base path emptied (see the source's docstring).
        ``tfsfast_options`` sets the fields the proto does not have.
        """
        servables = [
            ServableToMonitor(s.servable_name, s.base_path,
                              ServableVersionPolicy.from_proto(s.servable_version_policy))
            for s in proto.servables
        ]
        return cls(servables=servables,
                   file_system_poll_wait_seconds=int(proto.file_system_poll_wait_seconds),
                   fail_if_zero_versions_at_startup=bool(proto.fail_if_zero_versions_at_startup),
                   **tfsfast_options)


# A version directory's recursive listing: (relative path, size, stamp) per file.
_Signature = tuple[tuple[str, int, Hashable], ...]


@dataclass
class _Pending:
    """A version not offered yet: its child name, its listing at the last poll (None when it was
    incomplete or unreadable, which never matches) and since when that listing has been seen."""

    child: str
    signature: _Signature | None
    since: float


@dataclass
class _ServableState:
    """What the source remembers about one servable between polls (guarded by the source's lock)."""

    base_path: str
    fs: FileSystem = field(default_factory=file_system.LocalFileSystem)
    polled: bool = False
    # Versions found complete, with the child directory name they were found under and the listing
    # that was found complete. A version stays accepted while that directory exists, so a loaded
    # version never flaps in and out.
    accepted: dict[int, str] = field(default_factory=dict)
    accepted_files: dict[int, dict[str, FileInfo]] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    # Versions last emitted (None: nothing emitted yet).
    aspired: list[int] | None = None
    # Conditions already logged; each is logged again only after it has cleared.
    logged: set[Hashable] = field(default_factory=set)
    # Object stores: consecutive failed listings, and when the next listing may be tried.
    list_failures: int = 0
    retry_at: float = 0.0
    last_error: StorageError | None = None
    cache: CompletenessCache = field(default_factory=CompletenessCache)


class FileSystemStoragePathSource(Source[str]):
    """Polls each servable's base path and emits, per servable, the version directories to load.

    Versions are the children of ``base_path`` that are directories (symlinks followed; on an
    object store, key prefixes) and whose names parse as int64 as TF Serving's
    ``absl::SimpleAtoi`` does (see ``parse_version_number``); other children are ignored. Two
    directories with the same number (``1``, ``01``) are a misconfiguration: the name that sorts
    last wins, deterministically, and a warning is logged. The emitted data is the version's path
    (``os.path.join(base_path, child)`` on local disk; on an object store the URI, a
    ``StoragePath`` that also carries the listing found complete). The servable's
    ``ServableVersionPolicy`` picks among the *complete* versions (below), so a version still
    being copied never displaces the one being served.

    Completeness (TF Serving has none and can load a half-copied version):

    - A version directory must hold one of ``config.required_files_any`` (by default
      ``saved_model.pb``, ``saved_model.pbtxt`` or ``model.tflite``), and a SavedModel's
      variables must be whole: the index and every data shard it names, at the sizes it says,
      or no variable in the graph (``version_completeness``). This holds at every poll,
      the first included, and on every storage.
    - With ``require_stable_version_dirs`` (the default), a version that was not complete at the
      servable's first poll (the first after it entered the config or its base path changed, even
      if that poll found no base path) is offered only once its recursive listing (relative
      paths, sizes, mtimes or object generations) was identical at two consecutive polls and has
      stayed so for ``version_settle_seconds`` (2 s by default), so a copy in progress, or one
      that pauses between files, is not loaded. With the default 1 s poll a new version is
      offered 2 to 3 s after its last file arrived. Versions complete at the first poll are
      offered at once, so startup never waits. Writing to a non-numeric name and renaming it
      stays the only atomic way to publish a version on local disk.
    - Once offered, a version stays offered while its directory exists (files changing inside it
      do not withdraw it; the loaded copy is in memory anyway).

    Keeping versions (hardening P7):

    - Base path missing or unreadable (on an object store: no object under it, no such bucket,
      credentials refused, a network error, throttling): logged (``Could not find base path ...``
      with the cause, never a credential); nothing is emitted for that servable on that poll, so
      the previously aspired versions stay. Other servables are still polled (TF Serving abandons
      the whole poll). An object-store listing that failed is tried again after 1 s, 2 s, 4 s...
      up to ``listing_retry_max_seconds``; local disk is listed at every poll.
    - No complete version found after versions were aspired: nothing is emitted and
      ``Refusing to unload all versions of servable ...`` is logged. TF Serving unloads
      everything unless ``servable_versions_always_present``; tfsfast always keeps the last good
      version. Only a config update that drops the servable unaspires all of its versions (one
      empty list is emitted for it). Complete versions that the policy does not select (a
      ``specific`` list naming none of them) do yield an empty list: that is what the config asks.
    - Otherwise the aspired list is emitted on every poll, even when unchanged; targets tolerate
      repeats.

    Paths: base paths are absolute paths, ``file://`` URIs of absolute paths (emitted as plain
    paths), or ``gs://bucket/prefix`` and ``s3://bucket/prefix`` URIs (``tfsfast.storage``);
    relative paths are rejected, never resolved against the working directory, and other URI
    schemes are UNIMPLEMENTED. Symlinks are followed, as TF Serving does, including a version
    directory that links outside ``base_path``: directory names cannot contain ``/``, so the only
    way out of ``base_path`` is a link its owner created on purpose, and atomic publishing by
    swapping a symlink is a common deployment pattern. Symlink cycles inside a version directory
    are not followed twice.

    Thread-safety: all methods may be called from any thread. The callback is invoked from the poll
    thread, from ``update_config`` (to unaspire dropped servables) or from the caller of
    ``poll_file_system_and_invoke_callback``, always with the source's lock held, so it is never
    invoked concurrently and emissions are totally ordered. IMPORTANT: the callback must therefore
    not call any method of this source, ``stop`` included (it would deadlock). Object stores are
    listed on those same threads, never on a request path.

    Messages are logged once when a condition starts (a missing base path, an incomplete version,
    a duplicate) and again only after it has cleared and come back, instead of on every poll.
    """

    def __init__(self) -> None:
        """Use ``create``."""
        self._mu = threading.Lock()
        self._config = FileSystemStoragePathSourceConfig()
        self._states: dict[str, _ServableState] = {}
        self._callback: AspiredVersionsCallback[str] | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def create(cls, config: FileSystemStoragePathSourceConfig) -> FileSystemStoragePathSource:
        """Returns a source for ``config``; raises ``ServingError`` as ``update_config`` does."""
        source = cls()
        source.update_config(config)
        return source

    def update_config(self, config: FileSystemStoragePathSourceConfig) -> None:
        """Replaces the servables to monitor.

        Raises ``ServingError``: INVALID_ARGUMENT for a relative base path
        (``Expected model <name> to have an absolute path or URI; got base_path()=<p>``), a name
        listed twice, or a changed ``file_system_poll_wait_seconds`` once the callback is set (the
        poll thread was configured then; TF Serving rejects the change too); UNIMPLEMENTED for a
        URI scheme other than ``file``, ``gs`` and ``s3``; with
        ``fail_if_zero_versions_at_startup``, INVALID_ARGUMENT for a missing base path and
        NOT_FOUND for a servable without versions.
        When it raises, the config in force is unchanged.

        Servables dropped from the config get one empty aspired list (if the callback is set), so
        the manager unloads them. A servable whose base path changed starts afresh (its next poll
        counts as its first). Polling the new config happens at the next poll; call
        ``poll_file_system_and_invoke_callback`` to apply it at once.
        """
        servables = []
        seen: set[str] = set()
        for s in config.servables:
            if s.servable_name in seen:
                raise invalid_argument(
                    f"Illegal to list model {s.servable_name} multiple times in config list")
            seen.add(s.servable_name)
            _, path = file_system.resolve(s.servable_name, s.base_path)
            servables.append(dataclasses.replace(s, base_path=path))
        config = dataclasses.replace(config, servables=servables)

        with self._mu:
            if (self._callback is not None and config.file_system_poll_wait_seconds
                    != self._config.file_system_poll_wait_seconds):
                raise invalid_argument("Changing file_system_poll_wait_seconds is not supported")
            if config.fail_if_zero_versions_at_startup:
                self._fail_if_zero_versions(config)

            dropped = [name for name in self._states if name not in seen]
            for name in dropped:
                del self._states[name]
                if self._callback is not None:
                    _log.info("Unaspiring all versions of servable %s: it was removed from the "
                              "config", name)
                    self._callback(name, [])
            for s in config.servables:
                state = self._states.get(s.servable_name)
                fs, _ = file_system.resolve(s.servable_name, s.base_path)
                if state is None:
                    self._states[s.servable_name] = _ServableState(s.base_path, fs)
                elif state.base_path != s.base_path:
                    # What downstream holds is unchanged, so keep ``aspired``; everything learnt
                    # about the old directory is void.
                    self._states[s.servable_name] = _ServableState(s.base_path, fs,
                                                                   aspired=state.aspired)
            self._config = config

    def set_aspired_versions_callback(self, callback: AspiredVersionsCallback[str]) -> None:
        """Sets the callback and starts polling as ``file_system_poll_wait_seconds`` says.

        > 0: a daemon thread polls at once, then every that many seconds; 0: a thread polls once;
        negative: no thread. Raises ``ServingError`` FAILED_PRECONDITION if called twice.
        """
        with self._mu:
            if self._callback is not None:
                raise failed_precondition(
                    "set_aspired_versions_callback() called multiple times")
            self._callback = callback
            wait = self._config.file_system_poll_wait_seconds
            if wait < 0 or self._stop_event.is_set():
                return
            name = ("FileSystemStoragePathSource_filesystem_polling_thread" if wait > 0
                    else "FileSystemStoragePathSource_filesystem_oneshot_thread")
            self._thread = threading.Thread(target=self._run, args=(wait,), name=name,
                                            daemon=True)
            self._thread.start()

    def poll_file_system_and_invoke_callback(self) -> None:
        """Polls every servable once and emits its aspired versions (see the class docstring).

        Problems with one servable's directory are logged, not raised. Raises ``ServingError``
        FAILED_PRECONDITION before the callback is set; exceptions from the callback propagate.
        """
        with self._mu:
            if self._callback is None:
                raise failed_precondition("poll_file_system_and_invoke_callback() called before "
                                          "set_aspired_versions_callback()")
            for servable in self._config.servables:
                state = self._states[servable.servable_name]
                versions = self._poll_servable(servable, state)
                if versions is None:
                    continue
                for v in versions:
                    _log.debug("File-system polling update: Servable:%s; Servable path: %s; "
                               "Polling frequency: %d", v.id, v.data,
                               self._config.file_system_poll_wait_seconds)
                self._callback(servable.servable_name, versions)
                state.aspired = [v.id.version for v in versions]

    def stop(self) -> None:
        """Stops polling and waits for the poll thread to finish its current poll. Idempotent.

        Manual ``poll_file_system_and_invoke_callback`` calls keep working afterwards.
        """
        self._stop_event.set()
        with self._mu:
            thread = self._thread
        # Join outside the lock: the thread may need the lock to finish its current poll.
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self, wait_seconds: int) -> None:
        while not self._stop_event.is_set():
            try:
                self.poll_file_system_and_invoke_callback()
            except Exception:  # the thread must outlive one bad poll, as TF Serving's does
                _log.exception("FileSystemStoragePathSource encountered a filesystem access error")
            if wait_seconds == 0 or self._stop_event.wait(wait_seconds):
                return

    # ---- polling one servable (lock held) ----

    def _poll_servable(self, servable: ServableToMonitor,
                       state: _ServableState) -> list[ServableData[str]] | None:
        """Returns the list to emit for ``servable``, or None to emit nothing this poll."""
        active: set[Hashable] = set()
        try:
            return self._poll_servable_logged(servable, state, active)
        finally:
            state.logged = active

    def _poll_servable_logged(self, servable: ServableToMonitor, state: _ServableState,
                              active: set[Hashable]) -> list[ServableData[str]] | None:
        name, base = servable.servable_name, servable.base_path
        now = self._config.clock()
        if not state.fs.is_local and state.list_failures and now < state.retry_at:
            # Backing off a failing store: the conditions logged stay active, unrepeated.
            active.update(state.logged)
            return None
        first_poll = not state.polled
        state.polled = True
        try:
            children = _list_versions(state.fs, base)
        except StorageError as e:
            retry = ""
            if not state.fs.is_local:
                state.list_failures += 1
                delay = backoff_delay_seconds(state.list_failures,
                                              self._config.listing_retry_max_seconds)
                state.retry_at = now + delay
                retry = f"; listing it again in {delay:g} s"
            state.last_error = e
            _log_once(state, active, ("base_path", e.code), logging.ERROR,
                      f"Could not find base path {base} for servable {name} with error "
                      f"{e}{retry}")
            return None
        if state.list_failures:
            _log.info("Base path %s of servable %s can be listed again", base, name)
        state.list_failures = 0
        state.last_error = None
        for version, names in children.items():
            if len(names) > 1:
                _log_once(state, active, ("duplicate", version, tuple(names)), logging.WARNING,
                          f"Duplicate version directories detected for servable {name}. Version "
                          f"{version} will be loaded from {names[-1]}, "
                          f"{', '.join(names[:-1])} will be ignored.")
        found = {version: names[-1] for version, names in children.items()}

        complete = self._complete_versions(servable, state, found, first_poll, active)
        if not complete:
            if not found:
                message = (f"No versions of servable {name} found under base path {base}. Did you "
                           f"forget to name your leaf directory as a number (eg. '/1/')?")
            else:
                message = (f"No complete versions of servable {name} found under base path "
                           f"{base} yet")
            if state.aspired:
                _log_once(state, active, ("refuse",), logging.WARNING,
                          f"Refusing to unload all versions of servable {name}: none found under "
                          f"{base}")
            else:
                _log_once(state, active, ("none", bool(found)), logging.WARNING, message)
            return None

        policy = servable.version_policy
        for v in policy.missing(found):
            _log_once(state, active, ("missing", v), logging.WARNING,
                      missing_specific_version_message(name, v))
        selected = policy.select(complete, servable_name=name, warn_missing=False)
        return [ServableData(ServableId(name, v), self._version_path(state, base, v, complete[v]))
                for v in selected]

    @staticmethod
    def _version_path(state: _ServableState, base: str, version: int, child: str) -> str:
        if state.fs.is_local:
            return os.path.join(base, child)
        return StoragePath(state.fs.join(base, child), state.accepted_files.get(version))

    def _complete_versions(self, servable: ServableToMonitor, state: _ServableState,
                           found: dict[int, str], first_poll: bool,
                           active: set[Hashable]) -> dict[int, str]:
        """Updates ``state`` with this poll's directories; returns the versions that may be offered.
        """
        config = self._config
        name = servable.servable_name
        fs = state.fs
        now = config.clock()
        # Forget what disappeared or now lives under another name: if it comes back it is new.
        for v in [v for v, child in state.accepted.items() if found.get(v) != child]:
            del state.accepted[v]
            state.accepted_files.pop(v, None)
        for v in [v for v, pending in state.pending.items() if found.get(v) != pending.child]:
            del state.pending[v]

        for version, child in sorted(found.items()):
            if state.accepted.get(version) == child:
                continue
            path = fs.join(servable.base_path, child)
            try:
                files = fs.list_files(path)
                reason = incomplete_reason(files, _file_reader(fs, path),
                                           config.required_files_any, cache=state.cache,
                                           cache_scope=path)
            except StorageError as e:
                files, reason = {}, f"it cannot be listed: {e}"
            if reason is not None:
                state.pending[version] = _Pending(child, None, now)
                _log_once(state, active, ("incomplete", version, child, reason), logging.WARNING,
                          f"Version {version} of servable {name} at {path} is not offered: "
                          f"{reason} (yet)")
                continue
            if first_poll or not config.require_stable_version_dirs:
                self._accept(state, version, child, files)
                continue
            signature = tuple(sorted((rel, info.size, info.stamp) for rel, info in files.items()))
            pending = state.pending.get(version)
            if pending is not None and pending.child == child and pending.signature == signature:
                if now - pending.since >= config.version_settle_seconds:
                    self._accept(state, version, child, files)
                    _log.info("Version %d of servable %s at %s is complete and stable; offering "
                              "it", version, name, path)
                    continue
            else:
                state.pending[version] = _Pending(child, signature, now)
            _log_once(state, active, ("unstable", version, child), logging.INFO,
                      f"Version {version} of servable {name} at {path} is new or still changing; "
                      f"it is offered once unchanged between two polls and for "
                      f"{config.version_settle_seconds:g} s")
        return {v: state.accepted[v] for v in sorted(state.accepted)}

    @staticmethod
    def _accept(state: _ServableState, version: int, child: str,
                files: dict[str, FileInfo]) -> None:
        state.accepted[version] = child
        state.accepted_files[version] = files
        state.pending.pop(version, None)

    def _fail_if_zero_versions(self, config: FileSystemStoragePathSourceConfig) -> None:
        """TF Serving's ``FailIfZeroVersions``: what a first poll of ``config`` would aspire."""
        for s in config.servables:
            fs, base = file_system.resolve(s.servable_name, s.base_path)
            children = _versions_at_base_path(s.servable_name, fs, base)
            complete = []
            for version, names in children.items():
                path = fs.join(base, names[-1])
                try:
                    files = fs.list_files(path)
                except StorageError:
                    continue
                read = _file_reader(fs, path)
                if incomplete_reason(files, read, config.required_files_any) is None:
                    complete.append(version)
            if not s.version_policy.select(complete, servable_name=s.servable_name,
                                           warn_missing=False):
                raise not_found(f"Unable to find a numerical version path for servable "
                                f"{s.servable_name} at: {s.base_path}")


def check_base_path(servable_name: str, base_path: str) -> None:
    """Raises TF Serving's INVALID_ARGUMENT ``Could not find base path <p> for servable <name>
    with error <status>`` (the first check of its poll) if ``base_path`` cannot be listed (on an
    object store: a missing bucket, no object under the prefix, refused credentials, a network
    error), and the errors of ``update_config`` for a path that is not absolute or whose scheme
    is not supported."""
    fs, path = file_system.resolve(servable_name, base_path)
    _versions_at_base_path(servable_name, fs, path)


def _versions_at_base_path(servable_name: str, fs: FileSystem,
                           base_path: str) -> dict[int, list[str]]:
    try:
        return _list_versions(fs, base_path)
    except StorageError as e:
        raise invalid_argument(
            f"Could not find base path {base_path} for servable {servable_name} with error "
            f"{e}") from None


def _file_reader(fs: FileSystem, version_path: str) -> Callable[[str], bytes]:
    """Reads a file of the version at ``version_path`` by its relative path."""
    return lambda relative: fs.read_file(fs.join(version_path, relative))


def _list_versions(fs: FileSystem, base_path: str) -> dict[int, list[str]]:
    """Version number → child directory names with that number, sorted so the winner is last.

    Raises ``StorageError`` if ``base_path`` cannot be listed. The winner among duplicates is the
    name that sorts last, which is the one TF Serving's ``std::map`` insertion over its sorted
    child set keeps; Python's str order is UTF-8 byte order, as ``std::string``'s.
    """
    by_version: dict[int, list[str]] = {}
    for name in fs.get_child_directories(base_path):
        version = parse_version_number(name)
        if version is None:
            continue
        by_version.setdefault(version, []).append(name)
    for names in by_version.values():
        names.sort()
    return by_version


def _log_once(state: _ServableState, active: set[Hashable], key: Hashable, level: int,
              message: str) -> None:
    active.add(key)
    if key not in state.logged:
        _log.log(level, "%s", message)
