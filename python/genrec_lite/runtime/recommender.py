"""`Recommender`: serve an exported bundle in-process (no torch).

    rec = Recommender.load("bundle/", n_threads=2)
    rec.recommend([12, 7, 301], k=10)                 # -> [Recommendation(item_id, score, sid, title, logprob)]
    rec.recommend_batch([{"history": [12, 7]}, {"history": [5], "deny": [9]}])
    rec.add_items([{"item_id": 90001, "title": "...", "brand": "..."}])   # cold start, no retraining
    rec.set_active([90001], False)                    # paused ad: never recommended until resumed

Each call builds the prompt exactly as training did (same template, newest `max_history` items),
tokenizes it with the model's own tokenizer (llama.cpp's, checked equal to training's), and runs
the C++ constrained beam search over llama.cpp: prompt decode, every SID level and the KV-cache
reordering happen in C++ with the GIL released. Many threads may call recommend at once.

A multi-view bundle (genrec_lite.sid.views) runs one such search per view, each batch of
requests written in that view and searched in its trie, and fuses the views' beams per request
(`genrec_lite.sid.fuse`): the same rule as the reference decoder.
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .._io import atomic_directory, write_json
from ..data.templates import Template
from ..errors import ArtifactError, InvalidArgumentError, UnknownItemError
from ..prompts import PromptSet
from ..sid import SemanticIds, SidViews, fuse
from .bundle import Bundle, sid_encoder_file
from .catalog import CatalogState, LiveCatalog

UNKNOWN_POLICIES = ("skip", "error")


@dataclass(frozen=True)
class Recommendation:
    """One recommended item.

    score: what the list is ranked by. The log-probability of the item's SID under the model with
    each SID level renormalised over the codes this request could take there (codes with an
    active item below them that passes its allow/deny lists): the sum over levels of
    log-softmax over those codes only. It moves with the catalog: pausing, removing or filtering
    out an item raises the scores of its siblings (they share its probability).
    logprob: the model's own log-probability of the item's SID, not renormalised: the sum over
    levels of logit[SID token] - logsumexp(the whole logits row). No catalog change or filter
    moves it (only the request and the model do), and logprob <= score. Use it where a value must
    be comparable across time and requests: bids, thresholds.
    Several SID views: each is the log of the mean over the views of the probability (exp of the
    value) that view gives the item, 0 where the view's beam did not reach it. Items that share
    one SID share both values."""

    item_id: int
    score: float
    sid: str              # in the primary view
    title: str
    logprob: float

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "score": self.score, "logprob": self.logprob,
                "sid": self.sid, "title": self.title}


class Recommender:
    def __init__(self, bundle: Bundle, backend, catalog: LiveCatalog,
                 token_tables: Sequence[np.ndarray], *, unknown_items: str = "skip"):
        m = bundle.manifest
        self.bundle = bundle
        self.backend = backend
        self.catalog = catalog
        try:
            self.prompts = PromptSet.load(m["prompts"])
        except (InvalidArgumentError, TypeError, AttributeError, ValueError) as exc:
            raise ArtifactError(f"{bundle.path}/manifest.json: the prompt templates are damaged ({exc})") from exc
        self.max_history = int(m["max_history"])
        if self.max_history < 1:
            raise ArtifactError(f"{bundle.path}/manifest.json: max_history={self.max_history}; expected >= 1")
        self.token_tables = list(token_tables)  # one per SID view
        if len(self.token_tables) != len(catalog.state.views):
            raise ArtifactError(f"{len(self.token_tables)} token tables for "
                                f"{len(catalog.state.views)} SID views")
        if unknown_items not in UNKNOWN_POLICIES:
            raise InvalidArgumentError(f"unknown_items={unknown_items!r}; expected one of {UNKNOWN_POLICIES}")
        self.unknown_items = unknown_items
        self._text_encoder = None
        self._sid_encoders: list | None = None
        self._encoder_lock = threading.Lock()

    @property
    def token_table(self) -> np.ndarray:
        """The primary view's token table."""
        return self.token_tables[0]

    # --- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, bundle: str | Path, *, n_threads: int | None = None, backend: str = "llama",
             n_contexts: int = 1, unknown_items: str = "skip", verify: bool = True,
             catalog: str | Path | None = None, prefix_cache: bool = True,
             n_ctx: int | None = None) -> "Recommender":
        """Open a bundle. backend 'llama' (model.gguf through llama.cpp) or 'onnx' (model.onnx
        through onnxruntime, if exported); n_contexts: how many llama.cpp searches may run at
        once; prefix_cache: each llama.cpp context keeps the prompt prefix its requests share
        decoded; n_ctx: KV cells of each llama.cpp context (None: LlamaModel's default; raise
        it for prompts of several hundred tokens). `catalog` is a folder written by
        save_catalog() to serve instead of the bundle's own catalog."""
        b = Bundle.open(bundle, verify=verify)
        sids = _bundle_views(b)
        records = {int(r["item_id"]): r for r in b.items()}
        inactive: list[int] = []
        if catalog is not None:
            sids, records, inactive = _load_catalog(catalog, sids)
        if backend == "llama":
            from .llama_backend import LlamaModel

            model = LlamaModel(b.file("model.gguf"), n_threads=n_threads, n_contexts=n_contexts,
                               prefix_cache=prefix_cache, n_ctx=n_ctx)
            tables = [_token_table(v, model.token_id, "model.gguf") for v in sids]
            model_backend = _LlamaBackend(model)
        elif backend == "onnx":
            if not b.has("model.onnx"):
                raise ArtifactError(f"the bundle {b.path} has no model.onnx (export it with --onnx)")
            from .onnx_backend import OnnxLM

            tok = _Tokenizer(b.file("tokenizer.json"))
            pad = b.manifest["tokenizer"].get("pad_token_id") or 0
            lm = OnnxLM(b.file("model.onnx"), n_threads=n_threads, pad_id=pad)
            tables = [_token_table(v, tok.token_id, "tokenizer.json") for v in sids]
            model_backend = _OnnxBackend(lm, tok)
        else:
            raise InvalidArgumentError(f"backend={backend!r}; expected 'llama' or 'onnx'")
        try:
            live = LiveCatalog(sids, records)
            if inactive:
                live.set_active(inactive, False)
            return cls(b, model_backend, live, tables, unknown_items=unknown_items)
        except BaseException:
            model_backend.close()  # free the model's memory before reporting
            raise

    # --- requests ----------------------------------------------------------------------------
    def recommend(self, history: Sequence[int], profile: str | None = None, *, k: int = 10,
                  beam: int = 20, allow: Iterable[int] | None = None,
                  deny: Iterable[int] | None = None) -> list[Recommendation]:
        return self.recommend_batch([{"history": history, "profile": profile, "k": k, "beam": beam,
                                      "allow": allow, "deny": deny}])[0]

    def recommend_batch(self, requests: Sequence[Mapping]) -> list[list[Recommendation]]:
        """Several requests in one batched search; each is a dict with the keys of recommend()."""
        state = self.catalog.state  # one consistent catalog for the whole batch
        n_active = int(state.trie.n_active)
        histories, profiles, search_reqs = [], [], []
        for n, r in enumerate(requests):
            if not isinstance(r, Mapping):
                raise InvalidArgumentError(f"request {n} is a {type(r).__name__}; expected a dict")
            unknown = set(r) - {"history", "profile", "k", "beam", "allow", "deny"}
            if unknown:
                raise InvalidArgumentError(f"request {n} has unknown keys {sorted(unknown)}")
            k, beam = _positive(r.get("k", 10), "k"), _positive(r.get("beam", 20), "beam")
            if beam < k:
                raise InvalidArgumentError(f"beam={beam} < k={k}; the beam must hold at least k items")
            if k > n_active:
                raise InvalidArgumentError(f"k={k} but the catalog has {n_active} active items")
            histories.append(self._history(state, r.get("history") or []))
            profiles.append(r.get("profile") or "")
            req = {"k": k, "beam": beam}
            if r.get("allow") is not None:
                req["allow"] = _id_list(r["allow"], "allow")
            if r.get("deny") is not None:
                req["deny"] = _id_list(r["deny"], "deny")
            search_reqs.append(req)
        if not search_reqs:
            return []
        n_views = len(state.views)
        # several views: each keeps its whole beam for the fusion
        view_reqs = search_reqs if n_views == 1 else [dict(q, k=q["beam"]) for q in search_reqs]
        answers: list[list] = [[] for _ in search_reqs]
        for v, view in enumerate(state.views):
            texts = [self._text(view, h, p) for h, p in zip(histories, profiles)]
            results = self.backend.search(state.tries[v], self.token_tables[v], texts, view_reqs)
            for a, res in zip(answers, results):
                a.append((res["items"].tolist(), res["scores"].tolist(), res["logprobs"].tolist()))
        return [self._answer(state, *fuse(a, q["k"])) for a, q in zip(answers, search_reqs)]

    def _prompt(self, state: CatalogState, history, profile, view: int = 0) -> str:
        """The prompt of a request in one SID view."""
        return self._text(state.views[view], self._history(state, history), profile)

    def _text(self, sids: SemanticIds, known: list[int], profile) -> str:
        """The prompt of checked history items (see _history), written in `sids`' view."""
        return self.prompts.next_item_prompt([sids.sid(i) for i in known], profile or "")

    def _history(self, state: CatalogState, history) -> list[int]:
        """The history items the model reads: known ones, the newest max_history."""
        if isinstance(history, (str, bytes)) or not isinstance(history, Iterable):
            raise InvalidArgumentError(f"history must be a list of item ids; got {history!r}")
        known = []
        for item in history:
            try:
                item = int(item)
            except (TypeError, ValueError) as exc:
                raise InvalidArgumentError(f"history item {item!r} is not an integer id") from exc
            if item in state.sids:
                known.append(item)
            elif self.unknown_items == "error":
                raise UnknownItemError(f"history item {item} is not in the catalog", value=item)
            else:
                warnings.warn(f"history item {item} is not in the catalog; skipped", stacklevel=4)
        return known[-self.max_history:]  # the model's window: the newest items

    def _answer(self, state: CatalogState, items, scores, logprobs) -> list[Recommendation]:
        return [Recommendation(int(item), float(score), state.sids.sid(item), state.title(item),
                               float(logprob))
                for item, score, logprob in zip(items, scores, logprobs)]

    # --- live catalog ------------------------------------------------------------------------
    def add_items(self, items: Sequence[Mapping], vectors: np.ndarray | None = None) -> list[str]:
        """Give new items SIDs from their text (ONNX text encoder -> ONNX RQ encoder -> C++
        lookup) or from given embedding `vectors`, and make them recommendable at once.
        Returns their SIDs. Nothing changes if any item is bad."""
        records = _records(items)
        ids = np.array([int(r["item_id"]) for r in records], dtype=np.int64)
        state = self.catalog.state
        self.catalog.check_new(ids, state)  # before the costly embedding
        if vectors is None:
            vectors = self._embed(records)
        codes = self._codes(state.views, vectors, len(records))
        new = self.catalog.add(ids, codes, {int(r["item_id"]): dict(r) for r in records})
        return [new.sids.sid(i) for i in ids.tolist()]

    def remove_items(self, item_ids: Iterable[int]) -> int:
        return self.catalog.remove(item_ids)

    def set_active(self, item_ids: Iterable[int], active: bool = True) -> int:
        """Pause (active=False) or resume items; returns how many changed."""
        return self.catalog.set_active(item_ids, active)

    def save_catalog(self, path: str | Path) -> Path:
        """Persist the served catalog (bundle items + added ones, removals applied, paused ids)
        so that Recommender.load(bundle, catalog=path) serves the same catalog after a restart."""
        state = self.catalog.state
        path = Path(path)
        with atomic_directory(path) as tmp:
            state.views.save(tmp / "sids")
            with open(tmp / "items.jsonl", "w", encoding="utf-8") as f:
                for i in state.sids.item_ids.tolist():
                    f.write(json.dumps(state.records.get(i, {"item_id": i}), ensure_ascii=False) + "\n")
            write_json(tmp / "catalog.json", {"format": "genrec-lite.catalog", "format_version": 1,
                                              "bundle": str(self.bundle.path),
                                              "inactive": sorted(self.catalog.inactive())})
        return path

    def preload(self) -> None:
        """Load the cold-start encoders (text encoder, RQ encoder) now rather than at the first
        add_items, so that a server's first new item is not slower than the rest."""
        self._encoders(text=True)

    def _encoders(self, text: bool):
        """(text encoder, the SID encoder of each view), loaded once."""
        from .onnx_backend import OnnxSidEncoder, OnnxTextEncoder

        with self._encoder_lock:
            if text and self._text_encoder is None:
                self._text_encoder = OnnxTextEncoder(self.bundle.file("text_encoder/model.onnx").parent)
            if self._sid_encoders is None:
                self._sid_encoders = [OnnxSidEncoder(self.bundle.file(sid_encoder_file(v)),
                                                     view.encoder.codebooks)
                                      for v, view in enumerate(self.catalog.state.views)]
        return self._text_encoder, self._sid_encoders

    def _embed(self, records: list[dict]) -> np.ndarray:
        m = self.bundle.manifest
        template = Template(m["sid"]["text_template"])
        texts = [template.render({k: "" if v is None else str(v) for k, v in r.items()}) for r in records]
        return self._encoders(text=True)[0].encode(texts)

    def _codes(self, views: SidViews, vectors, n: int) -> list[np.ndarray]:
        """The new items' codes in every view."""
        v = views.primary.encoder.check_vectors(vectors)
        if len(v) != n:
            raise InvalidArgumentError(f"vectors have shape {v.shape}; expected ({n}, {v.shape[1]}), "
                                       "one row per new item")
        encoders = self._encoders(text=False)[1]
        return [view.complete(enc.encode(v)) for view, enc in zip(views, encoders)]

    def close(self) -> None:
        self.backend.close()


# --- backends ----------------------------------------------------------------------------------
class _LlamaBackend:
    def __init__(self, model):
        self.model = model

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text, add_special=True)

    def search(self, trie, table, texts, requests):
        prompts = [self.tokenize(t) for t in texts]
        return self.model.search(trie, table, prompts, requests)[0]

    def close(self):
        self.model.close()


class _OnnxBackend:
    """The same C++ search core over onnxruntime logits; Python loops over the SID levels only."""

    def __init__(self, lm, tokenizer):
        self.lm = lm
        self.tok = tokenizer

    def search(self, trie, table, texts, requests):
        from .. import _core

        search = _core.BeamSearch(trie, table, requests)
        logits, state = self.lm.prefill([self.tok.encode(t) for t in texts])
        while True:
            search.step(logits)
            if search.done:
                return search.results()
            logits, state = self.lm.step(state, search.parents, search.tokens)

    def close(self):
        pass


class _Tokenizer:
    """The model's tokenizer through the `tokenizers` library (no transformers at serving time)."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=True).ids

    def token_id(self, piece: str) -> int:
        t = self._tok.token_to_id(piece)
        return -1 if t is None else int(t)


# --- helpers -----------------------------------------------------------------------------------
def _token_table(sids: SemanticIds, token_id, source: str) -> np.ndarray:
    sizes = sids.level_sizes
    table = np.full((len(sizes), max(sizes)), -1, dtype=np.int32)
    for level, size in enumerate(sizes):
        for code in range(size):
            tid = token_id(sids.token(level, code))
            if tid < 0:
                raise ArtifactError(f"{source} has no single token for the SID token "
                                    f"{sids.token(level, code)}; the model does not match the SID table")
            table[level, code] = tid
    return table


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name}={value!r}; expected an integer >= 1")
    return int(value)


def _id_list(ids, name: str) -> list[int]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise InvalidArgumentError(f"{name} must be a list of item ids; got {ids!r}")
    try:
        return [int(i) for i in ids]
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name} must hold integer item ids ({exc})") from exc


def _records(items) -> list[dict]:
    if isinstance(items, Mapping):
        items = [items]
    out = []
    for n, r in enumerate(items):
        if not isinstance(r, Mapping) or "item_id" not in r:
            raise InvalidArgumentError(f"new item {n} must be a dict with an 'item_id'; got {r!r}")
        try:
            iid = int(r["item_id"])
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"new item {n} has item_id {r['item_id']!r}; expected an integer") from exc
        out.append({**r, "item_id": iid})
    if not out:
        raise InvalidArgumentError("add_items got no items")
    return out


def _bundle_views(b: Bundle) -> SidViews:
    """The bundle's SID views (one, or one per view of a multi-view model)."""
    if b.has("sids/views.json"):
        views = SidViews.load(b.file("sids/views.json").parent)
    else:
        views = SidViews.load(b.file("sids/semantic_ids.json").parent)
    want = b.manifest["sid"].get("views", 1)
    if len(views) != want:
        raise ArtifactError(f"{b.path}/sids holds {len(views)} SID views; the manifest says {want!r}")
    return views


def _load_catalog(path, views: SidViews):
    from .._io import read_manifest

    path = Path(path)
    meta = read_manifest(path / "catalog.json", "genrec-lite.catalog", 1)
    new = SidViews.load(path / "sids")
    if len(new) != len(views):
        raise ArtifactError(f"the saved catalog {path} has {len(new)} SID views; the bundle has "
                            f"{len(views)}")
    for a, b in zip(new, views):
        if a.levels != b.levels or a.level_sizes != b.level_sizes:
            raise ArtifactError(f"the saved catalog {path} has SID levels {a.level_sizes}; the "
                                f"bundle has {b.level_sizes}")
    recs = {}
    with open(path / "items.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            recs[int(r["item_id"])] = r
    return new, recs, [int(i) for i in meta.get("inactive", [])]
