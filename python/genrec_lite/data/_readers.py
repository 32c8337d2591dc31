"""Reading and writing the neutral tabular formats: JSON lines, CSV and Parquet.

Every reader returns a :class:`Table`: named columns of equal length plus a way to say where a
row came from (its 1-based line in a text file, its 1-based row number in a Parquet file), so
that every later check can raise a :class:`~genrec_lite.errors.DataError` naming the file, the
line and the bad value.  pyarrow is imported only when a Parquet file is read or written.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import DataError, InvalidArgumentError, MissingDependencyError

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
             ".parquet": "parquet", ".pq": "parquet"}


def infer_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format named by ``format``, or else the one the file suffix implies."""
    if format is not None:
        fmt = str(format).lower()
        if fmt in ("json", "ndjson"):
            fmt = "jsonl"
        if fmt not in FORMATS:
            raise InvalidArgumentError(
                f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise InvalidArgumentError(
            f"cannot tell the format of '{path}' from its suffix {suffix!r}; use one of "
            f"{', '.join(sorted(_SUFFIXES))} or pass format= (one of {', '.join(FORMATS)})")
    return _SUFFIXES[suffix]


@dataclass
class Table:
    """Columns read from one file. ``columns[name][i]`` is row ``i``'s value (None if absent)."""

    path: Path
    format: str
    columns: dict[str, Any]
    n_rows: int
    lines: Sequence[int] | None = None  # 1-based source line per row (text formats)
    first_row: int = 0  # a chunk of a larger file (read_chunks): its rows start at this one

    def line(self, row: int) -> int:
        """The 1-based line (text files) or row number (Parquet) of row ``row``."""
        if self.lines is not None:
            return int(self.lines[row])
        return self.first_row + int(row) + 1

    def column(self, name: str) -> Any:
        """Column ``name`` as numpy (numbers) or a list; a chunk's Arrow column becomes a list
        here, so that only the columns that need Python values pay for them."""
        col = self.columns[name]
        if not isinstance(col, (np.ndarray, list, tuple)):
            col = self.columns[name] = col.to_pylist()
        return col

    def require(self, *names: str, what: str = "column") -> None:
        """Raise a DataError naming the file, the missing columns and the ones that exist."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            have = ", ".join(repr(c) for c in self.columns) or "none"
            noun = what if len(missing) == 1 else what + "s"
            raise DataError(
                f"missing {noun} {', '.join(repr(m) for m in missing)} "
                f"(the file has: {have})", path=self.path, line=1 if self.format != "parquet"
                else None, value=missing[0])

    def error(self, message: str, row: int, value: object = None) -> DataError:
        return DataError(message, path=self.path, line=self.line(row), value=value)


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector: building 100k small lists otherwise triggers it
    over and over (it triples the time to read a large CSV) and nothing here makes cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.is_dir():
        raise DataError("expected a file but found a folder", path=path)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        bad = data[start:start + max(1, exc.end - exc.start)]
        raise DataError(f"the file is not valid UTF-8 text (byte {bad!r} at byte offset {start})",
                        path=path, line=line, value=bad) from None


def read_table(path: str | os.PathLike, format: str | None = None) -> Table:
    """Read a JSONL, CSV or Parquet file into a :class:`Table` (empty files are a DataError)."""
    p = Path(path)
    fmt = infer_format(p, format)
    _check_file(p)
    with gc_paused():
        if fmt == "jsonl":
            table = _read_jsonl(p)
        elif fmt == "csv":
            table = _read_csv(p)
        else:
            table = _read_parquet(p)
    if table.n_rows == 0:
        raise DataError("the file is empty (no records)", path=p)
    return table


def _read_jsonl(path: Path) -> Table:
    text = _decode(path, path.read_bytes())
    columns: dict[str, list] = {}
    lines: list[int] = []
    loads = json.loads
    n = 0
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=path,
                            line=lineno, value=raw[:200]) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object per line, got {type(obj).__name__}",
                            path=path, line=lineno, value=obj)
        for key, value in obj.items():
            col = columns.get(key)
            if col is None:
                col = columns[key] = [None] * n
            col.append(value)
        n += 1
        lines.append(lineno)
        if len(obj) != len(columns):
            for key, col in columns.items():
                if len(col) < n:
                    col.append(None)
    return Table(path, "jsonl", columns, n, lines)


def _read_csv(path: Path) -> Table:
    text = _decode(path, path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError("the file is empty (no header line)", path=path) from None
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path=path, line=1) from None
    header = [h.strip() for h in header]
    if not any(header):
        raise DataError("the header line is empty", path=path, line=1)
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"duplicate column name {name!r} in the header", path=path, line=1,
                            value=name)
        seen.add(name)
    width = len(header)
    rows: list[list[str]]
    lines: Sequence[int]
    try:
        rows = list(reader)  # the fast path: one record a line, no blank lines
    except csv.Error:
        rows = []
    n_lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    if len(rows) + 1 == n_lines and (not rows or set(map(len, rows)) == {width}):
        lines = range(2, len(rows) + 2)
    else:
        rows, lines = _read_csv_slowly(path, text, width, header)
    cols = list(zip(*rows)) if rows else [() for _ in header]
    columns = {name: list(col) for name, col in zip(header, cols)}
    return Table(path, "csv", columns, len(rows), lines)


def _read_csv_slowly(path: Path, text: str, width: int, header: list[str]
                     ) -> tuple[list[list[str]], list[int]]:
    """Row by row, keeping each record's line (blank lines, quoted newlines, errors)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise DataError(f"expected {width} fields ({', '.join(header)}), found {len(row)}",
                                path=path, line=reader.line_num, value=row)
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path=path, line=reader.line_num) from None
    return rows, lines


def _pyarrow(what: str):
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} Parquet files needs 'pyarrow', which is not installed; "
            "install it with: pip install pyarrow (or pip install 'genrec-lite[train]')") from exc
    return pq


def _read_parquet(path: Path) -> Table:
    pq = _pyarrow("reading")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"cannot read Parquet file: {exc}", path=path) from None
    columns: dict[str, Any] = {}
    import pyarrow.types as pat

    for name in table.column_names:
        col = table.column(name)
        if (pat.is_integer(col.type) or pat.is_floating(col.type)) and col.null_count == 0:
            columns[name] = col.to_numpy()
        else:
            columns[name] = col.to_pylist()
    return Table(path, "parquet", columns, table.num_rows, None)


# ---------------------------------------------------------------- reading a chunk at a time

CHUNK_BYTES = 1 << 24  # CSV text parsed at once (about 0.5-1M rows of a log)
CHUNK_ROWS = 1 << 20   # Parquet rows read at once


class NotStreamable(Exception):
    """The file needs :func:`read_table` (blank lines, quoted line breaks, fields that do not line
    up, text that is not UTF-8...): that reader keeps every record's line for its errors."""


def read_chunks(path: str | os.PathLike, format: str | None = None, *,
                columns: Sequence[str], types: dict[str, str] | None = None):
    """``(header, chunks)`` of a CSV or Parquet file: its column names, and an iterator of
    :class:`Table` chunks holding ``columns`` (those the file has), in file order.

    Memory stays at a chunk's worth: the values come from pyarrow's streaming readers, numbers
    as numpy arrays, text as Arrow arrays (:meth:`Table.column` turns one into a list when asked).
    ``types`` names Arrow types to parse CSV columns as ("string", "int64", "float64"); a value
    that does not parse raises :class:`NotStreamable`, as does any file that :func:`read_table`
    reads differently; the caller then reads it whole.
    """
    p = Path(path)
    fmt = infer_format(p, format)
    _check_file(p)
    if fmt == "csv":
        try:
            import pyarrow.csv  # noqa: F401  (optional: without it a CSV is read whole)
        except ImportError:
            raise NotStreamable("no pyarrow") from None
        return _csv_chunks(p, columns, types or {})
    if fmt == "parquet":
        return _parquet_chunks(p, columns)
    raise NotStreamable(fmt)


def _csv_header(path: Path) -> list[str]:
    with open(path, "rb") as f:
        first = f.readline()
    try:
        text = first.decode("utf-8-sig")
        header = [h.strip() for h in next(csv.reader([text.rstrip("\r\n")]))]
    except (UnicodeDecodeError, StopIteration, csv.Error):
        raise NotStreamable("header") from None
    if not any(header) or len(set(header)) != len(header):
        raise NotStreamable("header")
    return header


def _csv_chunks(path: Path, columns: Sequence[str], types: dict[str, str]):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    header = _csv_header(path)
    wanted = [c for c in columns if c in header]
    read = pcsv.ReadOptions(column_names=header, skip_rows=1, block_size=CHUNK_BYTES)
    # No value is null but an empty numeric field, and text stays text ("NA" is a user id), as
    # the csv module reads it; anything else that does not parse goes to read_table.
    convert = pcsv.ConvertOptions(
        include_columns=wanted, null_values=[""], strings_can_be_null=False,
        quoted_strings_can_be_null=False, true_values=[], false_values=[],
        column_types={c: getattr(pa, types.get(c, "string"))() for c in wanted})
    parse = pcsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False)

    def chunks():
        try:
            reader = pcsv.open_csv(path, read_options=read, parse_options=parse,
                                   convert_options=convert)
        except pa.ArrowInvalid:
            raise NotStreamable("csv") from None
        first = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, UnicodeDecodeError):
                raise NotStreamable("csv") from None
            cols = {}
            for name in wanted:
                col = batch.column(name)
                if pa.types.is_string(col.type):
                    # a line break inside quotes would shift every later line number
                    if pc.any(pc.match_substring(col, "\n")).as_py():
                        raise NotStreamable("csv")
                    cols[name] = col
                else:
                    cols[name] = col.to_numpy() if col.null_count == 0 else col
            n = batch.num_rows
            # every record is one line here, so row r of the file is line r + 2
            yield Table(path, "csv", cols, n, range(first + 2, first + n + 2), first)
            first += n

    return header, chunks()


def _parquet_chunks(path: Path, columns: Sequence[str]):
    pq = _pyarrow("reading")
    import pyarrow.types as pat

    try:
        pf = pq.ParquetFile(path)
        header = list(pf.schema_arrow.names)
    except Exception:  # pyarrow raises several types for a bad file; read_table names it
        raise NotStreamable("parquet") from None
    wanted = [c for c in columns if c in header]

    def chunks():
        first = 0
        try:
            batches = pf.iter_batches(batch_size=CHUNK_ROWS, columns=wanted)
            for batch in batches:
                cols = {}
                for name in wanted:
                    col = batch.column(name)
                    numeric = pat.is_integer(col.type) or pat.is_floating(col.type)
                    cols[name] = col.to_numpy() if numeric and col.null_count == 0 else col
                yield Table(path, "parquet", cols, batch.num_rows, None, first)
                first += batch.num_rows
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read Parquet file: {exc}", path=path) from None

    return header, chunks()


# ---------------------------------------------------------------- value conversion helpers


def to_text(value: Any) -> str:
    """A field value as text: lists joined with ", ", None/NaN as "", 3.0 as "3"."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(t for t in (to_text(v) for v in value) if t)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is one (ints, integral floats, decimal strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and float(value).is_integer():
            return int(value)
        return None
    if isinstance(value, str):
        s = value.strip()
        if s.lstrip("+-").isdigit():
            return int(s)
        try:
            f = float(s)
        except ValueError:
            return None
        return int(f) if math.isfinite(f) and f.is_integer() else None
    return None


def int_column(table: Table, name: str, what: str) -> np.ndarray:
    """Column ``name`` as int64; a non-integer value is a DataError naming its line."""
    col = table.column(name)
    if isinstance(col, np.ndarray):
        if col.dtype.kind in "iu":
            return col.astype(np.int64, copy=False)
        if col.dtype.kind == "f":
            bad = ~(np.isfinite(col) & (col == np.floor(col)))
            if bad.any():
                row = int(np.argmax(bad))
                raise table.error(f"{what} must be an integer, got {col[row]!r}", row, col[row])
            return col.astype(np.int64)
    try:
        if col and isinstance(col[0], str):
            return np.fromiter(map(int, col), dtype=np.int64, count=len(col))
    except (ValueError, TypeError):
        pass
    out = np.empty(len(col), dtype=np.int64)
    for row, value in enumerate(col):
        v = _as_int(value)
        if v is None:
            if value is None or value == "":
                raise table.error(f"{what} is missing (column {name!r})", row, value)
            raise table.error(f"{what} must be an integer, got {value!r}", row, value)
        out[row] = v
    return out


def number_column(table: Table, name: str, what: str) -> np.ndarray:
    """Column ``name`` as int64 when every value is integral, else float64."""
    col = table.column(name)
    if isinstance(col, np.ndarray):
        if col.dtype.kind in "iu":
            return col.astype(np.int64, copy=False)
        if col.dtype.kind == "f":
            if np.isfinite(col).all() and (col == np.floor(col)).all():
                return col.astype(np.int64)
            return col.astype(np.float64, copy=False)
    try:
        return int_column(table, name, what)
    except DataError:
        pass
    out = np.empty(len(col), dtype=np.float64)
    for row, value in enumerate(col):
        try:
            if isinstance(value, bool) or value is None:
                raise ValueError
            out[row] = float(value)
        except (TypeError, ValueError):
            if value is None or value == "":
                raise table.error(f"{what} is missing (column {name!r})", row, value) from None
            raise table.error(f"{what} must be a number, got {value!r}", row, value) from None
        if not math.isfinite(out[row]):
            raise table.error(f"{what} must be a finite number, got {value!r}", row, value)
    if (out == np.floor(out)).all() and np.abs(out).max(initial=0) < 2 ** 62:
        return out.astype(np.int64)
    return out


def str_column(table: Table, name: str, what: str) -> np.ndarray:
    """Column ``name`` as an array of str (ints become their decimal text)."""
    col = table.column(name)
    if isinstance(col, np.ndarray):
        if col.dtype.kind == "f":
            return np.array([to_text(v) for v in col.tolist()])
        return col.astype(str)
    if table.format == "csv":  # every value is already text
        arr = np.array(col, dtype=str)
        empty = np.flatnonzero(arr == "")
        if empty.size:
            raise table.error(f"{what} is empty", int(empty[0]), "")
        return arr
    out = []
    for row, value in enumerate(col):
        if isinstance(value, str):
            if not value:
                raise table.error(f"{what} is empty", row, value)
            out.append(value)
        elif value is None:
            raise table.error(f"{what} is missing (column {name!r})", row, value)
        elif isinstance(value, (bool, list, dict)):
            raise table.error(f"{what} must be a string or an integer, got {value!r}", row,
                              value)
        else:
            out.append(to_text(value))
    return np.array(out, dtype=str)


# ---------------------------------------------------------------- writers


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


def _json_default(value: Any):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    dumps = json.dumps
    text = "".join(dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in records)
    _atomic_write_text(Path(path), text)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    _atomic_write_text(Path(path), buf.getvalue())


def write_parquet(path: str | os.PathLike, columns: dict[str, Any]) -> None:
    pq = _pyarrow("writing")
    import pyarrow as pa

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({k: (v if isinstance(v, np.ndarray) and v.dtype.kind != "U" else
                          pa.array(list(v))) for k, v in columns.items()})
    tmp = p.with_name(p.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, p)


def write_table(path: str | os.PathLike, columns: dict[str, Any], format: str | None = None,
                ) -> None:
    """Write equal-length columns as JSONL, CSV or Parquet (format from the suffix)."""
    fmt = infer_format(path, format)
    names = list(columns)
    if fmt == "parquet":
        write_parquet(path, columns)
        return
    lists = [_plain_list(columns[n]) for n in names]
    if fmt == "csv":
        write_csv(path, names, zip(*lists))
    else:
        write_jsonl(path, (dict(zip(names, row)) for row in zip(*lists)))


def _plain_list(values: Any) -> list:
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "f" and np.isfinite(values).all() and \
                (values == np.floor(values)).all():
            return values.astype(np.int64).tolist()
        return values.tolist()
    return list(values)
