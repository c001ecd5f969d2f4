from libc.stdint cimport int64_t

from tfsfast._cdefs.tf_c_api cimport TF_Graph, TF_Output, TF_Session, TF_Status, TF_Tensor


# Inputs staged (copied into a reusable TensorFlow-owned tensor) have at most this many
# dimensions; see _session.pyx, "Buffers".
cdef enum:
    _STAGE_MAX_DIMS = 8


cdef struct _Staged:
    # One input's staging tensor: TF-allocated, reused by the runs that feed this input an array
    # of exactly this shape while TensorFlow keeps no reference to it. NULL until first needed.
    TF_Tensor* tensor
    void* data
    bint in_use          # a run has it (taken and given back under the GIL)
    int ndim
    int64_t dims[_STAGE_MAX_DIMS]


cdef class TensorBuffer:
    """Owns one TF_Tensor (the ``base`` of an output array built on its memory)."""
    cdef TF_Tensor* tensor

    @staticmethod
    cdef TensorBuffer adopt(TF_Tensor* tensor)


cdef class _SignatureRunner:
    """A signature resolved to graph tensors once, at load."""
    cdef readonly object signature
    cdef int n_inputs
    cdef int n_outputs
    cdef TF_Output* feeds
    cdef TF_Output* fetches
    cdef tuple input_aliases
    cdef tuple output_aliases
    cdef tuple feed_dtypes
    cdef tuple feed_numpy_dtypes
    cdef int* feed_types
    cdef size_t* feed_item_sizes
    cdef bint* feed_strings
    cdef _Staged* staged
    cdef dict output_position
    cdef object unresolved

    cdef int lend_inputs(self, object inputs, TF_Tensor** values) except -1
    cdef TF_Tensor* feed(self, int i, object array) except NULL
    cdef TF_Tensor* _stage_or_lend(self, int i, object array) except NULL
    cdef void free_inputs(self, TF_Tensor** values) noexcept
    cdef int select_fetches(self, object output_aliases, int n, TF_Output* fetches,
                            int* positions) except -1
    cdef int check_fetched(self, object aliases) except -1


cdef class SavedModelSession:
    cdef TF_Session* _session
    cdef TF_Graph* _graph
    cdef readonly dict signatures
    cdef readonly object meta_graph_def
    cdef readonly str export_dir
    cdef dict _runners
    cdef dict _derived_runners
    cdef object _last_key
    cdef _SignatureRunner _last_runner
    cdef TF_Status* _spare_status
    cdef int _active
    cdef bint _closed
    cdef object __weakref__

    cdef object _run_active(self, _SignatureRunner runner, object inputs,
                            object output_aliases, object timeout_in_ms)
    cdef object _run(self, _SignatureRunner runner, object inputs, object output_aliases,
                     long long timeout_in_ms)
    cdef void _release(self) noexcept
