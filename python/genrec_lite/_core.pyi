"""
genrec-lite C++ core: residual-quantizer lookup, the semantic-ID trie and beam search.
"""

from collections.abc import Sequence

import numpy
from numpy.typing import NDArray


class ResidualQuantizer:
    """
    Greedy residual-quantizer lookup: vectors -> semantic-ID codes, on CPU.

    ResidualQuantizer(codebooks) with codebooks of shape (levels, codebook_size, dim) (copied).
    For each vector, level by level: code = the nearest codeword to the residual, residual -= it.
    The codes equal those of the double-precision rule of genrec_lite.sid.quantize (distances
    sum((r_i - c_i)^2) in float64, summed in index order, ties to the lowest code; the tests hold
    them to an exact implementation), although the search runs in float32 SIMD.
    Immutable and thread-safe; the GIL is released while it works.
    """

    def __init__(self, codebooks: object) -> None:
        """
        Copy the codebooks, shape (levels, codebook_size, dim), float32 (others converted).
        """

    def encode(self, x: object, n_threads: int = 1) -> object:
        """
        Codes of x: shape (n, dim) -> int32 (n, levels); shape (dim,) -> (levels,).
        n_threads > 1 splits the items over threads (0 = all hardware threads).
        Raises InvalidArgumentError naming the row for a non-finite value.
        """

    def decode(self, codes: object) -> object:
        """
        Sum of the codewords (float32, in level order): (n, levels) -> (n, dim); (levels,) -> (dim,).
        """

    @property
    def levels(self) -> int:
        """Number of levels L."""

    @property
    def codebook_size(self) -> int:
        """Codewords per level K."""

    @property
    def dim(self) -> int:
        """Vector dimension D."""

    @property
    def codebooks(self) -> object:
        """A copy of the codebooks, float32 (levels, codebook_size, dim)."""

    def memory_bytes(self) -> int:
        """Heap bytes owned."""

    def __getstate__(self) -> object: ...

    def __setstate__(self, arg: object, /) -> None: ...

    def __repr__(self) -> str: ...

class SidTrie:
    """
    Prefix trie over semantic IDs, with an active-item mask.

    SidTrie(codes, item_ids, codebook_sizes=None): codes of shape (n, levels), one SID per item;
    item_ids of shape (n,), all different. Items may share a SID (collisions): that SID then maps to
    several items, in the row order given here. codebook_sizes (an int, or one per level) gives the
    code range of each level; by default it is max code + 1.

    All items start active. set_active()/set_all_active() change the mask at any time without a
    rebuild, and the queries only offer codes and items with an active item below them. Queries may
    run from many threads at once, also while the mask changes (the GIL is released).
    """

    def __init__(self, codes: object, item_ids: object, codebook_sizes: object | None = None) -> None:
        """
        Build from codes (n, levels) and item_ids (n,); codebook_sizes: None, an int or one per level.
        """

    @property
    def levels(self) -> int:
        """Number of levels L (codes per SID)."""

    @property
    def codebook_sizes(self) -> tuple:
        """The code range of each level, a tuple."""

    @property
    def n_items(self) -> int:
        """Number of items."""

    @property
    def n_sids(self) -> int:
        """Number of distinct full SIDs."""

    @property
    def n_active(self) -> int:
        """Number of active items."""

    def __len__(self) -> int: ...

    def allowed_next(self, prefix: object) -> NDArray[numpy.int32]:
        """
        Sorted int32 codes c such that prefix + [c] leads to an active item.
        prefix: a sequence of fewer than `levels` codes ([] = root); a prefix no item has gives [].
        """

    def allowed_next_batch(self, prefixes: object) -> tuple:
        """
        allowed_next for m prefixes of one length, shape (m, length), as CSR:
        returns (offsets int64 (m+1,), codes int32); prefix i allows codes[offsets[i]:offsets[i+1]].
        """

    def items(self, sid: object, active_only: bool = True) -> NDArray[numpy.int64]:
        """
        Item ids (int64) whose SID is exactly sid, in build-row order (only active ones by default).
        """

    def codes_of(self, item_id: int) -> NDArray[numpy.int32]:
        """The SID of an item, int32 (levels,). Raises UnknownItemError."""

    def contains(self, item_id: int) -> bool:
        """Whether the item is in the trie."""

    def __contains__(self, item_id: int) -> bool: ...

    def is_active(self, item_id: int) -> bool:
        """Whether the item is active. Raises UnknownItemError."""

    def set_active(self, item_ids: object, active: bool = True) -> int:
        """
        Mark items (an id or a sequence of ids) active or inactive; returns how many changed.
        All ids are checked first: an unknown id raises UnknownItemError and changes nothing.
        """

    def set_all_active(self, active: bool = True) -> int:
        """Mark every item active or inactive; returns how many changed."""

    def derive(self, add_codes: object, add_ids: object, remove_ids: object | None = None) -> SidTrie:
        """
        A new trie: these items minus remove_ids plus the rows add_codes (n, levels) / add_ids (n,),
        as a build from the remaining rows followed by the added ones would be, made by a linear
        merge (no sort of the catalog). Active flags carry over; added items start active.
        """

    def next_codes(self, prefixes: object) -> NDArray[numpy.int32]:
        """
        For prefixes (m, length < levels): 1 + the largest code below each prefix, active or
        not, or 0 where no item has the prefix (int32 (m,)).
        """

    def memory_bytes(self) -> int:
        """Heap bytes owned by the trie."""

    def __repr__(self) -> str: ...

class TokenTable:
    """
    The model token of each SID code, checked once.

    TokenTable(table): table is int32 (levels, max codebook size), the token id of each (level, code),
    -1 where a level has no such code. Searches take it in place of the array, so a server converts
    and checks its tables once, at load.
    """

    def __init__(self, table: object) -> None: ...

    @property
    def levels(self) -> int: ...

    @property
    def max_size(self) -> int:
        """Columns: the largest codebook."""

    def to_numpy(self) -> NDArray[numpy.int32]:
        """A copy as an int32 array (levels, max_size)."""

    def __repr__(self) -> str: ...

class BeamSearch:
    """
    Batched constrained beam search over SIDs; the caller runs the model.

    BeamSearch(trie, token_table, requests, delta=None)
      delta: a second SidTrie with the same levels and code ranges holding other items (the items
      added since trie was built); the search then runs over both as over one trie holding both.
      token_table: a TokenTable, or an array it is made from (int32 (levels, max codebook size), the
      token id of each (level, code), -1 for none).
      requests: a list of dicts {k, beam, allow, deny} (k, beam: ints >= 1, default 10 and 20;
      allow / deny: iterables of item ids or None; ids the trie lacks are ignored).
    Protocol: while not done, give step() the logits of the `rows` current rows (level 0: each
    request's prompt, last position, in request order). After a step, row j of the next level extends
    row parents[j] by token tokens[j]; rows are grouped by request (row_request) and ranked best
    first. results() after the last level: per request {items (int64, <= k), scores (float32),
    logprobs (float32), sids (int32, (beams, levels)), sid_scores (float32), sid_logprobs
    (float32)}, best first.

    At each level the logits of the allowed SID tokens (codes with an active item below them that
    passes the request's allow/deny lists) are log-softmaxed (float64) over those codes only; a
    request keeps its `beam` best candidates (ties: the smaller SID first). A score is the sum of
    those renormalised log-probabilities, so it moves when the allowed codes change (a paused or
    filtered sibling raises it). A logprob is the model's raw log-probability of the SID: the sum over
    levels of logit[token] - logsumexp(the whole logits row), which no catalog change moves. A NaN or
    +inf among a row's allowed logits, or anywhere in the row of a beam that continues, raises
    ModelOutputError (naming the request, level, token and value); -inf is a mask (a row of -inf
    only is a dead beam). The same rule as the PyTorch reference decoder. The trie is kept alive by
    the search; many searches may run at once on one trie, also while set_active() changes it. The
    GIL is released in step() and results().
    """

    def __init__(self, trie: object, token_table: object, requests: object, delta: object | None = None) -> None: ...

    @property
    def level(self) -> int:
        """The SID level the next step() scores (levels once done)."""

    @property
    def levels(self) -> int: ...

    @property
    def done(self) -> bool: ...

    @property
    def n_requests(self) -> int: ...

    @property
    def rows(self) -> int:
        """Logit rows the next step() expects."""

    @property
    def row_request(self) -> NDArray[numpy.int32]:
        """Request index of each current row (int32)."""

    @property
    def row_scores(self) -> NDArray[numpy.float64]:
        """Score of each current row so far (float64)."""

    @property
    def row_logprobs(self) -> NDArray[numpy.float64]:
        """Raw log-probability of each current row so far (float64)."""

    def step(self, logits: object) -> None:
        """
        Score one level: logits (rows, vocab), float32 (other dtypes are converted); rows may be any stride apart.
        """

    @property
    def parents(self) -> NDArray[numpy.int32]:
        """For each new row, the previous row it extends (int32)."""

    @property
    def tokens(self) -> NDArray[numpy.int32]:
        """For each new row, the SID token to feed (int32)."""

    def results(self) -> list:
        """
        Per request: {items, scores, logprobs, sids, sid_scores, sid_logprobs}, after the last level.
        """

    def __repr__(self) -> str: ...

class LlamaSchedule:
    """The llama.cpp operations of one search, for LlamaContext.replay."""

    @property
    def n_ops(self) -> int: ...

    @property
    def n_tokens(self) -> int: ...

class LlamaApi:
    """
    The libllama functions the C++ search calls, by address.

    LlamaApi(addresses): the addresses of (llama_decode, llama_get_logits, llama_get_logits_ith,
    llama_get_memory, llama_memory_clear, llama_memory_seq_rm, llama_memory_seq_cp,
    llama_memory_seq_keep) in the loaded libllama, as ints; checked once here.
    """

    def __init__(self, addresses: object) -> None: ...

    @property
    def addresses(self) -> tuple:
        """The eight function addresses, in order (ints)."""

class LlamaContext:
    """
    One llama.cpp context, ready for batched constrained beam search.

    LlamaContext(api, ctx, n_ctx, n_seq_max, n_batch, n_vocab, prefix_cache=True)
    api: a LlamaApi; ctx: the address of a llama_context created with a unified KV cache, which the
    caller frees after the last call; n_ctx, n_seq_max, n_batch, n_vocab: its limits; prefix_cache:
    keep the prompt prefix the requests share (set_prefix_stems) in the KV cache between calls, under
    the last sequence id. Everything is checked once, here. One call at a time: a second thread
    calling while a search runs gets InvalidArgumentError.
    """

    def __init__(self, api: LlamaApi, ctx: int, n_ctx: int, n_seq_max: int, n_batch: int, n_vocab: int, prefix_cache: bool = True) -> None: ...

    def search(self, trie: SidTrie, token_table: object, prompts: object, requests: object, record: bool = False, delta: SidTrie | None = None) -> tuple:
        """
        Batched constrained beam search on this context.

        search(trie, token_table, prompts, requests, record=False, delta=None)
          -> (results, stats, schedule or None)
        prompts: one list of token ids per request; trie, token_table, requests, delta: as for BeamSearch
        (token_table a TokenTable, or an array it is made from). The whole search, prompt decode and every
        SID level, runs in C++ with the GIL released. record: also return the LlamaSchedule of llama.cpp
        operations, for replay().
        """

    def search_spaces(self, spaces: object, space_of: object, prompts: object, requests: object, record: bool = False) -> tuple:
        """
        Batched constrained beam search over several search spaces.

        search_spaces(spaces, space_of, prompts, requests, record=False)
          -> (results, stats, schedule or None)
        spaces: a list of (trie, token_table, delta or None), e.g. one per SID view of a bundle; space_of:
        for each request, the index of the space it is searched in. Requests of different spaces share
        the decode calls (all the views of a request cost one pass over the model's levels, not one per
        view); each answer is the one search() in that space alone gives. The rest as for search().
        """

    def replay(self, schedule: LlamaSchedule) -> dict:
        """
        Replay a recorded schedule: the same decode calls and KV operations, no search (the
        latency floor). A schedule recorded with the prefix cache replays from the prefix it
        started from.
        """

    def set_prefix_stems(self, stems: Sequence[Sequence[int]]) -> None:
        """
        The prompt prefixes (token-id lists) worth keeping: the prefix cache then keeps,
        per search, the longest one every prompt starts with. No-op without the cache.
        """

    @property
    def api(self) -> LlamaApi:
        """The libllama functions this context calls (a LlamaApi)."""

    @api.setter
    def api(self, arg: LlamaApi, /) -> None: ...

    @property
    def n_ctx(self) -> int:
        """KV cells."""

    @property
    def n_seq_max(self) -> int:
        """Sequences (the prefix cache, if any, reserves the last one)."""

    @property
    def n_batch(self) -> int:
        """Tokens one decode call may take."""

    @property
    def n_vocab(self) -> int:
        """Length of a logits row."""

    @property
    def prefix_cache(self) -> bool:
        """Whether the context keeps a shared prompt prefix between calls."""

    @property
    def prefix_stems(self) -> list[list[int]]:
        """The prefixes worth keeping (lists of token ids)."""

    @property
    def prefix_tokens(self) -> list[int]:
        """
        The prompt prefix the KV cache holds now (a list of token ids; empty: none).
        """
