"""`ItemRecords`: the catalog's item records (title, text, ...) without a Python object per item.

A served catalog of 10^6 items held as a dict of dicts costs ~0.5 KB per item in every worker
process, seconds of JSON parsing at load, and long pauses of Python's cyclic garbage collector
(which walks every dict). Here the bundle's (or a saved catalog's) items.jsonl is memory-mapped
read-only, so worker processes share its pages through the page cache, and indexed by two flat
arrays (the ids sorted, and where each one's line starts); a record is parsed when asked for,
which a request does only for the k items it answers. Items added while serving sit in a dict
beside it.

Immutable: `with_added` returns a new object. The dict of added records is shared between
successive objects and only ever gains entries, each numbered; an object sees the entries up to
its own number, so an add costs O(its items), not a copy of every earlier one. A change that
would rewrite an entry (an id that comes back after it was removed) or start from an older
object copies the dict instead.
"""

from __future__ import annotations

import json
import mmap
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from .._sorted import find_sorted
from ..errors import ArtifactError

_PREFIX = b'{"item_id": '  # how json.dumps (and so every writer here) starts a record
_MAX_DIGITS = 20


class ItemRecords(Mapping):
    """Item id -> record dict (a fresh dict per lookup: changing it changes nothing here)."""

    def __init__(self, path: Path | None = None, buf=None, ids: np.ndarray | None = None,
                 starts: np.ndarray | None = None, ends: np.ndarray | None = None,
                 added: dict | None = None, upto: int = 0,
                 last: list | None = None):
        self._path = path
        self._buf = buf                     # mmap of items.jsonl, or None
        self._ids = np.zeros(0, np.int64) if ids is None else ids          # sorted
        self._starts = np.zeros(0, np.int64) if starts is None else starts  # line start of each
        self._ends = np.zeros(0, np.int64) if ends is None else ends        # and its end
        # id -> (entry number, record); this object sees entries numbered <= upto. last[0]: the
        # newest number in the shared dict (a with_added from an older object must not share it)
        self._added: dict[int, tuple[int, dict]] = {} if added is None else added
        self._upto = upto
        self._last = [upto] if last is None else last

    # --- building ----------------------------------------------------------------------------
    @classmethod
    def from_dicts(cls, records: Mapping[int, dict] | Iterable[dict]) -> "ItemRecords":
        if not isinstance(records, Mapping):
            records = {int(r["item_id"]): r for r in records}
        return cls().with_added(records)

    @classmethod
    def open(cls, path: str | Path) -> "ItemRecords":
        """Index an items.jsonl file (one JSON record with an integer item_id a line)."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except OSError as exc:
            raise ArtifactError(f"{path} cannot be read ({exc})") from exc
        data = np.frombuffer(buf, dtype=np.uint8) if size else np.zeros(0, np.uint8)
        ends = np.flatnonzero(data == 10)
        if size and data[-1] != 10:
            ends = np.append(ends, size)
        starts = np.r_[0, ends[:-1] + 1].astype(np.int64) if len(ends) else np.zeros(0, np.int64)
        keep = ends > starts  # blank lines are skipped
        starts, ends = starts[keep], ends[keep]
        ids = _fast_ids(data, starts, ends)
        if ids is None:  # records written some other way: read each one once
            ids = np.array([_parse(buf, s, e, path)["item_id"] for s, e in zip(starts.tolist(), ends.tolist())],
                           dtype=np.int64)
        if size and hasattr(mmap, "MADV_DONTNEED"):
            # the scan touched every page: let them go from this process (they stay in the page
            # cache, shared), so a worker holds only the pages of records it has answered with
            buf.madvise(mmap.MADV_DONTNEED)
        order = np.argsort(ids, kind="stable")
        # offsets in 4 bytes where the file allows (8 MB less per worker at 10^6 items)
        offset = np.uint32 if size < 2**32 - 1 else np.int64
        ids, starts, ends = ids[order], starts[order].astype(offset), ends[order].astype(offset)
        dup = np.flatnonzero(ids[1:] == ids[:-1])
        if len(dup):
            raise ArtifactError(f"{path} holds item id {int(ids[dup[0]])} more than once")
        return cls(path, buf, ids, starts, ends)

    def share_ids(self, sorted_ids: np.ndarray) -> None:
        """Use `sorted_ids` in place of this object's own sorted file ids when they are equal
        (e.g. the SID table's index over the same catalog): one copy of the id set per worker
        instead of two."""
        if sorted_ids is not self._ids and np.array_equal(sorted_ids, self._ids):
            self._ids = sorted_ids

    def with_added(self, records: Mapping[int, dict]) -> "ItemRecords":
        """These records plus (or, for ids already here, instead of) the given ones."""
        recs = {int(k): dict(v) for k, v in records.items()}
        again = any(k in self._added or self._in_file(k) for k in recs)
        if again or self._last[0] != self._upto:  # see the module doc
            added = {k: v for k, v in self._added.items() if v[0] <= self._upto}
            last = [self._upto]
        else:
            added, last = self._added, self._last
        n = self._upto + 1
        added.update((k, (n, r)) for k, r in recs.items())
        last[0] = n
        return ItemRecords(self._path, self._buf, self._ids, self._starts, self._ends, added, n, last)

    def _own(self, item_id: int) -> dict | None:
        got = self._added.get(item_id)
        return got[1] if got is not None and got[0] <= self._upto else None

    # --- reading -----------------------------------------------------------------------------
    def _slot(self, item_id: int) -> int:
        k = int(np.searchsorted(self._ids, item_id))
        return k if k < len(self._ids) and self._ids[k] == item_id else -1

    def _in_file(self, item_id: int) -> bool:
        return self._slot(item_id) >= 0

    def get(self, item_id, default=None):
        try:
            i = int(item_id)
        except (TypeError, ValueError):
            return default
        rec = self._own(i)
        if rec is not None:
            return dict(rec)
        if not -(1 << 63) <= i < (1 << 63):
            return default
        k = self._slot(i)
        if k < 0:
            return default
        return _parse(self._buf, int(self._starts[k]), int(self._ends[k]), self._path)

    def write_jsonl(self, item_ids: np.ndarray, f) -> None:
        """Write the records of these ids (all held) to a binary file, one JSON line each, in
        this order: lines from the file are copied as stored, without parsing, a run of lines
        that lie one after another in the file in one piece."""
        ids = np.asarray(item_ids, dtype=np.int64)
        n = len(ids)
        own = np.fromiter((k for k, (v, _) in self._added.items() if v <= self._upto), np.int64)
        if len(self._ids):
            k, found = find_sorted(self._ids, ids)
            in_file = found & ~np.isin(ids, own)
            starts, ends = self._starts[k], self._ends[k]
        else:
            in_file = np.zeros(n, bool)
            starts = ends = np.zeros(n, np.int64)
        # a run continues while the next line is in the file right after this one
        joins = in_file[1:] & in_file[:-1] & (starts[1:] == ends[:-1] + 1)
        breaks = np.flatnonzero(~joins) + 1
        for a, b in zip(np.r_[0, breaks].tolist(), np.r_[breaks, n].tolist()):
            if b <= a:
                continue
            if in_file[a]:
                f.write(self._buf[int(starts[a]):int(ends[b - 1])])
                f.write(b"\n")
            else:
                for i in ids[a:b].tolist():
                    f.write(json.dumps(self.get(i, {"item_id": i}), ensure_ascii=False).encode("utf-8"))
                    f.write(b"\n")

    def __getitem__(self, item_id):
        rec = self.get(item_id)
        if rec is None:
            raise KeyError(item_id)
        return rec

    def __contains__(self, item_id) -> bool:
        return self.get(item_id) is not None

    def __iter__(self) -> Iterator[int]:
        extra = [k for k in self._added if self._own(k) is not None and not self._in_file(k)]
        return iter([*self._ids.tolist(), *extra])

    def __len__(self) -> int:
        return len(self._ids) + sum(1 for k in self._added
                                    if self._own(k) is not None and not self._in_file(k))

    def title(self, item_id: int) -> str:
        return (self.get(item_id) or {}).get("title", "") or ""


def _parse(buf, start: int, end: int, path) -> dict:
    try:
        rec = json.loads(bytes(buf[start:end]).decode("utf-8"))
        rec["item_id"] = int(rec["item_id"])
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, ValueError,
            IndexError) as exc:
        raise ArtifactError(f"{path} has a line at byte {start} that is not an item record "
                            f"({exc!r})") from exc
    return rec


def _fast_ids(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """The item id of every line when each one starts `{"item_id": <integer>` followed by ',' or
    '}' (vectorised, in chunks: no per-line Python); None when some line does not."""
    out = np.zeros(len(starts), np.int64)
    step = 1 << 16
    for c in range(0, len(starts), step):
        got = _fast_ids_chunk(data, starts[c:c + step], ends[c:c + step])
        if got is None:
            return None
        out[c:c + step] = got
    return out


def _fast_ids_chunk(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    n = len(starts)
    p = len(_PREFIX)
    if (ends - starts < p + 2).any():
        return None
    head = data[starts[:, None] + np.arange(p)]
    if not (head == np.frombuffer(_PREFIX, np.uint8)).all():
        return None
    at = np.minimum(starts[:, None] + p + np.arange(_MAX_DIGITS + 1), len(data) - 1)
    window = data[at]
    neg = window[:, 0] == ord("-")
    window[neg] = np.roll(window[neg], -1, axis=1)  # the digits of a negative id from column 0
    digit = (window >= ord("0")) & (window <= ord("9"))
    n_digits = np.argmin(digit, axis=1)  # the first non-digit
    if (n_digits == 0).any() or (n_digits > 18).any():
        return None  # no number, or one that may not fit int64 exactly: let json decide
    if ((window[:, 0] == ord("0")) & (n_digits > 1)).any():
        return None  # a leading zero is not JSON
    after = window[np.arange(n), n_digits]
    if not np.isin(after, (ord(","), ord("}"))).all():
        return None
    value = np.zeros(n, np.int64)
    for j in range(int(n_digits.max())):
        live = j < n_digits
        value = np.where(live, value * 10 + (window[:, j].astype(np.int64) - ord("0")), value)
    return np.where(neg, -value, value)
