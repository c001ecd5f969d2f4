"""A rapidjson 1.1.0 iterative-parser emulator over bytes.

It only finds the first error (rapidjson's text, byte offset) from a given state; it builds
nothing. The JSON codec's twin runs it from the token where Python's parser failed, so it reads
a few tokens, never the whole body (and at most ``_EMULATOR_TOKENS``).
"""

from __future__ import annotations

import re

from tfsfast.codecs._json_errors import (
    BAD_ESCAPE,
    BAD_HEX,
    BAD_SURROGATE,
    EMPTY,
    MISS_COLON,
    MISS_COMMA_CURLY,
    MISS_COMMA_SQUARE,
    MISS_EXPONENT,
    MISS_FRACTION,
    MISS_NAME,
    MISS_QUOTE,
    ROOT_NOT_SINGULAR,
    TOO_BIG,
    VALUE_INVALID,
    Err,
    IntPhase,
    exp_too_big,
    fraction_exponent,
)
from tfsfast.codecs._json_scan import WS, open_containers

(START, FINISH, _OBJ_INIT, _MEMBER_KEY, _KV_DELIM, _MEMBER_VALUE, _MEMBER_DELIM, _ARR_INIT,
 _ELEMENT, _ELEM_DELIM) = range(10)

_HANDLE_ERROR = {
    START: EMPTY, FINISH: ROOT_NOT_SINGULAR, _OBJ_INIT: MISS_NAME, _MEMBER_DELIM: MISS_NAME,
    _MEMBER_KEY: MISS_COLON, _MEMBER_VALUE: MISS_COMMA_CURLY, _KV_DELIM: VALUE_INVALID,
    _ARR_INIT: VALUE_INVALID, _ELEM_DELIM: VALUE_INVALID, _ELEMENT: MISS_COMMA_SQUARE,
}
_VALUE_STATES = {START: FINISH, _KV_DELIM: _MEMBER_VALUE, _ARR_INIT: _ELEMENT,
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


def _rj_hex4(b: bytes, i: int) -> tuple[int, int, bool]:
    cp = 0
    for _ in range(4):
        if i >= len(b) or b[i] not in _HEX_DIGITS:
            return cp, i, True
        cp = cp * 16 + int(chr(b[i]), 16)
        i += 1
    return cp, i, False


def _rj_string(b: bytes, i: int) -> tuple[Err | None, int]:
    n = len(b)
    i += 1
    while True:
        i = _match_end(_PLAIN_RE, b, i)
        if i >= n:  # end of input (a NUL byte ends it too)
            return (MISS_QUOTE, n), n
        c = b[i]
        if c == 0x22:
            return None, i + 1
        if c != 0x5C:  # a control character
            return (BAD_ESCAPE, i), i
        esc = i
        i += 1
        e = b[i] if i < n else 0
        if e in _SIMPLE_ESCAPES:
            i += 1
            continue
        if e != 0x75:
            return (BAD_ESCAPE, esc), i
        cp, i, bad = _rj_hex4(b, i + 1)
        if bad:
            return (BAD_HEX, esc), i
        if 0xD800 <= cp <= 0xDBFF:
            if i >= n or b[i] != 0x5C:
                return (BAD_SURROGATE, esc), i
            i += 1
            if i >= n or b[i] != 0x75:
                return (BAD_SURROGATE, esc), i
            cp2, i, bad = _rj_hex4(b, i + 1)
            if bad:
                return (BAD_HEX, esc), i
            if not 0xDC00 <= cp2 <= 0xDFFF:
                return (BAD_SURROGATE, esc), i


def _rj_literal(b: bytes, i: int, word: bytes) -> tuple[Err | None, int]:
    i += 1
    for ch in word[1:]:
        if i < len(b) and b[i] == ch:
            i += 1
        else:
            return (VALUE_INVALID, i), i
    return None, i


def _rj_number(b: bytes, i: int) -> tuple[Err | None, int]:
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
                return (VALUE_INVALID, i), i
        if not ok:
            return (VALUE_INVALID, i), i
    else:
        return (VALUE_INVALID, i), i
    phase = IntPhase(minus, int_digits)
    if phase.too_big:
        return (TOO_BIG, start), i
    frac = None
    if consume(0x2E):
        end = _match_end(_DIGITS_RE, b, i)
        if end == i:
            return (MISS_FRACTION, i), i
        frac = b[i:end].decode("ascii")
        i = end
    if consume(0x65) or consume(0x45):
        minus_exp = consume(0x2D) if not consume(0x2B) else False
        end = _match_end(_DIGITS_RE, b, i)
        if end == i:
            return (MISS_EXPONENT, i), i
        exp_digits = b[i:end].decode("ascii")
        i = end
        if not minus_exp and exp_too_big(fraction_exponent(phase, frac) if frac else 0, exp_digits):
            return (TOO_BIG, start), i
    return None, i


def _rj_value(b: bytes, i: int) -> tuple[Err | None, int]:
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


def rj_scan(b: bytes, i: int, state: int, stack: list[int]) -> Err | None:
    """Runs rapidjson's iterative parser from ``i`` in ``state`` with open containers ``stack``
    (outermost first) until the first error, which it returns; None if the value completes."""
    n = len(b)
    for _ in range(_EMULATOR_TOKENS):
        i = _match_end(_WS_RE, b, i)
        if i >= n:
            return None if state == FINISH else (_HANDLE_ERROR[state], i)
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
        if state == FINISH:
            return None
    return None


def derive_state(b: bytes, lo: int, r: int, after_key: bool) -> tuple[int, list[int]]:
    """The parser state and open containers at ``r``, where ``b[lo:r]`` is a valid JSON prefix
    ending outside a string (``after_key``: Python failed expecting the colon after a key)."""
    stack = open_containers(b, lo, r)
    before = b[lo:r].rstrip(WS)
    if not before:
        return START, stack
    prev = before[-1]
    if prev == 0x5B:
        return _ARR_INIT, stack
    if prev == 0x7B:
        return _OBJ_INIT, stack
    if prev == 0x3A:
        return _KV_DELIM, stack
    if not stack:
        return FINISH, stack
    in_array = stack[-1] == 0x5B
    if prev == 0x2C:
        return (_ELEM_DELIM if in_array else _MEMBER_DELIM), stack
    if in_array:
        return _ELEMENT, stack
    return (_MEMBER_KEY if prev == 0x22 and after_key else _MEMBER_VALUE), stack
