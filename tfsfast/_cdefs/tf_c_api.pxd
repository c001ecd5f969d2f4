# The TensorFlow C API, as tfsfast's compiled runtime uses it: every TensorFlow C symbol the
# runtime calls is declared here and nowhere else. The headers and ``libtensorflow_cc.so.2`` come
# from the installed ``tensorflow`` wheel (``tf.sysconfig.get_include()`` / ``get_lib()``);
# setup.py points the runtime modules' build at them.
#
# Every function is declared ``nogil``: none of them touches Python, and the runtime calls the
# blocking ones (session load, run, close) with the GIL released.

from libc.stdint cimport int64_t


cdef extern from "tensorflow/c/tf_datatype.h" nogil:
    # Values are TF's ``types.proto`` DataType numbers (see tfsfast.runtime.dtypes.DataType).
    ctypedef enum TF_DataType:
        TF_STRING

    size_t TF_DataTypeSize(TF_DataType dt)


cdef extern from "tensorflow/c/tf_status.h" nogil:
    ctypedef struct TF_Status:
        pass

    # Canonical codes, identical to tfsfast.util.status.Code.
    ctypedef enum TF_Code:
        TF_OK

    TF_Status* TF_NewStatus()
    void TF_DeleteStatus(TF_Status* s)
    TF_Code TF_GetCode(const TF_Status* s)
    const char* TF_Message(const TF_Status* s)


cdef extern from "tensorflow/c/tf_buffer.h" nogil:
    ctypedef struct TF_Buffer:
        const void* data
        size_t length
        void (*data_deallocator)(void* data, size_t length)

    TF_Buffer* TF_NewBuffer()
    void TF_DeleteBuffer(TF_Buffer* buffer)


cdef extern from "tensorflow/c/tf_tensor.h" nogil:
    ctypedef struct TF_Tensor:
        pass

    ctypedef void (*TF_Deallocator)(void* data, size_t length, void* arg) noexcept

    TF_Tensor* TF_NewTensor(TF_DataType dtype, const int64_t* dims, int num_dims, void* data,
                            size_t length, TF_Deallocator deallocator, void* deallocator_arg)
    TF_Tensor* TF_AllocateTensor(TF_DataType dtype, const int64_t* dims, int num_dims,
                                 size_t length)
    TF_Tensor* TF_TensorMaybeMove(TF_Tensor* tensor)
    void TF_DeleteTensor(TF_Tensor* tensor)
    TF_DataType TF_TensorType(const TF_Tensor* tensor)
    int TF_NumDims(const TF_Tensor* tensor)
    int64_t TF_Dim(const TF_Tensor* tensor, int dim_index)
    size_t TF_TensorByteSize(const TF_Tensor* tensor)
    void* TF_TensorData(const TF_Tensor* tensor)
    int64_t TF_TensorElementCount(const TF_Tensor* tensor)
    size_t TF_TensorDefaultAlignment()


cdef extern from "tensorflow/c/tf_tstring.h" nogil:
    # 24 bytes, laid out by ctstring_internal.h; only ever handled through these functions.
    ctypedef struct TF_TString:
        pass

    void TF_StringInit(TF_TString* t)
    void TF_StringCopy(TF_TString* dst, const char* src, size_t size)
    const char* TF_StringGetDataPointer(const TF_TString* tstr)
    size_t TF_StringGetSize(const TF_TString* tstr)
    void TF_StringDealloc(TF_TString* tstr)


cdef extern from "tensorflow/c/c_api.h" nogil:
    ctypedef struct TF_Graph:
        pass

    ctypedef struct TF_Operation:
        pass

    ctypedef struct TF_Session:
        pass

    ctypedef struct TF_SessionOptions:
        pass

    ctypedef struct TF_Output:
        TF_Operation* oper
        int index

    TF_SessionOptions* TF_NewSessionOptions()
    void TF_SetConfig(TF_SessionOptions* options, const void* proto, size_t proto_len,
                      TF_Status* status)
    void TF_DeleteSessionOptions(TF_SessionOptions* options)

    TF_Graph* TF_NewGraph()
    void TF_DeleteGraph(TF_Graph* graph)
    TF_Operation* TF_GraphOperationByName(TF_Graph* graph, const char* oper_name)
    int TF_OperationNumOutputs(TF_Operation* oper)
    TF_DataType TF_OperationOutputType(TF_Output oper_out)

    TF_Session* TF_LoadSessionFromSavedModel(
        const TF_SessionOptions* session_options, const TF_Buffer* run_options,
        const char* export_dir, const char* const* tags, int tags_len, TF_Graph* graph,
        TF_Buffer* meta_graph_def, TF_Status* status)
    void TF_CloseSession(TF_Session* session, TF_Status* status)
    void TF_DeleteSession(TF_Session* session, TF_Status* status)
    void TF_SessionRun(
        TF_Session* session, const TF_Buffer* run_options,
        const TF_Output* inputs, TF_Tensor* const* input_values, int ninputs,
        const TF_Output* outputs, TF_Tensor** output_values, int noutputs,
        const TF_Operation* const* target_opers, int ntargets,
        TF_Buffer* run_metadata, TF_Status* status)
