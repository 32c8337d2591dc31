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

A multi-view bundle (genrec_lite.sid.views) writes each request once per view and searches each
prompt in its view's trie, all views in one C++ search (the backend's search_spaces: they share
the decode calls), then fuses the views' beams per request (`genrec_lite.sid.fuse`): the same
rule as the reference decoder.

Cold start (runtime/cold_start.py): items the model was never trained to write (the bundle's
untrained items, every item added since) would never be reached by the beam; with cold-start
settings (the bundle's, chosen on validation at export, or set_cold_start) each cold item gets a
content mass beside the model's probability, and the answer is the top k of both.

Re-ranking (runtime/rerank.py): with a re-ranker (the bundle's, fitted on validation by `fit`,
or set_reranker) the warm items of the whole pool (every item the views' beams reached, and the
newest history item's most frequent successors in the training log) are scored by a linear model
of the model's probability, the transition counts, popularity and content similarity, and fill
the places of the top k the cold items do not hold. Without one, an older bundle's transition
weight (runtime/transitions.py) re-orders the warm items among the k answered by how often the
request's last item was followed by each of them; which items are answered does not change.

Many workers: load once, then fork before the first request (the workers share the loaded pages
copy-on-write); a worker forked after the parent decoded with several threads raises ForkError
rather than hang on llama.cpp's threads, which stay in the parent.

Lifecycle: the loaded bundle (model, catalog, encoders) is one `_Loaded` object that every call
counts itself into while it runs. `reload()` loads another bundle beside it and swaps the
reference; `close()` refuses new calls. A retired bundle is freed by whoever sees its last call
leave, so nothing is freed under a running search.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .._ext import core
from .._io import atomic_directory, write_json
from .._sorted import find_sorted
from ..templates import Template
from ..errors import ArtifactError, ClosedError, InvalidArgumentError, UnknownItemError
from ..prompts import PromptSet, profile_text
from ..sid import SemanticIds, SidViews, fuse, view_beam
from .bundle import Bundle
from .catalog import CatalogState, LiveCatalog
from .items import ItemRecords
from .manifest import DEFAULT_BEAM, checked_search_beam, checked_search_views
from .cold_start import (ColdStartConfig, best_cold, content_scores, history_mass,
                         item_directions, mix, query_directions, similarities)
from .transitions import Transitions, checked_weight, ordered
from . import rerank as _rerank
from .rerank import Reranker

UNKNOWN_POLICIES = ("skip", "error")
REQUEST_KEYS = frozenset({"history", "profile", "k", "beam", "allow", "deny"})


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
    one SID share both values.
    With cold start on, a cold item's values are the log of the model's probability plus its
    content mass (runtime/cold_start.py; no filter or catalog change moves the mass); warm items
    keep the model's. With a transition weight, a warm item's score also holds the re-ordering's
    term (weight * log(1 + count), runtime/transitions.py; logprob never does), and cold items
    keep their places, so a list can then hold a cold item above a warm one of higher score.
    With a re-ranker (runtime/rerank.py), a warm item's score is the re-ranker's, and an item
    no beam reached (a successor the re-ranker added) has logprob -inf: the search never
    computed it."""

    item_id: int
    score: float
    sid: str              # in the primary view
    title: str
    logprob: float

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "score": self.score, "logprob": self.logprob,
                "sid": self.sid, "title": self.title}


class _Loaded:
    """One loaded bundle and what serving it needs. The Recommender holds the current one; a
    request counts itself in `users` for its whole duration, and a retired one (closed, or
    replaced by reload) is freed by whoever sees its last user leave."""

    def __init__(self, bundle: Bundle, backend, catalog: LiveCatalog,
                 token_tables: Sequence):
        m = bundle.manifest
        self.bundle = bundle
        self.backend = backend
        self.catalog = catalog
        try:
            self.prompts = PromptSet.load(m.prompts)
        except (InvalidArgumentError, TypeError, AttributeError, ValueError) as exc:
            raise ArtifactError(f"{bundle.path}/manifest.json: the prompt templates are damaged ({exc})") from exc
        self.cold_start = m.cold_start.settings
        self.transitions = (None if m.transitions.file is None
                            else Transitions.load(bundle.file(m.transitions.file)))
        self.transition_weight = m.transitions.weight if self.transitions is not None else None
        self.reranker = m.rerank
        if self.reranker is not None and self.transitions is None:
            raise ArtifactError(f"{bundle.path}/manifest.json has a re-ranker but no transition "
                                "table (its count features); the manifest is damaged")
        # each item's count as a successor in the table: the re-ranker's popularity feature
        self.popularity = _rerank.popularity(self.transitions)
        n_views = len(catalog.state.views)
        if m.search_views is not None and m.search_views > n_views:
            raise ArtifactError(f"{bundle.path}/manifest.json: search_views is {m.search_views} "
                                f"but the bundle has {n_views} SID views")
        self.search_views = m.search_views or n_views
        self.search_beam = m.search_beam or DEFAULT_BEAM
        self.side_beam = m.search_side_beam  # None: the request's beam in every view
        self.exclude_history = m.exclude_history  # deny every request its own history
        # how training wrote a user's profile record as text (None: 'field value' pairs)
        self.profile_template = m.profile_template
        self.max_history = m.max_history
        self.token_tables = list(token_tables)  # one per SID view
        if len(self.token_tables) != len(catalog.state.views):
            raise ArtifactError(f"{len(self.token_tables)} token tables for "
                                f"{len(catalog.state.views)} SID views")
        self.text_encoder = None
        self.text_encoder_lock = threading.Lock()
        self.text_encoder_pid = os.getpid()
        self.inherited_text_encoders: list = []
        self.added_vectors: dict[int, np.ndarray] = {}  # items added from vectors, for reload
        self.users = 0
        self.retired = False
        self.freeing = False
        self.freed = False

    def text_encoder_session(self):
        """The item text encoder (onnxruntime), loaded once per process."""
        from .onnx_backend import OnnxTextEncoder

        with self.text_encoder_lock:
            if self.text_encoder_pid != os.getpid():
                # a forked worker: onnxruntime's threads stayed in the parent, so the session
                # made there is made again here; the old one is kept, never freed here (its
                # destructor would wait for threads this process does not have)
                self.inherited_text_encoders.append(self.text_encoder)
                self.text_encoder = None
                self.text_encoder_pid = os.getpid()
            if self.text_encoder is None:
                self.text_encoder = OnnxTextEncoder(self.bundle.file("text_encoder/model.onnx").parent)
        return self.text_encoder

    def embed(self, records: list[dict]) -> np.ndarray:
        if not self.bundle.has("text_encoder/model.onnx"):
            raise InvalidArgumentError(
                f"the bundle {self.bundle.path} has no text encoder (its SIDs were built from "
                "given vectors); expected add_items(items, vectors=...) with vectors in that space")
        template = Template(self.bundle.manifest.sid.text_template)
        texts = [template.render({k: "" if v is None else str(v) for k, v in r.items()}) for r in records]
        return self.text_encoder_session().encode(texts)

    def base_codes(self, vectors, n: int) -> list[np.ndarray]:
        """New items' quantiser codes in every view (the extra level is numbered by the catalog,
        under its lock, against the items it holds then)."""
        views = self.catalog.state.views
        v = views.primary.encoder.check_vectors(vectors)
        if len(v) != n:
            raise InvalidArgumentError(f"vectors have shape {v.shape}; expected ({n}, {v.shape[1]}), "
                                       "one row per new item")
        # each view's own quantiser (numpy MLP + C++ lookup): the code path that gave the
        # catalog its codes at `sid build`, so a re-added item gets its codes back exactly
        return [view.encoder.encode(v) for view in views]

    def same_sid_space(self, other: "_Loaded") -> bool:
        """Whether `other` quantises vectors exactly as this bundle does (same views, levels,
        codebooks and encoders), so that an item's base codes carry over unchanged."""
        a, b = self.catalog.state.views, other.catalog.state.views
        if len(a) != len(b):
            return False
        for x, y in zip(a, b):
            if (x.level_sizes != y.level_sizes or x.collisions != y.collisions
                    or not np.array_equal(x.encoder.codebooks, y.encoder.codebooks)
                    or len(x.encoder.layers) != len(y.encoder.layers)
                    or not all(np.array_equal(p, q) for lx, ly in zip(x.encoder.layers, y.encoder.layers)
                               for p, q in zip(lx, ly))):
                return False
        return True

    def free(self) -> None:
        self.backend.close()


class Recommender:
    """Serves one bundle at a time; see the module doc. Thread-safe: many threads may recommend
    while others change the catalog, reload a new bundle or close it."""

    def __init__(self, loaded: _Loaded, *, unknown_items: str = "skip", options: dict | None = None):
        if unknown_items not in UNKNOWN_POLICIES:
            raise InvalidArgumentError(f"unknown_items={unknown_items!r}; expected one of {UNKNOWN_POLICIES}")
        self.unknown_items = unknown_items
        self._loaded = loaded
        self._options = dict(options or {})  # Recommender.load's, for reload()
        self._cond = threading.Condition()   # guards _loaded, _closed and every _Loaded.users
        self._closed = False
        self._write_lock = threading.RLock()  # catalog writes and reload, one at a time
        self._counts = {"requests": 0, "batches": 0, "unknown_history_items": 0, "reloads": 0}
        self._warned_unknown = False

    # --- the served bundle -------------------------------------------------------------------
    @property
    def bundle(self) -> Bundle:
        return self._loaded.bundle

    @property
    def backend(self):
        return self._loaded.backend

    @property
    def catalog(self) -> LiveCatalog:
        return self._loaded.catalog

    @property
    def prompts(self) -> PromptSet:
        return self._loaded.prompts

    @property
    def max_history(self) -> int:
        return self._loaded.max_history

    @property
    def token_tables(self) -> list:
        """Each SID view's core TokenTable (its array: .to_numpy())."""
        return self._loaded.token_tables

    @property
    def token_table(self):
        """The primary view's token table."""
        return self.token_tables[0]

    @property
    def max_beam(self) -> int:
        """The widest beam (and so the largest k) the backend holds for one request."""
        return int(self._loaded.backend.max_beam)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def cold_start(self) -> ColdStartConfig | None:
        """The cold-start mixture's settings (None: cold items are left to the model alone)."""
        return self._loaded.cold_start

    def set_cold_start(self, settings: ColdStartConfig | Mapping | None) -> None:
        """Serve with other cold-start settings (a ColdStartConfig, its dict, or None to turn
        the mixture off) from the next request on; a reload takes the new bundle's own."""
        if settings is not None and not isinstance(settings, ColdStartConfig):
            settings = ColdStartConfig.from_dict(dict(settings))
        with self._write_lock, self._use() as loaded:
            loaded.cold_start = settings

    @property
    def transitions(self) -> Transitions | None:
        """The bundle's transition table (None: exported without one)."""
        return self._loaded.transitions

    @property
    def transition_weight(self) -> float | None:
        """The weight the k items answered are re-ordered by their transition counts with
        (runtime/transitions.py; None: the model's order)."""
        return self._loaded.transition_weight

    def set_transition_weight(self, weight: float | None) -> None:
        """Re-order answers with another weight from the next request on (None or 0: off); a
        reload takes the new bundle's own. InvalidArgumentError for a weight the bundle has no
        transition table for."""
        weight = checked_weight(weight)
        with self._write_lock, self._use() as loaded:
            if weight is not None and loaded.transitions is None:
                raise InvalidArgumentError(
                    f"transition weight {weight!r}, but the bundle {loaded.bundle.path} has no "
                    "transition table (exported before they were recorded); expected None")
            loaded.transition_weight = weight

    @property
    def reranker(self) -> Reranker | None:
        """The second stage over the answer (runtime/rerank.py; None: the model's order, then
        the transition weight if any)."""
        return self._loaded.reranker

    def set_reranker(self, reranker: Reranker | Mapping | None) -> None:
        """Serve with another re-ranker (a Reranker, its dict, or None: off) from the next
        request on; a reload takes the new bundle's own."""
        if reranker is not None and not isinstance(reranker, Reranker):
            reranker = Reranker.from_dict(dict(reranker))
        with self._write_lock, self._use() as loaded:
            if reranker is not None and loaded.transitions is None:
                raise InvalidArgumentError(
                    f"a re-ranker, but the bundle {loaded.bundle.path} has no transition table "
                    "(its count features would all read 0); expected None")
            loaded.reranker = reranker

    def rerank_candidates(self, requests: Sequence[Mapping], cold: int = 0) -> list[tuple]:
        """For choosing a re-ranker (eval/rerank.py): each request's (places, answer, pool) as
        the re-ranking stage sees them, with the re-ranker and transition weight off for the
        call: places, the top k's cold items at their places (None elsewhere); answer, that
        top k (after the cold-start mixture); pool, the warm candidates and the `cold` cold ones
        of most content mass (none with cold start off), with their FEATURES rows
        (runtime/rerank.Pool)."""
        if isinstance(cold, (bool, np.bool_)) or not isinstance(cold, (int, np.integer)) \
                or not 0 <= cold <= 1000:
            raise InvalidArgumentError(f"cold={cold!r:.40}; expected an integer from 0 to 1000")
        checked = [self.check_request(r, n) for n, r in enumerate(requests)]
        out: list = []
        with self._use() as loaded:
            self._search(loaded, checked, collect=out, collect_cold=int(cold))
        return out

    @property
    def search_views(self) -> int:
        """How many SID views a request decodes: the first n of the bundle's, their beams fused
        (1 for a one-view bundle)."""
        return self._loaded.search_views

    def set_search_views(self, n: int | None) -> None:
        """Decode the first `n` SID views per request from the next request on (None: all of
        them): each view is one constrained search, so the cost of a request grows with n. A
        reload takes the new bundle's own setting."""
        with self._write_lock, self._use() as loaded:
            total = len(loaded.catalog.state.views)
            loaded.search_views = checked_search_views(n, total) or total

    @property
    def search_beam(self) -> int:
        """The beam (per view) of a request that names none: the bundle's search_beam, or
        DEFAULT_BEAM (20); raised to the request's k where k is larger."""
        return self._loaded.search_beam

    def set_search_beam(self, beam: int | None) -> None:
        """The beam of requests that name none, from the next request on (None: DEFAULT_BEAM).
        A reload takes the new bundle's own setting."""
        beam = checked_search_beam(beam) or DEFAULT_BEAM
        with self._write_lock, self._use() as loaded:
            loaded.search_beam = beam

    @property
    def search_side_beam(self) -> int | None:
        """The beam of every SID view after the first (None: the request's beam, as in the
        first). The first view's beam holds the request's k; the others only vote in the
        fusion, at most their side beam each (never more than the request's beam)."""
        return self._loaded.side_beam

    def set_search_side_beam(self, beam: int | None) -> None:
        """The side views' beam from the next request on (None: the request's beam). A reload
        takes the new bundle's own setting."""
        beam = checked_search_beam(beam)
        with self._write_lock, self._use() as loaded:
            loaded.side_beam = beam

    @property
    def exclude_history(self) -> bool:
        """Whether every request's own history is kept out of its answer (as if in its deny
        list): the bundle's setting, or set_exclude_history's."""
        return self._loaded.exclude_history

    def set_exclude_history(self, on: bool) -> None:
        """Keep (True) or stop keeping each request's history out of its answer, from the next
        request on. A reload takes the new bundle's own setting."""
        if not isinstance(on, (bool, np.bool_)):
            raise InvalidArgumentError(f"exclude_history {on!r}; expected True or False")
        with self._write_lock, self._use() as loaded:
            loaded.exclude_history = bool(on)

    @contextmanager
    def _use(self):
        """The current bundle, counted as in use until the block ends (ClosedError once closed)."""
        with self._cond:
            if self._closed:
                raise ClosedError("this Recommender is closed; it serves no more calls")
            loaded = self._loaded
            loaded.users += 1
        try:
            yield loaded
        finally:
            with self._cond:
                loaded.users -= 1
                free = self._claim_free(loaded)
            if free:
                self._free(loaded)

    def _claim_free(self, loaded: _Loaded) -> bool:
        """(under _cond) Whether the caller is the one to free `loaded` now."""
        if loaded.retired and loaded.users == 0 and not loaded.freeing:
            loaded.freeing = True
            return True
        return False

    def _free(self, loaded: _Loaded) -> None:
        try:
            loaded.free()
        finally:
            with self._cond:
                loaded.freed = True
                self._cond.notify_all()

    def _count(self, name: str, n: int = 1) -> None:
        with self._cond:
            self._counts[name] += n

    def stats(self) -> dict:
        """Counters since load: requests and batches served, history ids skipped as unknown
        (unknown_items='skip'), bundle reloads; and the catalog's size."""
        with self._cond:
            out = dict(self._counts)
            out["closed"] = self._closed
        if not out["closed"]:
            state = self._loaded.catalog.state
            out["items"], out["active"] = len(state.sids), state.n_active
        return out

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
        if unknown_items not in UNKNOWN_POLICIES:
            raise InvalidArgumentError(f"unknown_items={unknown_items!r}; expected one of {UNKNOWN_POLICIES}")
        options = {"n_threads": n_threads, "backend": backend, "n_contexts": n_contexts,
                   "prefix_cache": prefix_cache, "n_ctx": n_ctx}
        return cls(_open(bundle, verify=verify, catalog=catalog, **options),
                   unknown_items=unknown_items, options=options)

    def reload(self, bundle: str | Path, *, catalog: str | Path | None = None, verify: bool = True,
               carry_over: bool = True) -> None:
        """Swap to another bundle (a retrained model) while serving: it is loaded beside the
        current one with the options this Recommender was loaded with, new requests go to it
        once it is ready, and the old one is freed when its last search ends. Requests never
        fail for the swap. With carry_over (and no saved `catalog` to serve instead), the
        catalog changes made since load carry over to the new bundle: items added that it lacks
        are added (their codes reused when both bundles quantise alike, else encoded again from
        their vectors or text), removed items are removed, paused items stay paused. Catalog
        writes wait while a reload runs. Nothing changes if loading fails."""
        with self._write_lock:
            if self._closed:
                raise ClosedError("this Recommender is closed; it serves no more calls")
            old = self._loaded
            new = _open(bundle, verify=verify, catalog=catalog, **self._options)
            try:
                if carry_over and catalog is None:
                    _carry_over(old, new)
                with self._cond:
                    if self._closed:
                        raise ClosedError("this Recommender was closed during the reload")
                    self._loaded = new
                    old.retired = True
                    free = self._claim_free(old)
                    self._counts["reloads"] += 1
            except BaseException:
                new.free()
                raise
            if free:
                self._free(old)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new calls (ClosedError), wait for the searches in flight, free the model.
        Returns False if `timeout` seconds passed first; the last search still running then
        frees it. Closing again is harmless."""
        with self._cond:
            self._closed = True
            loaded = self._loaded
            loaded.retired = True
            free = self._claim_free(loaded)
        if free:
            self._free(loaded)
        with self._cond:
            return self._cond.wait_for(lambda: loaded.freed, timeout)

    def __enter__(self) -> "Recommender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- requests ----------------------------------------------------------------------------
    def recommend(self, history: Sequence[int], profile: str | Mapping | None = None, *, k: int = 10,
                  beam: int | None = None, allow: Iterable[int] | None = None,
                  deny: Iterable[int] | None = None) -> list[Recommendation]:
        return self.recommend_batch([{"history": history, "profile": profile, "k": k, "beam": beam,
                                      "allow": allow, "deny": deny}])[0]

    def check_request(self, request: Mapping, index: int = 0) -> dict:
        """One request checked and normalised: {history: [int], profile: str or a user record,
        k, beam, allow: [int] | None, deny: [int] | None}; a request without a beam (or with
        None) gets the bundle's (search_beam), raised to its k. A profile given as a record (a dict of
        the user's fields) is written as training wrote it, with the bundle's profile template;
        a string is used as it is. InvalidArgumentError names the bad value;
        k and beam are bounded by max_beam. Catalog membership is not checked here (it can
        change until the request runs)."""
        if not isinstance(request, Mapping):
            raise InvalidArgumentError(f"request {index} is a {type(request).__name__}; expected a dict")
        unknown = set(request) - REQUEST_KEYS
        if unknown:
            raise InvalidArgumentError(f"request {index} has unknown keys {sorted(unknown, key=str)}; "
                                       f"expected some of {sorted(REQUEST_KEYS)}")
        limit = self.max_beam
        k = _positive(request.get("k", 10), "k", limit)
        beam = request.get("beam")
        beam = (min(max(self.search_beam, k), limit) if beam is None
                else _positive(beam, "beam", limit))
        if beam < k:
            raise InvalidArgumentError(f"beam={beam} < k={k}; the beam must hold at least k items")
        profile = request.get("profile")
        if profile is None:
            profile = ""
        elif isinstance(profile, Mapping):
            bad = [key for key, v in profile.items() if not isinstance(key, str)
                   or not (v is None or isinstance(v, (str, int, float)))]
            if bad:
                raise InvalidArgumentError(f"profile field {bad[0]!r} is {profile[bad[0]]!r:.60}; "
                                           "expected string keys and str / number / None values")
            profile = dict(profile)
        elif not isinstance(profile, str):
            raise InvalidArgumentError(f"profile is a {type(profile).__name__} ({profile!r:.60}); "
                                       "expected a string, a dict of the user's fields or None")
        history = request.get("history")
        out = {"history": [] if history is None else _id_list(history, "history"),
               "profile": profile, "k": k, "beam": beam, "allow": None, "deny": None}
        for key in ("allow", "deny"):
            if request.get(key) is not None:
                out[key] = _id_list(request[key], key)
        return out

    def recommend_batch(self, requests: Sequence[Mapping]) -> list[list[Recommendation]]:
        """Several requests in one batched search; each is a dict with the keys of recommend()."""
        if isinstance(requests, Mapping) or not isinstance(requests, Iterable):
            raise InvalidArgumentError(f"requests must be a list of dicts; got {type(requests).__name__}")
        checked = [self.check_request(r, n) for n, r in enumerate(requests)]
        with self._use() as loaded:
            out = self._search(loaded, checked)
        with self._cond:
            self._counts["requests"] += len(checked)
            self._counts["batches"] += 1 if checked else 0
        return out

    def _search(self, loaded: _Loaded, requests: list[dict], collect: list | None = None,
                collect_cold: int = 0) -> list[list[Recommendation]]:
        state = loaded.catalog.state  # one consistent catalog for the whole batch
        n_active = state.n_active
        histories, search_reqs = [], []
        for r in requests:
            if r["k"] > n_active:
                raise InvalidArgumentError(f"k={r['k']} but the catalog has {n_active} active items")
            histories.append(self._history(loaded, state, r["history"]))  # all known ids
            q = {"k": r["k"], "beam": r["beam"]}
            for key in ("allow", "deny"):
                if r[key] is not None:
                    q[key] = r[key]
            if loaded.exclude_history and histories[-1]:
                q["deny"] = sorted(set(q.get("deny") or ()) | set(histories[-1]))
            search_reqs.append(q)
        if not search_reqs:
            return []
        wide = loaded.reranker is not None or collect is not None
        n_views = loaded.search_views
        answers: list[list] = [[] for _ in search_reqs]
        # every view of every request in one search: the views share the decode calls, and a
        # request's views stay together (in one group of the context)
        texts, space_of, reqs = [], [], []
        for h, r, q in zip(histories, requests, search_reqs):
            for v, view in enumerate(state.views[:n_views]):
                texts.append(self._text(loaded, view, h[-loaded.max_history:], r["profile"]))
                space_of.append(v)
                reqs.append(_view_request(dict(q, k=q["beam"]) if wide else q, v, n_views,
                                          loaded.side_beam))
        spaces = [(*state.tries[v], loaded.token_tables[v]) for v in range(n_views)]
        flat = loaded.backend.search_spaces(spaces, space_of, texts, reqs)
        for n, res in enumerate(flat):
            answers[n // n_views].append((res["items"].tolist(), res["scores"].tolist(),
                                          res["logprobs"].tolist()))
        # with a re-ranker every view answers its whole beam, and the pool is all they reached
        pools = [fuse(a, sum(len(x[0]) for x in a) or 1) if wide else None
                 for a in answers]
        cfg = loaded.cold_start
        # a re-ranker with cold candidates places the cold items itself: no mixture before it.
        # Cold candidates need the cold-start settings (their content mass is a feature); with
        # cold start off (None) no cold item is recommended by content, by either kind
        n_cold = 0 if cfg is None else collect_cold if collect is not None else (
            loaded.reranker.cold if loaded.reranker is not None else 0)
        joint = collect is None and n_cold > 0
        # each request's cold content masses, once: the mixture and the cold candidates use them
        content = cfg is not None and len(state.cold) > 0
        masses = ([self._cold_scores(state, cfg, h) for h in histories] if content
                  else [None] * len(histories))
        if content and not joint:  # the mixture ranks the pool
            fused = [mix(*(fuse(a, q["k"]) if p is None else p), state.cold, m,
                         self._eligible(state, q), q["k"], cfg.slots)
                     for a, m, q, p in zip(answers, masses, search_reqs, pools)]
        else:
            fused = [fuse(a, q["k"]) if p is None else tuple(x[:q["k"]] for x in p)
                     for a, q, p in zip(answers, search_reqs, pools)]
        if wide:
            fused = [self._rerank(loaded, state, f, p, a, h, m, q, collect, n_cold)
                     for f, p, a, h, m, q in zip(fused, pools, answers, histories, masses,
                                                 search_reqs)]
        weight, table = loaded.transition_weight, loaded.transitions
        if weight is not None and table is not None and loaded.reranker is None:
            fused = [ordered(f, h[-1] if h else None, table, weight, state.cold)
                     for f, h in zip(fused, histories)]
        return [self._answer(state, *f) for f in fused]

    @staticmethod
    def _rerank(loaded: _Loaded, state: CatalogState, answer, pool, views, history: list[int],
                cold_scores: np.ndarray | None, q: dict, collect: list | None, n_cold: int = 0):
        """One request's top k under the re-ranker (runtime/rerank.py): the warm candidates of
        the pool and the newest item's successors, re-ranked, and either the cold items of
        `answer` (the top k after the cold-start mixture) in their places, or, with `n_cold`
        cold candidates (the cold items of most content mass, `cold_scores`: their log masses),
        ranked with them. With `collect` (a list) the candidates (the `n_cold` cold ones
        included) are appended to it and `answer` is returned as it is."""
        cold = state.cold
        eligible = Recommender._eligible(state, q)

        def is_cold(item: int) -> bool:
            return bool(find_sorted(cold, item)[1])

        def skip(item: int) -> bool:
            return item not in state.sids or is_cold(item) or not eligible(item)

        reranker = loaded.reranker if collect is None else None
        successors = (_rerank.SUCCESSORS if reranker is None else reranker.successors)
        near = []
        if n_cold and len(cold):
            near = best_cold(cold, cold_scores, eligible, n_cold)
        cands = _rerank.pool(pool, views, history, loaded.transitions, loaded.popularity,
                             lambda ids: item_directions(state.sids, ids), successors, skip,
                             [i for i, _ in near], [m for _, m in near], joint=n_cold > 0)
        slots = _rerank.places(answer, is_cold)
        if collect is not None:
            collect.append((slots, answer, cands))
            return answer
        return _rerank.serve(reranker, slots, answer, cands, q["k"])

    @staticmethod
    def _cold_scores(state: CatalogState, cfg: ColdStartConfig, history: list[int]
                     ) -> np.ndarray:
        """The log content mass of each cold item for a request (runtime/cold_start.py), by the
        cold-start settings."""
        recent = history[-cfg.history:]
        query = query_directions(item_directions(state.sids, recent) if recent else None,
                                 cfg.query)
        return history_mass(state.cold, content_scores(similarities(state.cold_dirs, query), cfg),
                            history, cfg.repeat)

    @staticmethod
    def _eligible(state: CatalogState, q: dict) -> Callable[[int], bool]:
        """A request's filter: True for an item that is active, allowed and not denied."""
        allow = None if q.get("allow") is None else set(q["allow"])
        deny = set(q.get("deny") or ())

        def eligible(item: int) -> bool:
            return state.is_active(item) and item not in deny and (allow is None or item in allow)

        return eligible

    def _prompt(self, state: CatalogState, history, profile, view: int = 0) -> str:
        """The prompt of a request in one SID view."""
        loaded = self._loaded
        known = self._history(loaded, state, _id_list(history or [], "history"))
        known = known[-loaded.max_history:]
        return self._text(loaded, state.views[view], known, profile)

    @staticmethod
    def _text(loaded: _Loaded, sids: SemanticIds, known: list[int], profile) -> str:
        """The prompt of checked history items (see _history), written in `sids`' view."""
        if isinstance(profile, Mapping):  # a user record: written as training wrote it
            profile = profile_text(profile, loaded.profile_template)
        return loaded.prompts.next_item_prompt([sids.sid(i) for i in known], profile or "")

    def _history(self, loaded: _Loaded, state: CatalogState, history: list[int]) -> list[int]:
        """The known history items, oldest first (the prompt takes the newest max_history of
        them, cold start its own `history` newest). Unknown ids
        are counted (stats()['unknown_history_items']) and warned about once, not per id: a
        warning per id would grow Python's warning registry without bound under traffic."""
        known = [i for i in history if i in state.sids]
        if len(known) < len(history):
            first = next(i for i in history if i not in state.sids)
            if self.unknown_items == "error":
                raise UnknownItemError(f"history item {first} is not in the catalog", value=first)
            self._count("unknown_history_items", len(history) - len(known))
            if not self._warned_unknown:
                self._warned_unknown = True
                warnings.warn(f"history item {first} is not in the catalog; unknown history items "
                              "are skipped (counted in Recommender.stats(), warned about once)",
                              stacklevel=5)
        return known

    @staticmethod
    def _answer(state: CatalogState, items, scores, logprobs) -> list[Recommendation]:
        return [Recommendation(int(item), float(score), state.sids.sid(item), state.title(item),
                               float(logprob))
                for item, score, logprob in zip(items, scores, logprobs)]

    # --- live catalog ------------------------------------------------------------------------
    def add_items(self, items: Sequence[Mapping], vectors: np.ndarray | None = None) -> list[str]:
        """Give new items SIDs from their text (ONNX text encoder -> the SID table's RQ encoder
        in numpy -> C++ lookup) or from given embedding `vectors`, and make them recommendable at once.
        Returns their SIDs. Nothing changes if any item is bad."""
        records = _records(items)
        ids = np.array([int(r["item_id"]) for r in records], dtype=np.int64)
        with self._write_lock, self._use() as loaded:
            loaded.catalog.check_new(ids)  # before the costly embedding
            given = vectors is not None
            if not given:
                vectors = loaded.embed(records)
            codes = loaded.base_codes(vectors, len(records))
            new = loaded.catalog.add(ids, codes, {int(r["item_id"]): dict(r) for r in records},
                                     content=loaded.catalog.state.sids.new_content(vectors))
            if given:  # a reload to a bundle that quantises otherwise encodes them again
                v = np.asarray(vectors, dtype=np.float32).reshape(len(records), -1)
                loaded.added_vectors.update(zip(ids.tolist(), v))
            return [new.sids.sid(i) for i in ids.tolist()]

    def remove_items(self, item_ids: Iterable[int]) -> int:
        with self._write_lock, self._use() as loaded:
            n = loaded.catalog.remove(item_ids)
            for i in list(loaded.added_vectors):
                if i not in loaded.catalog.state.sids:
                    del loaded.added_vectors[i]
            return n

    def set_active(self, item_ids: Iterable[int], active: bool = True) -> int:
        """Pause (active=False) or resume items; returns how many changed."""
        if not isinstance(active, (bool, np.bool_)):
            raise InvalidArgumentError(f"active={active!r}; expected True or False")
        with self._write_lock, self._use() as loaded:
            return loaded.catalog.set_active(item_ids, bool(active))

    def save_catalog(self, path: str | Path) -> Path:
        """Persist the served catalog (bundle items + added ones, removals applied, paused ids)
        so that Recommender.load(bundle, catalog=path) serves the same catalog after a restart.
        The items and the paused set are read as one snapshot: writes may go on meanwhile."""
        with self._use() as loaded:
            state, inactive = loaded.catalog.snapshot()
            path = Path(path)
            with atomic_directory(path) as tmp:
                state.views.save(tmp / "sids")
                with open(tmp / "items.jsonl", "wb") as f:
                    state.records.write_jsonl(state.sids.item_ids, f)
                write_json(tmp / "catalog.json", {"format": "genrec-lite.catalog", "format_version": 1,
                                                  "bundle": str(loaded.bundle.path),
                                                  "inactive": sorted(inactive),
                                                  "cold": state.cold.tolist()})
        return path

    def preload(self) -> None:
        """Load the cold-start text encoder now rather than at the first add_items, so that a
        server's first new item is not slower than the rest (the SID quantisers are loaded with
        the SID tables)."""
        with self._use() as loaded:
            loaded.text_encoder_session()


# --- helpers -----------------------------------------------------------------------------------
def _open(bundle, *, verify: bool, catalog, n_threads, backend: str, n_contexts: int,
          prefix_cache: bool, n_ctx) -> _Loaded:
    """Load a bundle (and optionally a saved catalog) with a model backend: Recommender.load's
    work, also reload's."""
    b = Bundle.open(bundle, verify=verify)
    sids = _bundle_views(b)
    inactive: list[int] = []
    cold = _bundle_cold(b)
    if catalog is None:
        records = ItemRecords.open(b.file("items.jsonl"))
    else:
        bundle_items = sids.primary.item_ids
        sids, records, inactive, saved_cold = _load_catalog(catalog, sids)
        # a catalog saved before cold items were recorded: the bundle's, and every added item
        cold = saved_cold if saved_cold is not None else np.union1d(
            cold, np.setdiff1d(sids.primary.item_ids, bundle_items))
    if backend == "llama":
        from .llama_backend import LlamaBackend, LlamaModel

        model = LlamaModel(b.file("model.gguf"), n_threads=n_threads, n_contexts=n_contexts,
                           prefix_cache=prefix_cache, n_ctx=n_ctx)
        model_backend = LlamaBackend(model)
        token_id, source = model.token_id, "model.gguf"
    elif backend == "onnx":
        if not b.has("model.onnx"):
            raise ArtifactError(f"the bundle {b.path} has no model.onnx (export it with --onnx)")
        from .onnx_backend import OnnxBackend, OnnxLM, Tokenizer

        tok = Tokenizer(b.file("tokenizer.json"))
        pad = b.manifest.tokenizer.pad_token_id or 0
        lm = OnnxLM(b.file("model.onnx"), n_threads=n_threads, pad_id=pad)
        model_backend = OnnxBackend(lm, tok)
        token_id, source = tok.token_id, "tokenizer.json"
    else:
        raise InvalidArgumentError(f"backend={backend!r}; expected 'llama' or 'onnx'")
    try:
        tables = [_token_table(v, token_id, source) for v in sids]
        live = LiveCatalog(sids, records, cold)
        if inactive:
            live.set_active(inactive, False)
        loaded = _Loaded(b, model_backend, live, tables)
        if backend == "llama":
            model.set_prefix_stems(_prompt_stems(loaded, model_backend.tokenize))
        return loaded
    except BaseException:
        model_backend.close()  # free the model's memory before reporting
        raise


def _prompt_stems(loaded: _Loaded, tokenize) -> list[list[int]]:
    """The token prefixes prompts of one kind share, whatever the history: for each SID view, with
    and without a profile, the common start of two prompts that differ from their first SID or
    profile token on (the template text before the history or the profile)."""
    def common(a: list[int], b: list[int]) -> list[int]:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return a[:n]

    stems: list[list[int]] = []
    for view in loaded.catalog.state.views:
        first = view.codes[:, 0]
        other = np.flatnonzero(first != first[0])
        if len(view.item_ids) == 0 or len(other) == 0:
            continue
        x, y = view.sid(int(view.item_ids[0])), view.sid(int(view.item_ids[other[0]]))
        pair = [(([x], ""), ([y], "")), (([x], "a"), ([x], "z"))]
        for (h1, p1), (h2, p2) in pair:
            stem = common(tokenize(loaded.prompts.next_item_prompt(h1, p1)),
                          tokenize(loaded.prompts.next_item_prompt(h2, p2)))
            if stem and stem not in stems:
                stems.append(stem)
    return stems


def _carry_over(old: _Loaded, new: _Loaded) -> None:
    """Apply to `new` (not serving yet) the catalog changes made to `old` since it was loaded."""
    before, inactive = old.catalog.snapshot()
    now = new.catalog.state
    added = [i for i in old.catalog.added_items if i not in now.sids]
    if added:
        records = [dict(before.records.get(i, {"item_id": i})) for i in added]
        ids = np.array(added, dtype=np.int64)
        rows = before.sids.rows_of(np.asarray(added, dtype=np.int64))
        vectors = None

        def embeddings() -> np.ndarray:  # the added items' embeddings, made once if needed
            nonlocal vectors
            if vectors is None:
                vectors = np.zeros((len(added), now.views.primary.encoder.input_dim),
                                   dtype=np.float32)
                from_text = [n for n, i in enumerate(added) if i not in old.added_vectors]
                for n, i in enumerate(added):
                    if i in old.added_vectors:
                        vectors[n] = old.added_vectors[i]
                if from_text:
                    vectors[from_text] = new.embed([records[n] for n in from_text])
            return vectors

        if new.same_sid_space(old):
            codes = [v.codes[rows, :v.levels] for v in before.views]
        else:
            codes = new.base_codes(embeddings(), len(added))
        content = None
        if now.sids.content is not None:
            a, b = before.sids.content_space, now.sids.content_space
            same = a is not None and all(np.array_equal(x, y) for x, y in
                                         zip(a.state().values(), b.state().values()))
            content = before.sids.content[rows] if same else now.sids.new_content(embeddings())
        new.added_vectors.update((i, old.added_vectors[i]) for i in added if i in old.added_vectors)
        new.catalog.add(ids, codes, {i: r for i, r in zip(added, records)}, content=content)
    removed = [i for i in old.catalog.removed_items if i in new.catalog.state.sids]
    if removed:
        new.catalog.remove(removed)
    paused = [i for i in inactive if i in new.catalog.state.sids]
    if paused:
        new.catalog.set_active(paused, False)


def _token_table(sids: SemanticIds, token_id, source: str):
    """The core's TokenTable of a SID view: the model token of each (level, code), checked once."""
    sizes = sids.level_sizes
    table = np.full((len(sizes), max(sizes)), -1, dtype=np.int32)
    for level, size in enumerate(sizes):
        for code in range(size):
            tid = token_id(sids.token(level, code))
            if tid < 0:
                raise ArtifactError(f"{source} has no single token for the SID token "
                                    f"{sids.token(level, code)}; the model does not match the SID table")
            table[level, code] = tid
    return core().TokenTable(table)


def _view_request(q: dict, view: int, n_views: int, side_beam: int | None) -> dict:
    """The search request of one SID view of a request `q`. One view answers q itself. With
    several, each keeps its whole beam for the fusion; the first view's beam holds q's k (the
    answer's items), the others search at most `side_beam` (they only vote)."""
    if n_views == 1:
        return q
    beam = view_beam(view, q["beam"], side_beam)
    return dict(q, k=beam, beam=beam)


def _positive(value, name: str, limit: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not 1 <= value <= limit:
        raise InvalidArgumentError(f"{name}={value!r:.40}; expected an integer, 1 <= {name} <= "
                                   f"{limit} (the widest beam this backend holds)")
    return int(value)


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _id_list(ids, name: str) -> list[int]:
    """Item ids as Python ints: ints, numpy integers, or integral floats (JSON may write 12.0);
    strings, bools, fractions, NaN / inf and values outside int64 are refused."""
    if isinstance(ids, np.ndarray) and ids.ndim == 1 and np.issubdtype(ids.dtype, np.integer):
        return [int(i) for i in ids.tolist()]
    if isinstance(ids, (str, bytes, Mapping)) or not isinstance(ids, Iterable):
        raise InvalidArgumentError(f"{name} must be a list of item ids; got {type(ids).__name__} "
                                   f"{ids!r:.60}")
    out = []
    for i in ids:
        if isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)):
            v = int(i)
        elif isinstance(i, (float, np.floating)) and math.isfinite(i) and float(i).is_integer():
            v = int(i)
        else:
            raise InvalidArgumentError(f"{name} holds {i!r:.40} ({type(i).__name__}); expected "
                                       "integer item ids")
        if not _INT64[0] <= v <= _INT64[1]:
            raise InvalidArgumentError(f"{name} holds {v}; expected item ids that fit in int64")
        out.append(v)
    return out


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
    want = b.manifest.sid.views
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
    recs = ItemRecords.open(path / "items.jsonl")
    cold = meta.get("cold")
    return (new, recs, [int(i) for i in meta.get("inactive", [])],
            None if cold is None else np.asarray(cold, dtype=np.int64))


def _bundle_cold(b: Bundle) -> np.ndarray:
    """The bundle's untrained items (empty for bundles exported before they were recorded)."""
    name = b.manifest.cold_start.items
    if name is None:
        return np.zeros(0, dtype=np.int64)
    try:
        ids = np.load(b.file(name), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{b.path / name} is not a readable id array ({exc})") from exc
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ArtifactError(f"{b.path / name} holds {ids.dtype} of shape {ids.shape}; expected "
                            "a flat array of item ids")
    return ids.astype(np.int64)
