"""The item catalog: integer item ids with text fields (title, brand, description, ...)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import DataError, InvalidArgumentError, UnknownItemError
from . import _readers
from ..templates import Template, as_template

ID_FIELD = "item_id"


class Catalog:
    """Items in a fixed order, each an int id plus text fields.

    Every field value is text: lists are joined with ", " (ml-100k ``genres``), missing values,
    None and NaN become "", integral numbers lose their ".0". The catalog is immutable; the methods
    that change it (:meth:`subset`, :meth:`extend`, :meth:`concat`) return a new one.
    Records and saved files always name the id ``item_id``, whatever ``id_field`` it was loaded
    from.
    """

    def __init__(self, item_ids: Sequence[int] | np.ndarray, fields: Mapping[str, Sequence[Any]]
                 | None = None, *, source: str | None = None):
        ids = np.asarray(item_ids)
        if ids.ndim != 1:
            raise InvalidArgumentError(f"item_ids must be one-dimensional, got shape {ids.shape}")
        if ids.size and ids.dtype.kind not in "iu":
            raise InvalidArgumentError(f"item ids must be integers, got dtype {ids.dtype}")
        self._ids = ids.astype(np.int64, copy=True)
        self._ids.flags.writeable = False
        self.source = source
        n = len(self._ids)
        self._fields: dict[str, list[str]] = {}
        for name, values in (fields or {}).items():
            if name == ID_FIELD:
                continue
            vals = [_readers.to_text(v) for v in values]
            if len(vals) != n:
                raise InvalidArgumentError(
                    f"field {name!r} has {len(vals)} values for {n} items")
            self._fields[name] = vals
        order = np.argsort(self._ids, kind="stable")
        self._sorted = self._ids[order]
        self._sorted_pos = order
        if n > 1:
            dup = np.flatnonzero(self._sorted[1:] == self._sorted[:-1])
            if dup.size:
                bad = int(self._sorted[dup[0]])
                rows = np.flatnonzero(self._ids == bad)
                raise DataError(f"duplicate item id {bad} (items {rows[0]} and {rows[1]}, "
                                "0-based)", path=source, value=bad)
        self._index: dict[int, int] | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, path: str | os.PathLike, *, id_field: str = ID_FIELD,
             fields: Sequence[str] | None = None, format: str | None = None) -> "Catalog":
        """Read a catalog from JSONL, CSV or Parquet (format from the suffix unless given).

        ``fields`` keeps only those fields (each must exist); by default every column except
        the id is kept, in file order.
        """
        table = _readers.read_table(path, format)
        table.require(id_field, what="id field" if table.format == "jsonl" else "id column")
        ids = _readers.int_column(table, id_field, "item id")
        _check_duplicates(table, ids)
        if fields is None:
            names = [c for c in table.columns if c != id_field]
        else:
            names = list(fields)
            table.require(*names, what="field" if table.format == "jsonl" else "column")
        cols = {("item_id_" if n == ID_FIELD else n): table.columns[n] for n in names}
        return cls(ids, cols, source=str(table.path))

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, id_field: str = ID_FIELD
                     ) -> "Catalog":
        """Build a catalog from dicts, each with an int id under ``id_field``."""
        ids: list[int] = []
        columns: dict[str, list] = {}
        n = 0
        for i, rec in enumerate(records):
            if id_field not in rec:
                raise InvalidArgumentError(f"record {i} has no {id_field!r}: {dict(rec)!r}")
            v = _readers._as_int(rec[id_field])
            if v is None:
                raise InvalidArgumentError(
                    f"record {i}: item id must be an integer, got {rec[id_field]!r}")
            ids.append(v)
            for key, value in rec.items():
                if key == id_field:
                    continue
                col = columns.get(key)
                if col is None:
                    col = columns[key] = [None] * n
                col.append(value)
            n += 1
            for col in columns.values():
                if len(col) < n:
                    col.append(None)
        return cls(np.asarray(ids, dtype=np.int64), columns)

    # ------------------------------------------------------------------ lookup

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.tolist())

    def __repr__(self) -> str:
        return f"Catalog({len(self)} items, fields={list(self._fields)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Catalog):
            return NotImplemented
        return np.array_equal(self._ids, other._ids) and self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]

    @property
    def item_ids(self) -> np.ndarray:
        """The item ids (int64, read-only) in catalog order."""
        return self._ids

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the text fields (not the id), in order."""
        return tuple(self._fields)

    def _lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``ids`` (garbage where absent) and a mask of the ones present."""
        if len(self._sorted) == 0:
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        pos = np.searchsorted(self._sorted, ids)
        pos = np.minimum(pos, len(self._sorted) - 1)
        found = self._sorted[pos] == ids
        return self._sorted_pos[pos], found

    def contains(self, item_id: int) -> bool:
        """Whether ``item_id`` is in the catalog."""
        v = _readers._as_int(item_id) if not isinstance(item_id, str) else None
        if v is None:
            return False
        return self._position_or_none(v) is not None

    def __contains__(self, item_id: object) -> bool:
        return self.contains(item_id)  # type: ignore[arg-type]

    def contains_all(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """A boolean mask: which of ``ids`` the catalog has."""
        arr = np.asarray(ids, dtype=np.int64)
        return self._lookup(arr)[1]

    def _position_or_none(self, item_id: int) -> int | None:
        if self._index is None:
            self._index = {int(v): i for i, v in enumerate(self._ids.tolist())}
        return self._index.get(item_id)

    def index_of(self, item_id: int) -> int:
        """The 0-based position of ``item_id``; UnknownItemError if absent."""
        v = _readers._as_int(item_id) if not isinstance(item_id, str) else None
        pos = None if v is None else self._position_or_none(v)
        if pos is None:
            raise UnknownItemError(f"item id {item_id!r} is not in the catalog "
                                   f"({len(self)} items)", value=item_id)
        return pos

    def indices_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Positions (int64) of many ids at once; UnknownItemError names the first unknown."""
        arr = np.asarray(ids)
        if arr.size == 0:
            return np.zeros(arr.shape, dtype=np.int64)
        if arr.dtype.kind not in "iu":
            raise InvalidArgumentError(f"item ids must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        pos, found = self._lookup(arr)
        if not found.all():
            missing = np.flatnonzero(~found.ravel())
            bad = int(arr.ravel()[missing[0]])
            more = f" ({len(missing)} of {arr.size} ids unknown)" if len(missing) > 1 else ""
            raise UnknownItemError(f"item id {bad} is not in the catalog{more}", value=bad)
        return pos.astype(np.int64, copy=False)

    # ------------------------------------------------------------------ fields & text

    def field(self, name: str) -> list[str]:
        """The values of one field, in catalog order (a copy)."""
        if name == ID_FIELD:
            return [str(i) for i in self._ids.tolist()]
        if name not in self._fields:
            raise InvalidArgumentError(
                f"the catalog has no field {name!r} (fields: "
                f"{', '.join(repr(f) for f in self._fields) or 'none'})")
        return list(self._fields[name])

    @property
    def titles(self) -> list[str]:
        """The ``title`` field (InvalidArgumentError when the catalog has none)."""
        return self.field("title")

    def record(self, item_id: int) -> dict[str, Any]:
        """One item as a dict: ``item_id`` then its fields."""
        pos = self.index_of(item_id)
        return self._record_at(pos)

    def _record_at(self, pos: int) -> dict[str, Any]:
        rec: dict[str, Any] = {ID_FIELD: int(self._ids[pos])}
        for name, vals in self._fields.items():
            rec[name] = vals[pos]
        return rec

    def to_records(self) -> list[dict[str, Any]]:
        """All items as dicts, in catalog order."""
        return [self._record_at(i) for i in range(len(self))]

    def render(self, template: str | Template, ids: Sequence[int] | None = None) -> list[str]:
        """Render every item (or the items ``ids``) through a template; see ``templates``.

        A field the template names but the catalog lacks entirely is an InvalidArgumentError;
        an item whose field is empty renders it as "" (and drops ``[...]`` segments that only
        hold empty fields).
        """
        tpl = as_template(template)
        tpl.check_fields((ID_FIELD,) + self.fields, "the catalog")
        positions = range(len(self)) if ids is None else self.indices_of(ids).tolist()
        cols = {name: self._fields[name] for name in tpl.fields if name != ID_FIELD}
        id_list = self._ids.tolist()
        out = []
        for pos in positions:
            values = {name: col[pos] for name, col in cols.items()}
            if ID_FIELD in tpl.fields:
                values[ID_FIELD] = str(id_list[pos])
            out.append(tpl.render(values))
        return out

    # ------------------------------------------------------------------ derived catalogs

    def subset(self, ids: Sequence[int] | np.ndarray) -> "Catalog":
        """A catalog of the items ``ids``, in that order (UnknownItemError if one is absent)."""
        pos = self.indices_of(ids)
        return Catalog(self._ids[pos], {n: [v[i] for i in pos.tolist()]
                                        for n, v in self._fields.items()})

    def concat(self, other: "Catalog") -> "Catalog":
        """This catalog followed by ``other``'s items; a shared id is a DataError.

        Fields are the union; an item lacking a field gets "".
        """
        clash = self.contains_all(other.item_ids)
        if clash.any():
            bad = int(other.item_ids[np.flatnonzero(clash)[0]])
            raise DataError(f"item id {bad} is already in the catalog "
                            f"({int(clash.sum())} duplicate ids)", value=bad)
        names = list(self._fields) + [n for n in other._fields if n not in self._fields]
        n_self, n_other = len(self), len(other)
        fields = {n: self._fields.get(n, [""] * n_self) + other._fields.get(n, [""] * n_other)
                  for n in names}
        return Catalog(np.concatenate([self._ids, other._ids]), fields)

    def extend(self, records: Iterable[Mapping[str, Any]]) -> "Catalog":
        """This catalog plus new items given as records (dicts with ``item_id``)."""
        return self.concat(Catalog.from_records(records))

    # ------------------------------------------------------------------ saving

    def save(self, path: str | os.PathLike, *, format: str | None = None) -> Path:
        """Write the catalog (JSONL by default; CSV or Parquet by suffix or ``format``)."""
        p = Path(path)
        fmt = _readers.infer_format(p, format)
        if fmt == "jsonl":
            _readers.write_jsonl(p, self.to_records())
        else:
            cols: dict[str, Any] = {ID_FIELD: self._ids}
            cols.update(self._fields)
            _readers.write_table(p, cols, fmt)
        return p


def _check_duplicates(table: "_readers.Table", ids: np.ndarray) -> None:
    if len(ids) < 2:
        return
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    dup = np.flatnonzero(s[1:] == s[:-1])
    if dup.size:
        # report the duplicate that appears first in the file (its second occurrence)
        second = order[dup + 1]
        first_dup = int(second.min())
        k = int(np.flatnonzero(second == first_dup)[0])
        first = int(order[dup[k]])
        bad = int(ids[first_dup])
        raise table.error(f"duplicate item id {bad} (first seen on line {table.line(first)})",
                          first_dup, bad)
