"""Data: the item catalog, interactions, user profiles, evaluation cases and splits.

The neutral on-disk format (one folder per data set) is ``items.jsonl``, ``interactions.csv``,
optionally ``users.jsonl``, ``valid.jsonl`` and ``test.jsonl``; JSONL, CSV and Parquet are read
alike (format from the suffix). This package uses numpy and the standard library only; pyarrow
is imported when, and only when, a Parquet file is read or written.

Every problem with input data is a :class:`~genrec_lite.errors.DataError` (or
:class:`~genrec_lite.errors.UnknownItemError`) naming the file, the line and the bad value.
"""

from __future__ import annotations

from .catalog import Catalog
from .dataset import Dataset, resolve_dataset
from .interactions import Interactions
from .profiles import UserProfiles
from .split_spec import SplitPlan, choose_split, make_split, resolve_split
from .splits import Case, Split, leave_one_out, load_cases, save_cases, temporal_split, windows
from .synthetic import make_synthetic
from ..templates import Template

__all__ = [
    "Catalog", "Interactions", "UserProfiles", "Template", "Case", "Split", "windows",
    "leave_one_out", "temporal_split", "load_cases", "save_cases", "Dataset",
    "resolve_dataset", "make_synthetic", "SplitPlan", "resolve_split", "choose_split",
    "make_split",
]
