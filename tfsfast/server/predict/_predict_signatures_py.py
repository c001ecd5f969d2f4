"""Step 2 of predict: the servable's signature, resolved for predict, and the request checked
against it.

One source, built twice: imported as it is, this is the pure-Python ``_predict_signatures_py``;
compiled by Cython with the C declarations of ``_predict_signatures.pxd`` it is the extension
module ``_predict_signatures``, whose ``SignatureCache.of`` and ``BundleSignatures.get`` the
compiled fast paths call in C on every request. Import ``predict_signatures``, which picks one.

* ``BundleSignatures(bundle, servable_id, enforce_method_name)``: what predict needs of one
  servable. Called with a signature name (resolved: ``serving_default`` for an empty one), it
  is the REST codecs' ``input_dtypes``: ``{input alias: DataType}``, the same dict each time, or
  INVALID_ARGUMENT ``Serving signature name: "s" not found in signature def`` / ``Failed to get
  input map for signature: s`` (``DEFAULT`` for ``serving_default``), TF Serving's REST texts.
  ``get(signature_name)`` (the name as sent) is the ``PredictSignature``, or what
  ``predict_util.get_predict_signature`` raises (FAILED_PRECONDITION ``Serving signature key
  "s" not found.``; INTERNAL for a method name under ``--enable_signature_method_name_check``).
  Both are cached per name; errors are not. ``run``, ``run_inline`` and ``batching`` are the
  bundle's (None for a servable that has none; ``batching``, the batching session, only on a
  servable with ``run_inline``).
* ``PredictSignature``: the signature with what each request would otherwise rebuild (output
  dtypes, output order, its batcher); ``decode_inputs`` is gRPC's input checks and tensor
  decoding, ``output_aliases`` its ``output_filter``; ``cost`` is the caller's ``RunCost`` for
  it.
* ``SignatureCache(enforce_method_name)``: ``BundleSignatures`` by servable for the fast paths,
  bounded (``MAX_BUNDLES``; past it the cache starts over). Keyed by ``id``: the cache holds
  the servable, so its id is not reused while cached (and a servable need not be hashable).

Thread-safety: not locked; concurrent misses build equal entries, and a lookup that loses a race
only builds one again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tfsfast.runtime import validation
from tfsfast.runtime.signature import DEFAULT_SERVING_SIGNATURE_DEF_KEY, Signature
from tfsfast.servables import predict_util
from tfsfast.util.status import Code, ServingError

try:
    import cython
except ModuleNotFoundError:  # Cython builds the compiled module; this one runs without it
    IMPLEMENTATION = "python"
else:
    IMPLEMENTATION = "compiled" if cython.compiled else "python"

# Bounds a SignatureCache; a server with more versions than this re-caches in turn.
MAX_BUNDLES = 64


class PredictSignature:
    """One signature as resolved for predict: what the checks, the run and the encoding use."""

    __slots__ = ("batcher", "cost", "defaults", "inputs", "key", "order", "output_dtypes",
                 "signature")

    def __init__(self, signature: Signature, batching: Any) -> None:
        self.signature = signature
        self.key = signature.key
        self.inputs = signature.inputs
        self.defaults = bool(signature.defaults)
        self.output_dtypes = {alias: t.dtype for alias, t in signature.outputs.items()}
        self.order = list(signature.outputs)
        # The batching session's batcher of this signature (None when it is not batched).
        self.batcher = None if batching is None else batching.batcher(signature.key)
        self.cost: Any = None

    def decode_inputs(self, inputs: dict[str, Any],
                      decode_tensor: Callable[[Any, str, list[int]], Any]) -> dict[str, Any]:
        """gRPC's ``{alias: TensorProto}`` as arrays, after TF Serving's checks: the number of
        inputs (unless the signature has defaults), then each alias; ``decode_tensor(data,
        alias, budget)`` is the service's ``TensorProtoCodec.decode_tensor``."""
        # TF Serving compares counts only; a wrong name is reported by the alias check below.
        if len(inputs) != len(self.inputs) and not self.defaults:
            raise validation.input_size_mismatch(self.signature, inputs)
        for alias in inputs:
            if alias not in self.inputs:
                raise validation.input_alias_not_found(self.signature, alias)
        budget = [0]
        return {alias: decode_tensor(data, alias, budget) for alias, data in inputs.items()}

    def output_aliases(self, output_filter: Sequence[str]) -> list[str] | None:
        """gRPC's ``output_filter`` checked as ``predict_util.resolve_output_filter``: the
        aliases to run and answer in that order, or None for all (in ``order``)."""
        if not output_filter:
            return None
        return predict_util.resolve_output_filter(self.signature, output_filter)


class BundleSignatures:
    """What predict keeps about one servable (see the module docstring)."""

    __slots__ = ("_enforce", "_input_dtypes", "_signatures", "batching", "bundle", "run",
                 "run_inline", "servable_id")

    def __init__(self, bundle: Any, servable_id: Any, enforce_method_name: bool) -> None:
        self.bundle = bundle
        self.servable_id = servable_id
        self.run = getattr(bundle, "run", None)
        self.run_inline = getattr(bundle, "run_inline", None)
        # A servable without run_inline is not a SavedModelBundle; a bundle's batching session
        # takes every batchable run (run_inline then declines).
        self.batching = (getattr(bundle, "batching_session", None)
                         if self.run_inline is not None else None)
        self._enforce = enforce_method_name
        self._input_dtypes: dict[str, dict[str, Any]] = {}
        self._signatures: dict[str, PredictSignature] = {}

    def __call__(self, signature_name: str) -> dict[str, Any]:
        dtypes = self._input_dtypes.get(signature_name)
        if dtypes is None:
            signature = self.bundle.signatures.get(signature_name)
            if signature is None:
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f'Serving signature name: "{signature_name}" not found in signature def')
            if not signature.inputs:
                which = ("DEFAULT" if signature_name == DEFAULT_SERVING_SIGNATURE_DEF_KEY
                         else signature_name)
                raise ServingError(Code.INVALID_ARGUMENT,
                                   f"Failed to get input map for signature: {which}")
            dtypes = {alias: t.dtype for alias, t in signature.inputs.items()}
            self._input_dtypes[signature_name] = dtypes
        return dtypes

    def get(self, signature_name: str) -> PredictSignature:
        found = self._signatures.get(signature_name)
        if found is None:
            found = PredictSignature(
                predict_util.get_predict_signature(self.bundle, signature_name, self._enforce),
                self.batching)
            self._signatures[signature_name] = found
        return found


class SignatureCache:
    """``BundleSignatures`` by servable (see the module docstring)."""

    __slots__ = ("_bundles", "_enforce")

    def __init__(self, enforce_method_name: bool) -> None:
        self._enforce = enforce_method_name
        self._bundles: dict[int, BundleSignatures] = {}

    def of(self, bundle: Any, servable_id: Any) -> BundleSignatures:
        """The entry of ``bundle`` (``servable_id``: its ServableId, kept with it)."""
        bundles = self._bundles
        found = bundles.get(id(bundle))
        if found is None or found.bundle is not bundle:
            if len(bundles) >= MAX_BUNDLES:
                bundles.clear()
            found = BundleSignatures(bundle, servable_id, self._enforce)
            bundles[id(bundle)] = found
        return found
