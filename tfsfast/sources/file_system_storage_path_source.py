"""``FileSystemStoragePathSource``: polls model base paths and emits version directories to load.

TF Serving's ``sources/storage_path/file_system_storage_path_source.{h,cc}``, with tfsfast's
robustness rules on top (hardening P7): a version directory is offered only once it is complete,
and a base path that empties never unloads the last good version.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import stat
import threading
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfsfast.core.servable_data import ServableData
from tfsfast.core.servable_id import ServableId
from tfsfast.core.source import Source
from tfsfast.core.target import AspiredVersionsCallback
from tfsfast.sources.servable_version_policy import (
    ServableVersionPolicy,
    missing_specific_version_message,
)
from tfsfast.util.status import (
    Code,
    ServingError,
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

_URI_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)


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
    is offered only once its recursive listing was the same at two consecutive polls.
    """

    servables: Sequence[ServableToMonitor] = ()
    file_system_poll_wait_seconds: int = 1
    fail_if_zero_versions_at_startup: bool = False
    required_files_any: tuple[str, ...] = DEFAULT_REQUIRED_FILES
    require_stable_version_dirs: bool = True

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


# A version directory's recursive listing: (relative path, is_dir, size, mtime_ns) per entry.
_Signature = tuple[tuple[str, bool, int, int], ...]


@dataclass
class _ServableState:
    """What the source remembers about one servable between polls (guarded by the source's lock)."""

    base_path: str
    polled: bool = False
    # Versions found complete, with the child directory name they were found under. A version stays
    # accepted while that directory exists, so a loaded version never flaps in and out.
    accepted: dict[int, str] = field(default_factory=dict)
    # Versions not accepted yet: child name and the listing seen at the last poll (None when the
    # directory was incomplete or unreadable, which never matches).
    pending: dict[int, tuple[str, _Signature | None]] = field(default_factory=dict)
    # Versions last emitted (None: nothing emitted yet).
    aspired: list[int] | None = None
    # Conditions already logged; each is logged again only after it has cleared.
    logged: set[Hashable] = field(default_factory=set)


class FileSystemStoragePathSource(Source[str]):
    """Polls each servable's base path and emits, per servable, the version directories to load.

    Versions are the children of ``base_path`` that are directories (symlinks followed) and whose
    names parse as int64 as TF Serving's ``absl::SimpleAtoi`` does (see ``parse_version_number``);
    other children are ignored. Two directories with the same number (``1``, ``01``) are a
    misconfiguration: the name that sorts last wins, deterministically, and a warning is logged.
    The emitted data is ``os.path.join(base_path, child)``. The servable's ``ServableVersionPolicy``
    picks among the *complete* versions (below), so a version still being copied never displaces the
    one being served.

    Completeness (TF Serving has none and can load a half-copied version):

    - A version directory must hold one of ``config.required_files_any`` (by default
      ``saved_model.pb``, ``saved_model.pbtxt`` or ``model.tflite``).
    - With ``require_stable_version_dirs`` (the default), a version that was not complete at the
      servable's first poll (the first after it entered the config or its base path changed, even
      if that poll found no base path) is offered only once its recursive listing (relative
      paths, sizes, mtimes) was identical at two consecutive polls, so a ``cp -r`` in progress is
      not loaded. This costs one poll interval of latency for new versions. Versions complete at
      the first poll are offered at once, so startup never waits. A copy that stalls for a whole
      poll interval can still look stable; writing to a non-numeric name and renaming it is the
      only atomic way to publish a version, with tfsfast as with TF Serving.
    - Once offered, a version stays offered while its directory exists (files changing inside it
      do not withdraw it; the loaded copy is in memory anyway).

    Keeping versions (hardening P7):

    - Base path missing or unreadable: logged (``Could not find base path ...``); nothing is
      emitted for that servable on that poll, so the previously aspired versions stay. Other
      servables are still polled (TF Serving abandons the whole poll).
    - No complete version found after versions were aspired: nothing is emitted and
      ``Refusing to unload all versions of servable ...`` is logged. TF Serving unloads
      everything unless ``servable_versions_always_present``; tfsfast always keeps the last good
      version. Only a config update that drops the servable unaspires all of its versions (one
      empty list is emitted for it). Complete versions that the policy does not select (a
      ``specific`` list naming none of them) do yield an empty list: that is what the config asks.
    - Otherwise the aspired list is emitted on every poll, even when unchanged; targets tolerate
      repeats.

    Paths: base paths must be absolute (or ``file://`` URIs of absolute paths, emitted as plain
    paths); relative paths are rejected, never resolved against the working directory. Other URI
    schemes (``gs://``, ``s3://``) are UNIMPLEMENTED here. Symlinks are followed, as TF Serving
    does, including a version directory that links outside ``base_path``: directory names cannot
    contain ``/``, so the only way out of ``base_path`` is a link its owner created on purpose, and
    atomic publishing by swapping a symlink is a common deployment pattern. Symlink cycles inside a
    version directory are not followed twice.

    Thread-safety: all methods may be called from any thread. The callback is invoked from the poll
    thread, from ``update_config`` (to unaspire dropped servables) or from the caller of
    ``poll_file_system_and_invoke_callback``, always with the source's lock held, so it is never
    invoked concurrently and emissions are totally ordered. IMPORTANT: the callback must therefore
    not call any method of this source, ``stop`` included (it would deadlock).

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
        non-``file`` URI; with ``fail_if_zero_versions_at_startup``, INVALID_ARGUMENT for a missing
        base path and NOT_FOUND for a servable without versions. When it raises, the config in force
        is unchanged.

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
            servables.append(dataclasses.replace(
                s, base_path=_local_base_path(s.servable_name, s.base_path)))
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
                if state is None:
                    self._states[s.servable_name] = _ServableState(s.base_path)
                elif state.base_path != s.base_path:
                    # What downstream holds is unchanged, so keep ``aspired``; everything learnt
                    # about the old directory is void.
                    self._states[s.servable_name] = _ServableState(s.base_path,
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
        first_poll = not state.polled
        state.polled = True
        try:
            children = _list_versions(base)
        except OSError as e:
            _log_once(state, active, ("base_path",), logging.ERROR,
                      f"Could not find base path {base} for servable {name} with error "
                      f"{_os_error_status(e)}")
            return None
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
        return [ServableData(ServableId(name, v), os.path.join(base, complete[v]))
                for v in selected]

    def _complete_versions(self, servable: ServableToMonitor, state: _ServableState,
                           found: dict[int, str], first_poll: bool,
                           active: set[Hashable]) -> dict[int, str]:
        """Updates ``state`` with this poll's directories; returns the versions that may be offered.
        """
        config = self._config
        name = servable.servable_name
        # Forget what disappeared or now lives under another name: if it comes back it is new.
        for v in [v for v, child in state.accepted.items() if found.get(v) != child]:
            del state.accepted[v]
        for v in [v for v, (child, _) in state.pending.items() if found.get(v) != child]:
            del state.pending[v]

        for version, child in sorted(found.items()):
            if state.accepted.get(version) == child:
                continue
            path = os.path.join(servable.base_path, child)
            if not _has_required_file(path, config.required_files_any):
                state.pending[version] = (child, None)
                _log_once(state, active, ("incomplete", version, child), logging.WARNING,
                          f"Version {version} of servable {name} at {path} is not offered: it "
                          f"holds none of {', '.join(config.required_files_any)} (yet)")
                continue
            if first_poll or not config.require_stable_version_dirs:
                state.accepted[version] = child
                state.pending.pop(version, None)
                continue
            signature = _listing_signature(path)
            if signature is not None and state.pending.get(version) == (child, signature):
                state.accepted[version] = child
                del state.pending[version]
                _log.info("Version %d of servable %s at %s is complete and stable; offering it",
                          version, name, path)
                continue
            state.pending[version] = (child, signature)
            _log_once(state, active, ("unstable", version, child), logging.INFO,
                      f"Version {version} of servable {name} at {path} is new or still changing; "
                      f"it is offered once it is unchanged between two polls")
        return {v: state.accepted[v] for v in sorted(state.accepted)}

    def _fail_if_zero_versions(self, config: FileSystemStoragePathSourceConfig) -> None:
        """TF Serving's ``FailIfZeroVersions``: what a first poll of ``config`` would aspire."""
        for s in config.servables:
            children = _versions_at_base_path(s.servable_name, s.base_path)
            complete = [v for v, names in children.items()
                        if _has_required_file(os.path.join(s.base_path, names[-1]),
                                              config.required_files_any)]
            if not s.version_policy.select(complete, servable_name=s.servable_name,
                                           warn_missing=False):
                raise not_found(f"Unable to find a numerical version path for servable "
                                f"{s.servable_name} at: {s.base_path}")



def check_base_path(servable_name: str, base_path: str) -> None:
    """Raises TF Serving's INVALID_ARGUMENT ``Could not find base path <p> for servable <name>
    with error <status>`` (the first check of its poll) if ``base_path`` cannot be listed, and
    the errors of ``update_config`` for a path that is not absolute or not local."""
    _versions_at_base_path(servable_name, _local_base_path(servable_name, base_path))


def _versions_at_base_path(servable_name: str, base_path: str) -> dict[int, list[str]]:
    try:
        return _list_versions(base_path)
    except OSError as e:
        raise invalid_argument(
            f"Could not find base path {base_path} for servable {servable_name} with error "
            f"{_os_error_status(e)}") from e


def _local_base_path(servable_name: str, base_path: str) -> str:
    """The local directory for ``base_path``; raises ``ServingError`` if there is none."""
    m = _URI_SCHEME_RE.fullmatch(base_path)
    if m is not None:
        scheme, rest = m.group(1), m.group(2)
        if scheme.lower() != "file":
            # TensorFlow's own message for a file system it has no implementation for.
            raise ServingError(Code.UNIMPLEMENTED, f"File system scheme '{scheme}' not "
                                                   f"implemented (file: '{base_path}')")
        path = rest
    else:
        path = base_path
    if not os.path.isabs(path):
        raise invalid_argument(f"Expected model {servable_name} to have an absolute path or URI; "
                               f"got base_path()={base_path}")
    return path


def _list_versions(base_path: str) -> dict[int, list[str]]:
    """Version number → child directory names with that number, sorted so the winner is last.

    Raises OSError if ``base_path`` cannot be listed. The winner among duplicates is the name that
    sorts last, which is the one TF Serving's ``std::map`` insertion over its sorted child set
    keeps; Python's str order is UTF-8 byte order, as ``std::string``'s.
    """
    by_version: dict[int, list[str]] = {}
    with os.scandir(base_path) as entries:
        for entry in entries:
            version = parse_version_number(entry.name)
            if version is None:
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if not is_dir:
                _log.debug("Ignoring %s: not a directory", os.path.join(base_path, entry.name))
                continue
            by_version.setdefault(version, []).append(entry.name)
    for names in by_version.values():
        names.sort()
    return by_version


def _has_required_file(path: str, required_files_any: Iterable[str]) -> bool:
    names = tuple(required_files_any)
    if not names:
        return True
    return any(os.path.isfile(os.path.join(path, n)) for n in names)


def _listing_signature(root: str) -> _Signature | None:
    """The recursive listing of ``root``, following symlinks; None if it could not be read.

    A directory reached twice (a symlink cycle or two links to one place) is listed once.
    """
    entries: list[tuple[str, bool, int, int]] = []
    seen_dirs: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
        seen_dirs.add((st.st_dev, st.st_ino))
        entries.append(("", True, st.st_size, st.st_mtime_ns))
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            with os.scandir(os.path.join(root, rel_dir)) as it:
                children = sorted(it, key=lambda e: e.name)
            for entry in children:
                rel = os.path.join(rel_dir, entry.name)
                st = entry.stat(follow_symlinks=True)
                is_dir = stat.S_ISDIR(st.st_mode)
                entries.append((rel, is_dir, st.st_size, st.st_mtime_ns))
                if is_dir and (st.st_dev, st.st_ino) not in seen_dirs:
                    seen_dirs.add((st.st_dev, st.st_ino))
                    stack.append(rel)
    except OSError as e:
        # A file vanishing mid-walk (a copy tool's temp file, a dangling link) means "not stable".
        _log.debug("Could not list %s: %s", root, e)
        return None
    entries.sort()
    return tuple(entries)


def _os_error_status(e: OSError) -> str:
    """An OSError as TF's ``Status::ToString`` would print the file-system error."""
    code = {errno.ENOENT: Code.NOT_FOUND, errno.EACCES: Code.PERMISSION_DENIED,
            errno.EPERM: Code.PERMISSION_DENIED,
            errno.ENOTDIR: Code.FAILED_PRECONDITION}.get(e.errno or 0, Code.UNKNOWN)
    where = e.filename if e.filename is not None else ""
    return f"{code.name}: {where}; {e.strerror or e}"


def _log_once(state: _ServableState, active: set[Hashable], key: Hashable, level: int,
              message: str) -> None:
    active.add(key)
    if key not in state.logged:
        _log.log(level, "%s", message)
