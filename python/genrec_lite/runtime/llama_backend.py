"""llama.cpp backend: one GGUF model (memory-mapped, shared) and a pool of decoding contexts.

llama-cpp-python loads libllama; we use its low-level API to open the model and create contexts.
Each context is wrapped once, at load, in the C++ core's LlamaContext, which holds the addresses
of the handful of llama.cpp functions the search calls (a LlamaApi), the context's limits and its
prompt-prefix cache; the whole search (prompt decode, every SID level, KV reordering) then runs
in C++ with the GIL released. A context serves one search at a time; concurrent callers take
different contexts from the pool (and wait when all are busy); close() waits until every context
is back before freeing anything, and refuses new searches. No torch here.

The C++ side calls libllama through addresses and a batch struct declared in
csrc/include/genrec/llama_api.h for one llama-cpp-python release (LLAMA_CPP_PYTHON_VERSION): any
other release is refused at load, before a context exists, since a changed signature or struct
would corrupt memory instead of failing.

llama.cpp's own log (model and context details on every load) goes to Python's logging, logger
"genrec_lite.llama" (info at DEBUG, warnings at WARNING, errors at ERROR), not to stderr.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from .._ext import core
from ..errors import (ArtifactError, ClosedError, ForkError, GenrecError,
                      InvalidArgumentError, MissingDependencyError)

# The llama-cpp-python release whose libllama ABI csrc/include/genrec/llama_api.h mirrors (pinned
# in pyproject.toml; a test keeps the two equal).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
LLAMA_MAX_SEQ = 256  # llama.cpp's limit on sequences per context
DEFAULT_N_CTX = 1024  # KV cells per context (see LlamaModel)
_API_FUNCTIONS = ("llama_decode", "llama_get_logits", "llama_get_logits_ith", "llama_get_memory",
                  "llama_memory_clear", "llama_memory_seq_rm", "llama_memory_seq_cp",
                  "llama_memory_seq_keep")
_init_lock = threading.Lock()
_initialised = False

log = logging.getLogger("genrec_lite.llama")
# A library does not print: without the application's own logging configuration these records go
# nowhere (rather than to logging's last-resort stderr handler).
log.addHandler(logging.NullHandler())
# ggml_log_level (ggml.h): NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the last
# message). llama-cpp-python 0.3.36's own callback maps an older numbering and so prints every
# warning to stderr.
_LOG_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING,
               4: logging.ERROR}
_LOG_CONT = 5
# Warnings about choices the runtime makes on purpose, which a user cannot act on: the contexts'
# KV cells are shared by up to 256 sequences (beams), so n_ctx above the model's training length
# does not make any one sequence longer.
_LOG_EXPECTED = ("n_ctx_seq (",)
_log_lock = threading.Lock()
_log_pending: list[str] = []  # fragments of a line not yet ended by a newline
_log_level = logging.DEBUG  # the level of the message that CONT fragments continue
_log_callback = None  # the ctypes callback: referenced here so it is never garbage-collected


def _on_llama_log(level: int, text: bytes | None, user_data) -> None:
    """llama.cpp's log callback (any thread, the GIL taken by ctypes): whole lines to `log`."""
    global _log_level
    try:
        piece = text.decode("utf-8", "replace") if text else ""
        out: list[tuple[int, str]] = []
        with _log_lock:
            if level != _LOG_CONT:
                if _log_pending:  # a new message ends an unterminated one
                    out.append((_log_level, "".join(_log_pending)))
                    _log_pending.clear()
                _log_level = _LOG_LEVELS.get(level, logging.DEBUG)
            _log_pending.append(piece)
            *lines, rest = "".join(_log_pending).split("\n")
            _log_pending[:] = [rest] if rest else []
            out += [(_log_level, line) for line in lines]
        for levelno, line in out:
            line = line.rstrip()
            if not line:
                continue
            expected = levelno == logging.WARNING and any(k in line for k in _LOG_EXPECTED)
            log.log(logging.DEBUG if expected else levelno, "%s", line)
    except Exception:  # pragma: no cover - never raise into C (e.g. at interpreter exit)
        pass


def _route_llama_log(llama_cpp) -> None:
    """Install _on_llama_log as llama.cpp's (and ggml's) log callback; once per process."""
    global _log_callback
    if _log_callback is None:
        _log_callback = llama_cpp.llama_log_callback(_on_llama_log)
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def _llama_cpp():
    global _initialised
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError(
            "llama-cpp-python is required to serve GGUF bundles (pip install genrec-lite)") from exc
    check_llama_abi(llama_cpp)
    with _init_lock:
        if not _initialised:
            _route_llama_log(llama_cpp)  # llama.cpp logs every load to stderr otherwise
            llama_cpp.llama_backend_init()
            _initialised = True
    return llama_cpp


def check_llama_abi(llama_cpp) -> None:
    """MissingDependencyError unless the installed llama-cpp-python is the release the C++ search
    was written against, with the context fields the runtime sets."""
    found = getattr(llama_cpp, "__version__", None)
    if found != LLAMA_CPP_PYTHON_VERSION:
        raise MissingDependencyError(
            f"llama-cpp-python {found} is installed; genrec-lite's C++ search calls libllama "
            f"through the ABI of llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} and refuses other "
            f"releases (pip install 'llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}')")
    fields = {name for name, *_ in getattr(llama_cpp.llama_context_params, "_fields_", ())}
    missing = sorted({"kv_unified", "n_seq_max", "n_batch", "n_ubatch", "n_ctx"} - fields)
    if missing:
        raise MissingDependencyError(
            f"llama-cpp-python {found}'s llama_context_params has no field(s) {missing}; the "
            "installed package does not match the libllama ABI genrec-lite was built for")


def _api(llama_cpp):
    """The C++ core's LlamaApi: the addresses of _API_FUNCTIONS in the loaded libllama."""
    lib = llama_cpp.llama_cpp._lib
    out = []
    for name in _API_FUNCTIONS:
        fn = getattr(lib, name, None)
        if fn is None:
            raise MissingDependencyError(f"the loaded libllama has no {name}; genrec-lite needs the "
                                         "llama-cpp-python version it pins")
        out.append(ctypes.cast(fn, ctypes.c_void_p).value)
    return core().LlamaApi(out)


class LlamaModel:
    """A GGUF model and `n_contexts` contexts sized for batched beam search.

    prefix_cache: each context keeps the prompt prefix its requests share (the template text
    before the history: set_prefix_stems) in its KV cache, so that it is decoded once, not once
    per request; it reserves one of the context's sequences.

    n_ctx: KV cells per context (None: DEFAULT_N_CTX). llama.cpp's sequence copy and removal
    (beam reordering) walk every cell, so unused cells cost time at each SID level: 1024 holds one
    full group of 255 beams (12 requests of beam 20 with ~40-token prompts); longer prompts make
    smaller groups, and one request needs its prompt + beam x (levels - 1) cells (+ the cached
    prefix)."""

    def __init__(self, path: str | Path, *, n_threads: int | None = None, n_contexts: int = 1,
                 n_ctx: int | None = None, n_seq_max: int = LLAMA_MAX_SEQ, n_ubatch: int = 512,
                 prefix_cache: bool = True):
        # first, so that close() (also from a failed __init__ or __del__) always finds them
        self._contexts: list = []  # (llama.cpp context pointer, its core().LlamaContext)
        self._pool: list = []  # the idle LlamaContexts
        self._cond = threading.Condition()
        self._closed = False
        # the process that ran a multi-threaded decode with this model, if any: llama.cpp's
        # OpenMP threads do not survive a fork, so a process forked after that cannot decode
        self._threads_pid: int | None = None
        self._model = None
        llama_cpp = _llama_cpp()
        self._llama = llama_cpp
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"GGUF model {path} is missing")
        if n_contexts < 1:
            raise InvalidArgumentError(f"n_contexts={n_contexts}; expected >= 1")
        if not 1 <= n_seq_max <= LLAMA_MAX_SEQ:
            raise InvalidArgumentError(f"n_seq_max={n_seq_max}; expected 1..{LLAMA_MAX_SEQ}")
        n_ctx = DEFAULT_N_CTX if n_ctx is None else n_ctx
        # llama.cpp aborts the process below one cell per sequence
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < n_seq_max:
            raise InvalidArgumentError(f"n_ctx={n_ctx!r}; expected an integer >= n_seq_max "
                                       f"({n_seq_max}) KV cells")
        if prefix_cache and n_seq_max < 2:
            raise InvalidArgumentError(f"n_seq_max={n_seq_max} leaves no sequence for the prefix "
                                       "cache; expected >= 2 or prefix_cache=False")
        self.prefix_cache = bool(prefix_cache)
        self.n_threads = int(n_threads or min(4, os.cpu_count() or 1))
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_mmap = True  # worker processes share the weights' pages
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
        if not self._model:
            raise ArtifactError(f"llama.cpp cannot load {path} (not a GGUF model it understands)")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.limits: tuple[int, int, int, int] | None = None
        try:
            self._api = _api(llama_cpp)
            for _ in range(n_contexts):
                self._pool.append(self._new_context(n_ctx, n_seq_max, n_ubatch))
        except Exception:
            self.close()
            raise

    def _new_context(self, n_ctx: int, n_seq_max: int, n_ubatch: int):
        llama_cpp = self._llama
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx          # a whole group's prompts go in one decode call
        cp.n_ubatch = min(n_ubatch, n_ctx)
        cp.n_seq_max = n_seq_max
        cp.n_threads = self.n_threads
        cp.n_threads_batch = self.n_threads
        cp.kv_unified = True        # beams share their prompt's cells (seq_cp tags, never copies)
        cp.no_perf = True
        cp.embeddings = False
        ctx = llama_cpp.llama_init_from_model(self._model, cp)
        if not ctx:
            raise GenrecError(f"llama.cpp could not create a context of {n_ctx} cells and "
                              f"{n_seq_max} sequences (out of memory?)")
        n_ctx_real = int(llama_cpp.llama_n_ctx(ctx))
        n_batch = int(llama_cpp.llama_n_batch(ctx))
        n_seq = int(llama_cpp.llama_n_seq_max(ctx))
        self.limits = (n_ctx_real, n_seq, n_batch, self.n_vocab)
        try:
            wrapped = core().LlamaContext(self._api, ctypes.cast(ctx, ctypes.c_void_p).value,
                                          *self.limits, prefix_cache=self.prefix_cache)
        except BaseException:
            llama_cpp.llama_free(ctx)
            raise
        self._contexts.append((ctx, wrapped))
        return wrapped

    def set_prefix_stems(self, stems: list[list[int]]) -> None:
        """The prompt prefixes (token-id lists) the contexts' prefix caches keep: the template text
        before the history, one per kind of prompt. Waits until no search runs. Without stems the
        cache keeps nothing."""
        if not self.prefix_cache:
            return
        stems = [[int(t) for t in s] for s in stems if len(s) > 0]
        with self._all_idle() as pool:
            for ctx in pool:
                ctx.set_prefix_stems(stems)

    @property
    def api(self):
        """The libllama functions the contexts call (the core's LlamaApi)."""
        return self._api

    @api.setter
    def api(self, api) -> None:
        """Other addresses of the same functions for every context (a LlamaApi or the eight
        addresses), e.g. a fault-injecting llama_decode in a test. Waits until no search runs."""
        if not isinstance(api, core().LlamaApi):
            api = core().LlamaApi(api)
        with self._all_idle() as pool:
            for ctx in pool:
                ctx.api = api
            self._api = api

    @contextmanager
    def _all_idle(self):
        """Every context, once no search holds one (empty once closed); no search starts until
        the block ends."""
        with self._cond:
            while len(self._pool) < len(self._contexts) and not self._closed:
                self._cond.wait()
            yield self._pool

    @property
    def max_beam(self) -> int:
        """The widest beam one request can have: a sequence per beam (less the prefix cache's)."""
        return int(self.limits[1]) - (1 if self.prefix_cache else 0)

    @contextmanager
    def context(self):
        """A LlamaContext of the pool for one search (blocks while all are busy; ClosedError
        once close() has begun)."""
        with self._cond:
            while not self._pool and not self._closed:
                self._cond.wait()
            if self._closed:
                raise ClosedError("this llama.cpp model is closed; it serves no more searches")
            pid = os.getpid()
            if self._threads_pid not in (None, pid):
                raise ForkError(
                    f"this process ({pid}) was forked from process {self._threads_pid} after the "
                    f"model had decoded there with n_threads={self.n_threads}; llama.cpp's worker "
                    "threads do not survive a fork, so a search here would hang. Fork the workers "
                    "after Recommender.load and before the first request, or load in each worker")
            if self.n_threads > 1:
                self._threads_pid = pid
            ctx = self._pool.pop()
        try:
            yield ctx
        finally:
            with self._cond:
                self._pool.append(ctx)
                self._cond.notify_all()

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        llama_cpp = self._llama
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:  # buffer too small: -n is the size needed
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:
            raise GenrecError(f"llama.cpp could not tokenize a prompt of {len(data)} bytes")
        return list(buf[:n])

    def token_id(self, piece: str) -> int:
        """Id of a single-token string such as a SID token; -1 when it is not one token."""
        ids = self.tokenize(piece, add_special=False)
        return ids[0] if len(ids) == 1 else -1

    def search(self, trie, token_table, prompts: list[list[int]], requests: list[dict],
               *, record: bool = False, delta=None):
        """(results, stats, schedule or None) of the C++ search over one pooled context;
        token_table: a core TokenTable (or its array); delta: a second trie searched with trie
        as one (SemanticIds.tries)."""
        with self.context() as ctx:
            return ctx.search(trie, token_table, prompts, requests, record, delta)

    def search_spaces(self, spaces, space_of: list[int], prompts: list[list[int]],
                      requests: list[dict], *, record: bool = False):
        """search() over several (trie, token_table, delta) spaces at once, request i in
        spaces[space_of[i]]: the requests of all spaces share the decode calls."""
        with self.context() as ctx:
            return ctx.search_spaces(spaces, space_of, prompts, requests, record)

    def replay(self, schedule) -> dict:
        """Decode a recorded token schedule without the search (the latency floor)."""
        with self.context() as ctx:
            return ctx.replay(schedule)

    def close(self) -> None:
        """Refuse new searches, wait for those in flight to hand their contexts back, then free
        the contexts and the model (freeing them under a running search aborts the process)."""
        cond = self._cond
        with cond:
            self._closed = True
            cond.notify_all()  # searches waiting for a context give up
            while len(self._pool) < len(self._contexts):
                cond.wait()
            contexts, self._contexts, self._pool = self._contexts, [], []
        llama_cpp = getattr(self, "_llama", None)
        for ctx, _ in contexts:
            llama_cpp.llama_free(ctx)
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __del__(self):  # pragma: no cover - interpreter shutdown order is not ours
        try:
            self.close()
        except Exception:
            pass


class LlamaBackend:
    """The Recommender's model backend over a LlamaModel: prompts tokenized by llama.cpp, the
    whole search in C++."""

    def __init__(self, model: LlamaModel):
        self.model = model

    @property
    def max_beam(self) -> int:
        return self.model.max_beam

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text, add_special=True)

    def search(self, trie, delta, table, texts, requests):
        prompts = [self.tokenize(t) for t in texts]
        return self.model.search(trie, table, prompts, requests, delta=delta)[0]

    def search_spaces(self, spaces, space_of, texts, requests):
        """Requests of several SID views in one C++ search (shared decode calls); spaces: one
        (trie, delta, table) per view."""
        prompts = [self.tokenize(t) for t in texts]
        spaces = [(trie, table, delta) for trie, delta, table in spaces]
        return self.model.search_spaces(spaces, space_of, prompts, requests)[0]

    def close(self):
        self.model.close()
