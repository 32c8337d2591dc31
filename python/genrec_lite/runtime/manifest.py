"""A bundle's manifest.json as one typed record.

`genrec-lite export` writes it and the runtime, eval, the CLI and the benchmarks read it through
this class, so each field has one name and one type everywhere. Required are the fields the
runtime has always required (files, prompts, max_history, sid, tokenizer, model) and, inside them,
what export has written since format version 1; every other field defaults to what its readers
assumed when it was absent, so bundles written before it existed (no sid.views, data.split or
cold_start) keep loading. A missing or ill-typed field is an ArtifactError that names the file,
the key and what was expected.

Serving code: imports nothing from training, export or the data layer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_file, read_manifest, write_json
from ..errors import ArtifactError, InvalidArgumentError
from .cold_start import ColdStartConfig
from .rerank import Reranker

FORMAT_NAME = "genrec-lite.bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# the beam of a request that names none, where the bundle sets no search_beam
DEFAULT_BEAM = 20

_MISSING = object()
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          dict: "a JSON object", list: "a list"}


def _is(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # JSON true/false is not a number here, though bool is an int
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


class _Fields:
    """Typed reads of one JSON object of a manifest; errors name the file and the dotted key."""

    def __init__(self, path: Path, obj: dict, prefix: str = ""):
        self.path, self.obj, self.prefix = path, obj, prefix

    def error(self, key: str, message: str) -> ArtifactError:
        return ArtifactError(f"{self.path}: {self.prefix + key!r} {message} (the manifest is damaged)")

    def get(self, key: str, kind: type, *, nullable: bool = False, default: Any = _MISSING) -> Any:
        expected = _NAMES[kind] + (" or null" if nullable else "")
        if key not in self.obj:
            if default is _MISSING:
                raise self.error(key, f"is missing; expected {expected}")
            return default
        value = self.obj[key]
        if not ((value is None and nullable) or _is(value, kind)):
            raise self.error(key, f"is {value!r}; expected {expected}")
        return float(value) if kind is float and value is not None else value

    def int_list(self, key: str) -> list[int]:
        value = self.get(key, list)
        if not all(_is(v, int) for v in value):
            raise self.error(key, f"is {value!r}; expected a list of integers")
        return list(value)

    def child(self, key: str, *, default: Any = _MISSING) -> "_Fields | None":
        """The fields of the object at `key`; `default` when it is absent or null."""
        value = self.get(key, dict, nullable=default is not _MISSING, default=default)
        return default if value is default or value is None else \
            _Fields(self.path, value, f"{self.prefix}{key}.")


@dataclass(frozen=True)
class FileFacts:
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SidFacts:
    levels: int
    level_sizes: list[int]
    collisions: str
    n_items: int
    input_dim: int
    views: int = 1                      # bundles from before multi-view SIDs held one view
    text_template: str | None = None    # how an item's text was rendered for the text encoder
    embedding_model: str | None = None

    @classmethod
    def read(cls, f: _Fields) -> "SidFacts":
        return cls(levels=f.get("levels", int), level_sizes=f.int_list("level_sizes"),
                   collisions=f.get("collisions", str), n_items=f.get("n_items", int),
                   input_dim=f.get("input_dim", int), views=f.get("views", int, default=1),
                   text_template=f.get("text_template", str, nullable=True, default=None),
                   embedding_model=f.get("embedding_model", str, nullable=True, default=None))

    def to_dict(self) -> dict:
        return {"levels": self.levels, "level_sizes": list(self.level_sizes),
                "collisions": self.collisions, "n_items": self.n_items, "views": self.views,
                "text_template": self.text_template, "embedding_model": self.embedding_model,
                "input_dim": self.input_dim}


@dataclass(frozen=True)
class TokenizerFacts:
    vocab_size: int
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    @classmethod
    def read(cls, f: _Fields) -> "TokenizerFacts":
        ids = {k: f.get(k, int, nullable=True, default=None)
               for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        return cls(vocab_size=f.get("vocab_size", int), **ids)

    def to_dict(self) -> dict:
        return {"bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id,
                "pad_token_id": self.pad_token_id, "vocab_size": self.vocab_size}


@dataclass(frozen=True)
class ColdStartFacts:
    items: str | None = None        # the bundle file of the untrained items' ids
    n_items: int | None = None
    settings: ColdStartConfig | None = None   # None: cold items are left to the model alone

    @classmethod
    def read(cls, f: _Fields | None) -> "ColdStartFacts":
        if f is None:
            return cls()
        settings = f.get("settings", dict, nullable=True, default=None)
        if settings is not None:
            try:
                settings = ColdStartConfig.from_dict(settings)
            except InvalidArgumentError as exc:
                raise f.error("settings", f"is damaged ({exc})") from exc
        return cls(items=f.get("items", str, nullable=True, default=None),
                   n_items=f.get("n_items", int, nullable=True, default=None), settings=settings)

    def to_dict(self) -> dict:
        return {"items": self.items, "n_items": self.n_items,
                "settings": None if self.settings is None else self.settings.to_dict()}


@dataclass(frozen=True)
class TransitionFacts:
    """The training log's successor counts (runtime/transitions.py) and the weight a served
    answer is re-ordered by (None: not re-ordered)."""
    file: str | None = None         # the bundle file of the table; None: the bundle has none
    pairs: int | None = None
    weight: float | None = None

    @classmethod
    def read(cls, f: _Fields | None) -> "TransitionFacts":
        if f is None:
            return cls()
        weight = f.get("weight", float, nullable=True, default=None)
        if weight is not None and not weight > 0:
            raise f.error("weight", f"is {weight!r}; expected null or a number > 0")
        return cls(file=f.get("file", str, nullable=True, default=None),
                   pairs=f.get("pairs", int, nullable=True, default=None), weight=weight)

    def to_dict(self) -> dict:
        return {"file": self.file, "pairs": self.pairs, "weight": self.weight}


class _Strings:
    """A record whose fields are all optional strings (None when absent or null)."""

    @classmethod
    def read(cls, f: _Fields | None):
        if f is None:
            return cls()
        return cls(**{k: f.get(k, str, nullable=True, default=None) for k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class DataFacts(_Strings):
    """The data set the model was trained on, its split and how its log was read (eval's
    defaults)."""
    name: str | None = None
    path: str | None = None
    split: str | None = None
    time_unit: str | None = None
    kcore: int | None = None

    @classmethod
    def read(cls, f: _Fields | None) -> "DataFacts":
        if f is None:
            return cls()
        return cls(**{k: f.get(k, str, nullable=True, default=None)
                      for k in ("name", "path", "split", "time_unit")},
                   kcore=f.get("kcore", int, nullable=True, default=None))


@dataclass(frozen=True)
class CheckpointFacts(_Strings):
    path: str | None = None
    weights: str | None = None


def _reranker(f: _Fields) -> Reranker | None:
    value = f.get("rerank", dict, nullable=True, default=None)
    if value is None:
        return None
    try:
        return Reranker.from_dict(value)
    except InvalidArgumentError as exc:
        raise f.error("rerank", f"is not a re-ranker this version serves: {exc}") from exc


def _positive_or_null(f: "_Fields", key: str) -> int | None:
    """An optional integer setting (search_views, search_beam, search_side_beam): null, or
    >= 1."""
    n = f.get(key, int, nullable=True, default=None)
    if n is not None and n < 1:
        raise f.error(key, f"is {n}; expected null or an integer >= 1")
    return n


def checked_search_beam(beam) -> int | None:
    """`beam` as a search_beam setting (None: the default, DEFAULT_BEAM); InvalidArgumentError
    naming the value otherwise."""
    if beam is not None and (isinstance(beam, bool) or not isinstance(beam, (int, np.integer))
                             or beam < 1):
        raise InvalidArgumentError(f"search beam {beam!r}; expected an integer >= 1 or None")
    return None if beam is None else int(beam)


def checked_search_views(n, total: int) -> int | None:
    """`n` as a search_views setting of a bundle with `total` SID views (None: all of them);
    InvalidArgumentError naming the value otherwise."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))
                          or not 1 <= n <= total):
        raise InvalidArgumentError(f"search views {n!r}; expected an integer in 1..{total} (the "
                                   "bundle's SID views) or None")
    return None if n is None else int(n)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The bundle's manifest. `model` holds the facts of each exported model file by name
    (gguf, onnx, text_encoder), `backbone` the trained model's description, `prompts` the
    PromptSet's JSON form; keys this release does not know are kept in `extra` and written back."""

    files: dict[str, FileFacts]
    prompts: dict
    max_history: int
    sid: SidFacts
    tokenizer: TokenizerFacts
    model: dict
    use_profiles: bool = False      # absent: the CLI and benchmarks always read it as off
    profile_template: str | None = None   # None: a profile is written as 'field value' pairs
    cold_start: ColdStartFacts = field(default_factory=ColdStartFacts)
    # absent in bundles exported before the table existed: no re-ordering
    transitions: TransitionFacts = field(default_factory=TransitionFacts)
    # the second stage over the answer (runtime/rerank.py); absent or null: none
    rerank: Reranker | None = None
    # how many of a multi-view bundle's SID views a request decodes (the first n, fused); None:
    # all. Chosen on validation where serving cost matters (benchmarks/view_frontier.py)
    search_views: int | None = None
    # the beam (per view) of a request that names none; None: DEFAULT_BEAM. With search_views,
    # the serving point chosen where serving cost matters (fit.py's views stage)
    search_beam: int | None = None
    # the beam of every view after the first (None: the request's beam). The first view's beam
    # holds the request's k, the others only vote in the fusion: a narrower beam there makes
    # more views affordable (fit.py's serving points)
    search_side_beam: int | None = None
    # every request's own history is denied in its answer (as if in its deny list): where
    # nothing is consumed twice, the model's prompt shows only the newest items and it re-offers
    # older ones (fit chooses it on validation). Absent: off
    exclude_history: bool = False
    data: DataFacts = field(default_factory=DataFacts)
    checkpoint: CheckpointFacts = field(default_factory=CheckpointFacts)
    backbone: dict = field(default_factory=dict)
    created: str | None = None
    versions: dict = field(default_factory=dict)
    export_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Manifest":
        """Read a bundle's manifest; `path` is the bundle folder or its manifest.json."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        return cls.from_dict(read_manifest(path, FORMAT_NAME, FORMAT_VERSION), path)

    @classmethod
    def from_dict(cls, d: dict, path: str | os.PathLike = MANIFEST) -> "Manifest":
        """The manifest from its JSON form; `path` is named in the errors."""
        if not isinstance(d, dict):
            raise ArtifactError(f"{path} holds a JSON {type(d).__name__}; expected an object")
        f = _Fields(Path(path), d)
        max_history = f.get("max_history", int)
        if max_history < 1:
            raise f.error("max_history", f"is {max_history}; expected >= 1")
        known = {n for n in cls.__dataclass_fields__ if n != "extra"} | {"format", "format_version"}
        return cls(
            files=_read_files(f), prompts=f.get("prompts", dict), max_history=max_history,
            sid=SidFacts.read(f.child("sid")), tokenizer=TokenizerFacts.read(f.child("tokenizer")),
            model=f.get("model", dict),
            use_profiles=f.get("use_profiles", bool, default=False),
            profile_template=f.get("profile_template", str, nullable=True, default=None),
            cold_start=ColdStartFacts.read(f.child("cold_start", default=None)),
            transitions=TransitionFacts.read(f.child("transitions", default=None)),
            rerank=_reranker(f),
            search_views=_positive_or_null(f, "search_views"),
            search_beam=_positive_or_null(f, "search_beam"),
            search_side_beam=_positive_or_null(f, "search_side_beam"),
            exclude_history=f.get("exclude_history", bool, default=False),
            data=DataFacts.read(f.child("data", default=None)),
            checkpoint=CheckpointFacts.read(f.child("checkpoint", default=None)),
            backbone=f.get("backbone", dict, default={}),
            created=f.get("created", str, nullable=True, default=None),
            versions=f.get("versions", dict, default={}),
            export_seconds=f.get("export_seconds", float, nullable=True, default=None),
            extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict:
        """The JSON form, keys in the order export has always written them."""
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "created": self.created,
                "checkpoint": self.checkpoint.to_dict(), "backbone": self.backbone,
                "model": self.model, "tokenizer": self.tokenizer.to_dict(),
                "data": self.data.to_dict(), "prompts": self.prompts,
                "max_history": self.max_history, "use_profiles": self.use_profiles,
                "profile_template": self.profile_template, "sid": self.sid.to_dict(),
                "cold_start": self.cold_start.to_dict(),
                **({} if self.transitions.file is None
                   else {"transitions": self.transitions.to_dict()}),
                **({} if self.rerank is None else {"rerank": self.rerank.to_dict()}),
                **({} if self.search_views is None else {"search_views": self.search_views}),
                **({} if self.search_beam is None else {"search_beam": self.search_beam}),
                **({} if self.search_side_beam is None
                   else {"search_side_beam": self.search_side_beam}),
                **({"exclude_history": True} if self.exclude_history else {}),
                "files": {n: {"bytes": x.bytes, "sha256": x.sha256} for n, x in self.files.items()},
                "versions": self.versions, "export_seconds": self.export_seconds, **self.extra}

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (a reader sees the old manifest or the new one); `path` is the bundle
        folder or its manifest.json."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        d = self.to_dict()
        Manifest.from_dict(d, path)  # a writer's slip fails here, not in the server that loads it
        with atomic_file(path) as tmp:
            write_json(tmp, d)

    @property
    def total_bytes(self) -> int:
        return sum(x.bytes for x in self.files.values())


def _read_files(f: _Fields) -> dict[str, FileFacts]:
    files = f.get("files", dict)
    if not files:
        raise f.error("files", "lists no files; expected the bundle's files with their sizes "
                               "and checksums")
    out = {}
    for name, facts in files.items():
        # a name that leaves the bundle folder would make Bundle.open read outside it
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise f.error("files", f"has the entry {name!r}; expected a path inside the bundle")
        if not isinstance(facts, dict):
            raise f.error(f"files.{name}", f"is {facts!r}; expected a JSON object")
        ff = _Fields(f.path, facts, f"{f.prefix}files.{name}.")
        out[name] = FileFacts(bytes=ff.get("bytes", int), sha256=ff.get("sha256", str))
    return out
