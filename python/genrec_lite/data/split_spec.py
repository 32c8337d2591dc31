"""Split specs: the text after ``--split``, resolved against a data set into a :class:`SplitPlan`.

- ``auto``: the data set's own case files if it has them, else leave-one-out or a temporal split,
  chosen from the log (:func:`choose_split`; the plan says why);
- ``cases``: ``valid.jsonl`` / ``test.jsonl``, training on the log before the first test case;
- ``leave-one-out``, ``leave-one-out:final``: per user by time (see :func:`leave_one_out`);
- ``temporal:WHEN`` / ``temporal:VALID_FROM,TEST_FROM``: the test period starts at WHEN (and the
  validation period at VALID_FROM). A bound is a timestamp in the log's own unit (``2000000``,
  ``1527811200``), an ISO-8601 date (``2018-06-01``, ``2018-06-01T12:00:00Z``), a period before
  the log's last event (``last-7d``; units s, m, h, d, w) or a fraction of the log's time span
  (a number strictly between 0 and 1, ``0.9``). With one bound, validation is ``valid.jsonl``
  when the folder has one, else a period as long as the test period just before it.

A plan's :attr:`SplitPlan.spec` is the resolved split written back as plain numbers, so the
same split can be stated again exactly (on the same log, or on a part of it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgumentError
from . import timestamps as _times
from .splits import Split, leave_one_out, temporal_split

if TYPE_CHECKING:  # pragma: no cover
    from .dataset import Dataset
    from .interactions import Interactions
    from .splits import Case

SPLIT_SPECS = ("auto", "cases", "leave-one-out", "leave-one-out:final", "temporal:WHEN",
               "temporal:VALID_FROM,TEST_FROM")
_WHEN = ("WHEN is a timestamp in the log's unit, an ISO date such as 2018-06-01, a period such "
         "as last-7d, or a fraction of the time span such as 0.9")
_LAST = re.compile(r"^last-(\d+(?:\.\d+)?)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# auto: leave-one-out needs 3 events a user (train, valid, test); below this share of users
# having them, per-user leave-one-out would test too few of them and a temporal split is used.
_LOO_MIN_SHARE = 0.5
_AUTO_TEST_SHARE = 0.1  # auto temporal: the last 10% of events are the test period, 10% before valid


def _unknown(spec: object) -> InvalidArgumentError:
    return InvalidArgumentError(f"split {spec!r} is not known; expected one of "
                                f"{', '.join(SPLIT_SPECS)} ({_WHEN})")


def check_spec(spec: str) -> str:
    """Check the spec's syntax without a data set (bounds that need the log are checked later)."""
    if not isinstance(spec, str):
        raise _unknown(spec)
    s = spec.strip()
    if s in ("auto", "cases", "leave-one-out", "leave-one-out:final"):
        return s
    if s.startswith("temporal:"):
        bounds = s[len("temporal:"):].split(",")
        if 1 <= len(bounds) <= 2 and all(_bound_kind(b) for b in bounds):
            return s
    raise _unknown(spec)


def _bound_kind(text: str) -> str | None:
    t = text.strip()
    if _LAST.match(t):
        return "last"
    try:
        v = float(t)
    except ValueError:
        v = None
    if v is not None:
        if not math.isfinite(v):
            return None
        return "fraction" if 0 < v < 1 else "number"
    if _times.looks_like_iso(t):
        try:
            _times.parse_iso(t)
            return "date"
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class SplitPlan:
    """A split resolved against a log: what it is, where it cuts (in the log's units) and why."""

    kind: str                        # 'leave-one-out', 'leave-one-out:final', 'temporal', 'cases'
    test_from: float | None = None   # temporal / cases: the first test-period time (cases: None
    valid_from: float | None = None  # trains on the whole log); None: valid.jsonl, else none
    given: str = ""
    reason: str = ""
    time_unit: str = "order"
    valid_file: bool = False         # the folder's valid.jsonl is the validation set

    @property
    def spec(self) -> str:
        """The resolved split as a spec of plain numbers (states the same split again)."""
        if self.kind != "temporal":
            return self.kind
        bounds = [self.test_from] if self.valid_from is None else [self.valid_from, self.test_from]
        return "temporal:" + ",".join(_times.number_text(b) for b in bounds)

    def describe(self) -> str:
        """One line for a person: the split, in the log's terms, and why it was chosen."""
        fmt = lambda t: _times.format_time(t, self.time_unit)  # noqa: E731
        if self.kind == "temporal":
            text = f"{self.spec}: test from {fmt(self.test_from)}, " + (
                f"validation from {fmt(self.valid_from)}" if self.valid_from is not None else
                "validation on valid.jsonl" if self.valid_file else "no validation")
        elif self.kind == "cases":
            text = ("cases: " + ("valid.jsonl / " if self.valid_file else "") +
                    "test.jsonl, training on the whole log")
        else:
            text = self.kind
        if self.given and self.given != self.spec:
            text = f"{self.given} -> {text}"
        return text + (f" ({self.reason})" if self.reason else "")

    def apply(self, dataset: "Dataset", max_len: int | None) -> Split:
        """Training sequences, validation and test cases of ``dataset`` under this plan."""
        inter = dataset.interactions
        if self.kind.startswith("leave-one-out"):
            return leave_one_out(inter, max_len=max_len,
                                 train_on_valid=self.kind == "leave-one-out:final")
        if self.kind == "cases":
            return Split(inter.sequences(), list(dataset.valid_cases or []),
                         list(dataset.test_cases or []))
        split = temporal_split(inter, at=self.test_from, max_len=max_len,
                               valid_at=self.valid_from)
        if self.valid_from is None and dataset.valid_cases:
            split.valid = list(dataset.valid_cases)
        return split


def resolve_split(spec: str, dataset: "Dataset") -> SplitPlan:
    """The :class:`SplitPlan` of ``spec`` on ``dataset`` (bad or empty splits: a clear error)."""
    s = check_spec(spec)
    inter = dataset.interactions
    if s == "auto":
        return choose_split(dataset)
    if s == "cases":
        return _case_plan(dataset, given=s)
    if s.startswith("leave-one-out"):
        return SplitPlan(s, given=s, time_unit=inter.time_unit)
    bounds = [_resolve_bound(b.strip(), inter, s) for b in s[len("temporal:"):].split(",")]
    if len(bounds) == 2:
        valid_from, test_from = bounds
        if valid_from > test_from:
            raise InvalidArgumentError(
                f"split {s!r}: the validation period starts at {_fmt(valid_from, inter)}, after "
                f"the test period ({_fmt(test_from, inter)}); expected VALID_FROM <= TEST_FROM")
        return _temporal_plan(inter, test_from, valid_from, given=s)
    return _temporal_plan(inter, bounds[0], _window_before(inter, bounds[0], dataset), given=s,
                          valid_file=bool(dataset.valid_cases))


def make_split(dataset: "Dataset", spec: str, max_history: int | None) -> Split:
    """Training sequences, validation and test cases of ``dataset`` under the split ``spec``
    (histories cut to ``max_history`` items; None keeps them whole)."""
    return resolve_split(spec, dataset).apply(dataset, max_history)

def _fmt(t: float, inter: "Interactions") -> str:
    text = _times.format_time(t, inter.time_unit)
    return text if inter.time_unit == "order" else f"{_times.number_text(t)} ({text})"


def _span(inter: "Interactions") -> tuple[float, float]:
    if len(inter) == 0:
        raise InvalidArgumentError("a temporal split needs interactions; the log is empty")
    return float(inter.timestamps.min()), float(inter.timestamps.max())


def _snap(t: float, inter: "Interactions") -> float:
    """Integer logs: the smallest integer >= t (the same rows fall on each side), else t."""
    return float(math.ceil(t)) if inter.timestamps.dtype.kind in "iu" else t


def _resolve_bound(text: str, inter: "Interactions", spec: str) -> float:
    kind = _bound_kind(text)
    lo, hi = _span(inter)
    unit = inter.time_unit
    if kind == "number":
        return float(text)
    if kind == "fraction":
        return _snap(lo + float(text) * (hi - lo), inter)
    if unit not in _times.PER_SECOND:
        raise InvalidArgumentError(
            f"split {spec!r}: {text!r} is a calendar time, but this log's timestamps are "
            f"{_times.unit_name(unit)} ({_times.number_text(lo)} to {_times.number_text(hi)}); "
            "if they are unix times, name their unit (--time-unit s|ms|us|ns), else state the split "
            "as a timestamp of the log or a fraction of its span (e.g. temporal:0.9)")
    per_second = _times.PER_SECOND[unit]
    if kind == "date":
        return _snap(_times.parse_iso(text) * per_second, inter)
    m = _LAST.match(text)
    return _snap(hi - float(m.group(1)) * _SECONDS[m.group(2)] * per_second, inter)


def _window_before(inter: "Interactions", test_from: float, dataset: "Dataset") -> float | None:
    """Validation for a one-bound temporal split: None when the folder has valid.jsonl (or there
    is no room), else the start of a period as long as the test period, just before it."""
    if dataset.valid_cases:
        return None
    lo, hi = _span(inter)
    start = _snap(test_from - max(hi - test_from, 0), inter)
    return start if lo < start < test_from else None


def _temporal_plan(inter: "Interactions", test_from: float, valid_from: float | None, *,
                   given: str, reason: str = "", valid_file: bool = False) -> SplitPlan:
    train_end = test_from if valid_from is None else valid_from
    lo, hi = _span(inter)
    n_train = int((inter.timestamps < train_end).sum())
    if n_train == 0:
        hint = ("" if inter.time_unit == "order" else
                "; state it as a date (e.g. temporal:2018-06-01), last-7d or a fraction (0.9)")
        raise InvalidArgumentError(
            f"split {given!r} leaves no interaction to train on: training ends at "
            f"{_fmt(train_end, inter)} but the log starts at {_fmt(lo, inter)} (timestamps are "
            f"{_times.unit_name(inter.time_unit)}){hint}")
    if not reason:
        n_test = int((inter.timestamps >= test_from).sum())
        n_valid = n_test if valid_from is None else int(((inter.timestamps >= valid_from)
                                                         & (inter.timestamps < test_from)).sum())
        reason = (f"{n_train:,} events to train on, " +
                  (f"{n_valid:,} in the validation period, " if valid_from is not None else "") +
                  f"{n_test:,} in the test period")
    return SplitPlan("temporal", float(test_from), None if valid_from is None else float(valid_from),
                     given=given, reason=reason, time_unit=inter.time_unit, valid_file=valid_file)


def first_case_time(inter: "Interactions", cases: "list[Case]") -> float | None:
    """The earliest time in the log of an event that one of ``cases`` predicts, or None when the
    log holds none of them (it is then all training data).

    A case is found where its user's sequence has its target right after its history; with
    several such places (a repeated item) the last one is taken, the test event being the most
    recent."""
    wanted = {c.user_id for c in cases}
    order = inter.chronological_order()
    codes = inter._user_codes()[1][order]
    users = inter._user_codes()[0]
    cuts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.concatenate([[0], cuts]) if len(order) else np.zeros(0, np.int64)
    ends = np.concatenate([cuts, [len(order)]]) if len(order) else np.zeros(0, np.int64)
    items, times = inter.item_ids[order], inter.timestamps[order]
    # only the case users' sequences are cut out (a log may have millions of other users)
    keep = np.isin(users[codes[starts]], np.array(sorted(wanted), dtype=str)) if len(starts) \
        else np.zeros(0, dtype=bool)
    seqs = {}
    for a, b in zip(starts[keep].tolist(), ends[keep].tolist()):
        seqs[str(users[codes[a]])] = (items[a:b].tolist(), times[a:b])
    best = None
    for c in cases:
        got = seqs.get(c.user_id)
        if got is None:
            continue
        seq, ts = got
        h = list(c.history)
        for p in range(len(seq) - 1, len(h) - 1, -1):
            if seq[p] == c.target and seq[p - len(h):p] == h:
                t = float(ts[p])
                best = t if best is None else min(best, t)
                break
    return best


def _case_plan(dataset: "Dataset", *, given: str) -> SplitPlan:
    inter = dataset.interactions
    if not dataset.test_cases:
        raise InvalidArgumentError(f"split {given!r} needs test.jsonl in the data folder; this one "
                                   "has none (use auto, leave-one-out or temporal:WHEN)")
    at = first_case_time(inter, dataset.test_cases)
    files = "valid.jsonl and test.jsonl" if dataset.valid_cases else "test.jsonl"
    if at is None:
        return SplitPlan("cases", given=given, time_unit=inter.time_unit,
                         valid_file=bool(dataset.valid_cases),
                         reason=f"the folder has {files}; none of the test cases is in the log, "
                                "so the whole log is training data")
    valid_from = _window_before(inter, at, dataset)
    plan = _temporal_plan(inter, at, valid_from, given=given)
    return SplitPlan("temporal", plan.test_from, plan.valid_from, given=given,
                     time_unit=inter.time_unit, valid_file=bool(dataset.valid_cases),
                     reason=f"the folder has {files}: training on the log before its first test "
                            f"case; {plan.reason}")


def choose_split(dataset: "Dataset") -> SplitPlan:
    """The split ``auto`` stands for: the folder's case files when it has test.jsonl; else
    leave-one-out when at least half the users have 3+ events (every such user is tested once,
    the convention for sequential recommendation); else a temporal split with the last 10% of
    events as the test period and the 10% before as validation."""
    if dataset.test_cases:
        return _case_plan(dataset, given="auto")
    inter = dataset.interactions
    per_user = np.bincount(inter._user_codes()[1], minlength=inter.n_users)
    ready = int((per_user >= 3).sum())
    share = ready / max(1, len(per_user))
    if ready and share >= _LOO_MIN_SHARE:
        return SplitPlan("leave-one-out", given="auto", time_unit=inter.time_unit,
                         reason=f"no case files; {ready:,} of {len(per_user):,} users have 3+ "
                                "events: each one's last is a test case, the one before a "
                                "validation case")
    ts = np.sort(inter.timestamps)
    test_from = float(ts[int(len(ts) * (1 - _AUTO_TEST_SHARE))]) if len(ts) else 0.0
    valid_from = float(ts[int(len(ts) * (1 - 2 * _AUTO_TEST_SHARE))]) if len(ts) else 0.0
    if not len(ts) or valid_from <= ts[0] or valid_from >= test_from:
        return SplitPlan("leave-one-out", given="auto", time_unit=inter.time_unit,
                         reason="no case files, and the timestamps are too few to cut in time")
    plan = _temporal_plan(inter, test_from, valid_from, given="auto")
    return SplitPlan("temporal", plan.test_from, plan.valid_from, given="auto",
                     time_unit=inter.time_unit,
                     reason=f"no case files; only {ready:,} of {len(per_user):,} users have 3+ "
                            "events, too few for leave-one-out: the last 10% of events are the "
                            f"test period, the 10% before validation; {plan.reason}")
