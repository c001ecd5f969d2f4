"""``ModelRepository``: the Open Inference Protocol's model repository extension over
``ServerCore``.

The repository is one directory (or object-store prefix) whose subdirectories are models, each
laid out as a TF Serving base path (numbered version directories): ``--model_repository_path``,
or by default the directory holding the configured models' base paths when they share one (so
``--model_base_path=/models/m``, TF Serving's container contract, makes ``/models`` the
repository; see ``default_repository_path``).

- ``index``: every model of the config in force and every model directory of the repository,
  by name, each version the server has seen with its state in the protocol's words (``READY``
  for AVAILABLE, ``LOADING`` for START and LOADING, ``UNLOADING``, ``UNAVAILABLE`` for END with
  the load error or ``unloaded`` as its reason). A model directory never loaded is its name
  alone. ``ready_only`` keeps the READY entries.
- ``load(name)``: adds ``{name, base_path: <repository>/<name>, model_platform: "tensorflow"}``
  (TF Serving's single-model entry: the latest version, no labels) to the config in force and
  returns once it has an AVAILABLE version, or fails with the reload's error and the config as
  it was (``ServerCore.reload_config``'s all or nothing, within ``--reload_config_timeout_seconds``
  or the caller's deadline). A model already in the config keeps its entry: when it has an
  AVAILABLE version the load changes nothing; otherwise (its versions failed to load) it is
  dropped and added again, which loads its versions afresh, as Triton reloads a model asked for
  again.
- ``unload(name)``: removes the model from the config in force; returns once none of its
  versions answers requests. A model that is not in the config but is in the repository is
  already unloaded (OK, as Triton); any other name is NOT_FOUND.

Load and unload edit the config in force within one reload turn (``ServerCore.edit_config``), so
they take turns with ``HandleReloadConfigRequest`` and never lose its changes, or its theirs.
Both refuse (FAILED_PRECONDITION) while ``--model_config_file`` is polled: the file decides the
model set then, and would undo them at its next read. Names are one path segment (INVALID_ARGUMENT
otherwise: a name never reaches outside the repository). The protocol's ``repository_name`` must
be empty (the one repository), and of the request ``parameters`` only ``unload_dependents``
(Triton's, for ensembles; tfsfast has none, so it changes nothing) is accepted: a parameter
tfsfast would ignore, such as Triton's ``config`` override, is INVALID_ARGUMENT rather than a
load that did not do what was asked.

Thread-safe; ``load`` and ``unload`` block (for as long as the load), so callers on an event loop
run them on an executor.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tfsfast.core.servable_state import ManagerState, ServableState
from tfsfast.server import model_config as mc
from tfsfast.server.server_core import ServerCore
from tfsfast.storage import file_system
from tfsfast.storage.file_system import StorageError
from tfsfast.util.status import Code, ServingError

__all__ = ["ModelIndex", "ModelRepository", "default_repository_path"]

# The protocol's model states (Triton's words).
READY = "READY"
LOADING = "LOADING"
UNLOADING = "UNLOADING"
UNAVAILABLE = "UNAVAILABLE"
_STATES = {
    ManagerState.START: LOADING,
    ManagerState.LOADING: LOADING,
    ManagerState.AVAILABLE: READY,
    ManagerState.UNLOADING: UNLOADING,
    ManagerState.END: UNAVAILABLE,
}
# The one load/unload parameter accepted (see the module docstring).
UNLOAD_DEPENDENTS = "unload_dependents"


@dataclass(frozen=True)
class ModelIndex:
    """One entry of the repository index: a model version and its state ("" when unknown)."""

    name: str
    version: str = ""
    state: str = ""
    reason: str = ""


def default_repository_path(config: Any) -> str:
    """The directory holding every model's base path of ``config`` (a ModelServerConfig), or
    "" when they are not all in one (or there are none)."""
    parents = {_parent(m.base_path) for m in config.model_config_list.config}
    return parents.pop() if len(parents) == 1 else ""


def _parent(base_path: str) -> str:
    return posixpath.dirname(base_path.rstrip("/")) if base_path.rstrip("/") else ""


def _entry(name: str, version: int, state: ServableState) -> ModelIndex:
    reason = ""
    if state.manager_state is ManagerState.END:
        reason = str(state.health) if state.health is not None else "unloaded"
    return ModelIndex(name, str(version), _STATES[state.manager_state], reason)


class ModelRepository:
    """The extension over ``core`` (see the module docstring).

    ``repository_path``: the repository ("": none; then only models in the config can be
    loaded again or unloaded). ``polled_config_file``: the ``--model_config_file`` being polled
    ("": none), with its period, for the refusal's message.
    """

    def __init__(self, core: ServerCore, repository_path: str = "",
                 polled_config_file: str = "", poll_wait_seconds: int = 0) -> None:
        self._core = core
        self._path = repository_path.rstrip("/") if repository_path != "/" else "/"
        self._polled_file = polled_config_file
        self._poll_wait_seconds = poll_wait_seconds

    @property
    def repository_path(self) -> str:
        return self._path

    # --- index -------------------------------------------------------------------------------

    def index(self, ready_only: bool = False) -> list[ModelIndex]:
        """The index, by name then version (see the module docstring). A repository that
        cannot be listed is its storage error (UNAVAILABLE for a network failure, ...)."""
        configured = {m.name for m in self._core.config.model_config_list.config}
        names = configured | set(self._repository_models())
        monitor = self._core.servable_state_monitor
        entries: list[ModelIndex] = []
        for name in sorted(names):
            versions = monitor.get_version_states(name)
            if not versions:
                if not ready_only:
                    entries.append(ModelIndex(name))
                continue
            for version in sorted(versions):
                entry = _entry(name, version, versions[version].state)
                if not ready_only or entry.state == READY:
                    entries.append(entry)
        return entries

    def _repository_models(self) -> list[str]:
        if not self._path:
            return []
        fs, path = file_system.resolve("", self._path)
        try:
            return fs.get_child_directories(path)
        except StorageError as e:
            raise e.to_serving_error(
                f"Could not list the model repository {self._path}: ") from None

    # --- load and unload ---------------------------------------------------------------------

    def load(self, name: str, parameters: Mapping[str, Any] | None = None,
             timeout: float | None = None) -> None:
        """Loads ``name`` from the repository (see the module docstring); ``timeout`` is the
        caller's deadline, in seconds from now."""
        self._check_editable(name, parameters, unload=False)

        def edits(config: Any) -> Iterator[Any]:
            models = config.model_config_list.config
            existing = next((m for m in models if m.name == name), None)
            if existing is not None:
                if self._has_available_version(name):
                    return
                yield _without(config, name)
                config = _without(config, name)
                config.model_config_list.config.append(existing)
                yield config
                return
            if not self._path:
                raise ServingError(
                    Code.FAILED_PRECONDITION,
                    f"Cannot load model {name}: the server has no model repository to load it "
                    f"from (set --model_repository_path)")
            added = mc.ModelServerConfig()
            added.CopyFrom(config)
            entry = added.model_config_list.config.add()
            entry.name = name
            entry.base_path = file_system.FileSystem.join(self._path, name)
            entry.model_platform = "tensorflow"
            yield added

        self._core.edit_config(edits, timeout)

    def unload(self, name: str, parameters: Mapping[str, Any] | None = None,
               timeout: float | None = None) -> None:
        """Unloads ``name`` (see the module docstring)."""
        self._check_editable(name, parameters, unload=True)

        def edits(config: Any) -> Iterator[Any]:
            if any(m.name == name for m in config.model_config_list.config):
                yield _without(config, name)
            elif name not in self._repository_models():
                raise ServingError(Code.NOT_FOUND,
                                   f"Cannot unload model {name}: it is neither served nor in "
                                   f"the model repository")

        self._core.edit_config(edits, timeout)

    def _has_available_version(self, name: str) -> bool:
        versions = self._core.servable_state_monitor.get_version_states(name)
        return any(s.state.manager_state is ManagerState.AVAILABLE for s in versions.values())

    def _check_editable(self, name: str, parameters: Mapping[str, Any] | None,
                        unload: bool) -> None:
        verb = "unload" if unload else "load"
        if self._polled_file:
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"Cannot {verb} model {name}: the model config file {self._polled_file} is "
                f"polled every {self._poll_wait_seconds} s and decides which models are "
                f"served; change the file instead")
        check_model_name(name)
        for key in parameters or {}:
            if not (unload and key == UNLOAD_DEPENDENTS):
                accepted = f"'{UNLOAD_DEPENDENTS}'" if unload else "none"
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f"Unsupported parameter '{key}' to {verb} model {name} (accepted: "
                    f"{accepted}); a model is {verb}ed as its directory in the repository is")


def check_model_name(name: str) -> None:
    """INVALID_ARGUMENT unless ``name`` is one path segment (a directory of the repository)."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or "://" in name):
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Invalid model name '{name}': a model of the repository is named by "
                           f"its directory, one path segment")


def check_repository_name(repository_name: str) -> None:
    """INVALID_ARGUMENT unless ``repository_name`` is empty: the server has one repository."""
    if repository_name:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Unknown model repository '{repository_name}': this server has one "
                           f"repository, named by an empty repository name")


def _without(config: Any, name: str) -> Any:
    """A copy of ``config`` without model ``name`` (still a ModelConfigList when empty)."""
    copy = mc.ModelServerConfig()
    copy.model_config_list.SetInParent()
    copy.model_config_list.config.extend(
        m for m in config.model_config_list.config if m.name != name)
    return copy
