"""User profiles: a record of attributes (age, occupation, ...) per user id."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..errors import DataError, InvalidArgumentError
from . import _readers
from ..templates import Template, as_template

ID_FIELD = "user_id"


class UserProfiles:
    """Profiles keyed by user id (always text). Values keep their JSON types; rendering turns
    them into text (lists joined with ", ", None as "")."""

    def __init__(self, records: Mapping[str, Mapping[str, Any]] | None = None, *,
                 source: str | None = None):
        self._records: dict[str, dict[str, Any]] = {}
        names: list[str] = []
        for user, rec in (records or {}).items():
            uid = _readers.to_text(user)
            clean = {k: v for k, v in rec.items() if k != ID_FIELD}
            for k in clean:
                if k not in names:
                    names.append(k)
            self._records[uid] = clean
        self._fields = tuple(names)
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike, *, id_field: str = ID_FIELD,
             format: str | None = None) -> "UserProfiles":
        """Read profiles from JSONL, CSV or Parquet; a repeated user id is a DataError."""
        table = _readers.read_table(path, format)
        table.require(id_field, what="id field" if table.format == "jsonl" else "id column")
        ids = _readers.str_column(table, id_field, "user id").tolist()
        names = [c for c in table.columns if c != id_field]
        cols = [table.columns[n] for n in names]
        cols = [c.tolist() if hasattr(c, "tolist") else c for c in cols]
        records: dict[str, dict[str, Any]] = {}
        for row, uid in enumerate(ids):
            if uid in records:
                raise table.error(f"duplicate user id {uid!r}", row, uid)
            records[uid] = {n: c[row] for n, c in zip(names, cols)}
        return cls(records, source=str(table.path))

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, id_field: str = ID_FIELD
                     ) -> "UserProfiles":
        out: dict[str, dict[str, Any]] = {}
        for i, rec in enumerate(records):
            if id_field not in rec:
                raise InvalidArgumentError(f"profile {i} has no {id_field!r}: {dict(rec)!r}")
            uid = _readers.to_text(rec[id_field])
            if uid in out:
                raise DataError(f"duplicate user id {uid!r}", value=uid)
            out[uid] = {k: v for k, v in rec.items() if k != id_field}
        return cls(out)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, user_id: object) -> bool:
        return _readers.to_text(user_id) in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserProfiles):
            return NotImplemented
        return self._records == other._records

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"UserProfiles({len(self)} users, fields={list(self._fields)})"

    @property
    def user_ids(self) -> list[str]:
        return list(self._records)

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names (not the id), in order of first appearance."""
        return self._fields

    def get(self, user_id: object) -> dict[str, Any] | None:
        """The profile of ``user_id`` (with ``user_id`` as text), or None if unknown."""
        uid = _readers.to_text(user_id)
        rec = self._records.get(uid)
        if rec is None:
            return None
        return {ID_FIELD: uid, **rec}

    def render(self, user_id: object, template: str | Template, *, default: str = "") -> str:
        """The profile rendered through ``template`` (see ``templates``); ``default`` when the
        user has no profile. A template field no profile has is an InvalidArgumentError."""
        tpl = as_template(template)
        tpl.check_fields((ID_FIELD,) + self._fields, "the user profiles")
        uid = _readers.to_text(user_id)
        rec = self._records.get(uid)
        if rec is None:
            return default
        values = {k: _readers.to_text(v) for k, v in rec.items() if k in tpl.fields}
        values[ID_FIELD] = uid
        return tpl.render(values)

    def to_records(self) -> list[dict[str, Any]]:
        return [{ID_FIELD: uid, **rec} for uid, rec in self._records.items()]

    def save(self, path: str | os.PathLike, *, format: str | None = None) -> Path:
        """Write the profiles (JSONL by default; CSV or Parquet by suffix or ``format``)."""
        p = Path(path)
        fmt = _readers.infer_format(p, format)
        if fmt == "jsonl":
            _readers.write_jsonl(p, self.to_records())
        else:
            cols: dict[str, list] = {ID_FIELD: list(self._records)}
            for name in self._fields:
                cols[name] = [rec.get(name) for rec in self._records.values()]
            _readers.write_table(p, cols, fmt)
        return p
