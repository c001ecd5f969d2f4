"""Float text: TF Serving's ``WriteDecimal`` for tensor values in responses, and rapidjson's
``Writer::Double`` for JSON numbers echoed in messages.

TF Serving writes a float with ``%g`` and six digits, widened to ``%.9g`` (float32) or
``%.17g`` (float64) when that does not read back to the same value, ``.0`` appended to whole
numbers, and bare ``NaN``/``Infinity``/``-Infinity``. Values are converted a whole array at a
time (numpy), as the response writer needs them.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def shortest_double(v: float) -> str:
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


def float_tokens(a: np.ndarray, f32: bool) -> list[str]:
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


def decimal_text(v: float, f32: bool) -> str:
    return float_tokens(np.array([v], np.float32 if f32 else np.float64), f32)[0]
