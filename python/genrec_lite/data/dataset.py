"""A data set folder in the neutral format, and :func:`resolve_dataset`.

A folder holds ``items.jsonl`` (or ``.csv`` / ``.parquet``), ``interactions.csv`` (or
``.parquet`` / ``.jsonl``) and optionally ``users.jsonl`` (profiles) and ``valid.jsonl`` /
``test.jsonl`` (evaluation cases). See ``../shared/data/README.md`` for the exact format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, InvalidArgumentError
from .catalog import Catalog
from .interactions import Interactions
from .profiles import UserProfiles
from .splits import Case, load_cases, save_cases

_ITEM_FILES = ("items.jsonl", "items.json", "items.csv", "items.parquet")
_INTERACTION_FILES = ("interactions.csv", "interactions.parquet", "interactions.jsonl")
_USER_FILES = ("users.jsonl", "users.json", "users.csv", "users.parquet")


def _find(folder: Path, names: tuple[str, ...], what: str, required: bool) -> Path | None:
    hits = [folder / n for n in names if (folder / n).is_file()]
    if len(hits) > 1:
        raise DataError(f"found several {what} files ({', '.join(h.name for h in hits)}); "
                        "keep exactly one", path=folder)
    if hits:
        return hits[0]
    if required:
        have = sorted(p.name for p in folder.iterdir())
        raise DataError(f"no {what} file: expected one of {', '.join(names)} (the folder has: "
                        f"{', '.join(have) or 'nothing'})", path=folder)
    return None


@dataclass(eq=False)
class Dataset:
    """A catalog, its interactions, optional user profiles and optional evaluation cases."""

    name: str
    catalog: Catalog
    interactions: Interactions
    profiles: UserProfiles | None = None
    valid_cases: list[Case] | None = None
    test_cases: list[Case] | None = None
    path: Path | None = None
    kcore_applied: int | None = None  # the k of the k-core the log was cut to (:meth:`kcore`)

    @classmethod
    def load(cls, folder: str | os.PathLike, *, name: str | None = None,
             check_items: bool = True, time_unit: str | None = "auto",
             duplicates: str = "drop") -> "Dataset":
        """Read a data set folder. With ``check_items`` every interaction and case must name
        a catalog item (UnknownItemError otherwise). ``time_unit`` and ``duplicates``: as in
        :meth:`Interactions.load`."""
        root = Path(folder)
        if not root.exists():
            raise DataError("data set folder not found", path=root)
        if not root.is_dir():
            raise DataError("expected a data set folder, found a file", path=root)
        catalog = Catalog.load(_find(root, _ITEM_FILES, "items", True))  # type: ignore[arg-type]
        inter = Interactions.load(_find(root, _INTERACTION_FILES, "interactions", True),
                                  catalog=catalog if check_items else None,  # type: ignore
                                  time_unit=time_unit, duplicates=duplicates)
        users = _find(root, _USER_FILES, "users", False)
        profiles = UserProfiles.load(users) if users else None
        cases = {}
        for split in ("valid", "test"):
            p = root / f"{split}.jsonl"
            cases[split] = (load_cases(p, catalog=catalog if check_items else None)
                            if p.is_file() else None)
        return cls(name or root.resolve().name, catalog, inter, profiles, cases["valid"],
                   cases["test"], root)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the neutral format: items.jsonl, interactions.csv, users.jsonl, valid/test.jsonl
        (the optional parts only when present)."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        self.catalog.save(root / "items.jsonl")
        self.interactions.save(root / "interactions.csv")
        if self.profiles is not None:
            self.profiles.save(root / "users.jsonl")
        if self.valid_cases is not None:
            save_cases(self.valid_cases, root / "valid.jsonl")
        if self.test_cases is not None:
            save_cases(self.test_cases, root / "test.jsonl")
        return root

    def without_items(self, item_ids: Sequence[int] | np.ndarray) -> "Dataset":
        """This data set as if the items had never existed: out of the catalog, every interaction
        with them removed, and the cases that name them dropped. What a model trained before
        those items launched would have seen (cold-start benchmarks, the quickstart's launch)."""
        gone = np.unique(np.asarray(list(item_ids), dtype=np.int64))
        missing = gone[~self.catalog.contains_all(gone)]
        if len(missing):
            raise InvalidArgumentError(f"item {int(missing[0])} is not in the catalog")
        keep = self.catalog.item_ids[~np.isin(self.catalog.item_ids, gone)]
        if len(keep) == 0:
            raise InvalidArgumentError("removing these items would leave the catalog empty")
        hidden = set(gone.tolist())

        def cases(cs):
            return None if cs is None else [c for c in cs if c.target not in hidden
                                            and not hidden.intersection(c.history)]

        return Dataset(self.name, self.catalog.subset(keep),
                       self.interactions.select(~np.isin(self.interactions.item_ids, gone)),
                       self.profiles, cases(self.valid_cases), cases(self.test_cases), self.path,
                       self.kcore_applied)

    def kcore(self, k: int) -> "Dataset":
        """This data set with its log cut to the k-core (:meth:`Interactions.kcore`). The catalog
        and the case files stay as they are: items left out of the log still get SIDs from their
        text, and the cases are still the folder's."""
        return Dataset(self.name, self.catalog, self.interactions.kcore(k), self.profiles,
                       self.valid_cases, self.test_cases, self.path,
                       max(k, self.kcore_applied or 1))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dataset):
            return NotImplemented
        return (self.catalog == other.catalog and self.interactions == other.interactions
                and self.profiles == other.profiles and self.valid_cases == other.valid_cases
                and self.test_cases == other.test_cases)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"{len(self.catalog)} items", f"{len(self.interactions)} interactions",
                 f"{self.interactions.n_users} users"]
        if self.profiles is not None:
            parts.append(f"{len(self.profiles)} profiles")
        for label, cases in (("valid", self.valid_cases), ("test", self.test_cases)):
            if cases is not None:
                parts.append(f"{len(cases)} {label} cases")
        return f"Dataset({self.name!r}: {', '.join(parts)})"


def resolve_dataset(spec: "str | os.PathLike | Dataset", *, time_unit: str | None = "auto",
                    **options: Any) -> Dataset:
    """A Dataset from a spec: a Dataset (returned as is), ``"synthetic"`` (the built-in
    generator; ``options`` go to :func:`make_synthetic`) or a data set folder path (read with
    ``time_unit``, see :meth:`Interactions.load`)."""
    if isinstance(spec, Dataset):
        return spec
    if isinstance(spec, str) and spec.strip().lower() == "synthetic":
        from .synthetic import make_synthetic

        return make_synthetic(**options)
    if not isinstance(spec, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"a data set spec must be a folder path or 'synthetic', got {spec!r}")
    if options:
        raise InvalidArgumentError(
            f"options {sorted(options)} apply only to the 'synthetic' data set")
    path = Path(spec)
    if not path.exists():
        raise DataError("data set folder not found (give a folder holding items.jsonl and "
                        "interactions.csv, or 'synthetic')", path=path)
    return Dataset.load(path, time_unit=time_unit)
