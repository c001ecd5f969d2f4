"""Parsing a REST JSON body as TF Serving does (rapidjson 1.1.0), with Python's parser.

``parse_document(body, limits)`` returns the top-level object. Python's C parser does the work;
whatever it and rapidjson disagree on is reconciled so that the outcome is rapidjson's: a NUL
byte ends the input, a UTF-8 BOM is skipped, bytes after the top-level value are ignored,
``NaN``/``Inf``/``Infinity`` (optionally signed, even rapidjson 1.1.0's odd ``Inf.5`` == 0.5)
are numbers, integers outside the 64-bit range are doubles, a number rapidjson calls too big
fails, an unpaired high-surrogate escape fails. On a syntax error the emulator
(``_json_emulator``) re-reads the bytes from the start of the offending token to produce
rapidjson's message and offset. Of the ``CodecLimits``, the nesting depth (checked by a linear
scan before parsing) and the integer digits apply here.
"""

from __future__ import annotations

import functools
import json
import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from tfsfast.codecs._json_emulator import START, VALUE_INVALID, derive_state, rj_scan
from tfsfast.codecs._json_errors import (
    BAD_ENCODING,
    EMPTY,
    TOO_BIG,
    Err,
    IntPhase,
    NumberTooBig,
    number_too_big,
    parse_error,
)
from tfsfast.codecs._json_scan import (
    WORD,
    depth_exceeds,
    lone_high_surrogate,
    low_surrogate_escape,
    open_string_start,
    run_start,
)
from tfsfast.codecs._json_text import debug_string
from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.util.status import ServingError, invalid_argument

# ---------------------------------------------------------------------------------------------
# The number hooks of Python's parser: rapidjson's limits on numbers (values stay Python's).

_NUM_TOKEN = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?)([0-9]+))?\Z")


def _parse_float(s: str) -> float:
    v = float(s)
    # Only an infinite result, or an integer part of 309+ digits, can be too big for rapidjson.
    if v - v == 0.0 and len(s) < 309:
        return v
    m = _NUM_TOKEN.match(s)
    if m is not None and number_too_big(m[1] == "-", m[2], m[3], m[4], m[5]):
        raise NumberTooBig(s)
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
    if IntPhase(minus, s[minus:]).too_big:
        raise NumberTooBig(s)
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
class Document:
    """A parsed body: its top-level object, and how its strings are held."""

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



def _first_error(*candidates: Err | None) -> ServingError:
    found = [c for c in candidates if c is not None]
    message, offset = min(found, key=lambda c: c[1])
    return parse_error(message, offset)


def _syntax_error(src: _Source, e: json.JSONDecodeError) -> ServingError:
    """rapidjson's error for a body Python's parser failed on at ``e.pos``."""
    b, lo = src.b, src.start
    pos = src.byte_offset(e.pos)
    # Resume at the start of the token that failed: the string ``pos`` is inside of, or the
    # number/literal ending at ``pos`` (rapidjson reads ``1.`` or ``1e`` further than Python).
    resume = open_string_start(b, lo, pos)
    if resume is None:
        resume = run_start(b, lo, pos, WORD) if pos > lo and b[pos - 1] in WORD else pos
    state, stack = derive_state(b, lo, resume, e.msg.startswith("Expecting ':'"))
    found = rj_scan(b, resume, state, stack)
    # Not expected: both parsers agree on every prefix, so the emulator fails too.
    return _first_error(found or (VALUE_INVALID, pos), lone_high_surrogate(b, lo, pos))


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
            if open_string_start(b, lo, offset) is None:
                found = (TOO_BIG, offset)
                break
        pos = text.find(token, pos + 1)
    if found is None:  # not expected; keep the message, point at the start
        found = (TOO_BIG, lo)
    return _first_error(found, lone_high_surrogate(b, lo, found[1]))


def parse_document(body: bytes, limits: CodecLimits) -> Document:
    """Parses a request body as TF Serving does; the top level must be an object. Of
    ``limits``, the nesting depth and the integer digits apply here."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    src = _Source(body)
    b, lo = src.b, src.start
    if depth_exceeds(b, lo, limits.max_json_depth):
        raise invalid_argument(f"JSON nesting depth exceeds the maximum of {limits.max_json_depth}")
    blank = _WS_STR_RE.match(src.rewritten)  # a * run: it always matches
    assert blank is not None
    idx = blank.end()
    if idx == len(src.rewritten):
        raise parse_error(EMPTY, len(b))
    try:
        value, end = _decoder_for(b, lo, min(limits.max_int_digits, 20)).raw_decode(
            src.rewritten, idx)
    except json.JSONDecodeError as e:
        raise _syntax_error(src, e) from None
    except NumberTooBig as e:
        raise _too_big_error(src, e.token) from None
    end_b = src.byte_offset(end)
    problems: list[Err | None] = [lone_high_surrogate(b, lo, end_b)]
    if type(value) in (int, float):
        # Python stops a number where rapidjson reads on (``1.``, ``1e``); re-read it.
        problems.append(rj_scan(b, src.byte_offset(idx), START, []))
    if src.first_bad_byte >= 0 and low_surrogate_escape(b, lo, end_b):
        problems.append((BAD_ENCODING, src.first_bad_byte))
    if any(problems):
        raise _first_error(*problems)
    if type(value) is not dict:
        raise invalid_argument(f"JSON Value: {debug_string(value)} Is not object")
    return Document(value, src.first_bad_byte >= 0)
