"""``SavedModelBundleFactory``: creates SavedModelBundles from version directories.

Holds what every bundle of a platform is loaded with (TF Serving's ``SessionBundleConfig``):
MetaGraph tags, the session ConfigProto, the resource estimate rule, and batching: with
``batching_parameters`` set the factory owns the server's one ``SharedBatchScheduler`` and wraps
each bundle's session in a ``BatchingSession`` (one queue per signature, removed when the bundle
closes).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from tfsfast import runtime
from tfsfast.core.resources import RAM, ResourceAllocation
from tfsfast.core.servable_id import ServableId
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.servables.saved_model_warmup import run_saved_model_warmup
from tfsfast.sources import version_completeness
from tfsfast.util.run_cost import DEFAULT_RUN_COST_POLICY, RunCostPolicy
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)

SAVED_MODEL_FILENAMES = ("saved_model.pb", "saved_model.pbtxt")

# TF Serving estimates a SavedModel's RAM as its size on disk times this factor.
RESOURCE_ESTIMATE_RAM_MULTIPLIER = 1.2


@dataclass
class SessionBundleConfig:
    """How bundles are loaded. ``session_config`` is a serialized ``tensorflow.ConfigProto``.

    ``batching_parameters``: a ``tensorflow.serving.BatchingParameters`` message
    (:mod:`tfsfast.batching.batching_parameters`) when batching is on, else None. With
    ``enable_per_model_batching_params`` each version's queues come from its own
    ``batching_params.pbtxt`` (no file: that version is not batched) and the global parameters
    only size and name the batch threads. ``executor`` runs each bundle's unbatched
    ``run_async`` calls (None: the process-wide default executor). ``run_cost_policy`` decides,
    by their measured cost, which runs (and, batched, which batches) an event loop runs itself;
    the server hands the same policy to gRPC's Predict.
    """

    saved_model_tags: Sequence[str] = ("serve",)
    session_config: bytes | None = None
    remove_unused_fields_from_bundle_metagraph: bool = True
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    batching_parameters: Any = None
    enable_per_model_batching_params: bool = False
    # --prefer_tflite_model: serve <version>/model.tflite when there is one.
    prefer_tflite_model: bool = False
    num_tflite_pools: int | None = None
    num_tflite_interpreters_per_pool: int = 1
    executor: Executor | None = field(default=None, compare=False, repr=False)
    run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY


def _disk_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def _check_variables_before_load(servable_id: ServableId, path: str) -> None:
    """Fails (NOT_FOUND) a version whose variables bundle is there but not whole: an index that
    does not parse, a data shard it names that is missing or shorter than the index says."""
    index_path = os.path.join(path, version_completeness.VARIABLES_INDEX)
    if not os.path.isfile(index_path):
        return  # whether the graph needs one is known after the load
    from tfsfast.sources.tensor_bundle_index import BundleIndexError, parse_bundle_index

    try:
        listing = version_completeness.local_listing(os.path.dirname(index_path))
        with open(index_path, "rb") as f:
            index = parse_bundle_index(f.read())
        reason = version_completeness.missing_data_shards(
            index, {f"variables/{name}": info for name, info in listing.items()})
    except (OSError, BundleIndexError) as e:
        reason = f"{version_completeness.VARIABLES_INDEX} cannot be read whole: {e}"
    if reason is not None:
        raise ServingError(Code.NOT_FOUND,
                           f"Version {servable_id.version} of servable {servable_id.name} at "
                           f"{path} is not loaded: its variables are not complete: {reason}")


def _check_variables_restored(servable_id: ServableId, path: str, meta_graph_def: Any) -> None:
    """Fails (NOT_FOUND) a loaded graph that declares variables when there was no variables
    index to restore them from.

    TensorFlow's loader logs "The specified SavedModel has no variables; no checkpoints were
    restored" and succeeds; every run would then fail "Attempting to use uninitialized value".
    This is what a version copied ``saved_model.pb`` first looks like while ``variables/`` is
    still on its way.
    """
    index_path = os.path.join(path, version_completeness.VARIABLES_INDEX)
    if os.path.isfile(index_path):
        return
    if version_completeness.meta_graph_declares_variables(meta_graph_def):
        raise _variables_missing(servable_id, path)


def _variables_missing(servable_id: ServableId, path: str) -> ServingError:
    return ServingError(
        Code.NOT_FOUND,
        f"Version {servable_id.version} of servable {servable_id.name} at {path} is not "
        f"loaded: its graph declares variables but {version_completeness.VARIABLES_INDEX} "
        f"is missing, so none of them could be restored (is the version still being copied?)")


def _check_variables_after_failed_load(servable_id: ServableId, path: str,
                                       tags: list[str]) -> None:
    """The same NOT_FOUND when the load itself failed over the missing variables: TensorFlow's
    Python loader (the runtime's twin) refuses such a graph at once, where the C API loads it.
    The MetaGraph is read from ``saved_model.pb`` here, as the load did not get that far."""
    if os.path.isfile(os.path.join(path, version_completeness.VARIABLES_INDEX)):
        return
    pb = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(pb):
        return
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph_def in saved_model.meta_graphs:
        if set(meta_graph_def.meta_info_def.tags) == set(tags) and \
                version_completeness.meta_graph_declares_variables(meta_graph_def):
            raise _variables_missing(servable_id, path)


class SavedModelBundleFactory:
    """Loads SavedModels with one ``SessionBundleConfig``. Thread-safe.

    With batching on it owns the batch threads (``batch_scheduler``), started on the first
    batched bundle and stopped by :meth:`close`. Invalid global batching parameters raise
    INVALID_ARGUMENT here.
    """

    def __init__(self, config: SessionBundleConfig | None = None) -> None:
        self.config = config or SessionBundleConfig()
        self._scheduler: Any = None
        self._scheduler_lock = threading.Lock()
        self._closed = False
        params = self.config.batching_parameters
        if params is not None:
            from tfsfast.batching import batching_parameters

            batching_parameters.validate(
                params, threads_only=self.config.enable_per_model_batching_params)

    @property
    def batch_scheduler(self) -> Any:
        """The ``SharedBatchScheduler`` (None until a bundle is batched)."""
        return self._scheduler

    def _shared_batch_scheduler(self) -> Any:
        from tfsfast.batching.batching_parameters import scheduler_options
        from tfsfast.batching.shared_batch_scheduler import SharedBatchScheduler

        with self._scheduler_lock:
            if self._closed:
                raise ServingError(Code.UNAVAILABLE, "The bundle factory has been closed")
            if self._scheduler is None:
                self._scheduler = SharedBatchScheduler(
                    scheduler_options(self.config.batching_parameters))
            return self._scheduler

    def _batching_parameters_for(self, path: str) -> Any:
        """The parameters to batch the version at ``path`` with, or None not to batch it."""
        params = self.config.batching_parameters
        if params is None or not self.config.enable_per_model_batching_params:
            return params
        from tfsfast.batching import batching_parameters

        per_model = os.path.join(path, batching_parameters.BATCHING_PARAMS_FILENAME)
        if not os.path.exists(per_model):
            return None
        return batching_parameters.read_batching_parameters(per_model)

    def close(self) -> None:
        """Stops the batch threads (queues still open fail their waiting requests)."""
        with self._scheduler_lock:
            self._closed = True
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.stop()

    def estimate_resources(self, path: str) -> ResourceAllocation:
        return {RAM: int(_disk_size(path) * RESOURCE_ESTIMATE_RAM_MULTIPLIER)}

    def create_saved_model_bundle(self, servable_id: ServableId, path: str) -> SavedModelBundle:
        """Loads the version at ``path``; raises ``ServingError`` with TF's code on failure."""
        from tfsfast.runtime import tflite

        use_tflite = self.config.prefer_tflite_model and tflite.tflite_model_found(path)
        if not use_tflite and not any(os.path.exists(os.path.join(path, f))
                                      for f in SAVED_MODEL_FILENAMES):
            raise ServingError(
                Code.NOT_FOUND,
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                f"{path}. Check that the directory exists and that you have the right "
                f"permissions for accessing it.")
        session: tflite.TfLiteSession | runtime.SavedModelSession
        if use_tflite:
            session = tflite.load_tflite_model(path, self.config.num_tflite_pools,
                                               self.config.num_tflite_interpreters_per_pool)
        else:
            _check_variables_before_load(servable_id, path)
            tags = list(self.config.saved_model_tags)
            try:
                session = runtime.load_saved_model(path, tags, self.config.session_config)
            except ServingError:
                _check_variables_after_failed_load(servable_id, path, tags)
                raise
            try:
                _check_variables_restored(servable_id, path, session.meta_graph_def)
            except BaseException:
                session.close()
                raise
        meta = session.meta_graph_def
        if self.config.remove_unused_fields_from_bundle_metagraph:
            # Only the signatures are needed after load; the graph can be large.
            kept = type(meta)()
            kept.signature_def.MergeFrom(meta.signature_def)
            kept.meta_info_def.MergeFrom(meta.meta_info_def)
            meta = kept
        bundle = SavedModelBundle(servable_id, path, session, meta,
                                  run_cost_policy=self.config.run_cost_policy)
        bundle.executor = self.config.executor
        try:
            params = self._batching_parameters_for(path)
            if params is not None:
                from tfsfast.batching.batching_session import BatchingSession

                _log.info("Wrapping session to perform batch processing")
                bundle.batching_session = BatchingSession.create(
                    session, self._shared_batch_scheduler(), params, self.config.run_cost_policy)
        except BaseException:
            bundle.close()
            raise
        if self.config.enable_model_warmup:
            try:
                run_saved_model_warmup(bundle, self.config.num_request_iterations_for_warmup)
            except BaseException:
                bundle.close()
                raise
        return bundle
