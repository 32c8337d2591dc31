"""User-item interactions: who touched which item when (and, optionally, the rating)."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .._memory import give_back_memory
from ..errors import DataError, InvalidArgumentError, UnknownItemError
from . import _readers, timestamps as _times
from ._grouping import CHUNK, group_order, index_dtype
from .sequences import UserSequences

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
        if isinstance(user_ids, _UserCodes):  # the loader's and select's form: no text per row
            vocab, codes = user_ids.users, user_ids.codes
            users = codes
        else:
            users = np.asarray(user_ids)
            if users.dtype.kind != "U":
                users = np.array([_readers.to_text(u) for u in users.tolist()], dtype=str) \
                    if users.size else np.zeros(0, dtype="<U1")
            vocab, codes = _factorize(users) if users.ndim == 1 else (users, users)
        items = np.asarray(item_ids)
        if items.size and items.dtype.kind not in "iu":
            raise InvalidArgumentError(f"item ids must be integers, got dtype {items.dtype}")
        items = items.astype(np.int64, copy=False)  # a loaded column is int64 already: no copy
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
                times = times.astype(np.int64, copy=False)
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
        self._users: np.ndarray = vocab  # distinct user ids, in order of first appearance
        self._code: np.ndarray = codes   # int32 per row: the row's user in _users
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
        for arr in (self._users, self._code, self.item_ids, self.timestamps, self.ratings):
            if arr is not None:
                arr.flags.writeable = False
        self._grouped: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def user_ids(self) -> np.ndarray:
        """Each row's user id (str). Made on each call from the per-row codes: a large log keeps
        one int32 a row, not its text."""
        out = self._users[self._code]
        out.flags.writeable = False
        return out

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
        fields = _Fields(user_field, item_field, time_field, rating_field)
        try:  # CSV and Parquet: a chunk at a time into compact columns
            users, items, times, unit, ratings, table = _load_chunks(path, format, fields, unit)
        except _readers.NotStreamable:  # JSONL, or a file only the exact reader reads right
            table = _readers.read_table(path, format)
            table.require(*fields.needed)
            users = _readers.str_column(table, user_field, "user id")
            items = _readers.int_column(table, item_field, "item id")
            times = None
            if time_field:
                times, unit = _time_column(table, time_field, unit)
            ratings = None
            if rating_field and rating_field in table.columns:
                ratings = _readers.number_column(table, rating_field, "rating").astype(np.float64)
        if catalog is not None:
            # a chunk at a time: the lookup's temporaries are 9 bytes a row
            bad_rows = np.concatenate([np.flatnonzero(~catalog.contains_all(items[lo:lo + CHUNK]))
                                       + lo for lo in range(0, len(items), CHUNK)] or [[]]
                                      ).astype(np.int64)
            if len(bad_rows):
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
        give_back_memory()
        return out

    def _repeated_rows(self) -> np.ndarray:
        """True for each row whose (user, item, timestamp) an earlier row already has."""
        n = len(self)
        if n < 2:
            return np.zeros(n, dtype=bool)
        codes = self._code
        # Only rows that share a user and a time with the row before them in chronological
        # order can repeat one; those few runs are sorted by item below, the log is not.
        order, _ = self._group()
        tied = []
        for lo in range(1, n, CHUNK):
            rows = order[lo - 1:lo + CHUNK]
            same = (codes[rows[1:]] == codes[rows[:-1]]) & \
                (self.timestamps[rows[1:]] == self.timestamps[rows[:-1]])
            at = np.flatnonzero(same)
            if len(at):
                tied.append(np.unique(np.concatenate([rows[at], rows[at + 1]])))
        repeat = np.zeros(n, dtype=bool)
        if not tied:
            return repeat
        rows = np.unique(np.concatenate(tied))
        c, it, ts = codes[rows], self.item_ids[rows], self.timestamps[rows]
        by = np.lexsort((rows, ts, it, c))
        same = (c[by][1:] == c[by][:-1]) & (it[by][1:] == it[by][:-1]) & (ts[by][1:] == ts[by][:-1])
        repeat[rows[by][1:][same]] = True  # the first row of each run (lowest row) stays
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
        return self._users, self._code

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
        return Interactions(_UserCodes.first_appearance(self._users, self._code[m]),
                            self.item_ids[m], self.timestamps[m],
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
        return self.grouped()[0]

    def grouped(self) -> tuple[np.ndarray, np.ndarray]:
        """``(order, offsets)``: :meth:`chronological_order`, and where each user's rows start in
        it (user ``k`` of :attr:`users` has ``order[offsets[k]:offsets[k + 1]]``). Made once
        with memory bounded by the result (:func:`~genrec_lite.data._grouping.group_order`)."""
        if self._grouped is None:
            self._grouped = self._group()
        return self._grouped

    def _group(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`grouped`, kept if it was made already, else made and not kept: the steps
        that need it once (dropping duplicates, a leave-one-out split) leave no 5 bytes a row
        behind for the rest of a run."""
        if self._grouped is not None:
            return self._grouped
        order, offsets = group_order(self._code, len(self._users), self.timestamps)
        order.flags.writeable = False
        offsets.flags.writeable = False
        return order, offsets

    def sequences(self, before: float | None = None, since: float | None = None
                  ) -> UserSequences:
        """Each user's items oldest first, keeping ``since <= timestamp < before``, as a mapping
        ``user id -> items`` over one flat array (:class:`UserSequences`; int32 when every item
        id fits, else int64).

        Users are in order of first appearance in the file; users left with no interaction in
        the window are omitted. Ties in time keep file order.
        """
        order, offsets = self._group()
        ids = self.item_ids
        # int32 while every id fits: sequences and the cases made from them are half the size
        small = not len(ids) or (int(ids.min()) >= -2 ** 31 and int(ids.max()) < 2 ** 31)
        if since is None and before is None:
            rows = order
            bounds = offsets
        else:
            keep = self._time_mask(since, before)[order]
            rows = order[keep]
            kept_before = np.zeros(len(keep) + 1, dtype=np.int64)
            np.cumsum(keep, out=kept_before[1:])
            bounds = kept_before[offsets]
        items = np.empty(len(rows), dtype=np.int32 if small else np.int64)
        for lo in range(0, len(rows), CHUNK):  # gathered a chunk at a time: no int64 copy
            items[lo:lo + CHUNK] = ids[rows[lo:lo + CHUNK]]
        has = bounds[1:] > bounds[:-1]
        users = self._users
        if not has.all():
            users = users[has]
            bounds = np.r_[bounds[:-1][has], bounds[-1]]
        return UserSequences(users, bounds.astype(index_dtype(len(items) + 1)), items)

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
    col = table.column(name)
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


@dataclass(frozen=True)
class _Fields:
    user: str
    item: str
    time: str | None
    rating: str | None

    @property
    def needed(self) -> list[str]:
        return [self.user, self.item] + ([self.time] if self.time else [])


# Arrow types to try for a CSV's numeric columns, in turn: integers, then (when a value is not
# one) floats, then text converted here (ISO dates, and the exact errors of read_table).
_CSV_TYPES = ({"item": "int64", "time": "int64", "rating": "float64"},
              {"item": "int64", "time": "float64", "rating": "float64"}, {})


def _load_chunks(path, format, fields: _Fields, unit: str):
    """Users (as codes), items, times, unit, ratings, and a Table that names lines, read a chunk
    at a time: only the int32 user code, the int64 item and the timestamp of a row are kept."""
    fmt = _readers.infer_format(path, format)
    for types in (_CSV_TYPES if fmt == "csv" else ({},)):
        arrow = {k: v for k, v in (("item", fields.item), ("time", fields.time),
                                   ("rating", fields.rating)) if v}
        try:
            return _read_columns(path, fmt, fields, unit,
                                 {arrow[k]: t for k, t in types.items() if k in arrow})
        except _readers.NotStreamable:
            if fmt != "csv" or not types:
                raise
    raise _readers.NotStreamable(fmt)  # pragma: no cover - the loop returns or raises


def _read_columns(path, fmt: str, fields: _Fields, unit: str, types: dict[str, str]):
    header, chunks = _readers.read_chunks(
        path, fmt, columns=fields.needed + ([fields.rating] if fields.rating else []),
        types=types)
    shape = _readers.Table(Path(path), fmt, dict.fromkeys(header), 0)
    shape.require(*fields.needed)
    codes = _UserCoder()
    items, times, ratings = [], [], []
    kinds = set()
    for table in chunks:
        codes.add(_user_chunk(table, fields.user))
        items.append(_readers.int_column(table, fields.item, "item id"))
        if fields.time:
            t, got = _time_column(table, fields.time, unit)
            kinds.add(got)
            times.append(t)
        if fields.rating and fields.rating in header:
            ratings.append(_readers.number_column(table, fields.rating, "rating")
                           .astype(np.float64))
    if not items:
        raise _readers.NotStreamable("empty")  # read_table names the empty file
    if len(kinds) > 1:  # ISO dates in one chunk, numbers in another: the exact reader says where
        raise _readers.NotStreamable("mixed timestamps")
    users = codes.result()
    del table, chunks
    give_back_memory()  # before the columns are joined: their peak then starts lower
    items_all = _concat(items)
    times_all = _concat(times) if fields.time else None
    ratings_all = _concat(ratings) if ratings else None
    line = _readers.Table(Path(path), fmt, {}, len(items_all), None)
    if fmt == "csv":
        line.first_row = 1  # one record a line after the header: row r is line r + 2
    return users, items_all, times_all, (kinds.pop() if kinds else unit), ratings_all, line


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """One array from the chunks' (int64, or float64 when any chunk is), freeing them as it goes."""
    dtype = np.result_type(*parts)
    out = np.empty(sum(len(p) for p in parts), dtype=dtype)
    at = 0
    while parts:
        p = parts.pop(0)
        out[at:at + len(p)] = p
        at += len(p)
    return out


def _user_chunk(table, name: str):
    """A chunk's user ids as an Arrow string array (numbers as their decimal text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.columns[name]
    if isinstance(col, (pa.Array, pa.ChunkedArray)) and pa.types.is_string(col.type) \
            and col.null_count == 0:
        empty = pc.equal(pc.utf8_length(col), 0)
        if pc.any(empty).as_py():
            row = int(pc.index(empty, True).as_py())
            raise table.error("user id is empty", row, "")
        return col
    return pa.array(_readers.str_column(table, name, "user id"), type=pa.string())


class _UserCoder:
    """Gives each distinct user id an int32 code in order of first appearance, chunk by chunk,
    holding only the distinct ids (as Arrow text) and the codes."""

    def __init__(self):
        import pyarrow as pa

        self.vocab = pa.array([], type=pa.string())
        self.codes: list[np.ndarray] = []

    def add(self, col) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        uniq = pc.unique(col)  # in order of first appearance in the chunk
        known = pc.fill_null(pc.index_in(uniq, value_set=self.vocab), -1).to_numpy()
        code = known.astype(np.int64)
        new = known < 0
        if new.any():
            code[new] = len(self.vocab) + np.arange(int(new.sum()))
            self.vocab = pa.concat_arrays([self.vocab, uniq.filter(pa.array(new))])
        if len(self.vocab) >= 2 ** 31:
            raise InvalidArgumentError("more than 2^31 distinct users")
        where = pc.index_in(col, value_set=uniq).to_numpy()
        self.codes.append(code.astype(np.int32)[where])

    def result(self) -> "_UserCodes":
        users = self.vocab.to_numpy(zero_copy_only=False).astype(str) if len(self.vocab) \
            else np.zeros(0, dtype="<U1")
        return _UserCodes(users, _concat(self.codes).astype(np.int32, copy=False))


class _UserCodes:
    """Users given as codes into a list of distinct ids (first-appearance order), not as text."""

    def __init__(self, users: np.ndarray, codes: np.ndarray):
        self.users, self.codes = users, codes

    @classmethod
    def first_appearance(cls, users: np.ndarray, codes: np.ndarray) -> "_UserCodes":
        """Codes renumbered so that only the users present remain, in first-appearance order."""
        n = len(codes)
        if not n:
            return cls(users[:0], codes.astype(np.int32))
        # each user's first row, without sorting the rows: written backwards, the last write to
        # a user (numpy applies repeated indices in order) is its first row
        first = np.full(len(users), n, dtype=index_dtype(n))
        first[codes[::-1]] = np.arange(n - 1, -1, -1, dtype=first.dtype)
        present = np.flatnonzero(first < n)
        rank = np.empty(len(users), dtype=np.int32)
        by_first = present[np.argsort(first[present], kind="stable")]
        rank[by_first] = np.arange(len(by_first), dtype=np.int32)
        return cls(users[by_first], rank[codes])


def _factorize(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct ids in first-appearance order, int32 code of each row)."""
    uniq, first, inverse = np.unique(users, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int32)
    by_first = np.argsort(first, kind="stable")
    rank[by_first] = np.arange(len(uniq), dtype=np.int32)
    return uniq[by_first], rank[inverse.ravel()]
