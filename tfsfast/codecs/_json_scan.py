"""Byte-level scans over a REST JSON body, for what Python's parser does not report as rapidjson
does: the nesting depth before parsing, where a failed token starts, which containers are open,
and unpaired surrogate escapes.

All work on bytes, where structural characters are ASCII and rapidjson's offsets are byte
offsets, and all are linear in what they read (regular expressions are possessive, windows grow
geometrically), so a hostile body costs no more than its length.
"""

from __future__ import annotations

import re

import numpy as np

from tfsfast.codecs._json_errors import BAD_SURROGATE

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


def depth_exceeds(b: bytes, lo: int, limit: int) -> bool:
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


def open_containers(b: bytes, lo: int, r: int) -> list[int]:
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


def open_string_start(b: bytes, lo: int, pos: int) -> int | None:
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


WORD = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+-"
WS = b" \t\n\r"


def run_start(b: bytes, lo: int, pos: int, chars: bytes) -> int:
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


def lone_high_surrogate(b: bytes, lo: int, hi: int) -> tuple[str, int] | None:
    """rapidjson's error for the first unpaired high surrogate escape starting before ``hi``
    (Python accepts them). ``b[lo:hi]`` is valid JSON text to Python, so every backslash is in
    a string, and ``\\u`` after an even run of backslashes is an escape."""
    for m in _UNPAIRED_HIGH_RE.finditer(b, lo, min(len(b), hi + 12)):
        start = m.start()
        if start >= hi:
            break
        if (start - run_start(b, lo, start, b"\\")) % 2 == 0:
            return BAD_SURROGATE, start
        # else ``\\uD800``: an escaped backslash, then text
    return None


def low_surrogate_escape(b: bytes, lo: int, hi: int) -> bool:
    """Whether ``b[lo:hi]`` (valid JSON text) has a low surrogate escape such as ``\\udc80``."""
    for m in _LOW_ESCAPE_RE.finditer(b, lo, hi):
        if (m.start() - run_start(b, lo, m.start(), b"\\")) % 2 == 0:
            return True
    return False
