"""Pure-Python JSON tensor codec for REST predict: the reference twin of the compiled codec.

Behaviour follows TF Serving's ``util/json_tensor.cc`` (parsed with rapidjson 1.1.0, flags
``kParseIterativeFlag | kParseNanAndInfFlag | kParseStopWhenDoneFlag``); the messages are TF
Serving's, byte for byte, including rapidjson's English parse errors and their byte offsets. The
compiled codec is tested against this module, so behaviour here is the contract.

Request side (``JsonCodec(limits).parse_predict_request``):

* The body is parsed by ``json`` with hooks, and whatever Python's parser and rapidjson disagree
  on is reconciled so that the outcome is rapidjson's: a NUL byte ends the input, a UTF-8 BOM is
  skipped, bytes after the top-level value are ignored, ``NaN``/``Inf``/``Infinity`` (optionally
  signed, even rapidjson 1.1.0's odd ``Inf.5`` == 0.5) are numbers, integers outside the 64-bit
  range are doubles, a number rapidjson calls too big fails, an unpaired high-surrogate escape
  fails. On a syntax error a small rapidjson emulator re-reads the bytes from the start of the
  offending token to produce rapidjson's message and offset; it never re-reads the whole body.
* Hardening beyond TF Serving, by the codec's ``CodecLimits`` (given to ``JsonCodec`` when it is
  made): the nesting depth of the whole body is checked *before* parsing by a linear scan
  (``max_json_depth``); tensor rank (``max_tensor_rank``), elements per tensor and per request
  (``max_tensor_elements``, ``max_request_elements``); integer literals longer than
  ``max_int_digits`` digits are never turned into Python ints (they read as doubles, as rapidjson
  reads anything outside 64 bits, so an integer dtype rejects them). ``max_int_digits`` above 20
  has no effect: no longer literal fits 64 bits. Limit errors are INVALID_ARGUMENT and name the
  limit. The depth scan covers the whole body, bytes after the top-level value included.
  The module-level ``parse_predict_request`` is the codec with ``DEFAULT_CODEC_LIMITS``.
* Speed: Python's C parser does the work. Number hooks (a Python call per number) are only
  installed when a byte scan finds a digit run or exponent long enough to need them.
* String tensors are numpy object arrays of ``bytes``: a JSON string's UTF-8 bytes as sent. Like
  TF Serving, invalid UTF-8 inside a string is not rejected: the bytes pass through unchanged.

Response side (``format_predict_response``): TF Serving's value text (float ``%g`` with six
digits, widened to ``%.9g``/``%.17g`` when that does not read back to the same value, ``.0``
appended to whole numbers, bare ``NaN``/``Infinity``/``-Infinity``), ``{"b64": ...}`` for
``*_bytes`` aliases, and its error messages.

Deliberate differences from TF Serving, each for a reason:

* Layout is compact with one space after ``:`` and ``,`` (``{"predictions": [2.5, 3.0]}``), which
  is what our README shows curl users; TF Serving pretty-prints (rapidjson PrettyWriter, items on
  one line, closing bracket on its own line). Clients parse JSON, so values are what matters.
  Error bodies *are* byte-identical to TF Serving's (``{\\n    "error": "..."\\n}``).
* Invalid UTF-8 in an output string tensor is written with U+FFFD replacement characters (TF
  Serving writes the raw bytes and so emits invalid JSON). Clients that need exact bytes should
  use an alias ending in ``_bytes``, which is written as base64.
* Several outputs are written in sorted alias order, and several inputs are checked in sorted
  alias order (TF Serving uses protobuf map order, which is unspecified).
* A duplicate key in a JSON object: the first occurrence wins (rapidjson's ``FindMember``).
* Values echoed in messages (``JSON Value: ...``) are compact JSON truncated to 256 bytes, with
  ``NaN``/``Infinity`` spelled out and invalid UTF-8 shown as U+FFFD.
* Numbers are read correctly rounded (rapidjson's default mode can be off by an ulp in the 16th
  digit). A body that is not UTF-8 *and* has a lone low-surrogate escape (``\\udc80``) is refused
  with ``Invalid encoding in string.`` at the first invalid byte: the two cannot be told apart
  after decoding, and such a body is certainly not from a well-behaved client.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from typing import Any

import numpy as np

from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.runtime.dtypes import DataType, from_numpy, short_name, to_numpy
from tfsfast.util.status import Code, ServingError

__all__ = [
    "MAX_DEBUG_STRING_BYTES",
    "JsonCodec",
    "PredictRequest",
    "format_error",
    "format_predict_response",
    "parse_predict_request",
]

# Values echoed in messages are cut to this many bytes: TF Serving's kMaxJsonDebugStringBytes
# (a constant of its own, not one of the limits a deployment sets).
MAX_DEBUG_STRING_BYTES = 256

DEFAULT_SIGNATURE = "serving_default"


@dataclass(slots=True)
class PredictRequest:
    """A parsed REST predict body.

    ``signature_name`` is never empty (an empty or missing name becomes ``serving_default``);
    ``inputs`` maps each signature input alias to its tensor, whose dtype is the signature's;
    ``columnar`` is True for an ``inputs`` body and False for an ``instances`` body (it decides the
    response format). Slotted: one is made per request, and the compiled codec fills the three
    fields directly (see ``_json._new_request``), which a slotted layout makes cheapest.
    """

    signature_name: str
    inputs: dict[str, np.ndarray]
    columnar: bool


def _invalid(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


# ---------------------------------------------------------------------------------------------
# rapidjson's English parse errors (rapidjson/error/en.h, 1.1.0).

_EMPTY = "The document is empty."
_ROOT_NOT_SINGULAR = "The document root must not be followed by other values."
_VALUE_INVALID = "Invalid value."
_MISS_NAME = "Missing a name for object member."
_MISS_COLON = "Missing a colon after a name of object member."
_MISS_COMMA_CURLY = "Missing a comma or '}' after an object member."
_MISS_COMMA_SQUARE = "Missing a comma or ']' after an array element."
_BAD_HEX = "Incorrect hex digit after \\u escape in string."
_BAD_SURROGATE = "The surrogate pair in string is invalid."
_BAD_ESCAPE = "Invalid escape character in string."
_MISS_QUOTE = "Missing a closing quotation mark in string."
_BAD_ENCODING = "Invalid encoding in string."
_TOO_BIG = "Number too big to be stored in double."
_MISS_FRACTION = "Miss fraction part in number."
_MISS_EXPONENT = "Miss exponent in number."


def _parse_error(message: str, offset: int) -> ServingError:
    return _invalid(f"JSON Parse error: {message} at offset: {offset}")


# ---------------------------------------------------------------------------------------------
# rapidjson's number reading, as far as it decides *whether* a number is an error. Values are
# taken from Python's correctly rounded float(); only the error decision is emulated.

_DBL_MAX_DIV10 = 1.7976931348623157e307
_MAX_SAFE = (1 << 53) - 1
_NUM_TOKEN = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?)([0-9]+))?\Z")


class _IntPhase:
    """rapidjson ParseNumber's integer part: how it was stored and whether it overflowed."""

    __slots__ = ("mantissa", "sig", "too_big", "use64", "use_double")

    def __init__(self, minus: bool, digits: str) -> None:
        self.mantissa, self.sig, self.too_big = 0, 0, False
        self.use64 = self.use_double = False
        if digits == "0":  # also NaN/Inf, which leave the integer at 0
            return
        t32, l32 = (214748364, "8") if minus else (429496729, "5")
        t64, l64 = (0x0CCCCCCCCCCCCCCC, "8") if minus else (0x1999999999999999, "5")
        n = len(digits)
        i, k = ord(digits[0]) - 48, 1
        while k < n:
            c = digits[k]
            if i >= t32 and (i != t32 or c > l32):
                self.use64 = True
                break
            i = i * 10 + ord(c) - 48
            self.sig += 1
            k += 1
        if self.use64:
            while k < n:
                c = digits[k]
                if i >= t64 and (i != t64 or c > l64):
                    self.use_double = True
                    break
                i = i * 10 + ord(c) - 48
                self.sig += 1
                k += 1
        self.mantissa = i
        if self.use_double:
            # The overflow check runs before each further digit; it fires within ~310 digits,
            # so this loop is bounded however long the literal is.
            d = float(i)
            while k < n:
                if d >= _DBL_MAX_DIV10:
                    self.too_big = True
                    return
                d = d * 10 + (ord(digits[k]) - 48)
                k += 1


def _exp_frac(phase: _IntPhase, frac: str) -> int:
    """rapidjson's ``expFrac`` after reading the fraction digits ``frac``."""
    exp_frac, sig, k = 0, phase.sig, 0
    if not phase.use_double:
        i64 = phase.mantissa
        if i64 == 0:  # leading zeros keep the significand at 0; count them without a loop
            k = len(frac) - len(frac.lstrip("0"))
            exp_frac -= k
        while k < len(frac) and i64 <= _MAX_SAFE:
            i64 = i64 * 10 + ord(frac[k]) - 48
            exp_frac -= 1
            if i64 != 0:
                sig += 1
            k += 1
    if sig < 17:  # the significand is > 0 here, so each digit counts until 17 are held
        exp_frac -= min(len(frac) - k, 17 - sig)
    return exp_frac


def _exp_too_big(exp_frac: int, exp_digits: str) -> bool:
    max_exp = 308 - exp_frac
    digits = exp_digits.lstrip("0") or "0"
    if len(digits) > len(str(max_exp)):  # never int() a hostile million-digit exponent
        return True
    return int(digits) > max_exp


def _number_too_big(minus: bool, int_digits: str, frac: str | None, exp_sign: str | None,
                    exp_digits: str | None) -> bool:
    """Whether rapidjson 1.1.0 fails this number with ``Number too big to be stored in double.``"""
    phase = _IntPhase(minus, int_digits)
    if phase.too_big:
        return True
    if exp_digits is None or exp_sign == "-":
        return False
    return _exp_too_big(_exp_frac(phase, frac) if frac else 0, exp_digits)


class _NumberTooBig(Exception):
    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


def _parse_float(s: str) -> float:
    v = float(s)
    # Only an infinite result, or an integer part of 309+ digits, can be too big for rapidjson.
    if v - v == 0.0 and len(s) < 309:
        return v
    m = _NUM_TOKEN.match(s)
    if m is not None and _number_too_big(m[1] == "-", m[2], m[3], m[4], m[5]):
        raise _NumberTooBig(s)
    return v


def _parse_int(max_digits: int, s: str) -> int | float:
    """``parse_int`` of a decoder for integer literals of at most ``max_digits`` (<= 20)."""
    minus = s[0] == "-"
    ndigits = len(s) - minus
    if ndigits <= max_digits:
        v = int(s)
        if -(1 << 63) <= v < (1 << 64):
            return v
        return float(v)  # rapidjson stores integers outside 64 bits as doubles
    if _IntPhase(minus, s[minus:]).too_big:
        raise _NumberTooBig(s)
    return float(s)


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):  # duplicate keys: keep the first, as rapidjson's FindMember does
        d = {}
        for k, v in pairs:
            d.setdefault(k, v)
    return d


# The number hooks cost a Python call per number; they are only needed when the body has a long
# digit run or a 3-digit exponent (nothing else can be too big for rapidjson or exceed 64 bits by
# more than Python's int handles cheaply), which one translate() and a few find()s tell.
@functools.cache  # one set per digit limit, 0 to 20
def _decoders(max_digits: int) -> dict[tuple[bool, bool], json.JSONDecoder]:
    parse_int = functools.partial(_parse_int, max_digits)
    return {
        (hook_int, hook_float): json.JSONDecoder(
            parse_int=parse_int if hook_int else None,
            parse_float=_parse_float if hook_float else None, object_pairs_hook=_first_wins)
        for hook_int in (False, True) for hook_float in (False, True)
    }


_NUMBER_SHAPES = bytes(
    0x31 if c in b"0123456789" else 0x65 if c in b"eE" else c if c == 0x2B else 0x20
    for c in range(256))


def _decoder_for(b: bytes, lo: int, max_digits: int) -> json.JSONDecoder:
    shapes = b.translate(_NUMBER_SHAPES)
    int_run = b"1" * (max_digits + 1)
    hook_int = shapes.find(int_run, lo) >= 0
    hook_float = (shapes.find(b"e111", lo) >= 0 or shapes.find(b"e+111", lo) >= 0
                  or (hook_int and shapes.find(b"1" * 309, lo) >= 0))
    return _decoders(max_digits)[hook_int, hook_float]


def _as_double(v: int) -> int | float:
    """A Python int as rapidjson holds it: integers outside 64 bits are doubles."""
    return v if -(1 << 63) <= v < (1 << 64) else float(v)

# ---------------------------------------------------------------------------------------------
# Byte-level scans over the body. All work on bytes, where structural characters are ASCII and
# rapidjson's offsets are byte offsets.

# A JSON string, or an unterminated one running to the end; possessive, so linear on any input.
_STRING_RE = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.S)
_NON_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_BRACKET_DELTA = np.zeros(256, np.int8)
_BRACKET_DELTA[[0x5B, 0x7B]] = 1
_BRACKET_DELTA[[0x5D, 0x7D]] = -1
_DEPTH_CHUNK = 1 << 22


def _brackets(b: bytes, lo: int, hi: int) -> bytes:
    seg = b[lo:hi]
    if b'"' in seg:
        seg = _STRING_RE.sub(b"", seg)
    return seg.translate(None, _NON_BRACKETS)


def _depth_exceeds(b: bytes, lo: int, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` anywhere in ``b[lo:]``.

    Runs before any recursive parsing, in time linear in the body (a 100k-deep body must fail
    fast, and Python's parser would recurse once per level).
    """
    if b.count(b"[", lo) + b.count(b"{", lo) <= limit:
        return False
    deltas = _BRACKET_DELTA[np.frombuffer(_brackets(b, lo, len(b)), np.uint8)]
    carry = 0
    for k in range(0, len(deltas), _DEPTH_CHUNK):
        depth = np.cumsum(deltas[k:k + _DEPTH_CHUNK], dtype=np.int32)
        depth += carry
        if int(depth.max()) > limit:
            return True
        carry = int(depth[-1])
    return False


def _open_containers(b: bytes, lo: int, r: int) -> list[int]:
    """The unclosed ``[``/``{`` bytes of ``b[lo:r]``, outermost first (``b[lo:r]`` is a valid
    JSON prefix ending outside a string, so it nests properly and at most the depth limit deep)."""
    br = _brackets(b, lo, r)
    if not br:
        return []
    a = np.frombuffer(br, np.uint8)
    depth = np.cumsum(_BRACKET_DELTA[a], dtype=np.int16)
    suffix_min = np.minimum.accumulate(depth[::-1])[::-1]
    unclosed = np.flatnonzero(((a == 0x5B) | (a == 0x7B)) & (suffix_min >= depth))
    return [int(a[i]) for i in unclosed]


def _open_string_start(b: bytes, lo: int, pos: int) -> int | None:
    """The opening quote of the string ``pos`` is inside of, or None (``b[lo:pos]`` is a valid
    JSON prefix, so backslashes occur only inside strings and quote parity tells)."""
    seg = b[lo:pos]
    if b'"' not in seg:
        return None
    a = np.frombuffer(seg, np.uint8)
    quotes = np.flatnonzero(a == 0x22)
    if b"\\" in seg:
        bs = np.flatnonzero(a == 0x5C)
        breaks = np.flatnonzero(np.diff(bs) != 1)
        run_end = np.append(bs[breaks], bs[-1])
        run_len = run_end - np.insert(bs[breaks + 1], 0, bs[0]) + 1
        j = np.minimum(np.searchsorted(run_end, quotes - 1), len(run_end) - 1)
        escaped = (run_end[j] == quotes - 1) & (run_len[j] % 2 == 1)
        quotes = quotes[~escaped]
    return lo + int(quotes[-1]) if len(quotes) % 2 else None


_WORD = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+-"
_WS = b" \t\n\r"


def _run_start(b: bytes, lo: int, pos: int, chars: bytes) -> int:
    """Start of the run of ``chars`` bytes that ends at ``pos`` (not before ``lo``); windows
    grow geometrically, so the cost is linear in the run, not in the body."""
    width = 64
    while True:
        a = max(lo, pos - width)
        k = len(b[a:pos].rstrip(chars))
        if k or a == lo:
            return a + k
        width *= 4


# A high surrogate escape not followed by a low one (the literal ``\u`` prefix lets the regex
# engine skip ahead at C speed; only unpaired ones reach Python).
_UNPAIRED_HIGH_RE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
_LOW_ESCAPE_RE = re.compile(rb"\\u[dD][c-fC-F]")


def _lone_high_surrogate(b: bytes, lo: int, hi: int) -> tuple[str, int] | None:
    """rapidjson's error for the first unpaired high surrogate escape starting before ``hi``
    (Python accepts them). ``b[lo:hi]`` is valid JSON text to Python, so every backslash is in
    a string, and ``\\u`` after an even run of backslashes is an escape."""
    for m in _UNPAIRED_HIGH_RE.finditer(b, lo, min(len(b), hi + 12)):
        start = m.start()
        if start >= hi:
            break
        if (start - _run_start(b, lo, start, b"\\")) % 2 == 0:
            return _BAD_SURROGATE, start
        # else ``\\uD800``: an escaped backslash, then text
    return None


def _low_surrogate_escape(b: bytes, lo: int, hi: int) -> bool:
    """Whether ``b[lo:hi]`` (valid JSON text) has a low surrogate escape such as ``\\udc80``."""
    for m in _LOW_ESCAPE_RE.finditer(b, lo, hi):
        if (m.start() - _run_start(b, lo, m.start(), b"\\")) % 2 == 0:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# A rapidjson 1.1.0 iterative-parser emulator over bytes. It only finds the first error (message,
# offset) from a given state; it builds nothing. It is run from the token where Python's parser
# failed, so it reads a few tokens, never the whole body.

(_START, _FINISH, _OBJ_INIT, _MEMBER_KEY, _KV_DELIM, _MEMBER_VALUE, _MEMBER_DELIM, _ARR_INIT,
 _ELEMENT, _ELEM_DELIM) = range(10)

_HANDLE_ERROR = {
    _START: _EMPTY, _FINISH: _ROOT_NOT_SINGULAR, _OBJ_INIT: _MISS_NAME, _MEMBER_DELIM: _MISS_NAME,
    _MEMBER_KEY: _MISS_COLON, _MEMBER_VALUE: _MISS_COMMA_CURLY, _KV_DELIM: _VALUE_INVALID,
    _ARR_INIT: _VALUE_INVALID, _ELEM_DELIM: _VALUE_INVALID, _ELEMENT: _MISS_COMMA_SQUARE,
}
_VALUE_STATES = {_START: _FINISH, _KV_DELIM: _MEMBER_VALUE, _ARR_INIT: _ELEMENT,
                 _ELEM_DELIM: _ELEMENT}
_WS_RE = re.compile(rb"[ \t\n\r]*")
_DIGITS_RE = re.compile(rb"[0-9]*")
_PLAIN_RE = re.compile(rb'[^"\\\x00-\x1f]*')


def _match_end(pattern: re.Pattern[bytes], b: bytes, i: int) -> int:
    """Where ``pattern``'s match at ``i`` ends. The patterns given (a ``*`` run) match the empty
    string, so they always match."""
    match = pattern.match(b, i)
    assert match is not None
    return match.end()


_SIMPLE_ESCAPES = frozenset(b'"\\/bfnrt')
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_EMULATOR_TOKENS = 10_000

_Err = tuple[str, int]


def _rj_hex4(b: bytes, i: int) -> tuple[int, int, bool]:
    cp = 0
    for _ in range(4):
        if i >= len(b) or b[i] not in _HEX_DIGITS:
            return cp, i, True
        cp = cp * 16 + int(chr(b[i]), 16)
        i += 1
    return cp, i, False


def _rj_string(b: bytes, i: int) -> tuple[_Err | None, int]:
    n = len(b)
    i += 1
    while True:
        i = _match_end(_PLAIN_RE, b, i)
        if i >= n:  # end of input (a NUL byte ends it too)
            return (_MISS_QUOTE, n), n
        c = b[i]
        if c == 0x22:
            return None, i + 1
        if c != 0x5C:  # a control character
            return (_BAD_ESCAPE, i), i
        esc = i
        i += 1
        e = b[i] if i < n else 0
        if e in _SIMPLE_ESCAPES:
            i += 1
            continue
        if e != 0x75:
            return (_BAD_ESCAPE, esc), i
        cp, i, bad = _rj_hex4(b, i + 1)
        if bad:
            return (_BAD_HEX, esc), i
        if 0xD800 <= cp <= 0xDBFF:
            if i >= n or b[i] != 0x5C:
                return (_BAD_SURROGATE, esc), i
            i += 1
            if i >= n or b[i] != 0x75:
                return (_BAD_SURROGATE, esc), i
            cp2, i, bad = _rj_hex4(b, i + 1)
            if bad:
                return (_BAD_HEX, esc), i
            if not 0xDC00 <= cp2 <= 0xDFFF:
                return (_BAD_SURROGATE, esc), i


def _rj_literal(b: bytes, i: int, word: bytes) -> tuple[_Err | None, int]:
    i += 1
    for ch in word[1:]:
        if i < len(b) and b[i] == ch:
            i += 1
        else:
            return (_VALUE_INVALID, i), i
    return None, i


def _rj_number(b: bytes, i: int) -> tuple[_Err | None, int]:
    n = len(b)
    start = i

    def consume(ch: int) -> bool:
        nonlocal i
        if i < n and b[i] == ch:
            i += 1
            return True
        return False

    minus = consume(0x2D)
    c = b[i] if i < n else 0
    int_digits = "0"
    if c == 0x30:
        i += 1
    elif 0x31 <= c <= 0x39:
        end = _match_end(_DIGITS_RE, b, i)
        int_digits = b[i:end].decode("ascii")
        i = end
    elif c in (0x49, 0x4E):  # 'I' 'N', with rapidjson 1.1.0's short-circuit consumption
        ok = False
        if consume(0x4E) and consume(0x61) and consume(0x4E):
            ok = True
        elif consume(0x49) and consume(0x6E) and consume(0x66):
            ok = True
            if i < n and b[i] == 0x69 and not all(consume(ch) for ch in b"inity"):
                return (_VALUE_INVALID, i), i
        if not ok:
            return (_VALUE_INVALID, i), i
    else:
        return (_VALUE_INVALID, i), i
    phase = _IntPhase(minus, int_digits)
    if phase.too_big:
        return (_TOO_BIG, start), i
    frac = None
    if consume(0x2E):
        end = _match_end(_DIGITS_RE, b, i)
        if end == i:
            return (_MISS_FRACTION, i), i
        frac = b[i:end].decode("ascii")
        i = end
    if consume(0x65) or consume(0x45):
        minus_exp = consume(0x2D) if not consume(0x2B) else False
        end = _match_end(_DIGITS_RE, b, i)
        if end == i:
            return (_MISS_EXPONENT, i), i
        exp_digits = b[i:end].decode("ascii")
        i = end
        if not minus_exp and _exp_too_big(_exp_frac(phase, frac) if frac else 0, exp_digits):
            return (_TOO_BIG, start), i
    return None, i


def _rj_value(b: bytes, i: int) -> tuple[_Err | None, int]:
    c = b[i]
    if c == 0x22:
        return _rj_string(b, i)
    if c == 0x74:
        return _rj_literal(b, i, b"true")
    if c == 0x66:
        return _rj_literal(b, i, b"false")
    if c == 0x6E:
        return _rj_literal(b, i, b"null")
    return _rj_number(b, i)


def _rj_scan(b: bytes, i: int, state: int, stack: list[int]) -> _Err | None:
    """Runs rapidjson's iterative parser from ``i`` in ``state`` with open containers ``stack``
    (outermost first) until the first error, which it returns; None if the value completes."""
    n = len(b)
    for _ in range(_EMULATOR_TOKENS):
        i = _match_end(_WS_RE, b, i)
        if i >= n:
            return None if state == _FINISH else (_HANDLE_ERROR[state], i)
        c = b[i]
        if c in (0x5B, 0x7B):  # [ {
            if state not in _VALUE_STATES:
                return _HANDLE_ERROR[state], i
            stack.append(c)
            state = _ARR_INIT if c == 0x5B else _OBJ_INIT
            i += 1
            continue
        if c in (0x5D, 0x7D):  # ] }
            if state not in ((_ARR_INIT, _ELEMENT) if c == 0x5D else (_OBJ_INIT, _MEMBER_VALUE)):
                return _HANDLE_ERROR[state], i
            stack.pop()
            i += 1
            if not stack:
                return None
            state = _ELEMENT if stack[-1] == 0x5B else _MEMBER_VALUE
            continue
        if c == 0x2C:  # ,
            if state == _ELEMENT:
                state = _ELEM_DELIM
            elif state == _MEMBER_VALUE:
                state = _MEMBER_DELIM
            else:
                return _HANDLE_ERROR[state], i
            i += 1
            continue
        if c == 0x3A:  # :
            if state != _MEMBER_KEY:
                return _HANDLE_ERROR[state], i
            state = _KV_DELIM
            i += 1
            continue
        if c == 0x22 and state in (_OBJ_INIT, _MEMBER_DELIM):
            err, i = _rj_string(b, i)
            if err:
                return err
            state = _MEMBER_KEY
            continue
        if state not in _VALUE_STATES:
            return _HANDLE_ERROR[state], i
        err, i = _rj_value(b, i)
        if err:
            return err
        state = _VALUE_STATES[state]
        if state == _FINISH:
            return None
    return None


# ---------------------------------------------------------------------------------------------
# Parsing the document.

_WS_STR_RE = re.compile(r"[ \t\n\r]*")
# Non-finite spellings rapidjson 1.1.0 reads but Python does not, outside strings: ``Inf`` not
# followed by ``i`` (a partial ``Infinity`` is an error, left for Python to fail on), a sign on
# NaN, ``NInf``/``NaInf`` (rapidjson tries ``NaN`` first and keeps what it consumed), and its
# quirk that a fraction or exponent after NaN/Inf makes the number 0.<fraction>e<exponent>.
_NONFINITE_RE = re.compile(
    r'"(?:[^"\\]++|\\.)*+"?'
    r"|(-?)(NaN|(?:Na?)?Infinity|(?:Na?)?Inf(?!i))(\.[0-9]+)?([eE][-+]?[0-9]+)?", re.S)
_NEEDS_REWRITE = re.compile(r"-NaN|NaN[.eE]|Infinity[.eE]|Inf(?!inity)|NInf|NaInf")
_STRING_TEXT_RE = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.S)


class _Rewrites:
    """Maps positions in the rewritten text back to the original one."""

    def __init__(self, regions: list[tuple[int, int, int, int]]) -> None:
        self._regions = regions  # (new_start, new_end, old_start, old_end), in order
        self._starts = [r[0] for r in regions]

    def original(self, pos: int) -> int:
        k = bisect_right(self._starts, pos) - 1
        if k < 0:
            return pos
        _, new_end, old_start, old_end = self._regions[k]
        if pos < new_end:
            return old_start  # inside a rewritten token: its start
        return pos - new_end + old_end


def _rewrite_nonfinite(text: str) -> tuple[str, _Rewrites | None]:
    # Plain NaN/Infinity/-Infinity are common in float payloads and Python reads them; the other
    # spellings are rare, and only one outside a string costs a pass over the strings.
    if "Inf" not in text and "NaN" not in text:
        return text, None
    if not _NEEDS_REWRITE.search(text) or not _NEEDS_REWRITE.search(
            _STRING_TEXT_RE.sub('""', text)):
        return text, None
    pieces: list[str] = []
    regions: list[tuple[int, int, int, int]] = []
    last = shift = 0
    for m in _NONFINITE_RE.finditer(text):
        word = m[2]
        if word is None:  # a string
            continue
        sign, frac, exp = m[1], m[3], m[4]
        if frac or exp:
            repl = sign + "0" + (frac or "") + (exp or "")
        elif word not in ("NaN", "Infinity"):
            repl = sign + "Infinity"
        elif word == "NaN" and sign:
            repl = "NaN"
        else:
            continue
        pieces += (text[last:m.start()], repl)
        new_start = m.start() + shift
        regions.append((new_start, new_start + len(repl), m.start(), m.end()))
        shift += len(repl) - (m.end() - m.start())
        last = m.end()
    if not regions:
        return text, None
    pieces.append(text[last:])
    return "".join(pieces), _Rewrites(regions)


@dataclass
class _Doc:
    value: dict[str, Any]
    raw: bool  # the body was not valid UTF-8; strings carry raw bytes as surrogate escapes


class _Source:
    """The body as rapidjson sees it, the text Python parses, and position conversions."""

    def __init__(self, body: bytes) -> None:
        nul = body.find(b"\0")  # rapidjson's MemoryStream reads NUL as the end of input
        self.b = body if nul < 0 else body[:nul]
        b = self.b
        start = 0  # EncodedInputStream<UTF8> skips each byte of a UTF-8 BOM if present
        for bom_byte in (0xEF, 0xBB, 0xBF):
            if start < len(b) and b[start] == bom_byte:
                start += 1
        self.start = start
        self.first_bad_byte = -1
        try:
            self.text = b[start:].decode("utf-8")
        except UnicodeDecodeError as e:
            self.text = b[start:].decode("utf-8", "surrogateescape")
            self.first_bad_byte = start + e.start
        self.ascii = self.text.isascii()
        self.rewritten, self.rewrites = _rewrite_nonfinite(self.text)

    def byte_offset(self, rewritten_pos: int) -> int:
        pos = rewritten_pos if self.rewrites is None else self.rewrites.original(rewritten_pos)
        if self.ascii:
            return self.start + pos
        return self.start + len(self.text[:pos].encode("utf-8", "surrogateescape"))


def _derive_state(b: bytes, lo: int, r: int, after_key: bool) -> tuple[int, list[int]]:
    stack = _open_containers(b, lo, r)
    before = b[lo:r].rstrip(_WS)
    if not before:
        return _START, stack
    prev = before[-1]
    if prev == 0x5B:
        return _ARR_INIT, stack
    if prev == 0x7B:
        return _OBJ_INIT, stack
    if prev == 0x3A:
        return _KV_DELIM, stack
    if not stack:
        return _FINISH, stack
    in_array = stack[-1] == 0x5B
    if prev == 0x2C:
        return (_ELEM_DELIM if in_array else _MEMBER_DELIM), stack
    if in_array:
        return _ELEMENT, stack
    return (_MEMBER_KEY if prev == 0x22 and after_key else _MEMBER_VALUE), stack


def _first_error(*candidates: _Err | None) -> ServingError:
    found = [c for c in candidates if c is not None]
    message, offset = min(found, key=lambda c: c[1])
    return _parse_error(message, offset)


def _syntax_error(src: _Source, e: json.JSONDecodeError) -> ServingError:
    """rapidjson's error for a body Python's parser failed on at ``e.pos``."""
    b, lo = src.b, src.start
    pos = src.byte_offset(e.pos)
    # Resume at the start of the token that failed: the string ``pos`` is inside of, or the
    # number/literal ending at ``pos`` (rapidjson reads ``1.`` or ``1e`` further than Python).
    resume = _open_string_start(b, lo, pos)
    if resume is None:
        resume = _run_start(b, lo, pos, _WORD) if pos > lo and b[pos - 1] in _WORD else pos
    state, stack = _derive_state(b, lo, resume, e.msg.startswith("Expecting ':'"))
    found = _rj_scan(b, resume, state, stack)
    # Not expected: both parsers agree on every prefix, so the emulator fails too.
    return _first_error(found or (_VALUE_INVALID, pos), _lone_high_surrogate(b, lo, pos))


_BEFORE_TOKEN = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+-")
_AFTER_TOKEN = frozenset("0123456789.eE")


def _too_big_error(src: _Source, token: str) -> ServingError:
    """rapidjson's error for the first number it finds too big (Python stopped at ``token``)."""
    b, lo, text = src.b, src.start, src.rewritten
    found = None
    pos = text.find(token)
    while pos >= 0:  # the first whole-token occurrence outside a string
        end = pos + len(token)
        if ((pos == 0 or text[pos - 1] not in _BEFORE_TOKEN)
                and (end == len(text) or text[end] not in _AFTER_TOKEN)):
            offset = src.byte_offset(pos)
            if _open_string_start(b, lo, offset) is None:
                found = (_TOO_BIG, offset)
                break
        pos = text.find(token, pos + 1)
    if found is None:  # not expected; keep the message, point at the start
        found = (_TOO_BIG, lo)
    return _first_error(found, _lone_high_surrogate(b, lo, found[1]))


def _parse_document(body: bytes, limits: CodecLimits) -> _Doc:
    """Parses a request body as TF Serving does; the top level must be an object. Of
    ``limits``, the nesting depth and the integer digits apply here."""
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    src = _Source(body)
    b, lo = src.b, src.start
    if _depth_exceeds(b, lo, limits.max_json_depth):
        raise _invalid(f"JSON nesting depth exceeds the maximum of {limits.max_json_depth}")
    blank = _WS_STR_RE.match(src.rewritten)  # a * run: it always matches
    assert blank is not None
    idx = blank.end()
    if idx == len(src.rewritten):
        raise _parse_error(_EMPTY, len(b))
    try:
        value, end = _decoder_for(b, lo, min(limits.max_int_digits, 20)).raw_decode(
            src.rewritten, idx)
    except json.JSONDecodeError as e:
        raise _syntax_error(src, e) from None
    except _NumberTooBig as e:
        raise _too_big_error(src, e.token) from None
    end_b = src.byte_offset(end)
    problems: list[_Err | None] = [_lone_high_surrogate(b, lo, end_b)]
    if type(value) in (int, float):
        # Python stops a number where rapidjson reads on (``1.``, ``1e``); re-read it.
        problems.append(_rj_scan(b, src.byte_offset(idx), _START, []))
    if src.first_bad_byte >= 0 and _low_surrogate_escape(b, lo, end_b):
        problems.append((_BAD_ENCODING, src.first_bad_byte))
    if any(problems):
        raise _first_error(*problems)
    if type(value) is not dict:
        raise _invalid(f"JSON Value: {_debug_string(value)} Is not object")
    return _Doc(value, src.first_bad_byte >= 0)


# ---------------------------------------------------------------------------------------------
# Echoing JSON values in messages (TF Serving's JsonValueToString), compact and truncated.

_ESCAPES = {i: f"\\u{i:04X}" for i in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r",
                 0x22: '\\"', 0x5C: "\\\\"})
_SURROGATES_RE = re.compile("[\ud800-\udfff]")


def _json_string(s: str) -> str:
    """A JSON string literal as rapidjson's Writer escapes it (non-ASCII kept as UTF-8)."""
    return '"' + s.translate(_ESCAPES) + '"'


def _clean(s: str) -> str:
    """``s`` without lone surrogates (raw bytes of invalid UTF-8), which cannot be encoded."""
    return _SURROGATES_RE.sub("\ufffd", s) if not s.isascii() else s


class _Full(Exception):
    pass


class _DebugWriter:
    """rapidjson's compact Writer, stopping once ``limit`` characters have been written."""

    def __init__(self, limit: int) -> None:
        self.out: list[str] = []
        self.size = 0
        self.limit = limit

    def put(self, s: str) -> None:
        self.out.append(s)
        self.size += len(s)
        if self.size > self.limit:
            raise _Full

    def write(self, v: Any) -> None:
        t = type(v)
        if v is None:
            self.put("null")
        elif t is bool:
            self.put("true" if v else "false")
        elif t is int:
            v = _as_double(v)
            self.put(str(v) if type(v) is int else _shortest_double(v))
        elif t is float:
            self.put(_shortest_double(v))
        elif t is str:
            self.put(_json_string(v[:self.limit + 1]))
        elif t is list:
            self.put("[")
            for k, x in enumerate(v):
                if k:
                    self.put(",")
                self.write(x)
            self.put("]")
        else:
            self.put("{")
            for k, (key, x) in enumerate(v.items()):
                if k:
                    self.put(",")
                self.put(_json_string(key[:self.limit + 1]))
                self.put(":")
                self.write(x)
            self.put("}")


def _clip(s: str, limit: int) -> str:
    data = s.encode("utf-8")
    if len(data) <= limit:
        return s
    return data[:limit].decode("utf-8", "ignore")


def _debug_string(v: Any) -> str:
    """A JSON value as TF Serving echoes it: a top-level float with the response float writer,
    anything else as compact JSON, at most MAX_DEBUG_STRING_BYTES bytes."""
    limit = MAX_DEBUG_STRING_BYTES
    if type(v) is int:
        v = _as_double(v)
    if type(v) is float:
        # rapidjson IsFloat(): a double within float range is echoed as a float
        if -3.4028234e38 <= v <= 3.4028234e38:
            text = _decimal_text(float(np.float32(v)), True)
        else:
            text = _decimal_text(v, False)
        return _clip(text, limit)
    writer = _DebugWriter(limit)
    try:
        writer.write(v)
    except _Full:
        pass
    return _clip(_clean("".join(writer.out)), limit)


def _shortest_double(v: float) -> str:
    """rapidjson Writer::Double text: shortest digits, laid out by its Prettify()."""
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "-0.0" if math.copysign(1.0, v) < 0 else "0.0"
    sign = "-" if v < 0 else ""
    mantissa, _, exp = repr(abs(v)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    k = (int(exp) if exp else 0) - len(frac)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k  # 10^(kk-1) <= v < 10^kk
    if 0 <= k and kk <= 21:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        text = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        text = "0." + "0" * -kk + digits
    elif length == 1:
        text = digits + "e" + str(kk - 1)
    else:
        text = digits[0] + "." + digits[1:] + "e" + str(kk - 1)
    return sign + text


# ---------------------------------------------------------------------------------------------
# Float text (TF Serving's WriteDecimal).

def _round_f32(decimals: list[str], doubles: np.ndarray) -> np.ndarray:
    """Decimal strings to float32, correctly rounded (absl::SimpleAtof), given their doubles.

    Rounding through double is exact except when the double lands exactly on the midpoint of two
    floats while the decimal does not; only those are settled with exact arithmetic.
    """
    with np.errstate(over="ignore"):
        f = doubles.astype(np.float32)
    f64 = f.astype(np.float64)
    off = np.flatnonzero((f64 != doubles) & np.isfinite(f))
    if len(off):
        up = doubles[off] > f64[off]
        other = np.nextafter(f[off], np.where(up, np.float32(np.inf), np.float32(-np.inf)))
        midpoint = (f64[off] + other.astype(np.float64)) / 2 == doubles[off]
        for k in np.flatnonzero(midpoint):
            i = int(off[k])
            exact, rounded = Fraction(decimals[i]), Fraction(float(doubles[i]))
            if exact != rounded and (exact > rounded) == bool(up[k]):
                f[i] = other[k]
    return f


def _float_tokens(a: np.ndarray, f32: bool) -> list[str]:
    """TF Serving's text for each value of a float32 (``f32``) or float64 array, flattened."""
    flat = a.ravel()
    values = flat.astype(np.float64).tolist()
    texts = list(map("%.6g".__mod__, values))
    back = np.array(list(map(float, texts)), dtype=np.float64)
    if f32:
        back = _round_f32(texts, back)
    finite = np.isfinite(flat)
    full = "%.9g" if f32 else "%.17g"
    for i in np.flatnonzero((back != flat) & finite).tolist():
        texts[i] = full % values[i]
    texts = [t if "." in t or "e" in t else t + ".0" for t in texts]
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            v = values[i]
            texts[i] = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return texts


def _decimal_text(v: float, f32: bool) -> str:
    return _float_tokens(np.array([v], np.float32 if f32 else np.float64), f32)[0]


# ---------------------------------------------------------------------------------------------
# JSON values to tensors.

_INT32_TYPES = frozenset({DataType.DT_INT32, DataType.DT_INT16, DataType.DT_INT8,
                          DataType.DT_UINT8})
_RANGES: dict[int, tuple[int, int]] = {
    DataType.DT_INT32: (-(1 << 31), (1 << 31) - 1), DataType.DT_INT16: (-(1 << 31), (1 << 31) - 1),
    DataType.DT_INT8: (-(1 << 31), (1 << 31) - 1), DataType.DT_UINT8: (-(1 << 31), (1 << 31) - 1),
    DataType.DT_INT64: (-(1 << 63), (1 << 63) - 1),
    DataType.DT_UINT32: (0, (1 << 32) - 1), DataType.DT_UINT64: (0, (1 << 64) - 1),
}
_FLOATS = frozenset({DataType.DT_FLOAT, DataType.DT_DOUBLE})
_SUPPORTED = _FLOATS | frozenset(_RANGES) | {DataType.DT_BOOL, DataType.DT_STRING}
_NUMBER_TYPES = frozenset({int, float})


def _json_type(v: Any) -> str:
    if v is None:
        return "Null"
    if v is True:
        return "True"
    if v is False:
        return "False"
    t = type(v)
    if t is dict:
        return "Object"
    if t is list:
        return "Array"
    if t is str:
        return "String"
    return "Number"


def _dtype_name(dtype: int) -> str:
    return short_name(dtype)


def _type_error(v: Any, dtype: int) -> ServingError:
    return _invalid(f"JSON Value: {_debug_string(v)} Type: {_json_type(v)} is not of expected "
                    f"type: {_dtype_name(dtype)}")


def _is_b64(v: Any) -> bool:
    """A ``{"b64": "<string>"}`` object: exactly one member, named b64, holding a string."""
    return type(v) is dict and len(v) == 1 and type(v.get("b64")) is str


_B64_ALPHABET = re.compile(r"[A-Za-z0-9+/]*\Z")
_B64_SPACE = re.compile(r"[ \t\n\v\f\r]")


def _b64decode(s: str) -> bytes | None:
    """absl::Base64Unescape: standard alphabet; ASCII whitespace skipped anywhere; padding with
    ``=`` or ``.`` optional, but if present exactly right; None when it refuses."""
    if _B64_SPACE.search(s):
        s = _B64_SPACE.sub("", s)
    data = s.rstrip("=.")
    pad = len(s) - len(data)
    if not _B64_ALPHABET.match(data):
        return None
    state = len(data) % 4
    if state == 1 or (pad and pad != (0, 0, 2, 1)[state]):
        return None
    try:
        return binascii.a2b_base64(data + "=" * ((4 - state) % 4))
    except binascii.Error:  # not expected after the checks above
        return None


class _Strings:
    """JSON strings to the bytes rapidjson would hold."""

    def __init__(self, raw: bool) -> None:
        # Valid UTF-8 body: surrogates came from escapes, and a lone low surrogate escape is
        # stored by rapidjson as its 3-byte encoding. Invalid UTF-8 body: they are raw bytes.
        self.errors = "surrogateescape" if raw else "surrogatepass"

    def encode(self, s: str) -> bytes:
        try:
            return s.encode("utf-8")
        except UnicodeEncodeError:
            return s.encode("utf-8", self.errors)


def _leaf_error(v: Any, dtype: int) -> ServingError | None:
    """TF Serving's error for a non-list JSON value in a tensor of ``dtype``, or None."""
    t = type(v)
    if t is dict:
        if dtype != DataType.DT_STRING:
            return _type_error(v, dtype)
        if not _is_b64(v):
            return _invalid(f"JSON Value: {_debug_string(v)} not formatted correctly for base64 "
                            "data")
        if _b64decode(v["b64"]) is None:
            return _invalid("Unable to base64 decode")
        return None
    if dtype in _FLOATS:
        ok = t in _NUMBER_TYPES
    elif dtype in _RANGES:
        lo, hi = _RANGES[dtype]
        ok = t is int and lo <= v <= hi
    elif dtype == DataType.DT_BOOL:
        ok = t is bool
    elif dtype == DataType.DT_STRING:
        ok = t is str
    else:
        return ServingError(Code.UNIMPLEMENTED, f"Conversion of JSON Value: {_debug_string(v)} "
                                                f"to type: {_dtype_name(dtype)}")
    return None if ok else _type_error(v, dtype)


def _dense_shape(v: Any) -> list[int]:
    """The shape read off the first element at each level (TF's GetDenseTensorShape)."""
    shape = []
    while type(v) is list:
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return shape


def _check_fill(v: Any, level: int, shape: list[int], dtype: int) -> None:
    """TF's FillTensorProto walk: raises the first error in document order."""
    rank = len(shape)
    if type(v) is not list:
        if level != rank:
            raise _invalid(f"JSON Value: {_debug_string(v)} found at incorrect level: "
                           f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        err = _leaf_error(v, dtype)
        if err is not None:
            raise err
        return
    if level >= rank:
        raise _invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(v) != shape[level]:
        raise _invalid(f"Encountered list at unexpected size: {len(v)} at level: {level} "
                       f"expected size: {shape[level]}")
    for x in v:
        _check_fill(x, level + 1, shape, dtype)


def _flatten(v: Any, shape: list[int]) -> list[Any] | None:
    """The leaves of ``v`` in order if it is dense with ``shape``, else None."""
    items = [v]
    for dim in shape:
        if set(map(type, items)) != {list} or set(map(len, items)) != {dim}:
            return None
        items = list(chain.from_iterable(items))
    if items and list in set(map(type, items)):
        return None
    return items


def _convert(leaves: list[Any], dtype: int, strings: _Strings) -> np.ndarray | None:
    """The leaves as a flat array of ``dtype``, or None if any is not acceptable."""
    types = set(map(type, leaves))
    if dtype in _FLOATS:
        if not types <= _NUMBER_TYPES:
            return None
        a = np.array(leaves, dtype=np.float64)
        if dtype == DataType.DT_FLOAT:
            with np.errstate(over="ignore"):  # rapidjson GetFloat(): out of range -> +-inf
                a = a.astype(np.float32)
        return a
    if dtype in _RANGES:
        if not types <= {int}:
            return None
        lo, hi = _RANGES[dtype]
        try:
            a = np.array(leaves, dtype=np.uint64 if dtype == DataType.DT_UINT64 else np.int64)
        except OverflowError:
            return None
        if len(a) and (int(a.min()) < lo or int(a.max()) > hi):
            return None
        # int8/int16/uint8 travel as int32 in TF and are then cast, wrapping like C.
        return a.astype(to_numpy(dtype))
    if dtype == DataType.DT_BOOL:
        return np.array(leaves, dtype=np.bool_) if types <= {bool} else None
    if dtype == DataType.DT_STRING:
        out = np.empty(len(leaves), dtype=object)
        if types <= {str}:
            out[:] = [strings.encode(s) for s in leaves]
            return out
        values = []
        for x in leaves:
            if type(x) is str:
                values.append(strings.encode(x))
            elif _is_b64(x) and (decoded := _b64decode(x["b64"])) is not None:
                values.append(decoded)
            else:
                return None
        out[:] = values
        return out
    if leaves:  # any value at all of an unsupported dtype is an error
        return None
    try:
        return np.empty(0, dtype=to_numpy(dtype))
    except (KeyError, ValueError):
        return None


class _Budget:
    """The request's tensor limits, and the elements converted so far in it (for
    ``max_request_elements``)."""

    def __init__(self, limits: CodecLimits) -> None:
        self.limits = limits
        self.used = 0


def _limit_error(name: str, shape: list[int], budget: _Budget, new: int | None = None
                 ) -> ServingError | None:
    """Our own limits on a tensor of ``shape`` (``new`` elements about to be added)."""
    limits = budget.limits
    if len(shape) > limits.max_tensor_rank:
        return _invalid(f"Input: {name} has rank {len(shape)}, which exceeds the maximum tensor "
                        f"rank of {limits.max_tensor_rank}")
    count = math.prod(shape)
    if count > limits.max_tensor_elements:
        return _invalid(f"Input: {name} has {count} elements, which exceeds the maximum of "
                        f"{limits.max_tensor_elements} elements per tensor")
    if budget.used + (count if new is None else new) > limits.max_request_elements:
        return _invalid(f"Request has more than {limits.max_request_elements} tensor elements, "
                        "the maximum per request")
    return None


def _fast_tensor(v: Any, shape: list[int], dtype: int, strings: _Strings) -> np.ndarray | None:
    """The tensor if ``v`` is dense with ``shape`` and every value fits ``dtype``, else None."""
    leaves = _flatten(v, shape)
    if leaves is None:
        return None
    a = _convert(leaves, dtype, strings)
    return None if a is None else a.reshape(shape)


def _tensor(v: Any, name: str, dtype: int, strings: _Strings, budget: _Budget) -> np.ndarray:
    """One tensor from a JSON value with TF's dense-shape rules; errors as TF Serving's."""
    shape = _dense_shape(v)
    err = _limit_error(name, shape, budget)
    if err is not None:
        raise err
    a = _fast_tensor(v, shape, dtype, strings)
    if a is None:
        _check_fill(v, 0, shape, dtype)  # raises TF Serving's first error
        # Dense and every value fits, yet no array: an empty tensor of a dtype numpy lacks.
        raise ServingError(Code.UNIMPLEMENTED, f"Conversion of JSON Value: {_debug_string(v)} "
                                               f"to type: {_dtype_name(dtype)}")
    budget.used += a.size
    return a


def _is_element_object(v: Any) -> bool:
    return type(v) is dict and not _is_b64(v)


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


class _Rows:
    """TF Serving's element-by-element reading of ``instances``, with its exact errors."""

    def __init__(self, dtypes: Mapping[str, int], strings: _Strings, budget: _Budget) -> None:
        self.dtypes = dtypes
        self.strings = strings
        self.budget = budget
        self.shapes: dict[str, list[int]] = {}
        self.sizes: dict[str, int] = {}
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, item: Any, name: str) -> None:
        """TF's AddInstanceItem: one element's value for input ``name``."""
        if name not in self.dtypes:
            raise _invalid(f"JSON object: does not have named input: {_clean(name)}")
        dtype = self.dtypes[name]
        shape = _dense_shape(item)
        parts = self.parts.setdefault(name, [])
        err = _limit_error(name, [len(parts) + 1, *shape], self.budget, math.prod(shape))
        if err is not None:
            raise err
        a = _fast_tensor(item, shape, dtype, self.strings)
        if a is None:
            _check_fill(item, 0, shape, dtype)
            raise ServingError(Code.UNIMPLEMENTED, f"Conversion of JSON Value: "
                                                   f"{_debug_string(item)} to type: "
                                                   f"{_dtype_name(dtype)}")
        if name not in self.sizes:
            self.sizes[name], self.shapes[name] = a.size, shape
        elif self.sizes[name] != a.size:
            raise _invalid(f"Expecting tensor size: {self.sizes[name]} but got: {a.size}")
        elif self.shapes[name] != shape:
            raise _invalid(f"Expecting shape {_shape_text(self.shapes[name])} but got: "
                           f"{_shape_text(shape)}")
        parts.append(a)
        self.budget.used += a.size

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.stack(parts) for name, parts in self.parts.items()}


def _fast_rows(instances: list[Any], names: list[str], objects: bool, dtypes: Mapping[str, int],
               strings: _Strings, budget: _Budget) -> dict[str, np.ndarray] | None:
    """The whole batch as one dense tensor per input, when nothing is wrong with it; else None
    (and the exact element-by-element reading finds TF Serving's error)."""
    if objects:
        keys = set(names)
        if not all(_is_element_object(e) and e.keys() == keys for e in instances):
            return None
        columns = {name: [e[name] for e in instances] for name in names}
    else:
        columns = {names[0]: instances}
    trial = _Budget(budget.limits)
    trial.used = budget.used
    out = {}
    for name, column in columns.items():
        shape = _dense_shape(column)
        if _limit_error(name, shape, trial) is not None:
            return None
        a = _fast_tensor(column, shape, dtypes[name], strings)
        if a is None:
            return None
        trial.used += a.size
        out[name] = a
    budget.used = trial.used
    return out


def _from_instances(instances: list[Any], dtypes: Mapping[str, int], strings: _Strings,
                    budget: _Budget) -> dict[str, np.ndarray]:
    names = sorted(dtypes)
    if type(instances[0]) is not dict and len(names) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple "
                       "input tensors required as per tensorinfo_map")
    # Element 0 decides; a {"b64": ...} element is a value, not an object of named inputs.
    objects = _is_element_object(instances[0])
    fast = _fast_rows(instances, names, objects, dtypes, strings, budget)
    if fast is not None:
        return fast
    rows = _Rows(dtypes, strings, budget)
    for i, elem in enumerate(instances):
        if objects:
            if not _is_element_object(elem):
                raise _invalid(f"Expecting object but got list at item {i} of input list")
            for key, item in elem.items():
                try:
                    rows.add(item, key)
                except ServingError as e:
                    raise _invalid(f"Failed to process element: {i} key: {_clean(key)} of "
                                   f"'instances' list. Error: {e}") from None
            if elem.keys() != set(names):
                raise _invalid(f"Failed to process element: {i} of 'instances' list. JSON "
                               f"object: {_debug_string(elem)} keys must be equal to: "
                               f"{','.join(names)}")
        else:
            if _is_element_object(elem):
                raise _invalid(f"Expecting value/list but got object at item {i} of input list")
            try:
                rows.add(elem, names[0])
            except ServingError as e:
                raise _invalid(f"Failed to process element: {i} of 'instances' list. Error: "
                               f"{e}") from None
    return rows.tensors()


def _from_inputs(value: Any, dtypes: Mapping[str, int], strings: _Strings,
                 budget: _Budget) -> dict[str, np.ndarray]:
    names = sorted(dtypes)
    if type(value) is not dict or _is_b64(value):
        if len(names) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple "
                           "input tensors required as per tensorinfo_map")
        return {names[0]: _tensor(value, names[0], dtypes[names[0]], strings, budget)}
    out = {}
    for name in names:  # extra keys are ignored, as in TF Serving
        if name not in value:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        out[name] = _tensor(value[name], name, dtypes[name], strings, budget)
    return out


def _parse_predict_request(body: bytes, input_dtypes: Callable[[str], Mapping[str, DataType]],
                           limits: CodecLimits) -> PredictRequest:
    """``JsonCodec(limits).parse_predict_request``."""
    doc = _parse_document(bytes(body), limits)
    top = doc.value
    raw_name = ""
    if "signature_name" in top:
        raw_name = top["signature_name"]
        if type(raw_name) is not str:
            raise _invalid(f"JSON Value: {_debug_string(top)} not formatted correctly. "
                           "'signature_name' key must be a string value.")
    signature_name = raw_name or DEFAULT_SIGNATURE
    dtypes = {name: int(dt) for name, dt in input_dtypes(signature_name).items()}
    if not dtypes:
        raise _invalid(f"Failed to get input map for signature: {raw_name or 'DEFAULT'}")
    strings = _Strings(doc.raw)
    budget = _Budget(limits)
    if "instances" in top:
        if "inputs" in top:
            raise _invalid(f"JSON Value: {_debug_string(top)} Not formatted correctly expecting "
                           "only one of 'inputs' or 'instances' keys to exist ")
        instances = top["instances"]
        if type(instances) is not list:
            raise _invalid(f"JSON Value: {_debug_string(top)} Expecting 'instances' to be an "
                           "list/array")
        if not instances:
            raise _invalid(f"JSON Value: {_debug_string(top)} No values in 'instances' array")
        inputs = _from_instances(instances, dtypes, strings, budget)
        return PredictRequest(signature_name, inputs, columnar=False)
    if "inputs" in top:
        inputs = _from_inputs(top["inputs"], dtypes, strings, budget)
        return PredictRequest(signature_name, inputs, columnar=True)
    raise _invalid("Missing 'inputs' or 'instances' key")


# ---------------------------------------------------------------------------------------------
# Tensors to JSON.

def _output_dtype(a: np.ndarray, declared: DataType | None) -> int:
    if declared is not None:
        return int(declared)
    try:
        return from_numpy(a.dtype)
    except KeyError:
        return -1  # a numpy dtype TF has no name for


def _string_value(x: Any) -> bytes:
    if type(x) is bytes:
        return x
    if isinstance(x, str):
        return x.encode("utf-8", "surrogatepass")
    return bytes(x)


def _value_tokens(name: str, a: np.ndarray, dtype: int) -> list[str]:
    """The JSON text of each value of ``a`` (flattened); raises for dtypes JSON cannot carry."""
    if dtype == DataType.DT_FLOAT:
        with np.errstate(over="ignore"):  # a declared float holding big doubles: +-inf, as TF
            return _float_tokens(a.astype(np.float32, copy=False), True)
    if dtype == DataType.DT_DOUBLE:
        return _float_tokens(a.astype(np.float64, copy=False), False)
    if dtype in _RANGES:
        return list(map(str, a.astype(to_numpy(dtype), copy=False).ravel().tolist()))
    if dtype == DataType.DT_BOOL:
        return ["true" if x else "false" for x in a.ravel().tolist()]
    if dtype == DataType.DT_STRING:
        values = [_string_value(x) for x in a.ravel().tolist()]
        if name.endswith("_bytes"):
            return ['{"b64": "' + base64.b64encode(x).decode("ascii") + '"}' for x in values]
        return [_json_string(x.decode("utf-8", "replace")) for x in values]
    if a.size == 0:  # nothing is written, so nothing fails (as in TF Serving)
        return []
    type_name = _dtype_name(dtype) if dtype >= 0 else a.dtype.name
    raise _invalid(f"Failed to write JSON value for tensor type: {type_name}")


def _nest(tokens: list[str], dims: tuple[int, ...], count: int) -> list[str]:
    """Groups flat value texts into ``count`` nested-list texts, each of shape ``dims``."""
    if 0 in dims:
        def empty(d: tuple[int, ...]) -> str:
            return "[]" if d[0] == 0 else "[" + ", ".join([empty(d[1:])] * d[0]) + "]"
        return [empty(dims)] * count
    items = tokens
    for dim in reversed(dims):
        items = ["[" + ", ".join(items[i:i + dim]) + "]" for i in range(0, len(items), dim)]
    return items


def format_predict_response(outputs: Mapping[str, np.ndarray], columnar: bool,
                            output_dtypes: Mapping[str, DataType] | None = None) -> bytes:
    """The JSON body of a predict response: ``{"predictions": ...}`` (row) or
    ``{"outputs": ...}`` (columnar), with TF Serving's value text and errors.

    Row: every output needs rank >= 1 and the same first dimension; one output gives a list of
    its rows, several give a list of ``{alias: row}`` objects. Columnar: one output is written
    whole (a scalar as a bare value), several as ``{alias: tensor}``. ``output_dtypes`` gives
    each alias's DataType; without it the numpy dtype decides. Outputs are written in sorted
    alias order.
    """
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    if not columnar:
        batch = -1
        for name in names:
            a = arrays[name]
            if a.ndim == 0:
                raise _invalid(f"Tensor name: {name} has no shape information ")
            if batch >= 0 and a.shape[0] != batch:
                raise _invalid(f"Tensor name: {name} has inconsistent batch size: {a.shape[0]} "
                               f"expecting: {batch}")
            batch = a.shape[0]
    rows: dict[str, list[str]] = {}
    for name in names:
        a = arrays[name]
        declared = None if output_dtypes is None else output_dtypes.get(name)
        tokens = _value_tokens(name, a, _output_dtype(a, declared))
        if a.ndim == 0:
            rows[name] = tokens
        else:
            rows[name] = _nest(tokens, a.shape[1:], a.shape[0])
    if columnar:
        whole = {name: rows[name][0] if arrays[name].ndim == 0
                 else "[" + ", ".join(rows[name]) + "]" for name in names}
        if len(names) == 1:
            body = '{"outputs": ' + whole[names[0]] + "}"
        else:
            body = ('{"outputs": {' + ", ".join(_json_string(n) + ": " + whole[n] for n in names)
                    + "}}")
    elif len(names) == 1:
        body = '{"predictions": [' + ", ".join(rows[names[0]]) + "]}"
    else:
        keys = [_json_string(n) + ": " for n in names]
        items = ["{" + ", ".join(k + rows[n][i] for k, n in zip(keys, names, strict=True)) + "}"
                 for i in range(batch)]
        body = '{"predictions": [' + ", ".join(items) + "]}"
    return body.encode("utf-8")


def format_error(message: str) -> bytes:
    """TF Serving's error body, byte for byte: rapidjson PrettyWriter's
    ``{\\n    "error": "<escaped message>"\\n}``."""
    return ('{\n    "error": ' + _json_string(_clean(message)) + "\n}").encode("utf-8")


# ---------------------------------------------------------------------------------------------
# The codec.

class JsonCodec:
    """The REST predict JSON codec under ``limits`` (a ``CodecLimits``, kept for its life).

    ``parse_predict_request(body, input_dtypes)`` parses a REST predict body (row ``instances``
    or columnar ``inputs``) into tensors: ``input_dtypes(signature_name)`` returns the
    signature's ``{alias: DataType}`` and raises ServingError itself for an unknown signature;
    it is called once, with the signature name after defaulting. Every failure is a ServingError
    carrying TF Serving's code and message (INVALID_ARGUMENT, or UNIMPLEMENTED for a columnar
    input of a dtype JSON cannot express; a limit's error names the limit).
    ``format_predict_response`` and ``format_error`` are the module's (no limit applies to
    them). Thread-safe: it holds nothing but its limits.
    """

    __slots__ = ("limits",)

    format_predict_response = staticmethod(format_predict_response)
    format_error = staticmethod(format_error)

    def __init__(self, limits: CodecLimits) -> None:
        self.limits = limits

    def parse_predict_request(self, body: bytes,
                              input_dtypes: Callable[[str], Mapping[str, DataType]]
                              ) -> PredictRequest:
        return _parse_predict_request(body, input_dtypes, self.limits)

    def __repr__(self) -> str:
        return f"JsonCodec({self.limits!r})"


# ``JsonCodec(DEFAULT_CODEC_LIMITS).parse_predict_request``, for callers without a codec of their
# own (a server hands its own ``CodecLimits`` to the codecs it makes).
parse_predict_request = JsonCodec(DEFAULT_CODEC_LIMITS).parse_predict_request
