// genrec-lite: batched constrained beam search over llama.cpp.
//
// For a batch of requests (prompt tokens + search settings) on one llama.cpp context:
//   1. all prompts are decoded in one call, one sequence each, logits of their last token only;
//   2. each SID level is one BeamSearch::step over those logits, then one decode call that feeds
//      the chosen SID token of every beam of every request (one sequence per beam).
// Beam reordering works on sequence ids in the context's unified KV cache: a beam whose prefix
// has no continuation is removed; the first child of a beam takes over its sequence, the other
// children get a copy (llama_memory_seq_cp shares the cells, it does not copy tensors).
// Requests are processed in groups that fit the context's sequence and cell limits.
//
// Prompt-prefix reuse (optional, one LlamaPrefixCache per context): the prompts of a bundle begin
// with the same template text (the cache's stems). A stem's KV cells stay in the context between
// calls under a reserved sequence id (n_seq_max - 1); every request of a call whose prompts all
// start with that stem shares them (seq_cp) and decodes only the rest of its prompt. A stem is
// decoded on its own batch from an empty context, never inside a request's batch: its cells then
// hold the same values whatever the context ran before, and an answer does not depend on which
// context served it or in what order (a cache keyed to the previous prompt flipped near-ties).
//
// The context must have been created with a unified KV cache and limits that the caller reports
// in LlamaContextInfo. A context is not thread-safe: one search per context at a time (the
// Python runtime keeps a pool of contexts over one shared model).
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "genrec/beam_search.h"
#include "genrec/llama_api.h"
#include "genrec/sid_trie.h"

namespace genrec {

struct LlamaContextInfo {
  llama::context* ctx = nullptr;
  int64_t n_ctx = 0;      // KV cells
  int64_t n_seq_max = 0;  // sequences
  int64_t n_batch = 0;    // tokens one decode call may take
  int64_t n_vocab = 0;    // length of a logits row
};

struct LlamaSearchStats {
  double total_s = 0;   // wall time of the whole call
  double decode_s = 0;  // inside llama_decode (the model forward)
  int64_t decode_calls = 0;
  int64_t decoded_tokens = 0;
  int64_t groups = 0;
};

// The prompt prefix a context keeps in its KV cache under the reserved sequence (positions
// 0..tokens.size()-1). `stems` are the prefixes worth keeping: the template text every prompt of
// one kind starts with, before the history. A stem is decoded on its own (never as part of a
// request's prompt), and a prompt reuses the longest stem it starts with, so a request's answer
// does not depend on what the context ran before: the same request gives the same bits, cached or
// not. Owned by whoever owns the context; used by one search at a time.
struct LlamaPrefixCache {
  std::vector<std::vector<int32_t>> stems;
  std::vector<int32_t> tokens;  // the stem held now (empty: none)
};

// The decode/KV operations a search issued, to replay them without the search (the "floor" of
// the latency benchmark: what the model alone costs on the same token schedule).
struct LlamaSchedule {
  enum Kind : int32_t { kClear = 0, kDecode = 1, kSeqRm = 2, kSeqCp = 3, kSeqKeep = 4 };
  struct Op {
    Kind kind;
    int32_t a = 0, b = 0;        // kSeqRm / kSeqKeep: a = seq; kSeqCp: a = src, b = dst
    int32_t p0 = -1, p1 = -1;    // kSeqRm / kSeqCp: position range [p0, p1) (-1: open)
    int64_t begin = 0, end = 0;  // kDecode: range in the token arrays
  };
  std::vector<Op> ops;
  std::vector<int32_t> tokens, positions, seqs;
  std::vector<int8_t> logits;
  // With a prefix cache: the cached tokens the schedule starts from and those it leaves behind.
  bool uses_prefix = false;
  std::vector<int32_t> prefix_before, prefix_after;
};

/// Where one request is searched: a trie (with the catalog's delta trie beside it, or null) and
/// the token table of its SID tokens. A multi-view bundle has one space per SID view; searching
/// all the views of a request in one call puts them in the same decode calls (the model's cost
/// per call is partly fixed, so K views in one call cost less than K calls).
struct SearchSpace {
  const SidTrie* trie = nullptr;
  const SidTrie* delta = nullptr;
  const SidTokenTable* tokens = nullptr;
};

/// Runs the search. prompts[i] are the token ids of request i. Throws InvalidArgument for a
/// request that cannot fit the context, ModelOutputError (numbering request i as i) for NaN or
/// +inf logits, Error when llama_decode fails; after any error the context is cleared (and its
/// prefix cache emptied), so the next call runs on it as on a fresh one. If record is given, the
/// schedule of llama.cpp operations is appended to it. With a prefix cache (the context's own,
/// n_seq_max >= 2), shared prompt prefixes are reused across calls as described above. delta:
/// the catalog's delta trie beside trie, or null (BeamSearch).
std::vector<SearchResult> llama_beam_search(const llama::Api& api, const LlamaContextInfo& info,
                                            const SidTrie& trie, const SidTrie* delta,
                                            const SidTokenTable& tokens,
                                            const std::vector<std::vector<int32_t>>& prompts,
                                            const std::vector<SearchRequest>& requests,
                                            LlamaSearchStats* stats = nullptr,
                                            LlamaSchedule* record = nullptr,
                                            LlamaPrefixCache* cache = nullptr);

/// The same over several search spaces: request i is searched in spaces[space_of[i]]. Requests of
/// different spaces share the context's groups and decode calls; each request's answer is the
/// one a search of its space alone gives, up to llama.cpp's float rounding, which depends on the
/// batch's shape as for any batch (the spaces' levels may differ). Throws
/// InvalidArgument for a space without trie or table, or a space index out of range.
std::vector<SearchResult> llama_beam_search(const llama::Api& api, const LlamaContextInfo& info,
                                            const std::vector<SearchSpace>& spaces,
                                            const std::vector<int32_t>& space_of,
                                            const std::vector<std::vector<int32_t>>& prompts,
                                            const std::vector<SearchRequest>& requests,
                                            LlamaSearchStats* stats = nullptr,
                                            LlamaSchedule* record = nullptr,
                                            LlamaPrefixCache* cache = nullptr);

/// Replays a recorded schedule: the same decode calls and KV operations, no search. A schedule
/// recorded with a prefix cache needs the context's cache; its starting prefix is restored first
/// (outside the timed part) when the context holds another one.
void llama_replay(const llama::Api& api, const LlamaContextInfo& info, const LlamaSchedule& schedule,
                  LlamaSearchStats* stats = nullptr, LlamaPrefixCache* cache = nullptr);


/// One llama.cpp context with what every search on it needs, checked once when it is made: the
/// libllama functions, the context's limits and its prompt-prefix cache (kept when stems are set).
/// One call at a time: a second thread calling while a search runs gets InvalidArgument rather
/// than a data race (the Python runtime pools contexts, so serving never sees it). The llama.cpp
/// context itself is owned by the caller, which frees it after the last call.
class LlamaContext {
 public:
  /// Throws InvalidArgument for an incomplete api, a null context or limits that cannot hold a
  /// search (n_seq_max >= 2 with a prefix cache: it reserves the last sequence).
  LlamaContext(const llama::Api& api, const LlamaContextInfo& info, bool prefix_cache);

  /// llama_beam_search on this context (with its prefix cache, if it has one).
  std::vector<SearchResult> search(const SidTrie& trie, const SidTrie* delta, const SidTokenTable& tokens,
                                   const std::vector<std::vector<int32_t>>& prompts,
                                   const std::vector<SearchRequest>& requests,
                                   LlamaSearchStats* stats = nullptr, LlamaSchedule* record = nullptr);
  /// The same over several search spaces (see llama_beam_search).
  std::vector<SearchResult> search(const std::vector<SearchSpace>& spaces,
                                   const std::vector<int32_t>& space_of,
                                   const std::vector<std::vector<int32_t>>& prompts,
                                   const std::vector<SearchRequest>& requests,
                                   LlamaSearchStats* stats = nullptr, LlamaSchedule* record = nullptr);
  /// llama_replay on this context.
  void replay(const LlamaSchedule& schedule, LlamaSearchStats* stats = nullptr);
  /// The prompt prefixes worth keeping (LlamaPrefixCache::stems); drops the cached one. No-op
  /// without a prefix cache.
  void set_stems(std::vector<std::vector<int32_t>> stems);
  /// Other addresses of the same functions (a test's fault-injecting llama_decode, say).
  void set_api(const llama::Api& api);

  const llama::Api& api() const noexcept { return api_; }
  const LlamaContextInfo& info() const noexcept { return info_; }
  bool has_prefix_cache() const noexcept { return has_cache_; }
  std::vector<std::vector<int32_t>> stems() const;
  std::vector<int32_t> cached_tokens() const;  // the stem the context holds now (empty: none)

 private:
  std::unique_lock<std::mutex> claim() const;
  llama::Api api_;
  LlamaContextInfo info_;
  bool has_cache_;
  LlamaPrefixCache cache_;
  mutable std::mutex busy_;
};

}  // namespace genrec
