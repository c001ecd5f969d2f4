/* Tensor -> JSON text for tfsfast's compiled JSON predict codec (no Python.h; testable alone).
 *
 * tfs_write_nested() writes a C-contiguous buffer as nested JSON lists (", " between items, as
 * the reference codec lays them out), each value in TF Serving's text (tfsfast_json_number.h).
 * String tensors arrive pre-rendered as tokens. The caller sizes the output with the
 * TFS_MAX_*_TEXT bounds below, so writers never check capacity.
 *
 * Reentrant; buffers are borrowed for the duration of the call.
 */
#ifndef TFSFAST_JSON_WRITE_H
#define TFSFAST_JSON_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tfsfast_json_number.h"

/* Header-only: a module that includes this may use only part of it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

enum {
    TFS_W_F32 = 1, TFS_W_F64, TFS_W_I8, TFS_W_I16, TFS_W_I32, TFS_W_I64,
    TFS_W_U8, TFS_W_U16, TFS_W_U32, TFS_W_U64, TFS_W_BOOL, TFS_W_TOKENS,
};

/* Longest text of one value, for sizing. */
#define TFS_MAX_F32_TEXT 16
#define TFS_MAX_F64_TEXT 32
#define TFS_MAX_INT_TEXT 20
#define TFS_MAX_BOOL_TEXT 5

typedef struct {
    int kind;
    const void *data;            /* C-contiguous values, or NULL for TFS_W_TOKENS */
    const char *const *tokens;   /* TFS_W_TOKENS: pre-rendered text of each value */
    const size_t *token_lens;
} tfs_wsrc;

static char *tfs_write_value(char *o, const tfs_wsrc *src, int64_t i) {
    switch (src->kind) {
    case TFS_W_F32: return o + tfs_write_float32(((const float *)src->data)[i], o);
    case TFS_W_F64: return o + tfs_write_float64(((const double *)src->data)[i], o);
    case TFS_W_I8: return o + tfs_write_i64(((const int8_t *)src->data)[i], o);
    case TFS_W_I16: return o + tfs_write_i64(((const int16_t *)src->data)[i], o);
    case TFS_W_I32: return o + tfs_write_i64(((const int32_t *)src->data)[i], o);
    case TFS_W_I64: return o + tfs_write_i64(((const int64_t *)src->data)[i], o);
    case TFS_W_U8: return o + tfs_write_u64(((const uint8_t *)src->data)[i], o);
    case TFS_W_U16: return o + tfs_write_u64(((const uint16_t *)src->data)[i], o);
    case TFS_W_U32: return o + tfs_write_u64(((const uint32_t *)src->data)[i], o);
    case TFS_W_U64: return o + tfs_write_u64(((const uint64_t *)src->data)[i], o);
    case TFS_W_BOOL:
        if (((const uint8_t *)src->data)[i]) {
            memcpy(o, "true", 4);
            return o + 4;
        }
        memcpy(o, "false", 5);
        return o + 5;
    default:
        memcpy(o, src->tokens[i], src->token_lens[i]);
        return o + src->token_lens[i];
    }
}

/* A run of n values from index i, separated by ", " (the innermost list, hot). */
static char *tfs_write_run(char *o, const tfs_wsrc *src, int64_t i, int64_t n) {
    int64_t end = i + n;
    switch (src->kind) {
    case TFS_W_F32: {
        const float *d = (const float *)src->data;
        for (int64_t k = i; k < end; k++) {
            if (k != i) {
                o[0] = ',';
                o[1] = ' ';
                o += 2;
            }
            o += tfs_write_float32(d[k], o);
        }
        return o;
    }
    case TFS_W_I64: {
        const int64_t *d = (const int64_t *)src->data;
        for (int64_t k = i; k < end; k++) {
            if (k != i) {
                o[0] = ',';
                o[1] = ' ';
                o += 2;
            }
            o += tfs_write_i64(d[k], o);
        }
        return o;
    }
    default:
        for (int64_t k = i; k < end; k++) {
            if (k != i) {
                o[0] = ',';
                o[1] = ' ';
                o += 2;
            }
            o = tfs_write_value(o, src, k);
        }
        return o;
    }
}

/* The sub-tensor of `shape` (ndim dims) whose first value is index *i: a bare value for ndim 0,
 * else nested lists. Advances *i past its values. */
static inline char *tfs_write_nested(char *o, const tfs_wsrc *src, int64_t *i,
                                     const int64_t *shape, int ndim) {
    if (ndim == 0) return tfs_write_value(o, src, (*i)++);
    *o++ = '[';
    if (ndim == 1) {
        o = tfs_write_run(o, src, *i, shape[0]);
        *i += shape[0];
    } else {
        for (int64_t k = 0; k < shape[0]; k++) {
            if (k) {
                o[0] = ',';
                o[1] = ' ';
                o += 2;
            }
            o = tfs_write_nested(o, src, i, shape + 1, ndim - 1);
        }
    }
    *o++ = ']';
    return o;
}

/* Whether s[0..n) is valid UTF-8 (strict, as Python's decoder). */
static inline int tfs_utf8_valid(const uint8_t *s, size_t n) {
    const uint8_t *p = s, *end = s + n;
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        uint8_t c = p[0];
        ptrdiff_t left = end - p;
        int len = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            len = left >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (left >= 3 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80 &&
                !(c == 0xE0 && p[1] < 0xA0) && !(c == 0xED && p[1] > 0x9F))
                len = 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (left >= 4 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80 &&
                (p[3] & 0xC0) == 0x80 && !(c == 0xF0 && p[1] < 0x90) &&
                !(c == 0xF4 && p[1] > 0x8F))
                len = 4;
        }
        if (len == 0) return 0;
        p += len;
    }
    return 1;
}

/* A JSON string literal of UTF-8 text s[0..n), escaped as rapidjson's Writer does (control
 * characters as \b \t \n \f \r or \u00XX, '"' and '\\'; everything else as is). dst needs
 * 6 * n + 2 bytes. Returns the length written. */
static inline size_t tfs_write_json_string(const uint8_t *s, size_t n, char *dst) {
    static const char hex[] = "0123456789ABCDEF";
    char *o = dst;
    *o++ = '"';
    for (size_t k = 0; k < n; k++) {
        uint8_t c = s[k];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\t': *o++ = 't'; break;
        case '\n': *o++ = 'n'; break;
        case '\f': *o++ = 'f'; break;
        case '\r': *o++ = 'r'; break;
        default:
            o[0] = 'u';
            o[1] = '0';
            o[2] = '0';
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
    }
    *o++ = '"';
    return (size_t)(o - dst);
}

#pragma GCC diagnostic pop

#endif /* TFSFAST_JSON_WRITE_H */
