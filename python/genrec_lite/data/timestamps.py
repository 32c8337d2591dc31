"""Interaction timestamps: unix seconds, milliseconds (or finer) or ISO-8601 text, and plain
positions ("order") that carry no calendar.

Values stay in the unit of the file (no lossy conversion); :class:`Interactions` records the unit
so that a split stated as a date or as ``last-7d`` can be turned into the log's own numbers. ISO
text becomes unix seconds; a date without a time zone is read as UTC.
"""

from __future__ import annotations

import datetime as _dt
import re

import numpy as np

from ..errors import InvalidArgumentError

TIME_UNITS = ("auto", "s", "ms", "us", "ns", "order")
PER_SECOND = {"s": 1, "ms": 10 ** 3, "us": 10 ** 6, "ns": 10 ** 9}
# Numbers count as a unit of unix time when the whole column lies between early 1973 and 2286 in
# it; anything else (0..n positions, the benchmark's pseudo-timestamps) has no calendar meaning.
_RANGES = {"s": (1e8, 1e10), "ms": (1e11, 1e13), "us": (1e14, 1e16), "ns": (1e17, 1e19)}
_UNIT_NAMES = {"s": "unix seconds", "ms": "unix milliseconds", "us": "unix microseconds",
               "ns": "unix nanoseconds", "order": "positions (no calendar)"}
_ISO_START = re.compile(r"^\s*\d{4}-?\d{2}-?\d{2}")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def check_unit(unit: str | None) -> str:
    u = "auto" if unit is None else str(unit).strip().lower()
    if u not in TIME_UNITS:
        raise InvalidArgumentError(f"time unit {unit!r} is not known; expected one of "
                                   f"{', '.join(TIME_UNITS)}")
    return u


def detect_unit(times: np.ndarray) -> str:
    """The unix-time unit every value of ``times`` fits, else ``"order"``."""
    if len(times) == 0:
        return "order"
    lo, hi = float(np.min(times)), float(np.max(times))
    for unit, (a, b) in _RANGES.items():
        if a <= lo and hi < b:
            return unit
    return "order"


def unit_name(unit: str) -> str:
    return _UNIT_NAMES.get(unit, unit)


def looks_like_iso(value: object) -> bool:
    return isinstance(value, str) and bool(_ISO_START.match(value))


def parse_iso(text: str) -> float:
    """Unix seconds of an ISO-8601 date or date-time (no zone: UTC); ValueError when it is not one."""
    s = text.strip()
    if s.endswith(("z", "Z")):
        s = s[:-1] + "+00:00"
    return date_seconds(_dt.datetime.fromisoformat(s))


def date_seconds(value: "_dt.date") -> float:
    """Unix seconds of a datetime (naive: UTC) or a date (its midnight, UTC)."""
    if not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return (value - _EPOCH).total_seconds()


def parse_iso_column(values: list) -> tuple[np.ndarray, int | None]:
    """Unix seconds for a column of ISO-8601 strings: (int64, or float64 with fractions; the row
    of the first value that is not a date, or None). Each distinct string is parsed once."""
    arr = np.asarray(["" if v is None else str(v) for v in values], dtype=str)
    uniq, inverse = np.unique(arr, return_inverse=True)
    out = np.empty(len(uniq), dtype=np.float64)
    for k, s in enumerate(uniq.tolist()):
        try:
            out[k] = parse_iso(s)
        except ValueError:
            return out, int(np.flatnonzero(arr == s)[0])
    times = out[inverse.ravel()]
    if (times == np.floor(times)).all():
        return times.astype(np.int64), None
    return times, None


def format_time(t: float, unit: str) -> str:
    """``t`` as a reader would say it: a UTC date-time for unix units, the number for "order"."""
    if unit not in PER_SECOND:
        return f"{t:g}" if isinstance(t, float) and not float(t).is_integer() else str(int(t))
    seconds = float(t) / PER_SECOND[unit]
    try:
        stamp = _EPOCH + _dt.timedelta(seconds=seconds)
    except OverflowError:
        return str(t)
    text = stamp.strftime("%Y-%m-%d %H:%M:%S")
    return text + " UTC"


def number_text(t: float) -> str:
    """A bound written back as the shortest exact text (ints without a decimal point)."""
    t = float(t)
    return str(int(t)) if t.is_integer() else repr(t)
