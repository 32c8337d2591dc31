"""Ranking metrics for next-item prediction with one target per case.

Definitions (the usual ones for sequential recommendation, e.g. SASRec, TIGER, MiniOneRec):

- ``rank``: the 1-based position of the target in the case's ranked list (0 when absent).
- ``HR@K`` (hit rate, = Recall@K with one target): 1 if ``1 <= rank <= K`` else 0.
- ``NDCG@K``: ``1 / log2(rank + 1)`` if ``1 <= rank <= K`` else 0 (with a single relevant item
  the ideal DCG is 1, so DCG is already normalised).

Both are averaged over the cases. A ranked list may be shorter than K (a missing slot is a miss)
or longer (only its first K entries count).

Duplicates: an item listed twice in one ranked list is an error by default
(``duplicates="error"``): a duplicate wastes a slot, so it usually means a bug upstream (a beam
search returning one item twice, two SIDs mapped to one item), and silently scoring it would hide
that. ``duplicates="first"`` keeps the first occurrence of each item and closes the gap (an
order-preserving dedupe before scoring), for decoders that legitimately produce repeats.

numpy only: no torch here.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import InvalidArgumentError

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)
_DUPLICATE_MODES = ("error", "first")


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    try:
        vals = list(ks)
    except TypeError:
        raise InvalidArgumentError(f"ks must be a sequence of positive ints, got {ks!r}") from None
    if not vals:
        raise InvalidArgumentError("ks must name at least one cut-off K, got an empty sequence")
    for k in vals:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgumentError(f"every K in ks must be a positive int, got {k!r}")
    return tuple(sorted({int(k) for k in vals}))


def metric_names(ks: Iterable[int] = DEFAULT_KS) -> list[str]:
    """The metric keys :func:`rank_metrics` returns for ``ks`` (without ``n_cases``), in order:
    ``HR@k`` for every k, then ``NDCG@k`` for every k."""
    ks_ = _check_ks(ks)
    return [f"HR@{k}" for k in ks_] + [f"NDCG@{k}" for k in ks_]


def _as_int(v: object, what: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise InvalidArgumentError(f"{what} must be an integer item id, got {v!r}")
    return int(v)


def _dedupe(row: list[int]) -> list[int]:
    seen: set[int] = set()
    out = []
    for v in row:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def target_ranks(ranked: Sequence[Sequence[int]] | np.ndarray, targets: Sequence[int] | np.ndarray,
                 *, duplicates: str = "error", depth: int | None = None) -> np.ndarray:
    """The 1-based rank of each case's target in its ranked list, 0 where it is absent.

    ``depth`` (optional) only looks at the first ``depth`` entries of each list (after the
    dedupe of ``duplicates="first"``); duplicates are checked over the whole list.
    """
    if duplicates not in _DUPLICATE_MODES:
        raise InvalidArgumentError(
            f"duplicates must be one of {_DUPLICATE_MODES}, got {duplicates!r}")
    tgt_arr = np.asarray(targets)
    if tgt_arr.ndim != 1:
        raise InvalidArgumentError(
            f"targets must be one item id per case (a 1-D sequence), got shape {tgt_arr.shape}")
    if tgt_arr.size and not np.issubdtype(tgt_arr.dtype, np.integer):
        bad = next((t for t in targets if not isinstance(t, (int, np.integer))
                    or isinstance(t, (bool, np.bool_))), tgt_arr.flat[0])
        raise InvalidArgumentError(f"targets must be integer item ids, got {bad!r}")
    tgt = tgt_arr.astype(np.int64, copy=False)
    n = len(tgt)
    if len(ranked) != n:
        raise InvalidArgumentError(
            f"ranked has {len(ranked)} lists but targets has {n} items; expected one ranked "
            "list per target")

    if isinstance(ranked, np.ndarray) and ranked.ndim == 2 and duplicates == "error":
        return _ranks_dense(ranked, tgt, depth)

    ranks = np.zeros(n, dtype=np.int64)
    for i, row in enumerate(ranked):
        if isinstance(row, np.ndarray):
            if row.ndim != 1:
                raise InvalidArgumentError(
                    f"ranked list {i} must be 1-D, got shape {row.shape}")
            if row.size and not np.issubdtype(row.dtype, np.integer):
                raise InvalidArgumentError(
                    f"ranked list {i} must hold integer item ids, got dtype {row.dtype}")
            items = row.tolist()
        elif isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise InvalidArgumentError(
                f"ranked list {i} must be a sequence of item ids, got {row!r}")
        else:
            items = [_as_int(v, f"ranked list {i}: entry") for v in row]
        if len(set(items)) != len(items):
            if duplicates == "error":
                dup = next(v for j, v in enumerate(items) if v in items[:j])
                raise InvalidArgumentError(
                    f"ranked list {i} lists item {dup} more than once; pass "
                    "duplicates='first' to keep only the first occurrence")
            items = _dedupe(items)
        if depth is not None:
            items = items[:depth]
        t = int(tgt[i])
        for j, v in enumerate(items):
            if v == t:
                ranks[i] = j + 1
                break
    return ranks


def _ranks_dense(ranked: np.ndarray, tgt: np.ndarray, depth: int | None) -> np.ndarray:
    if ranked.size and not np.issubdtype(ranked.dtype, np.integer):
        raise InvalidArgumentError(
            f"ranked must hold integer item ids, got dtype {ranked.dtype}")
    if ranked.shape[1] > 1:
        srt = np.sort(ranked, axis=1)
        dup_rows = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
        if dup_rows.size:
            i = int(dup_rows[0])
            row = srt[i]
            dup = int(row[1:][row[1:] == row[:-1]][0])
            raise InvalidArgumentError(
                f"ranked list {i} lists item {dup} more than once; pass duplicates='first' "
                "to keep only the first occurrence")
    view = ranked if depth is None else ranked[:, :depth]
    hit = view == tgt[:, None]
    found = hit.any(axis=1)
    return np.where(found, hit.argmax(axis=1) + 1, 0).astype(np.int64)


def rank_metrics(ranked: Sequence[Sequence[int]] | np.ndarray, targets: Sequence[int] | np.ndarray,
                 ks: Iterable[int] = DEFAULT_KS, *, duplicates: str = "error") -> dict:
    """HR@K and NDCG@K for every K in ``ks``, averaged over cases, plus ``n_cases``.

    ``ranked``: one list of item ids per case, best first (a list of lists or a 2-D int array);
    ``targets``: one item id per case. Keys: ``HR@k`` for each k, then ``NDCG@k`` for each k,
    then ``n_cases`` (int). See the module docstring for ``duplicates``.
    """
    ks_ = _check_ks(ks)
    return rank_metrics_of(target_ranks(ranked, targets, duplicates=duplicates,
                                        depth=max(ks_)), ks_)


def segment_metrics(ranked: Sequence[Sequence[int]], targets: Sequence[int] | np.ndarray,
                    segments: Mapping[str, np.ndarray]) -> dict:
    """:func:`rank_metrics` over every case ("all") and over each segment (a boolean mask over
    the cases; a segment that holds no case is left out)."""
    targets = np.asarray(targets, dtype=np.int64)
    rows = [list(r) for r in ranked]
    out = {"all": rank_metrics(rows, targets)}
    for name, mask in segments.items():
        idx = np.flatnonzero(mask)
        if idx.size:
            out[name] = rank_metrics([rows[i] for i in idx], targets[idx])
    return out


def first_place(ranked: Sequence[Sequence[int]], newest: Sequence[int] | np.ndarray,
                targets: Sequence[int] | np.ndarray) -> dict:
    """Where the first place goes: the share of lists that open with the request's newest
    history item (`newest`, -1 where the history is empty), HR@1 on those lists, HR@1 on the
    others, and HR@1 on the cases whose target is that item (repeats); None where no case is in
    a part."""
    targets = np.asarray(targets, dtype=np.int64)
    newest = np.asarray(newest, dtype=np.int64)
    if not len(targets) or len(ranked) != len(targets) or newest.shape != targets.shape:
        raise InvalidArgumentError(
            f"{len(ranked)} lists, {newest.size} newest items and {len(targets)} targets; "
            "expected one of each per case, at least one case")
    top = np.array([int(r[0]) if len(r) else -1 for r in ranked], dtype=np.int64)
    at_newest = (top == newest) & (newest >= 0)
    hit = top == targets
    repeat = (targets == newest) & (newest >= 0)

    def share(mask):
        return float(hit[mask].mean()) if mask.any() else None

    return {"share_first_is_last": float(at_newest.mean()),
            "HR@1_first_is_last": share(at_newest), "HR@1_otherwise": share(~at_newest),
            "HR@1_repeat_cases": share(repeat), "repeat_cases": int(repeat.sum())}


def rank_metrics_of(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict:
    """:func:`rank_metrics` from the targets' 1-based ranks (0: absent), as
    :func:`target_ranks` gives them."""
    ks_ = _check_ks(ks)
    ranks = np.asarray(ranks)
    n = len(ranks)
    if n == 0:
        raise InvalidArgumentError("no cases to score (ranked and targets are empty)")
    gains = np.zeros(n, dtype=np.float64)
    hit = ranks > 0
    gains[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
    out: dict = {}
    for k in ks_:
        out[f"HR@{k}"] = float(np.mean(hit & (ranks <= k)))
    for k in ks_:
        out[f"NDCG@{k}"] = float(np.sum(gains[hit & (ranks <= k)]) / n)
    out["n_cases"] = int(n)
    return out


def top_k_from_scores(scores: np.ndarray, k: int,
                      exclude: Sequence[Iterable[int]] | None = None) -> np.ndarray:
    """Column indices of the ``k`` highest scores of each row, best first.

    ``scores``: (n_cases, n_items) array. Ties go to the lower column index, so the result is
    deterministic. ``k`` larger than ``n_items`` is clipped. ``exclude`` (optional): per row, the
    column indices to push behind every other column (score -inf); they appear only when ``k``
    exceeds the number of remaining columns. Returns an (n_cases, min(k, n_items)) int64 array.
    """
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be a positive int, got {k!r}")
    s = np.asarray(scores)
    if s.ndim != 2:
        raise InvalidArgumentError(
            f"scores must be a 2-D (n_cases, n_items) array, got shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise InvalidArgumentError(f"scores must be numeric, got dtype {s.dtype}")
    n, n_items = s.shape
    s = s.astype(np.float64, copy=exclude is not None and s.dtype == np.float64)
    if np.isnan(s).any():
        row = int(np.flatnonzero(np.isnan(s).any(axis=1))[0])
        raise InvalidArgumentError(f"scores hold NaN (first in row {row})")
    if exclude is not None:
        if len(exclude) != n:
            raise InvalidArgumentError(
                f"exclude must give one collection of columns per row ({n}), got {len(exclude)}")
        for i, cols in enumerate(exclude):
            idx = np.fromiter((int(c) for c in cols), dtype=np.int64)
            if idx.size:
                if idx.min() < 0 or idx.max() >= n_items:
                    raise InvalidArgumentError(
                        f"exclude[{i}] names a column outside 0..{n_items - 1}: {idx.tolist()}")
                s[i, idx] = -np.inf
    k = min(int(k), n_items)
    if n == 0 or n_items == 0:
        return np.zeros((n, k), dtype=np.int64)
    # Candidates: every column scoring at least the k-th largest value of its row (ties
    # included), then order them by (row, -score, column) and keep the first k of each row.
    kth = np.partition(s, n_items - k, axis=1)[:, n_items - k]
    rows, cols = np.nonzero(s >= kth[:, None])
    order = np.lexsort((cols, -s[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n))
    keep = (np.arange(len(rows)) - starts[rows]) < k
    return cols[keep].reshape(n, k).astype(np.int64, copy=False)


_ORDER = {"HR": 0, "NDCG": 1}


def _column_key(name: str) -> tuple:
    head, _, tail = name.partition("@")
    if head in _ORDER and tail.isdigit():
        return (0, _ORDER[head], int(tail), name)
    return (1, 0, 0, name)


def _cell(v: object, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}f}"
    return str(v).replace("|", "\\|")


def metrics_table(rows: Mapping[str, Mapping[str, object]], *,
                  columns: Sequence[str] | None = None, digits: int = 4,
                  name_header: str = "model") -> str:
    """A Markdown table: one row per entry of ``rows`` (name -> metrics dict), in that order.

    Columns default to the metric keys found in any row, ``HR@k`` (k ascending), then
    ``NDCG@k``, then any other key (``n_cases`` last) except ``seconds``, the evaluation time
    the evaluators record beside the metrics (name it in ``columns`` to show it). A row lacking
    a column shows ``-``.
    Floats are printed with ``digits`` decimals.
    """
    if not rows:
        raise InvalidArgumentError("metrics_table needs at least one row")
    if columns is None:
        keys: set[str] = set()
        for r in rows.values():
            keys.update(r.keys())
        others = sorted(k for k in keys
                        if _column_key(k)[0] == 1 and k not in ("n_cases", "seconds"))
        columns = sorted((k for k in keys if _column_key(k)[0] == 0), key=_column_key)
        columns += others + (["n_cases"] if "n_cases" in keys else [])
    cols = list(columns)
    lines = ["| " + " | ".join([name_header] + cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for name, r in rows.items():
        cells = [str(name).replace("|", "\\|")] + [_cell(r.get(c), digits) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
