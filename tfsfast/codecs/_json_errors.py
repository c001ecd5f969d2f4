"""rapidjson 1.1.0's parse errors, as TF Serving returns them: the English texts
(``rapidjson/error/en.h``) and, for numbers, rapidjson's rule for which ones are too big.

TF Serving parses REST bodies with rapidjson (``kParseIterativeFlag | kParseNanAndInfFlag |
kParseStopWhenDoneFlag``) and returns its message and byte offset as ``JSON Parse error:
<text> at offset: <n>``. The JSON codec's twin reads bodies with Python's parser; this module,
``_json_scan`` and ``_json_emulator`` let it give rapidjson's error wherever the two disagree.
"""

from __future__ import annotations

from tfsfast.util.status import ServingError, invalid_argument

# An error found: (rapidjson's text, byte offset).
Err = tuple[str, int]

EMPTY = "The document is empty."
ROOT_NOT_SINGULAR = "The document root must not be followed by other values."
VALUE_INVALID = "Invalid value."
MISS_NAME = "Missing a name for object member."
MISS_COLON = "Missing a colon after a name of object member."
MISS_COMMA_CURLY = "Missing a comma or '}' after an object member."
MISS_COMMA_SQUARE = "Missing a comma or ']' after an array element."
BAD_HEX = "Incorrect hex digit after \\u escape in string."
BAD_SURROGATE = "The surrogate pair in string is invalid."
BAD_ESCAPE = "Invalid escape character in string."
MISS_QUOTE = "Missing a closing quotation mark in string."
BAD_ENCODING = "Invalid encoding in string."
TOO_BIG = "Number too big to be stored in double."
MISS_FRACTION = "Miss fraction part in number."
MISS_EXPONENT = "Miss exponent in number."


def parse_error(message: str, offset: int) -> ServingError:
    """TF Serving's INVALID_ARGUMENT for a rapidjson parse error at byte ``offset``."""
    return invalid_argument(f"JSON Parse error: {message} at offset: {offset}")


# ---------------------------------------------------------------------------------------------
# rapidjson's number reading, as far as it decides *whether* a number is an error. Values are
# taken from Python's correctly rounded float(); only the error decision is emulated.

_DBL_MAX_DIV10 = 1.7976931348623157e307
_MAX_SAFE = (1 << 53) - 1


class IntPhase:
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
        i, k = self._accumulate(digits, ord(digits[0]) - 48, 1, t32, l32)
        self.use64 = k < n
        if self.use64:
            i, k = self._accumulate(digits, i, k, t64, l64)
            self.use_double = k < n
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

    def _accumulate(self, digits: str, i: int, k: int, threshold: int, last: str
                    ) -> tuple[int, int]:
        """Reads ``digits[k:]`` into ``i`` until the next digit would overflow the width whose
        ``i / 10`` bound is ``threshold`` (and last digit ``last``); returns ``i`` and where it
        stopped (``len(digits)`` when every digit fitted)."""
        n = len(digits)
        while k < n:
            c = digits[k]
            if i >= threshold and (i != threshold or c > last):
                break
            i = i * 10 + ord(c) - 48
            self.sig += 1
            k += 1
        return i, k


def fraction_exponent(phase: IntPhase, frac: str) -> int:
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


def exp_too_big(exp_frac: int, exp_digits: str) -> bool:
    max_exp = 308 - exp_frac
    digits = exp_digits.lstrip("0") or "0"
    if len(digits) > len(str(max_exp)):  # never int() a hostile million-digit exponent
        return True
    return int(digits) > max_exp


def number_too_big(minus: bool, int_digits: str, frac: str | None, exp_sign: str | None,
                    exp_digits: str | None) -> bool:
    """Whether rapidjson 1.1.0 fails this number with ``Number too big to be stored in double.``"""
    phase = IntPhase(minus, int_digits)
    if phase.too_big:
        return True
    if exp_digits is None or exp_sign == "-":
        return False
    return exp_too_big(fraction_exponent(phase, frac) if frac else 0, exp_digits)


class NumberTooBig(Exception):
    """Raised by the parser's number hooks for a literal rapidjson calls too big (``token``)."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


def as_double(v: int) -> int | float:
    """A Python int as rapidjson holds it: integers outside 64 bits are doubles."""
    return v if -(1 << 63) <= v < (1 << 64) else float(v)
