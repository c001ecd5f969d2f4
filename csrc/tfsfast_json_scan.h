/* The fast path of tfsfast's compiled JSON predict codec: one pass over a REST predict body that
 * either understands it completely or gives up (no Python.h; testable alone).
 *
 * tfs_json_parse() reads a body `{"signature_name": ..., "instances"|"inputs": ...}` and records
 * each tensor-shaped value as a "tensor": the TF dense-shape facts (rank and shape read off the
 * first element at each level, every later list checked against them) and a tape of its leaves
 * in document order (kind + 64-bit payload: an exact integer, a correctly rounded double, or the
 * body offset of a string). The signature's dtypes are not known while parsing (the signature
 * name may come last), so leaves keep what the text said; the caller converts the tape into the
 * typed numpy buffer afterwards.
 *
 * It gives up (TFS_FALLBACK) on anything but plain, well-formed JSON in the common shapes, and
 * the caller then runs the pure-Python reference codec, which produces TF Serving's exact
 * result or error. That includes every syntax error, any byte outside valid UTF-8 strings,
 * control characters, lone surrogate escapes, escaped keys, duplicate keys where they matter,
 * numbers rapidjson may reject, bytes after the top-level value, nesting beyond the depth limit
 * (so a 100k-deep body costs at most max_depth stack frames), element counts beyond the limits
 * (checked before the tape grows), and too many named inputs. A ragged or badly typed tensor is
 * not given up on at once: it is marked `broken`, and only matters if the signature uses it (an
 * extra key of a columnar `inputs` object is ignored, as TF Serving does).
 *
 * Ownership: the parser borrows the body (it must outlive the parser, and the byte just past
 * its end must be readable and NUL, as in CPython bytes objects: number and separator loops stop
 * on it instead of checking bounds); tapes are malloc'd and freed by tfs_json_free().
 * Reentrant: all state lives in the tfs_json the caller owns.
 */
#ifndef TFSFAST_JSON_SCAN_H
#define TFSFAST_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tfsfast_json_number.h"

/* Header-only: a module that includes this may use only part of it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

#define TFS_MAX_RANK 64          /* levels a tensor may have here (numpy's limit) */
#define TFS_MAX_TENSORS 64       /* named inputs per body handled here */
#define TFS_MAX_RECURSION 1000   /* C stack guard, whatever the configured depth limit */

enum { TFS_OK = 0, TFS_FALLBACK = 1, TFS_NOMEM = 2 };

/* Leaf kinds (TFS_NUM_* from tfsfast_json_number.h are 1..3). */
enum {
    TFS_LEAF_TRUE = 4,
    TFS_LEAF_FALSE = 5,
    TFS_LEAF_NULL = 6,
    TFS_LEAF_STR = 7, /* payload: body offset of the opening quote */
    TFS_LEAF_B64 = 8, /* payload: body offset of the b64 value's opening quote */
};

enum { TFS_MODE_NONE = 0, TFS_MODE_INSTANCES = 1, TFS_MODE_INPUTS = 2 };

typedef struct {
    uint8_t *kind;
    uint64_t *val;
    int64_t n, cap;
    int rank;   /* -1 until the first leaf or empty list on the first path */
    int broken; /* not a dense tensor of plain leaves */
    int64_t shape[TFS_MAX_RANK];
    int64_t key_off;  /* body offset of the key's first byte; -1 for an unnamed tensor */
    int64_t key_len;
    int64_t seen_in;  /* row objects: the last instance that had this key */
} tfs_tensor;

typedef struct {
    const uint8_t *base, *p, *end;
    int depth, max_depth;
    int max_int_digits;
    int64_t max_tensor_elements, max_request_elements, leaves;
    int64_t held; /* sum of the tapes' capacities (what tfs_json_trim may have to free) */
    int status;
    tfs_tensor t[TFS_MAX_TENSORS];
    int nt;
    /* results */
    int64_t sig_off; /* offset of the signature_name string's opening quote, or -1 */
    int mode;
    int named;       /* rows of objects, or a columnar object of named inputs */
    int64_t n_instances;
} tfs_json;

#define TFS_GIVE_UP(P) return ((P)->status = TFS_FALLBACK, -1)

/* Prepares a parser for one body. The tensor slots' tapes are kept from earlier bodies (see
 * tfs_json_new); tfs_json_init never frees or allocates. */
static void tfs_json_init(tfs_json *P, const uint8_t *body, size_t len, int max_depth,
                          int max_int_digits, int64_t max_tensor_elements,
                          int64_t max_request_elements) {
    P->base = P->p = body;
    P->end = body + len;
    P->depth = 0;
    P->max_depth = max_depth < TFS_MAX_RECURSION ? max_depth : TFS_MAX_RECURSION;
    P->max_int_digits = max_int_digits < 20 ? max_int_digits : 20;
    P->max_tensor_elements = max_tensor_elements;
    P->max_request_elements = max_request_elements;
    P->leaves = 0;
    P->status = TFS_OK;
    P->nt = 0;
    P->sig_off = -1;
    P->mode = TFS_MODE_NONE;
    P->named = 0;
    P->n_instances = 0;
}

/* A parser with empty tape slots (NULL on allocation failure). Parsers may be reused for many
 * bodies, one at a time; their tapes grow as needed and stay allocated, so a reused parser
 * writes into memory that is already mapped. */
static tfs_json *tfs_json_new(void) {
    tfs_json *P = (tfs_json *)calloc(1, sizeof(tfs_json));
    return P;
}

/* Keeps tapes (in slot order) while their capacities add up to at most max_leaves, and frees
 * the others (all of them for max_leaves 0): what a reused parser retains is bounded. */
static void tfs_json_trim(tfs_json *P, int64_t max_leaves) {
    /* The usual case, without a scan (max_leaves 0 always scans: it also frees a tape whose
     * growth failed half way, which holds memory without capacity). */
    if (max_leaves > 0 && P->held <= max_leaves) return;
    int64_t kept = 0;
    for (int i = 0; i < TFS_MAX_TENSORS; i++) {
        tfs_tensor *t = &P->t[i];
        if (t->kind == NULL && t->val == NULL) continue;
        if (t->cap > 0 && kept + t->cap <= max_leaves) {
            kept += t->cap;
            continue;
        }
        free(t->kind);
        free(t->val);
        t->kind = NULL;
        t->val = NULL;
        P->held -= t->cap;
        t->cap = 0;
    }
}

static void tfs_json_free(tfs_json *P) {
    tfs_json_trim(P, 0);
    free(P);
}

static tfs_tensor *tfs_new_tensor(tfs_json *P, int64_t key_off, int64_t key_len) {
    if (P->nt == TFS_MAX_TENSORS) return NULL;
    tfs_tensor *t = &P->t[P->nt++];
    t->n = 0; /* the tape (kind, val, cap) is kept from an earlier body */
    t->rank = -1;
    t->broken = 0;
    for (int i = 0; i < TFS_MAX_RANK; i++) t->shape[i] = -1;
    t->key_off = key_off;
    t->key_len = key_len;
    t->seen_in = -1;
    return t;
}

static tfs_tensor *tfs_find_tensor(tfs_json *P, const uint8_t *key, int64_t len, int hint) {
    if (hint >= 0 && hint < P->nt) {
        tfs_tensor *t = &P->t[hint];
        if (t->key_len == len && memcmp(P->base + t->key_off, key, (size_t)len) == 0) return t;
    }
    for (int i = 0; i < P->nt; i++) {
        tfs_tensor *t = &P->t[i];
        if (t->key_len == len && memcmp(P->base + t->key_off, key, (size_t)len) == 0) return t;
    }
    return NULL;
}

static void tfs_skip_ws(tfs_json *P) {
    const uint8_t *p = P->p, *end = P->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    P->p = p;
}

/* 1 for bytes that may appear unescaped in a string and need no further check. */
static const uint8_t tfs_plain_ascii[256] = {
#define R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
    R16(0), R16(0),
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20: '"' is 0x22 */
    R16(1), R16(1),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50: '\\' is 0x5C */
    R16(1), R16(1),
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0),
#undef R16
};

static int tfs_hex4(const uint8_t *p, const uint8_t *end) {
    if (end - p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. Exactly what Python's
 * strict UTF-8 decoder accepts: no overlongs, no encoded surrogates, nothing above U+10FFFF. */
static int tfs_utf8_seq(const uint8_t *p, const uint8_t *end) {
    uint8_t c = p[0];
    ptrdiff_t left = end - p;
    if (c >= 0xC2 && c <= 0xDF) {
        return left >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;
        if (c == 0xED && p[1] > 0x9F) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;
        if (c == 0xF4 && p[1] > 0x8F) return 0;
        return 4;
    }
    return 0;
}

/* Validates the string whose opening quote is at P->p and moves past its closing quote.
 * *escaped tells whether it holds any escape. */
static int tfs_scan_string(tfs_json *P, int *escaped) {
    const uint8_t *p = P->p + 1, *end = P->end;
    int esc = 0;
    for (;;) {
        while (p < end && tfs_plain_ascii[*p]) p++;
        if (p >= end) TFS_GIVE_UP(P);
        uint8_t c = *p;
        if (c == '"') {
            P->p = p + 1;
            *escaped = esc;
            return 0;
        }
        if (c == '\\') {
            esc = 1;
            if (end - p < 2) TFS_GIVE_UP(P);
            uint8_t e = p[1];
            if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                e == 'r' || e == 't') {
                p += 2;
                continue;
            }
            if (e != 'u') TFS_GIVE_UP(P);
            int cp = tfs_hex4(p + 2, end);
            if (cp < 0) TFS_GIVE_UP(P);
            p += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u') TFS_GIVE_UP(P);
                int lo = tfs_hex4(p + 2, end);
                if (lo < 0xDC00 || lo > 0xDFFF) TFS_GIVE_UP(P);
                p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                TFS_GIVE_UP(P); /* a lone low surrogate: the reference's business */
            }
            continue;
        }
        if (c < 0x80) TFS_GIVE_UP(P); /* a control character */
        int n = tfs_utf8_seq(p, end);
        if (n == 0) TFS_GIVE_UP(P);
        p += n;
    }
}

/* For a string validated by tfs_scan_string whose opening quote is at s: the raw length of its
 * contents and whether it has escapes. */
static size_t tfs_string_span(const uint8_t *s, int *escaped) {
    const uint8_t *p = s + 1;
    int esc = 0;
    for (;;) {
        uint8_t c = *p;
        if (c == '"') break;
        if (c == '\\') {
            esc = 1;
            p += 2;
        } else {
            p++;
        }
    }
    *escaped = esc;
    return (size_t)(p - s - 1);
}

/* Decodes the contents of a validated string (opening quote at s, raw length n) into dst (at
 * least n bytes; the decoded text is never longer). Returns the decoded length. */
static size_t tfs_unescape(const uint8_t *s, size_t n, uint8_t *dst) {
    const uint8_t *p = s + 1, *end = s + 1 + n;
    uint8_t *o = dst;
    while (p < end) {
        uint8_t c = *p;
        if (c != '\\') {
            *o++ = c;
            p++;
            continue;
        }
        uint8_t e = p[1];
        p += 2;
        switch (e) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp = (uint32_t)tfs_hex4(p, end);
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = (uint32_t)tfs_hex4(p + 2, end);
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) {
                *o++ = (uint8_t)cp;
            } else if (cp < 0x800) {
                *o++ = (uint8_t)(0xC0 | (cp >> 6));
                *o++ = (uint8_t)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (uint8_t)(0xE0 | (cp >> 12));
                *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (uint8_t)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (uint8_t)(0xF0 | (cp >> 18));
                *o++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (uint8_t)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: *o++ = e; break; /* " \ / */
        }
    }
    return (size_t)(o - dst);
}

static int tfs_literal(tfs_json *P, const char *word, size_t n) {
    if ((size_t)(P->end - P->p) < n || memcmp(P->p, word, n) != 0) TFS_GIVE_UP(P);
    P->p += n;
    return 0;
}

static int tfs_skip_value(tfs_json *P);

/* After the '{' of an object (whitespace skipped): validates members up to and past '}'. */
static int tfs_skip_members(tfs_json *P) {
    if (P->p < P->end && *P->p == '}') {
        P->p++;
        return 0;
    }
    for (;;) {
        int esc;
        if (P->p >= P->end || *P->p != '"' || tfs_scan_string(P, &esc)) TFS_GIVE_UP(P);
        tfs_skip_ws(P);
        if (P->p >= P->end || *P->p != ':') TFS_GIVE_UP(P);
        P->p++;
        tfs_skip_ws(P);
        if (tfs_skip_value(P)) return -1;
        tfs_skip_ws(P);
        if (P->p >= P->end) TFS_GIVE_UP(P);
        if (*P->p == ',') {
            P->p++;
            tfs_skip_ws(P);
            continue;
        }
        if (*P->p == '}') {
            P->p++;
            return 0;
        }
        TFS_GIVE_UP(P);
    }
}

/* Validates any JSON value at P->p and moves past it. */
static int tfs_skip_value(tfs_json *P) {
    if (P->p >= P->end) TFS_GIVE_UP(P);
    int esc, kind;
    tfs_num_value v;
    switch (*P->p) {
    case '"':
        return tfs_scan_string(P, &esc);
    case '[':
        if (++P->depth > P->max_depth) TFS_GIVE_UP(P);
        P->p++;
        tfs_skip_ws(P);
        if (P->p < P->end && *P->p == ']') {
            P->p++;
        } else {
            for (;;) {
                if (tfs_skip_value(P)) return -1;
                tfs_skip_ws(P);
                if (P->p >= P->end) TFS_GIVE_UP(P);
                if (*P->p == ',') {
                    P->p++;
                    tfs_skip_ws(P);
                    continue;
                }
                if (*P->p == ']') {
                    P->p++;
                    break;
                }
                TFS_GIVE_UP(P);
            }
        }
        P->depth--;
        return 0;
    case '{':
        if (++P->depth > P->max_depth) TFS_GIVE_UP(P);
        P->p++;
        tfs_skip_ws(P);
        if (tfs_skip_members(P)) return -1;
        P->depth--;
        return 0;
    case 't':
        return tfs_literal(P, "true", 4);
    case 'f':
        return tfs_literal(P, "false", 5);
    case 'n':
        return tfs_literal(P, "null", 4);
    default: {
        const uint8_t *q = tfs_read_number(P->p, P->end, P->max_int_digits, &kind, &v);
        if (q == NULL) TFS_GIVE_UP(P);
        P->p = q;
        return 0;
    }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Tensors: TF's dense-shape rules, streamed. The first list to close at a level is the one on
 * the first-element path, so it fixes that level's size; the first leaf (or empty list) on that
 * path fixes the rank. Anything else that disagrees marks the tensor broken. */

static void tfs_open_list(tfs_tensor *t, int level) {
    if (t->broken) return;
    if (level >= TFS_MAX_RANK || (t->rank >= 0 && level >= t->rank)) t->broken = 1;
}

static void tfs_close_list(tfs_tensor *t, int level, int64_t n) {
    if (t->broken) return;
    if (t->shape[level] < 0) {
        t->shape[level] = n;
        if (n == 0 && t->rank < 0) t->rank = level + 1;
    } else if (t->shape[level] != n) {
        t->broken = 1;
    }
}

static int tfs_leaf(tfs_json *P, tfs_tensor *t, int level, int kind, uint64_t payload) {
    if (t->broken) return 0;
    if (t->rank < 0) {
        t->rank = level; /* level < TFS_MAX_RANK: its list was opened without breaking */
    } else if (level != t->rank) {
        t->broken = 1;
        return 0;
    }
    if (t->n >= P->max_tensor_elements || P->leaves >= P->max_request_elements)
        TFS_GIVE_UP(P); /* over a limit: the reference reports it */
    if (t->n == t->cap) {
        int64_t cap = t->cap ? t->cap * 2 : 64;
        uint8_t *k = (uint8_t *)realloc(t->kind, (size_t)cap);
        if (k == NULL) return (P->status = TFS_NOMEM, -1);
        t->kind = k;
        uint64_t *v = (uint64_t *)realloc(t->val, (size_t)cap * sizeof(uint64_t));
        if (v == NULL) return (P->status = TFS_NOMEM, -1);
        t->val = v;
        P->held += cap - t->cap;
        t->cap = cap;
    }
    t->kind[t->n] = (uint8_t)kind;
    t->val[t->n] = payload;
    t->n++;
    P->leaves++;
    return 0;
}

/* Whether the object at P->p is exactly {"b64": "<string>"} (the reference's _is_b64 for an
 * unescaped key). Looks ahead only; P is unchanged. */
static int tfs_is_b64_object(tfs_json *P) {
    const uint8_t *save = P->p;
    int depth = P->depth, status = P->status, ok = 0, esc;
    P->p++;
    tfs_skip_ws(P);
    if (P->end - P->p >= 5 && memcmp(P->p, "\"b64\"", 5) == 0) {
        P->p += 5;
        tfs_skip_ws(P);
        if (P->p < P->end && *P->p == ':') {
            P->p++;
            tfs_skip_ws(P);
            if (P->p < P->end && *P->p == '"' && tfs_scan_string(P, &esc) == 0) {
                tfs_skip_ws(P);
                ok = P->p < P->end && *P->p == '}';
            }
        }
    }
    P->p = save;
    P->depth = depth;
    P->status = status;
    return ok;
}

static int tfs_tensor_value(tfs_json *P, tfs_tensor *t, int level);

/* A leaf that is an object: a {"b64": "..."} string leaf, or else the tensor is broken. */
static int tfs_object_leaf(tfs_json *P, tfs_tensor *t, int level) {
    if (++P->depth > P->max_depth) TFS_GIVE_UP(P);
    int64_t value_off = -1;
    int esc, ok = 0;
    P->p++;
    tfs_skip_ws(P);
    if (P->p < P->end && *P->p == '"') {
        const uint8_t *ks = P->p;
        if (tfs_scan_string(P, &esc)) return -1;
        int is_b64 = !esc && P->p - ks == 5 && memcmp(ks, "\"b64\"", 5) == 0;
        tfs_skip_ws(P);
        if (P->p >= P->end || *P->p != ':') TFS_GIVE_UP(P);
        P->p++;
        tfs_skip_ws(P);
        if (is_b64 && P->p < P->end && *P->p == '"') {
            value_off = P->p - P->base;
            if (tfs_scan_string(P, &esc)) return -1;
        } else if (tfs_skip_value(P)) {
            return -1;
        }
        tfs_skip_ws(P);
        if (P->p >= P->end) TFS_GIVE_UP(P);
        if (*P->p == '}') {
            P->p++;
            ok = value_off >= 0;
        } else if (*P->p == ',') {
            P->p++;
            tfs_skip_ws(P);
            if (tfs_skip_members(P)) return -1;
        } else {
            TFS_GIVE_UP(P);
        }
    } else if (tfs_skip_members(P)) {
        return -1;
    }
    P->depth--;
    if (ok) return tfs_leaf(P, t, level, TFS_LEAF_B64, (uint64_t)value_off);
    t->broken = 1;
    return 0;
}

/* How many leaves tensor t can take in place right now (capacity and limits). */
static int64_t tfs_room(const tfs_json *P, const tfs_tensor *t) {
    int64_t stop = t->cap;
    if (stop > P->max_tensor_elements) stop = P->max_tensor_elements;
    int64_t request = t->n + (P->max_request_elements - P->leaves);
    return stop < request ? stop : request;
}

/* The numbers at the start of an innermost list, in a tight loop. Returns 1 having consumed the
 * whole list through its ']' (*n elements); 0 having consumed the first *n elements and their
 * commas, with P->p at the next element, which is not a plain number; -1 on an error. */
static int tfs_number_run(tfs_json *P, tfs_tensor *t, int level, int64_t *n) {
    const uint8_t *p = P->p, *end = P->end;
    int64_t count = 0;
    /* the tape and its counters in locals while the run lasts (written back below) */
    int64_t at = t->n, stop = tfs_room(P, t);
    uint8_t *kinds = t->kind;
    uint64_t *vals = t->val;
    int kind, r = -1;
    tfs_num_value v;
    if (p >= end) TFS_GIVE_UP(P);
    for (;;) {
        uint8_t c = *p;
        const uint8_t *q;
        if (!((c >= '0' && c <= '9') || c == '-') ||
            (q = tfs_read_number(p, end, P->max_int_digits, &kind, &v)) == NULL) {
            r = 0;
            break;
        }
        if (at < stop) {
            kinds[at] = (uint8_t)kind;
            vals[at] = v.u;
            at++;
        } else {
            P->leaves += at - t->n;
            t->n = at;
            P->p = q;
            if (tfs_leaf(P, t, level, kind, v.u)) return -1;
            at = t->n;
            stop = tfs_room(P, t);
            kinds = t->kind;
            vals = t->val;
        }
        count++;
        p = q;
        if (*p == ',') {
            p++;
        } else {
            while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
            if (*p == ']') {
                p++;
                r = 1;
                break;
            }
            if (*p != ',') break; /* also the end of the body (its NUL) */
            p++;
        }
        while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
        if (p >= end) break;
    }
    P->leaves += at - t->n;
    t->n = at;
    if (r < 0) TFS_GIVE_UP(P);
    P->p = p;
    *n = count;
    return r;
}

/* A list after its '[' and whitespace: its elements and ']'; *n is the element count. */
static int tfs_list_items(tfs_json *P, tfs_tensor *t, int level, int64_t *n) {
    int64_t count = 0;
    if (P->p < P->end && *P->p == ']') {
        P->p++;
        *n = 0;
        return 0;
    }
    if (!t->broken && t->rank == level + 1) {
        /* the common innermost list of numbers, straight through while it lasts */
        int r = tfs_number_run(P, t, level + 1, &count);
        if (r < 0) return -1;
        if (r == 1) {
            *n = count;
            return 0;
        }
    }
    for (;;) {
        if (tfs_tensor_value(P, t, level + 1)) return -1;
        count++;
        tfs_skip_ws(P);
        if (P->p >= P->end) TFS_GIVE_UP(P);
        if (*P->p == ',') {
            P->p++;
            tfs_skip_ws(P);
            continue;
        }
        if (*P->p == ']') {
            P->p++;
            break;
        }
        TFS_GIVE_UP(P);
    }
    *n = count;
    return 0;
}

/* One value of tensor t at `level` (0 is the tensor itself). */
static int tfs_tensor_value(tfs_json *P, tfs_tensor *t, int level) {
    if (P->p >= P->end) TFS_GIVE_UP(P);
    uint8_t c = *P->p;
    int kind, esc;
    tfs_num_value v;
    switch (c) {
    case '[': {
        if (++P->depth > P->max_depth) TFS_GIVE_UP(P);
        tfs_open_list(t, level);
        P->p++;
        tfs_skip_ws(P);
        int64_t n;
        if (tfs_list_items(P, t, level, &n)) return -1;
        P->depth--;
        tfs_close_list(t, level, n);
        return 0;
    }
    case '{':
        return tfs_object_leaf(P, t, level);
    case '"': {
        uint64_t off = (uint64_t)(P->p - P->base);
        if (tfs_scan_string(P, &esc)) return -1;
        return tfs_leaf(P, t, level, TFS_LEAF_STR, off);
    }
    case 't':
        if (tfs_literal(P, "true", 4)) return -1;
        return tfs_leaf(P, t, level, TFS_LEAF_TRUE, 0);
    case 'f':
        if (tfs_literal(P, "false", 5)) return -1;
        return tfs_leaf(P, t, level, TFS_LEAF_FALSE, 0);
    case 'n':
        if (tfs_literal(P, "null", 4)) return -1;
        return tfs_leaf(P, t, level, TFS_LEAF_NULL, 0);
    default: {
        const uint8_t *q = tfs_read_number(P->p, P->end, P->max_int_digits, &kind, &v);
        if (q == NULL) TFS_GIVE_UP(P);
        P->p = q;
        return tfs_leaf(P, t, level, kind, v.u);
    }
    }
}

/* A key at P->p (an unescaped string): its body offset and length, moving past it and the
 * following ':'. */
static int tfs_key(tfs_json *P, int64_t *off, int64_t *len) {
    int esc;
    if (P->p >= P->end || *P->p != '"') TFS_GIVE_UP(P);
    const uint8_t *ks = P->p;
    if (tfs_scan_string(P, &esc)) return -1;
    if (esc) TFS_GIVE_UP(P); /* the reference decodes escaped keys */
    *off = ks + 1 - P->base;
    *len = P->p - ks - 2;
    tfs_skip_ws(P);
    if (P->p >= P->end || *P->p != ':') TFS_GIVE_UP(P);
    P->p++;
    tfs_skip_ws(P);
    return 0;
}

/* Continues an object after a member: ',' (1, with the next key ahead) or '}' (0). */
static int tfs_next_member(tfs_json *P, int *more) {
    tfs_skip_ws(P);
    if (P->p >= P->end) TFS_GIVE_UP(P);
    if (*P->p == ',') {
        P->p++;
        tfs_skip_ws(P);
        *more = 1;
        return 0;
    }
    if (*P->p == '}') {
        P->p++;
        *more = 0;
        return 0;
    }
    TFS_GIVE_UP(P);
}

/* One element of `instances` in rows-of-objects mode. */
static int tfs_instance_object(tfs_json *P, int64_t i) {
    if (P->p >= P->end || *P->p != '{') TFS_GIVE_UP(P);
    if (++P->depth > P->max_depth) TFS_GIVE_UP(P);
    P->p++;
    tfs_skip_ws(P);
    int members = 0, more = 1;
    if (P->p < P->end && *P->p == '}') {
        P->p++;
        more = 0;
    }
    while (more) {
        int64_t off, len;
        if (tfs_key(P, &off, &len)) return -1;
        tfs_tensor *t = tfs_find_tensor(P, P->base + off, len, members);
        if (i == 0) {
            if (t != NULL) TFS_GIVE_UP(P);
            t = tfs_new_tensor(P, off, len);
            if (t == NULL) TFS_GIVE_UP(P);
            tfs_open_list(t, 0);
        } else if (t == NULL || t->seen_in == i) {
            TFS_GIVE_UP(P);
        }
        t->seen_in = i;
        if (tfs_tensor_value(P, t, 1)) return -1;
        members++;
        if (tfs_next_member(P, &more)) return -1;
    }
    if (members == 0 || members != P->nt) TFS_GIVE_UP(P);
    P->depth--;
    return 0;
}

static int tfs_instances(tfs_json *P) {
    if (P->p >= P->end || *P->p != '[') TFS_GIVE_UP(P);
    if (++P->depth > P->max_depth) TFS_GIVE_UP(P);
    P->p++;
    tfs_skip_ws(P);
    if (P->p >= P->end || *P->p == ']') TFS_GIVE_UP(P); /* empty: the reference's error */
    int64_t n = 0;
    if (*P->p == '{' && !tfs_is_b64_object(P)) {
        P->named = 1;
        for (;;) {
            if (tfs_instance_object(P, n)) return -1;
            n++;
            tfs_skip_ws(P);
            if (P->p >= P->end) TFS_GIVE_UP(P);
            if (*P->p == ',') {
                P->p++;
                tfs_skip_ws(P);
                continue;
            }
            if (*P->p == ']') {
                P->p++;
                break;
            }
            TFS_GIVE_UP(P);
        }
        for (int k = 0; k < P->nt; k++) tfs_close_list(&P->t[k], 0, n);
    } else {
        tfs_tensor *t = tfs_new_tensor(P, -1, 0);
        tfs_open_list(t, 0);
        if (tfs_list_items(P, t, 0, &n)) return -1;
        tfs_close_list(t, 0, n);
    }
    P->depth--;
    P->n_instances = n;
    return 0;
}

static int tfs_inputs(tfs_json *P) {
    if (P->p < P->end && *P->p == '{' && !tfs_is_b64_object(P)) {
        P->named = 1;
        if (++P->depth > P->max_depth) TFS_GIVE_UP(P);
        P->p++;
        tfs_skip_ws(P);
        int more = 1;
        if (P->p < P->end && *P->p == '}') {
            P->p++;
            more = 0;
        }
        while (more) {
            int64_t off, len;
            if (tfs_key(P, &off, &len)) return -1;
            if (tfs_find_tensor(P, P->base + off, len, -1) != NULL) TFS_GIVE_UP(P);
            tfs_tensor *t = tfs_new_tensor(P, off, len);
            if (t == NULL) TFS_GIVE_UP(P);
            if (tfs_tensor_value(P, t, 0)) return -1;
            if (tfs_next_member(P, &more)) return -1;
        }
        P->depth--;
        return 0;
    }
    tfs_tensor *t = tfs_new_tensor(P, -1, 0);
    return tfs_tensor_value(P, t, 0);
}

static int tfs_key_is(tfs_json *P, int64_t off, int64_t len, const char *word) {
    size_t n = strlen(word);
    return (size_t)len == n && memcmp(P->base + off, word, n) == 0;
}

/* Parses a whole predict body. Returns TFS_OK, TFS_FALLBACK or TFS_NOMEM. */
static int tfs_json_parse(tfs_json *P) {
    tfs_skip_ws(P);
    if (P->p >= P->end || *P->p != '{' || P->max_depth < 1) return TFS_FALLBACK;
    P->depth = 1;
    P->p++;
    tfs_skip_ws(P);
    int more = 1, have_sig = 0;
    if (P->p < P->end && *P->p == '}') return TFS_FALLBACK; /* no key at all */
    while (more) {
        int64_t off, len;
        if (tfs_key(P, &off, &len)) return P->status;
        if (tfs_key_is(P, off, len, "signature_name")) {
            int esc;
            if (have_sig || P->p >= P->end || *P->p != '"') return TFS_FALLBACK;
            have_sig = 1;
            P->sig_off = P->p - P->base;
            if (tfs_scan_string(P, &esc)) return P->status;
        } else if (tfs_key_is(P, off, len, "instances")) {
            if (P->mode != TFS_MODE_NONE) return TFS_FALLBACK;
            P->mode = TFS_MODE_INSTANCES;
            if (tfs_instances(P)) return P->status;
        } else if (tfs_key_is(P, off, len, "inputs")) {
            if (P->mode != TFS_MODE_NONE) return TFS_FALLBACK;
            P->mode = TFS_MODE_INPUTS;
            if (tfs_inputs(P)) return P->status;
        } else if (tfs_skip_value(P)) {
            return P->status;
        }
        if (tfs_next_member(P, &more)) return P->status;
    }
    tfs_skip_ws(P);
    if (P->p != P->end || P->mode == TFS_MODE_NONE) return TFS_FALLBACK;
    return TFS_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Tape -> typed buffer. Returns 0, or -1 when a leaf does not fit the dtype (the reference
 * then reports the error). Dtypes are TF DataType numbers. */

enum {
    TFS_DT_FLOAT = 1, TFS_DT_DOUBLE = 2, TFS_DT_INT32 = 3, TFS_DT_UINT8 = 4, TFS_DT_INT16 = 5,
    TFS_DT_INT8 = 6, TFS_DT_STRING = 7, TFS_DT_INT64 = 9, TFS_DT_BOOL = 10, TFS_DT_UINT32 = 22,
    TFS_DT_UINT64 = 23,
};

static int tfs_leaf_double(uint8_t kind, uint64_t val, double *out) {
    tfs_num_value v;
    v.u = val;
    switch (kind) {
    case TFS_NUM_DBL: *out = v.d; return 0;
    case TFS_NUM_INT: *out = (double)v.i; return 0;
    case TFS_NUM_UINT: *out = (double)v.u; return 0;
    default: return -1;
    }
}

static int tfs_convert(const tfs_tensor *t, int dtype, void *out) {
    const uint8_t *kind = t->kind;
    const uint64_t *val = t->val;
    int64_t n = t->n;
    tfs_num_value v;
    switch (dtype) {
    case TFS_DT_FLOAT: {
        float *o = (float *)out;
        for (int64_t i = 0; i < n; i++) {
            double d;
            if (kind[i] == TFS_NUM_DBL) {
                v.u = val[i];
                d = v.d;
            } else if (tfs_leaf_double(kind[i], val[i], &d)) {
                return -1;
            }
            o[i] = (float)d; /* out of range -> +-inf, as rapidjson's GetFloat */
        }
        return 0;
    }
    case TFS_DT_DOUBLE: {
        double *o = (double *)out;
        for (int64_t i = 0; i < n; i++)
            if (tfs_leaf_double(kind[i], val[i], &o[i])) return -1;
        return 0;
    }
    case TFS_DT_INT64: {
        int64_t *o = (int64_t *)out;
        for (int64_t i = 0; i < n; i++) {
            if (kind[i] != TFS_NUM_INT) return -1;
            o[i] = (int64_t)val[i];
        }
        return 0;
    }
    case TFS_DT_UINT64: {
        uint64_t *o = (uint64_t *)out;
        for (int64_t i = 0; i < n; i++) {
            if (!(kind[i] == TFS_NUM_UINT || (kind[i] == TFS_NUM_INT && (int64_t)val[i] >= 0)))
                return -1;
            o[i] = val[i];
        }
        return 0;
    }
    case TFS_DT_UINT32: {
        uint32_t *o = (uint32_t *)out;
        for (int64_t i = 0; i < n; i++) {
            if (kind[i] != TFS_NUM_INT || val[i] > 0xFFFFFFFFu) return -1;
            o[i] = (uint32_t)val[i];
        }
        return 0;
    }
    case TFS_DT_INT32:
    case TFS_DT_INT16:
    case TFS_DT_INT8:
    case TFS_DT_UINT8: {
        /* TF Serving checks the int32 range only, then the value wraps into the narrower type */
        for (int64_t i = 0; i < n; i++) {
            int64_t x = (int64_t)val[i];
            if (kind[i] != TFS_NUM_INT || x < INT32_MIN || x > INT32_MAX) return -1;
            uint32_t w = (uint32_t)x;
            switch (dtype) {
            case TFS_DT_INT32: ((int32_t *)out)[i] = (int32_t)w; break;
            case TFS_DT_INT16: ((uint16_t *)out)[i] = (uint16_t)w; break;
            default: ((uint8_t *)out)[i] = (uint8_t)w; break;
            }
        }
        return 0;
    }
    case TFS_DT_BOOL: {
        uint8_t *o = (uint8_t *)out;
        for (int64_t i = 0; i < n; i++) {
            if (kind[i] == TFS_LEAF_TRUE) o[i] = 1;
            else if (kind[i] == TFS_LEAF_FALSE) o[i] = 0;
            else return -1;
        }
        return 0;
    }
    default:
        return -1;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Base64 as the reference accepts it, restricted to the canonical form: the standard alphabet,
 * no whitespace, '=' padding to a multiple of 4. Returns the decoded length, or -1 for anything
 * else (the reference then decides). Leftover bits are ignored, as binascii does. */

static const int8_t *tfs_b64_table(void) {
    static int8_t table[256];
    static int ready = 0;
    if (!ready) {
        memset(table, -1, sizeof table);
        const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; i++) table[(uint8_t)alphabet[i]] = (int8_t)i;
        ready = 1; /* idempotent: racing initializers write the same bytes */
    }
    return table;
}

static int64_t tfs_b64_decode(const uint8_t *s, size_t n, uint8_t *dst) {
    const int8_t *T = tfs_b64_table();
    if (n % 4 != 0) return -1;
    size_t pad = 0;
    if (n >= 1 && s[n - 1] == '=') pad++;
    if (n >= 2 && s[n - 2] == '=') pad++;
    size_t m = n - pad; /* data characters */
    if (pad && m % 4 == 1) return -1;
    uint8_t *o = dst;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < m; i++) {
        int8_t d = T[s[i]];
        if (d < 0) return -1;
        acc = (acc << 6) | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (int64_t)(o - dst);
}

#pragma GCC diagnostic pop

#endif /* TFSFAST_JSON_SCAN_H */
