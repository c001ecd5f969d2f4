"""Pure-Python runtime: SavedModels run through ``tf.compat.v1.Session``.

The reference twin of the compiled runtime (same interface, same errors); selected with
``TFSFAST_NO_EXTENSIONS=1`` or when the compiled module is unavailable. It costs ~90 µs of Python
per run on top of the model, which is what the compiled runtime removes. A separate algorithm
from the compiled ``_session``, not the same source compiled: that one drives the TensorFlow C
API itself, this one TF's Python session.

To behave as the C API does (and so as TF Serving does), runs go through the session's
low-level ``TF_SessionRun`` wrapper rather than ``Session.run``/``make_callable``: those add
Python-side feed checks (shape, dtype casts) that TF Serving's C++ session does not make. The
requests are checked by :mod:`tfsfast.runtime.validation`, as in the compiled runtime.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfsfast.runtime import validation
from tfsfast.runtime.session_options import session_config_for_export
from tfsfast.runtime.signature import Signature, parse_tensor_name, signatures_from_meta_graph
from tfsfast.util.status import Code, ServingError

IMPLEMENTATION = "python"


def _tf() -> Any:
    import tensorflow as tf  # imported lazily: the server should not pay for TF until a load

    return tf


def status_from_tf_error(e: Exception) -> ServingError:
    """Keeps a TF error's canonical code and message.

    TF's Python wrapper decodes a failed run's message as strict UTF-8. When an op echoes
    request bytes that are not (``ParseExample`` quoting a malformed tf.Example), the decoding
    fails instead and the code is lost; what is left is the message up to its first NUL (the
    error's ``object``). Only an op's check of its input echoes the input, so the error is
    INVALID_ARGUMENT, as the compiled runtime, which reads the status itself, reports it.
    """
    tf = _tf()
    if isinstance(e, tf.errors.OpError):
        return ServingError(Code(e.error_code), e.message)
    if isinstance(e, UnicodeDecodeError) and isinstance(e.object, bytes):
        return ServingError(Code.INVALID_ARGUMENT, e.object.decode("utf-8", "replace"))
    return ServingError(Code.INTERNAL, f"{type(e).__name__}: {e}")


def _check_export(export_dir: str, tags: Sequence[str]) -> None:
    """Fails as TensorFlow's C++ loader does for a missing export or unknown tags.

    (The Python loader words these differently; the C++ texts are what TF Serving reports.)
    """
    from tensorflow.python.saved_model import loader_impl

    try:
        saved_model = loader_impl.parse_saved_model(export_dir)
    except OSError:
        raise ServingError(
            Code.NOT_FOUND,
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
            f"{export_dir}. Check that the directory exists and that you have the right "
            f"permissions for accessing it.") from None
    wanted = set(tags)
    if not any(set(m.meta_info_def.tags) == wanted for m in saved_model.meta_graphs):
        raise ServingError(
            Code.NOT_FOUND,
            f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(wanted))} "
            f"}}. To inspect available tag-sets in the SavedModel, please use the SavedModel "
            f"CLI: `saved_model_cli`")


class _SignatureRunner:
    """A signature resolved to graph tensors once, at load (see the compiled twin)."""

    def __init__(self, graph: Any, signature: Signature) -> None:
        self.signature = signature
        self.unresolved: dict[str, ServingError] = {}
        self.feeds: list[Any] = []
        self.feed_dtypes: list[int] = []
        for alias, info in signature.inputs.items():
            output = self._resolve(graph, info.tensor_name)
            if output is None:
                self.unresolved[alias] = validation.tensor_not_in_graph(
                    signature.key, "input", alias, info.tensor_name)
                self.feed_dtypes.append(int(info.dtype))
            else:
                self.feed_dtypes.append(output.dtype.base_dtype.as_datatype_enum)
            self.feeds.append(output)
        self.fetches: dict[str, Any] = {}
        for alias, info in signature.outputs.items():
            output = self._resolve(graph, info.tensor_name)
            if output is None:
                self.unresolved[alias] = validation.tensor_not_in_graph(
                    signature.key, "output", alias, info.tensor_name)
            self.fetches[alias] = output

    @staticmethod
    def _resolve(graph: Any, name: str) -> Any:
        op_name, index = parse_tensor_name(name)
        try:
            op = graph.get_operation_by_name(op_name)
        except (KeyError, ValueError):
            return None
        return op.outputs[index] if index < len(op.outputs) else None


class SavedModelSession:
    """A loaded SavedModel and its signatures.

    Thread-safety: ``run`` may be called from many threads at once (TF sessions are thread-safe;
    a run touches no shared Python state). ``close`` may be called at any time: runs in flight
    finish, later ones fail with CANCELLED, and the session is freed when the last one returns.
    """

    def __init__(self, export_dir: str, tags: Sequence[str], session_config: Any = None) -> None:
        tf = _tf()
        config = tf.compat.v1.ConfigProto.FromString(
            session_config_for_export(session_config, export_dir))
        _check_export(export_dir, tags)
        self.export_dir = export_dir
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        try:
            with self._graph.as_default():
                self.meta_graph_def = tf.compat.v1.saved_model.loader.load(
                    self._session, list(tags), export_dir)
        except Exception as e:
            self._session.close()
            if isinstance(e, tf.errors.OpError):
                raise status_from_tf_error(e) from None
            raise ServingError(Code.INVALID_ARGUMENT if isinstance(e, (RuntimeError, ValueError))
                               else Code.INTERNAL, str(e)) from None
        self.signatures: dict[str, Signature] = signatures_from_meta_graph(self.meta_graph_def)
        self._runners = {key: _SignatureRunner(self._graph, signature)
                         for key, signature in self.signatures.items()}
        self._derived_runners: dict[str, _SignatureRunner] = {}
        from tensorflow.python.client import pywrap_tf_session

        self._tf_session = pywrap_tf_session
        self._lock = threading.Lock()
        self._active = 0
        self._closed = False

    def run(self, signature_key: str, inputs: Mapping[str, np.ndarray],
            output_aliases: Sequence[str] | None = None,
            timeout_in_ms: float = 0) -> dict[str, np.ndarray]:
        """Runs one signature; returns the requested outputs (all of them by default) by alias.

        Same contract as the compiled runtime's ``run``.
        """
        runner = self._runners.get(signature_key)
        if runner is None:
            raise validation.signature_not_found(signature_key)
        return self._run_active(runner, inputs, output_aliases, timeout_in_ms)

    def run_signature(self, signature: Signature, inputs: Mapping[str, np.ndarray],
                      output_aliases: Sequence[str] | None = None,
                      timeout_in_ms: float = 0) -> dict[str, np.ndarray]:
        """Runs a signature that is not one of the export's own but names tensors of its graph
        (MultiInference runs the union of several signatures' outputs this way, once).

        Resolved once per ``signature.key`` and cached; otherwise as :meth:`run`.
        """
        runner = self._derived_runners.get(signature.key)
        if runner is None:
            runner = self._derived_runners[signature.key] = _SignatureRunner(self._graph,
                                                                         signature)
        return self._run_active(runner, inputs, output_aliases, timeout_in_ms)

    def _run_active(self, runner: _SignatureRunner, inputs: Mapping[str, np.ndarray],
                    output_aliases: Sequence[str] | None,
                    timeout_in_ms: float) -> dict[str, np.ndarray]:
        with self._lock:
            if self._closed:
                raise validation.session_closed()
            self._active += 1
        try:
            return self._run(runner, inputs, output_aliases,
                             validation.timeout_ms(timeout_in_ms))
        finally:
            with self._lock:
                self._active -= 1
                release = self._closed and self._active == 0
            if release:
                self._session.close()

    def _run(self, runner: _SignatureRunner, inputs: Mapping[str, np.ndarray],
             output_aliases: Sequence[str] | None, timeout_in_ms: int) -> dict[str, np.ndarray]:
        signature = runner.signature
        for alias in signature.inputs:
            if alias in runner.unresolved:
                raise runner.unresolved[alias]
        arrays = validation.feed_arrays(signature, inputs, runner.feed_dtypes)
        aliases = validation.fetch_aliases(signature, output_aliases)
        for alias in aliases:
            if alias in runner.unresolved:
                raise runner.unresolved[alias]
        tf_session = self._tf_session
        feeds = {output._as_tf_output(): _as_tf_value(array)
                 for output, array in zip(runner.feeds, arrays, strict=True)}
        fetches = [runner.fetches[alias]._as_tf_output() for alias in aliases]
        options = None
        if timeout_in_ms > 0:
            options = tf_session.TF_NewBufferFromString(_tf().compat.v1.RunOptions(
                timeout_in_ms=timeout_in_ms).SerializeToString())
        started = time.monotonic()
        try:
            values = tf_session.TF_SessionRun_wrapper(
                self._session._session, options, feeds, fetches, [], None)
        except Exception as e:  # every TF failure becomes a status
            raise status_from_tf_error(e) from None
        finally:
            if options is not None:
                tf_session.TF_DeleteBuffer(options)
        if timeout_in_ms > 0 and (time.monotonic() - started) * 1000.0 > timeout_in_ms:
            raise ServingError(Code.DEADLINE_EXCEEDED, validation.TIMEOUT_MESSAGE)
        return {alias: _from_tf_value(value) for alias, value in zip(aliases, values,
                                                                     strict=True)}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            release = self._active == 0
        if release:
            self._session.close()


def _as_tf_value(array: np.ndarray) -> np.ndarray:
    """What TF's Python wrapper converts to a tensor without a surprise.

    Strings go in as an object array of bytes (str encoded as UTF-8), like the compiled runtime.
    """
    if array.dtype.kind in ("O", "U"):
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in array.ravel().tolist()]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape)
    return array


def _from_tf_value(value: Any) -> np.ndarray:
    """Outputs as the compiled runtime returns them: arrays; strings as object arrays of bytes."""
    array = np.asarray(value)
    if array.dtype.kind == "S":
        out = np.empty(array.size, dtype=object)
        out[:] = [bytes(v) for v in array.ravel()]
        return out.reshape(array.shape)
    return array


def load_saved_model(export_dir: str, tags: Sequence[str],
                     session_config: Any = None) -> SavedModelSession:
    """Loads the MetaGraph with ``tags`` from ``export_dir`` into a new session.

    Same contract as the compiled runtime's ``load_saved_model``.
    """
    return SavedModelSession(os.fspath(export_dir), tags, session_config)
