"""User-item interactions: who touched which item when (and, optionally, the rating)."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import DataError, InvalidArgumentError, UnknownItemError
from . import _readers, timestamps as _times

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import Catalog


class Interactions:
    """Parallel arrays, one entry per interaction, in file order.

    - ``user_ids``: array of str (ids are always text, so ``196`` and ``"196"`` are one user);
    - ``item_ids``: int64;
    - ``timestamps``: int64 (float64 only when some value is not integral), in ``time_unit``;
    - ``ratings``: float64 or None.

    ``time_unit`` is ``"s"``, ``"ms"``, ``"us"`` or ``"ns"`` (unix time) or ``"order"``
    (positions with no calendar meaning); by default it is detected from the values
    (:mod:`genrec_lite.data.timestamps`). ``duplicates_dropped`` counts the repeated events
    :meth:`load` left out.
    """

    def __init__(self, user_ids: Sequence | np.ndarray, item_ids: Sequence[int] | np.ndarray,
                 timestamps: Sequence | np.ndarray | None = None,
                 ratings: Sequence[float] | np.ndarray | None = None, *,
                 source: str | None = None, time_unit: str | None = None):
        users = np.asarray(user_ids)
        if users.dtype.kind != "U":
            users = np.array([_readers.to_text(u) for u in users.tolist()], dtype=str) \
                if users.size else np.zeros(0, dtype="<U1")
        items = np.asarray(item_ids)
        if items.size and items.dtype.kind not in "iu":
            raise InvalidArgumentError(f"item ids must be integers, got dtype {items.dtype}")
        items = items.astype(np.int64)
        n = len(users)
        if users.ndim != 1 or items.shape != (n,):
            raise InvalidArgumentError(
                f"user_ids and item_ids must be 1-D of one length, got {users.shape} and "
                f"{items.shape}")
        if timestamps is None:
            times = np.arange(n, dtype=np.int64)
        else:
            times = np.asarray(timestamps)
            if times.shape != (n,):
                raise InvalidArgumentError(f"timestamps has shape {times.shape}, expected ({n},)")
            if times.dtype.kind in "iub":
                times = times.astype(np.int64)
            elif times.dtype.kind == "f":
                if not np.isfinite(times).all():
                    raise InvalidArgumentError("timestamps must be finite")
                times = times.astype(np.int64) if (times == np.floor(times)).all() \
                    else times.astype(np.float64)
            else:
                raise InvalidArgumentError(f"timestamps must be numbers, got dtype {times.dtype}")
        rats = None
        if ratings is not None:
            rats = np.asarray(ratings, dtype=np.float64)
            if rats.shape != (n,):
                raise InvalidArgumentError(f"ratings has shape {rats.shape}, expected ({n},)")
        self.user_ids: np.ndarray = users
        self.item_ids: np.ndarray = items
        self.timestamps: np.ndarray = times
        self.ratings: np.ndarray | None = rats
        self.source = source
        unit = _times.check_unit(time_unit)
        if timestamps is None:
            unit = "order"
        elif unit == "auto":
            unit = _times.detect_unit(times)
        self.time_unit: str = unit
        self.duplicates_dropped = 0
        for arr in (self.user_ids, self.item_ids, self.timestamps, self.ratings):
            if arr is not None:
                arr.flags.writeable = False
        self._codes: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike, *, user_field: str = "user_id",
             item_field: str = "item_id", time_field: str | None = "timestamp",
             rating_field: str | None = "rating", catalog: "Catalog | None" = None,
             format: str | None = None, time_unit: str | None = "auto",
             duplicates: str = "drop") -> "Interactions":
        """Read interactions from CSV, Parquet or JSONL.

        ``time_field=None`` means the file has no time column: file order is the time order.
        Timestamps may be numbers (unix seconds, milliseconds... or plain positions; the unit is
        detected unless ``time_unit`` names it) or ISO-8601 text (read as unix seconds).
        ``rating_field`` is read when the column exists. With ``catalog``, every item must be in
        it, else UnknownItemError naming the file, the line and the first unknown id.

        ``duplicates="drop"`` keeps only the first of several rows with the same user, item and
        timestamp (an event logged twice); ``"keep"`` keeps them all. Events of one user at the
        same time keep their file order everywhere (sequences, splits).
        """
        if duplicates not in ("drop", "keep"):
            raise InvalidArgumentError(f"duplicates={duplicates!r}; expected 'drop' or 'keep'")
        unit = _times.check_unit(time_unit)
        table = _readers.read_table(path, format)
        need = [user_field, item_field] + ([time_field] if time_field else [])
        table.require(*need)
        users = _readers.str_column(table, user_field, "user id")
        items = _readers.int_column(table, item_field, "item id")
        times = None
        if time_field:
            times, unit = _time_column(table, time_field, unit)
        ratings = None
        if rating_field and rating_field in table.columns:
            ratings = _readers.number_column(table, rating_field, "rating").astype(np.float64)
        if catalog is not None:
            found = catalog.contains_all(items)
            if not found.all():
                bad_rows = np.flatnonzero(~found)
                row = int(bad_rows[0])
                bad = int(items[row])
                more = (f"; {len(bad_rows)} rows name items not in the catalog"
                        if len(bad_rows) > 1 else "")
                raise UnknownItemError(f"item id {bad} is not in the catalog{more}",
                                       path=table.path, line=table.line(row), value=bad)
        out = cls(users, items, times, ratings, source=str(table.path),
                  time_unit=unit if times is not None else None)
        if duplicates == "drop":
            repeat = out._repeated_rows()
            if repeat.any():
                n = int(repeat.sum())
                out = out.select(~repeat)
                out.duplicates_dropped = n
        return out

    def _repeated_rows(self) -> np.ndarray:
        """True for each row whose (user, item, timestamp) an earlier row already has."""
        n = len(self)
        if n < 2:
            return np.zeros(n, dtype=bool)
        codes = self._user_codes()[1]
        order = np.lexsort((np.arange(n), self.timestamps, self.item_ids, codes))
        same = ((codes[order][1:] == codes[order][:-1])
                & (self.item_ids[order][1:] == self.item_ids[order][:-1])
                & (self.timestamps[order][1:] == self.timestamps[order][:-1]))
        repeat = np.zeros(n, dtype=bool)
        repeat[order[1:][same]] = True  # the first row of each run (lowest row) stays
        return repeat

    # ------------------------------------------------------------------ basics

    def __len__(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        return f"Interactions({len(self)} rows, {self.n_users} users)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Interactions):
            return NotImplemented
        same_ratings = (self.ratings is None and other.ratings is None) or (
            self.ratings is not None and other.ratings is not None
            and np.array_equal(self.ratings, other.ratings))
        return (np.array_equal(self.user_ids, other.user_ids)
                and np.array_equal(self.item_ids, other.item_ids)
                and np.array_equal(self.timestamps, other.timestamps) and same_ratings)

    __hash__ = None  # type: ignore[assignment]

    def _user_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(users in first-appearance order, code of each row into that list)."""
        if self._codes is None:
            uniq, first, inverse = np.unique(self.user_ids, return_index=True,
                                             return_inverse=True)
            rank = np.empty(len(uniq), dtype=np.int64)
            by_first = np.argsort(first, kind="stable")
            rank[by_first] = np.arange(len(uniq))
            self._codes = (uniq[by_first], rank[inverse.ravel()])
        return self._codes

    @property
    def users(self) -> np.ndarray:
        """The distinct user ids, in order of first appearance."""
        return self._user_codes()[0]

    @property
    def n_users(self) -> int:
        return len(self._user_codes()[0])

    @property
    def n_items(self) -> int:
        """The number of distinct items."""
        return int(np.unique(self.item_ids).size)

    def select(self, mask: np.ndarray | Sequence[bool]) -> "Interactions":
        """The interactions where ``mask`` is true (a boolean array) or at those row indices."""
        m = np.asarray(mask)
        return Interactions(self.user_ids[m], self.item_ids[m], self.timestamps[m],
                            None if self.ratings is None else self.ratings[m], source=self.source,
                            time_unit=self.time_unit)

    def kcore(self, k: int) -> "Interactions":
        """The k-core: users and items with fewer than ``k`` interactions are dropped, again and
        again, until every user and item left has at least ``k`` (``k=1`` keeps everything).
        Counts rows, so run it after duplicates are dropped (``load`` does that by default)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgumentError(f"k-core k={k!r}; expected an integer >= 1")
        keep = np.ones(len(self), dtype=bool)
        users = self._user_codes()[1]
        items = np.unique(self.item_ids, return_inverse=True)[1].ravel()
        while True:
            per_user = np.bincount(users[keep], minlength=self.n_users)
            per_item = np.bincount(items[keep], minlength=int(items.max(initial=-1)) + 1)
            drop = keep & ((per_user[users] < k) | (per_item[items] < k))
            if not drop.any():
                break
            keep &= ~drop
        return self.select(keep)

    def describe(self) -> str:
        """One line for a person: size, and the time span in the log's own terms."""
        text = (f"{len(self):,} interactions, {self.n_users:,} users, {self.n_items:,} items")
        if len(self):
            lo, hi = self.timestamps.min(), self.timestamps.max()
            text += (f"; timestamps are {_times.unit_name(self.time_unit)}, "
                     f"{_times.format_time(lo, self.time_unit)} to "
                     f"{_times.format_time(hi, self.time_unit)}")
        if self.duplicates_dropped:
            text += (f"; {self.duplicates_dropped:,} repeated events (same user, item and time) "
                     "dropped")
        return text

    def between(self, since: float | None = None, before: float | None = None
                ) -> "Interactions":
        """The interactions with ``since <= timestamp < before`` (either bound optional)."""
        return self.select(self._time_mask(since, before))

    def _time_mask(self, since: float | None, before: float | None) -> np.ndarray:
        mask = np.ones(len(self), dtype=bool)
        if since is not None:
            mask &= self.timestamps >= since
        if before is not None:
            mask &= self.timestamps < before
        return mask

    def chronological_order(self) -> np.ndarray:
        """Row indices grouped by user (first-appearance order), each user's rows by time.

        Stable: rows with equal timestamps keep their file order.
        """
        codes = self._user_codes()[1]
        return np.lexsort((np.arange(len(self)), self.timestamps, codes))

    def sequences(self, before: float | None = None, since: float | None = None
                  ) -> dict[str, np.ndarray]:
        """Each user's items (int64) oldest first, keeping ``since <= timestamp < before``.

        Users are in order of first appearance in the file; users left with no interaction in
        the window are omitted. Ties in time keep file order.
        """
        users, codes = self._user_codes()
        order = self.chronological_order()
        if since is not None or before is not None:
            order = order[self._time_mask(since, before)[order]]
        ordered_codes = codes[order]
        items = self.item_ids[order]
        if len(order) == 0:
            return {}
        cuts = np.flatnonzero(ordered_codes[1:] != ordered_codes[:-1]) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [len(order)]])
        user_list = users.tolist()
        code_list = ordered_codes[starts].tolist()
        return {user_list[c]: items[s:e].copy() for c, s, e in zip(code_list, starts.tolist(),
                                                                    ends.tolist())}

    # ------------------------------------------------------------------ saving

    def to_columns(self) -> dict[str, np.ndarray]:
        cols: dict[str, Any] = {"user_id": self.user_ids, "item_id": self.item_ids}
        if self.ratings is not None:
            cols["rating"] = self.ratings
        cols["timestamp"] = self.timestamps
        return cols

    def save(self, path: str | os.PathLike, *, format: str | None = None) -> Path:
        """Write ``user_id,item_id[,rating],timestamp`` as CSV (or Parquet/JSONL by suffix)."""
        p = Path(path)
        _readers.write_table(p, self.to_columns(), format)
        return p


def _time_column(table, name: str, unit: str) -> tuple[np.ndarray, str]:
    """A timestamp column: numbers in ``unit`` ("auto": detected later), or ISO-8601 text."""
    col = table.columns[name]
    first = None if isinstance(col, np.ndarray) else next(
        (v for v in col if v is not None and v != ""), None)
    if isinstance(first, _dt.date):  # a Parquet timestamp or date column
        if unit not in ("auto", "s"):
            raise DataError(f"timestamps are a date-time column but time unit {unit!r} was given; "
                            "a unit applies to numeric timestamps only (use 'auto')",
                            path=table.path, value=unit)
        times = np.empty(len(col), dtype=np.float64)
        for row, v in enumerate(col):
            if not isinstance(v, _dt.date):
                raise table.error(f"timestamp is missing or not a date-time, got {v!r}", row, v)
            times[row] = _times.date_seconds(v)
        return (times.astype(np.int64) if (times == np.floor(times)).all() else times), "s"
    if first is None or not _times.looks_like_iso(first) or _readers._as_int(first) is not None:
        return _readers.number_column(table, name, "timestamp"), unit
    if unit not in ("auto", "s"):
        raise DataError(f"timestamps are ISO-8601 dates (first {first!r}) but time unit {unit!r} "
                        "was given; a unit applies to numeric timestamps only (use 'auto')",
                        path=table.path, line=table.line(0), value=unit)
    times, bad = _times.parse_iso_column(col)
    if bad is not None:
        raise table.error(f"timestamp {col[bad]!r} is not an ISO-8601 date like the first one "
                          f"({first!r}); expected e.g. 2018-06-01 or 2018-06-01T12:30:00Z", bad,
                          col[bad])
    return times, "s"
