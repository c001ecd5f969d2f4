# The C side of the compiled JSON codec (csrc/tfsfast_json_*.h): the number reader/writer, the
# predict-body scanner and the tensor writer. Plain C, no Python objects; see the headers for the
# contracts. ``_json.pyx`` cimports this, and so does the compiled V2 REST fast path, which reads
# and writes numbers as the codec does. The headers define static functions and tables, so each
# module that cimports this has its own copy and calls ``tfs_number_init()`` at import.

from libc.stdint cimport int64_t, uint8_t, uint64_t


cdef extern from "tfsfast_json_number.h" nogil:
    enum:
        TFS_NUM_INT
        TFS_NUM_UINT
        TFS_NUM_DBL

    ctypedef union tfs_num_value:
        int64_t i
        uint64_t u
        double d

    int tfs_number_init()
    const uint8_t *tfs_read_number(const uint8_t *s, const uint8_t *end, int max_int_digits,
                                   int *kind, tfs_num_value *out)
    int tfs_write_float32(float f, char *out)
    int tfs_write_float64(double v, char *out)
    int tfs_write_i64(int64_t v, char *out)
    int tfs_write_u64(uint64_t v, char *out)


cdef extern from "tfsfast_json_scan.h" nogil:
    enum:
        TFS_MAX_RANK
        TFS_MAX_TENSORS
        TFS_OK
        TFS_FALLBACK
        TFS_NOMEM
        TFS_MODE_NONE
        TFS_MODE_INSTANCES
        TFS_MODE_INPUTS
        TFS_LEAF_STR
        TFS_LEAF_B64

    ctypedef struct tfs_tensor:
        uint8_t *kind
        uint64_t *val
        int64_t n
        int rank
        int broken
        int64_t shape[64]
        int64_t key_off
        int64_t key_len

    ctypedef struct tfs_json:
        int nt
        tfs_tensor t[64]
        int64_t sig_off
        int mode
        int named
        int64_t n_instances

    void tfs_json_init(tfs_json *P, const uint8_t *body, size_t len, int max_depth,
                       int max_int_digits, int64_t max_tensor_elements,
                       int64_t max_request_elements)
    tfs_json *tfs_json_new()
    void tfs_json_trim(tfs_json *P, int64_t max_leaves)
    void tfs_json_free(tfs_json *P)
    int tfs_json_parse(tfs_json *P)
    tfs_tensor *tfs_find_tensor(tfs_json *P, const uint8_t *key, int64_t len, int hint)
    int tfs_convert(const tfs_tensor *t, int dtype, void *out)
    size_t tfs_string_span(const uint8_t *s, int *escaped)
    size_t tfs_unescape(const uint8_t *s, size_t n, uint8_t *dst)
    int64_t tfs_b64_decode(const uint8_t *s, size_t n, uint8_t *dst)


cdef extern from "tfsfast_json_write.h" nogil:
    enum:
        TFS_W_F32
        TFS_W_F64
        TFS_W_I8
        TFS_W_I16
        TFS_W_I32
        TFS_W_I64
        TFS_W_U8
        TFS_W_U16
        TFS_W_U32
        TFS_W_U64
        TFS_W_BOOL
        TFS_W_TOKENS
        TFS_MAX_F32_TEXT
        TFS_MAX_F64_TEXT
        TFS_MAX_INT_TEXT
        TFS_MAX_BOOL_TEXT

    ctypedef struct tfs_wsrc:
        int kind
        const void *data
        const char *const *tokens
        const size_t *token_lens

    char *tfs_write_run(char *o, const tfs_wsrc *src, int64_t i, int64_t n)
    char *tfs_write_nested(char *o, const tfs_wsrc *src, int64_t *i, const int64_t *shape,
                           int ndim)
    int tfs_utf8_valid(const uint8_t *s, size_t n)
    size_t tfs_write_json_string(const uint8_t *s, size_t n, char *dst)
