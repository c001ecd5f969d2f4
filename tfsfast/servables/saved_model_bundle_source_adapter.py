"""``SavedModelBundleSourceAdapter``: turns version directories into Loaders of bundles."""

from __future__ import annotations

from tfsfast.core.loader import Loader, SimpleLoader
from tfsfast.core.resources import RAM, ResourceAllocation
from tfsfast.core.servable_id import ServableId
from tfsfast.core.source_adapter import SourceAdapter
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.servables.saved_model_bundle_factory import (
    RESOURCE_ESTIMATE_RAM_MULTIPLIER,
    SavedModelBundleFactory,
)
from tfsfast.storage.file_system import is_object_store_path, total_size
from tfsfast.storage.model_cache import ModelCache


class SavedModelBundleSourceAdapter(SourceAdapter[str, Loader]):
    """StoragePath → Loader. The Loader estimates from disk size and loads on ``load()``.

    Converting does no I/O beyond what the estimate needs later, so a Source's poll stays cheap.

    A version on an object store (``gs://``, ``s3://``) is downloaded into ``model_cache`` by
    ``load()`` (so on a load thread, with the manager's retries and backoff when the download
    fails), loaded from that copy, and its copy is deleted by ``unload()`` or when the load
    fails. Its estimate is the size of the files the source listed.
    """

    def __init__(self, factory: SavedModelBundleFactory,
                 model_cache: ModelCache | None = None) -> None:
        super().__init__()
        self.factory = factory
        self.model_cache = model_cache or ModelCache()

    def convert(self, servable_id: ServableId, path: str) -> Loader:
        factory = self.factory
        if is_object_store_path(path):
            return self._object_store_loader(servable_id, path)
        return SimpleLoader[SavedModelBundle](
            creator=lambda: factory.create_saved_model_bundle(servable_id, path),
            resource_estimator=lambda: factory.estimate_resources(path),
            unloader=SavedModelBundle.close)

    def _object_store_loader(self, servable_id: ServableId, uri: str) -> Loader:
        factory, cache = self.factory, self.model_cache
        files = getattr(uri, "files", None)

        def create() -> SavedModelBundle:
            local_dir = cache.fetch(servable_id, uri)
            try:
                return factory.create_saved_model_bundle(servable_id, local_dir)
            except BaseException:
                cache.remove(local_dir)
                raise

        def estimate() -> ResourceAllocation:
            if files is None:
                return {}
            return {RAM: int(total_size(files) * RESOURCE_ESTIMATE_RAM_MULTIPLIER)}

        def unload(bundle: SavedModelBundle) -> None:
            try:
                bundle.close()
            finally:
                cache.remove(bundle.export_dir)

        return SimpleLoader[SavedModelBundle](creator=create, resource_estimator=estimate,
                                              unloader=unload)
