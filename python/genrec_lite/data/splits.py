"""Evaluation cases and the splits that make them.

A :class:`Case` is one next-item prediction: a user, the items before (oldest first, at most
``max_len`` of them) and the item that came next.

- :func:`windows` turns one sequence into cases (training prompts).
- :func:`leave_one_out`: per user by time, the last item is the test target and the one before
  the validation target; users with fewer than 3 interactions go wholly to training and give no
  case (the usual convention: a user needs a training item, a valid item and a test item). With
  ``train_on_valid`` the validation item is trained on instead (the final model's split).
- :func:`temporal_split`: training is everything before a timestamp; every later interaction
  is a test case whose history is all of the user's earlier items (training-period and earlier
  test-period items alike), so that one split reproduces the official cases of
  amazon-industrial exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from ..errors import DataError, InvalidArgumentError, UnknownItemError
from . import _readers
from ._grouping import index_dtype
from .sequences import CaseTable, UserSequences

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import Catalog
    from .interactions import Interactions


@dataclass(frozen=True)
class Case:
    """One next-item prediction: ``history`` (oldest first) then ``target``."""

    user_id: str
    history: tuple[int, ...]
    target: int

    def to_dict(self) -> dict:
        return {"user_id": self.user_id, "history": list(self.history), "target": self.target}

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        return cls(str(d["user_id"]), tuple(int(x) for x in d["history"]), int(d["target"]))


@dataclass
class Split:
    """Training sequences per user (oldest first) plus validation and test cases: a
    :class:`UserSequences` and :class:`CaseTable` s from the split functions, or a dict and
    lists (anything with their read interface)."""

    train: Mapping[str, np.ndarray]
    valid: Sequence[Case] = field(default_factory=list)
    test: Sequence[Case] = field(default_factory=list)

    def train_cases(self, max_len: int | None, *, start: int = 1) -> list[Case]:
        """Sliding-window cases over every training sequence (see :func:`windows`)."""
        out: list[Case] = []
        for user, seq in self.train.items():
            out.extend(windows(seq, max_len, start=start, user_id=user))
        return out

    def __repr__(self) -> str:
        return (f"Split(train={len(self.train)} users/"
                f"{sum(len(s) for s in self.train.values())} items, valid={len(self.valid)}, "
                f"test={len(self.test)})")


def _check_max_len(max_len: int | None) -> None:
    if max_len is not None and (not isinstance(max_len, (int, np.integer)) or max_len < 1):
        raise InvalidArgumentError(f"max_len must be a positive int or None, got {max_len!r}")


def _window(seq: Sequence[int], end: int, max_len: int | None) -> tuple[int, ...]:
    lo = 0 if max_len is None else max(0, end - max_len)
    return tuple(int(x) for x in seq[lo:end])


def windows(sequence: Sequence[int] | np.ndarray, max_len: int | None, start: int = 1, *,
            user_id: str = "") -> list[Case]:
    """For each position ``i >= start``: history = up to ``max_len`` items before ``i``,
    target = item ``i``. ``max_len=None`` keeps the whole prefix."""
    _check_max_len(max_len)
    if start < 0:
        raise InvalidArgumentError(f"start must be >= 0, got {start}")
    seq = [int(x) for x in (sequence.tolist() if isinstance(sequence, np.ndarray)
                            else sequence)]
    return [Case(user_id, _window(seq, i, max_len), seq[i]) for i in range(start, len(seq))]


def leave_one_out(interactions: "Interactions", max_len: int | None = None, *,
                  train_on_valid: bool = False) -> Split:
    """Per user by time: last item -> test case, second last -> valid case, rest -> train.

    Users with fewer than 3 interactions are kept whole in ``train`` and give no case. Cases
    come in the order users first appear in the interactions.

    ``train_on_valid``: the split for a final model whose settings were chosen on the
    validation cases: each user's validation item joins the training sequence (the test
    prompt then ends with a sequence the model was trained on) and there are no validation
    cases. The test cases are the same either way.

    Everything is arrays (see :mod:`~genrec_lite.data.sequences`): the cases' histories are
    slices of the one flat array of all sequences.
    """
    _check_max_len(max_len)
    seqs = interactions.sequences()
    start, end = seqs.starts, seqs.ends
    with_cases = np.flatnonzero(end - start >= 3)
    # training part: each sequence less its last item or two, as ranges of the same flat array
    train_end = end.copy()  # int32 while the log's positions fit, as the ranges are
    train_end[with_cases] -= 1 if train_on_valid else 2
    train = UserSequences(seqs.users, None, seqs.flat, starts=start, ends=train_end)
    pos = index_dtype(len(seqs.flat))

    def cases(back: int) -> CaseTable:
        at = (end[with_cases] - back).astype(pos)  # where each case's target sits
        return CaseTable(seqs.users, with_cases.astype(np.int32), seqs.flat, at, start, max_len)

    valid = cases(2) if not train_on_valid else CaseTable.empty(seqs.users, seqs.flat)
    return Split(train, valid, cases(1))


def temporal_split(interactions: "Interactions", at: float, max_len: int | None = None, *,
                   valid_at: float | None = None, min_history: int = 1) -> Split:
    """Split at a timestamp.

    - ``train``: each user's interactions with ``timestamp < (valid_at or at)``;
    - ``test``: a case for every interaction with ``timestamp >= at``; its history is the
      user's previous items at any time (including earlier test-period ones), the last
      ``max_len`` of them;
    - ``valid``: the same for ``valid_at <= timestamp < at`` when ``valid_at`` is given.

    Cases are ordered by timestamp, ties in file order. A case with fewer than ``min_history``
    history items (a user first seen after the split) is skipped.
    """
    _check_max_len(max_len)
    if valid_at is not None and valid_at > at:
        raise InvalidArgumentError(f"valid_at ({valid_at}) must not be after at ({at})")
    train_end = at if valid_at is None else valid_at
    order, offsets = interactions.grouped()  # kept first: both sequences() calls reuse it
    train = interactions.sequences(before=train_end)
    users, codes = interactions._user_codes()
    pool = interactions.sequences().flat  # every user's items, oldest first, user after user
    pos = index_dtype(len(pool))
    ts = interactions.timestamps
    # each row's place in the pool (its user's first slot plus its rank in the user's order)
    where = np.empty(len(order), dtype=index_dtype(len(order)))
    where[order] = np.arange(len(order), dtype=where.dtype)

    def cases(lo: float, hi: float | None) -> CaseTable:
        mask = ts >= lo
        if hi is not None:
            mask &= ts < hi
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(ts[rows], kind="stable")]
        at_ = where[rows].astype(np.int64)
        user = codes[rows]
        ok = at_ - offsets[user] >= min_history
        return CaseTable(users, user[ok], pool, at_[ok].astype(pos), offsets, max_len)

    test = cases(at, None)
    valid = cases(valid_at, at) if valid_at is not None else CaseTable.empty(users, pool)
    return Split(train, valid, test)


# ---------------------------------------------------------------------- case files


def save_cases(cases: Iterable[Case], path: str | os.PathLike) -> Path:
    """Write cases as JSONL: ``{"user_id", "history", "target"}`` a line."""
    p = Path(path)
    _readers.write_jsonl(p, (c.to_dict() for c in cases))
    return p


def load_cases(path: str | os.PathLike, *, catalog: "Catalog | None" = None,
               allow_empty: bool = False) -> list[Case]:
    """Read a JSONL case file; every problem is a DataError naming the file and line.

    With ``catalog``, an item (in a history or a target) it lacks is an UnknownItemError.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path=p)
    with _readers.gc_paused():
        out, lines = _parse_cases(p)
    if not out and not allow_empty:
        raise DataError("the file is empty (no cases)", path=p)
    if catalog is not None and out:
        ids = np.fromiter((v for c in out for v in (*c.history, c.target)), dtype=np.int64)
        found = catalog.contains_all(ids)
        if not found.all():
            sizes = np.fromiter((len(c.history) + 1 for c in out), dtype=np.int64,
                                count=len(out))
            case_of = np.repeat(np.arange(len(out)), sizes)
            bad_at = np.flatnonzero(~found)
            k = int(bad_at[0])
            bad = int(ids[k])
            more = f" ({len(bad_at)} unknown ids in the file)" if len(bad_at) > 1 else ""
            raise UnknownItemError(f"item id {bad} is not in the catalog{more}", path=p,
                                   line=lines[int(case_of[k])], value=bad)
    return out


def _parse_cases(p: Path) -> tuple[list[Case], list[int]]:
    text = _readers._decode(p, p.read_bytes())
    out: list[Case] = []
    lines: list[int] = []
    as_int = _readers._as_int
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=p,
                            line=lineno, value=raw[:200]) from None
        if not isinstance(obj, dict):
            raise DataError("expected a JSON object per line", path=p, line=lineno, value=obj)
        missing = [k for k in ("user_id", "history", "target") if k not in obj]
        if missing:
            raise DataError(f"a case needs 'user_id', 'history' and 'target'; missing "
                            f"{', '.join(repr(m) for m in missing)} (has: "
                            f"{', '.join(repr(k) for k in obj)})", path=p, line=lineno,
                            value=missing[0])
        user = obj["user_id"]
        if user is None or isinstance(user, (bool, list, dict)) or user == "":
            raise DataError(f"user_id must be a string or an integer, got {user!r}", path=p,
                            line=lineno, value=user)
        hist_raw = obj["history"]
        if not isinstance(hist_raw, list):
            raise DataError(f"history must be a list of item ids, got {hist_raw!r}", path=p,
                            line=lineno, value=hist_raw)
        if all(type(v) is int for v in hist_raw):
            hist = tuple(hist_raw)
        else:
            conv = []
            for v in hist_raw:
                iv = as_int(v)
                if iv is None:
                    raise DataError(f"item id in history must be an integer, got {v!r}",
                                    path=p, line=lineno, value=v)
                conv.append(iv)
            hist = tuple(conv)
        target = obj["target"]
        if type(target) is not int:
            target = as_int(target)
            if target is None:
                raise DataError(f"target must be an integer item id, got {obj['target']!r}",
                                path=p, line=lineno, value=obj["target"])
        out.append(Case(user if type(user) is str else _readers.to_text(user), hist, target))
        lines.append(lineno)
    return out, lines
