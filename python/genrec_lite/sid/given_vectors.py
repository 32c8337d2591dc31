"""Item vectors a user already has, read for `sid build --vectors` instead of embedding text.

- ``.npy``: a 2-D array, row i the vector of the catalog's i-th item (catalog file order);
- ``.parquet``: an ``item_id`` column and a ``vector`` column (a list of numbers a row), keyed by
  item id, in any order; every catalog item needs exactly one row and no other ids may appear;
- a folder written by ``sid embed`` (sid/embed_job.py), once complete: keyed by item id as Parquet.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError, MissingDependencyError

VECTOR_SUFFIXES = (".npy", ".parquet", ".pq")


def load_item_vectors(path: str | os.PathLike, catalog, *, id_column: str = "item_id",
                      vector_column: str = "vector") -> np.ndarray:
    """(n_items, dim) float32 vectors for ``catalog.item_ids``, in catalog order."""
    from .embed_job import is_embedding_folder

    p = Path(path)
    suffix = p.suffix.lower()
    if is_embedding_folder(p):
        vectors = _read_embedding_folder(p, catalog)
    elif p.is_dir():
        raise DataError("a folder without the manifest.json of `sid embed`; expected a vectors "
                        f"file ({', '.join(VECTOR_SUFFIXES)}) or a `sid embed --out` folder", path=p)
    elif not p.is_file():
        raise DataError("vectors file not found", path=p)
    elif suffix == ".npy":
        vectors = _read_npy(p, len(catalog))
    elif suffix in (".parquet", ".pq"):
        vectors = _read_parquet(p, catalog, id_column, vector_column)
    else:
        raise DataError(f"cannot read vectors from a {suffix or 'suffix-less'!r} file; expected "
                        f"one of {', '.join(VECTOR_SUFFIXES)}", path=p, value=suffix)
    if vectors.shape[1] == 0:
        raise DataError("the vectors have 0 dimensions; expected at least 1", path=p)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"the vector of item {int(catalog.item_ids[row])} (catalog row {row}) "
                        f"holds NaN or inf ({int(bad.sum())} such rows); expected finite numbers",
                        path=p, value=int(catalog.item_ids[row]))
    return vectors


def _read_npy(p: Path, n_items: int) -> np.ndarray:
    try:
        arr = np.load(p, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise DataError(f"not a readable .npy array: {exc}", path=p) from None
    if arr.ndim != 2:
        raise DataError(f"the array has shape {arr.shape}; expected 2-D (items, dim) with one "
                        f"row per catalog item ({n_items} rows)", path=p, value=arr.shape)
    if arr.dtype.kind not in "fiu":
        raise DataError(f"the array has dtype {arr.dtype}; expected numbers", path=p,
                        value=str(arr.dtype))
    if arr.shape[0] != n_items:
        raise DataError(f"the array has {arr.shape[0]} rows but the catalog has {n_items} items; "
                        "expected row i to be the vector of the catalog's i-th item (or give a "
                        "Parquet file with item_id and vector columns)", path=p,
                        value=arr.shape[0])
    return np.ascontiguousarray(arr, dtype=np.float32)


def _read_parquet(p: Path, catalog, id_column: str, vector_column: str) -> np.ndarray:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            "reading vectors from Parquet needs 'pyarrow', which is not installed; install it "
            "with: pip install pyarrow (or give a .npy file)") from exc
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"cannot read Parquet file: {exc}", path=p) from None
    missing = [c for c in (id_column, vector_column) if c not in table.column_names]
    if missing:
        raise DataError(f"missing column {', '.join(repr(m) for m in missing)} (the file has: "
                        f"{', '.join(repr(c) for c in table.column_names)}); expected "
                        f"{id_column!r} and {vector_column!r} (a list of numbers a row)", path=p,
                        value=missing[0])
    ids_col = table.column(id_column)
    if ids_col.null_count:
        raise DataError(f"{ids_col.null_count} rows have no {id_column}", path=p)
    ids = np.asarray(ids_col.to_numpy())
    if ids.dtype.kind not in "iu":
        raise DataError(f"column {id_column!r} has type {ids_col.type}; expected integer item "
                        "ids", path=p, value=str(ids_col.type))
    ids = ids.astype(np.int64)
    rows = table.column(vector_column).combine_chunks()
    if rows.null_count:
        first = int(np.flatnonzero(np.asarray(rows.is_null()))[0])
        raise DataError(f"item {int(ids[first])} has no vector (row {first + 1})", path=p,
                        value=int(ids[first]))
    try:
        import pyarrow.types as pat

        lengths = (np.full(len(rows), rows.type.list_size) if pat.is_fixed_size_list(rows.type)
                   else np.asarray(rows.value_lengths()))
        flat = np.asarray(rows.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DataError(f"column {vector_column!r} has type {rows.type}; expected a list of "
                        f"numbers a row ({exc})", path=p, value=str(rows.type)) from None
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise DataError(f"item {int(ids[row])} (row {row + 1}) has a vector of {int(lengths[row])} "
                        f"numbers but the first has {int(lengths[0])}; expected one length",
                        path=p, value=int(ids[row]))
    dim = int(lengths[0]) if len(lengths) else 0
    return _by_item_id(ids, flat.reshape(len(ids), dim), catalog, p)


def _read_embedding_folder(p: Path, catalog) -> np.ndarray:
    from .embed_job import catalog_fingerprint, read_embeddings

    ids, vectors, manifest = read_embeddings(p)
    ordered = _by_item_id(ids, vectors, catalog, p)
    # same ids, other text (an edited title): the vectors would silently be stale
    if catalog_fingerprint(ids, catalog.render(manifest["template"], ids=ids)) != \
            manifest["catalog_fingerprint"]:
        raise DataError("the catalog's item texts (template "
                        f"{manifest['template']!r}) differ from those these vectors were embedded "
                        "from; expected the catalog `sid embed` read (run it again on this one)",
                        path=p)
    return ordered


def _by_item_id(ids: np.ndarray, matrix: np.ndarray, catalog, p: Path) -> np.ndarray:
    """Rows of `matrix` (row r the vector of item ids[r]) in catalog order; every catalog item
    needs exactly one row and no other ids may appear."""
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[np.argmax(counts > 1)])
        raise DataError(f"item {dup} has {int(counts.max())} vectors; expected one a catalog item",
                        path=p, value=dup)
    known = catalog.contains_all(ids)
    if not known.all():
        extra = int(ids[np.argmax(~known)])
        raise DataError(f"item {extra} is not in the catalog ({int((~known).sum())} ids in the "
                        "file are not); expected vectors of the catalog's items only", path=p,
                        value=extra)
    want = np.asarray(catalog.item_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], want)
    found = (pos < len(ids)) & (ids[order][np.minimum(pos, len(ids) - 1)] == want) if len(ids) \
        else np.zeros(len(want), dtype=bool)
    if not found.all():
        lack = int(want[np.argmax(~found)])
        raise DataError(f"catalog item {lack} has no vector ({int((~found).sum())} of "
                        f"{len(want)} catalog items lack one); expected a row for every item",
                        path=p, value=lack)
    return np.ascontiguousarray(matrix[order[pos]], dtype=np.float32)
