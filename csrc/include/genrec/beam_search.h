// genrec-lite: batched constrained beam search over semantic IDs, independent of the model.
//
// The caller runs the model; this class decides what to feed it. Protocol, for level 0..L-1:
//   rows()        how many logit rows step() expects (level 0: one per request, the logits at the
//                 prompt's last position, in request order);
//   row_request() the request of each row (rows are grouped by request, in request order, and
//                 by rank within a request, best first);
//   step(logits)  scores that level: for each row, the logits of the SID tokens of the codes the
//                 trie allows after the row's prefix are log-softmaxed (in double) over those
//                 codes only; a candidate's score is its row's score plus that log-probability;
//                 each request keeps its `beam` best candidates over all its rows and codes
//                 (ties: the lexicographically smaller SID first); rows with no allowed code and
//                 candidates whose logit is -inf are dropped (a row whose allowed logits are all
//                 -inf is a dead beam). A NaN or +inf among a row's allowed logits throws
//                 ModelOutputError (every row is checked, also those that cannot place a
//                 candidate). For each kept candidate the raw log-probability is also carried:
//                 its row's plus logit[token] - logsumexp(the whole logits row), i.e. the model's
//                 own probability of the SID, not renormalised over the allowed codes, so it does
//                 not move when other items are paused or filtered. It is computed once per row
//                 that keeps a candidate (a pass over the row's `vocab` logits), and a NaN or +inf
//                 anywhere in such a row throws ModelOutputError too;
//   parents()/tokens()  after a step below the last level: new row j extends input row
//                 parents()[j] by token tokens()[j] (the caller extends its KV cache so);
//   results()     after the last level: each request's final beams, best first, expanded to
//                 their items (a SID shared by several items gives them in the trie's build-row
//                 order), first k kept, each with its beam's score and raw log-probability.
// This is the rule of the PyTorch reference decoder (genrec_lite.train.decode). A request with no
// valid continuation has no rows from then on and an empty result. A step that throws
// ModelOutputError names the first bad logit in request order (within a request: the allowed
// logits of its rows in row and code order, then the rows of its kept candidates, best first).
//
// The logsumexp of a whole row (log_sum_exp_row) runs in float32 SIMD: m = the row's maximum,
// e_j = exp(x_j - m) by a float32 kernel (range reduction by ln2, Taylor series to degree 7,
// each step one IEEE operation or FMA), the e_j summed in double in 8 lanes (j mod 8, lanes
// combined pairwise), lse = m + log(sum); the tests repeat it in numpy bit for bit, and it is
// within 1e-6 of the exact float64 value.
//
// Filters act inside the walk: a code is allowed only if at least one item below it is active
// (the trie's mask), in the request's allow list (when it has one) and not in its deny list, so a
// filtered request still returns k items when k eligible items exist and beam >= k. Ids in
// allow/deny that the trie does not hold are ignored (a catalog may list ads the bundle lacks).
//
// Cost: step() reads only the SID columns of each row (the children of the row's trie node),
// keeps a bounded heap per request, only checks rows that can no longer place a candidate, reads
// whole rows only for the rows that keep a candidate (at most beam per request and level), and
// reuses its buffers (no allocation once they have grown); a filter costs O(|list| x (log n + L)) once at
// construction, then O(log |list|) per row and step.
//
// A catalog may be split in two tries, a large base and a small delta holding the items added
// since the base was built (so that adding an item copies the delta, not the catalog). The search
// then walks both at once: a row's prefix is a pair of nodes (either may be absent), its children
// are the union of both nodes' children merged by code, a child's active count is the sum, and a
// leaf gives the base's items, then the delta's. The result is exactly that of one search over a
// trie holding both (SidTrie's derive of base with the delta's rows), ties included. The two must
// have the same levels and code ranges and hold different items.
//
// Thread safety: a BeamSearch is one search, used by one thread at a time; any number of them may
// run at once on one trie, also while another thread changes its active mask. Such a change made
// during a search may or may not be seen by it, but the search never crashes and never returns
// an item that was inactive when its leaf was read. The tries must outlive the search.
#pragma once

#include <cstdint>
#include <vector>

#include "genrec/errors.h"
#include "genrec/sid_trie.h"

namespace genrec {

/// Token id of (level, code): ids[level * max_size + code]; -1 = none.
struct SidTokenTable {
  int levels = 0;
  int max_size = 0;
  std::vector<int32_t> ids;
  /// The token of (level, code), -1 if the table has none (code outside 0..max_size-1 included).
  int32_t token(int level, int32_t code) const noexcept {
    return code >= 0 && code < max_size ? ids[static_cast<size_t>(level) * static_cast<size_t>(max_size) +
                                              static_cast<size_t>(code)]
                                        : -1;
  }
};

struct SearchRequest {
  int k = 10;
  int beam = 20;
  bool has_allow = false;
  std::vector<int64_t> allow;  // only these items (if has_allow)
  std::vector<int64_t> deny;   // never these items
};

struct SearchResult {
  std::vector<int64_t> items;  // <= k items, best first
  std::vector<float> scores;    // log-probability renormalised over the allowed codes per level
  std::vector<float> logprobs;  // the model's raw log-probability of the item's SID
  std::vector<int32_t> sids;    // final beams (n x levels), best first
  std::vector<float> sid_scores;
  std::vector<float> sid_logprobs;
};

/// log(sum_j exp(row[j])) over j < n, as described above; NaN when the row holds a NaN or +inf.
double log_sum_exp_row(const float* row, int64_t n) noexcept;

class BeamSearch {
 public:
  /// Throws InvalidArgument for a token table whose shape does not match the trie, or a request
  /// with k < 1 or beam < 1. Copies what it needs of the table; keeps a reference to trie.
  BeamSearch(const SidTrie& trie, const SidTokenTable& tokens, std::vector<SearchRequest> requests)
      : BeamSearch(trie, nullptr, tokens, std::move(requests)) {}
  /// The same over base + delta (see above; delta may be null). Throws InvalidArgument when the
  /// delta's levels or code ranges differ from the base's.
  BeamSearch(const SidTrie& trie, const SidTrie* delta, const SidTokenTable& tokens,
             std::vector<SearchRequest> requests);

  /// The SID level the next step() scores (levels() once done).
  int level() const noexcept { return level_; }
  int levels() const noexcept { return levels_; }
  bool done() const noexcept { return level_ == levels_; }
  int64_t n_requests() const noexcept { return static_cast<int64_t>(requests_.size()); }
  /// Rows step() expects next.
  int64_t rows() const noexcept { return static_cast<int64_t>(node_.size()); }
  /// Request index of each row.
  const std::vector<int32_t>& row_request() const noexcept { return row_request_; }
  /// Row score so far (the summed log-probabilities of the row's prefix).
  const std::vector<double>& row_scores() const noexcept { return score_; }
  /// Row raw log-probability so far (summed over the prefix's levels, whole-row softmax).
  const std::vector<double>& row_logprobs() const noexcept { return raw_; }

  /// Scores one level. logits: rows() rows, row i at logits + i * row_stride, each a full logit
  /// row whose SID token ids must be < row_stride. May be null when rows() is 0. Throws
  /// InvalidArgument after the last level, or when an allowed code has no token in the table or
  /// one outside the row (the table is checked only where read); ModelOutputError for a NaN or
  /// +inf logit (see above). The search is unchanged after a throw.
  void step(const float* logits, int64_t row_stride);
  /// Same, for rows of vocab logits laid out row_stride >= vocab floats apart (a strided view).
  void step(const float* logits, int64_t row_stride, int64_t vocab);

  /// After a step: for each new row, the input row it extends ...
  const std::vector<int32_t>& parents() const noexcept { return parents_; }
  /// ... and the SID token id to feed for it. (After the last step they describe the final
  /// beams; there is nothing more to feed.)
  const std::vector<int32_t>& tokens() const noexcept { return tokens_; }

  /// Per request, after the last level (throws InvalidArgument before): items (<= k, best first,
  /// active and passing the filters when read), their scores and raw log-probabilities, and the
  /// final beams' SIDs, scores and raw log-probabilities.
  std::vector<SearchResult> results() const;

 private:
  // An allow or deny list as seen by the trie: the listed items' positions (sorted; positions are
  // in trie order, so the listed items below any node form a contiguous run of them) and, per
  // depth, the nodes that have listed items below them, each with its run (CSR).
  struct Overlay {
    bool allow = false;                       // true: only the listed items; false: all but them
    std::vector<uint32_t> pos;                // sorted positions of the listed items the trie has
    std::vector<std::vector<uint32_t>> node;  // [depth] sorted nodes with listed items below
    std::vector<std::vector<uint32_t>> run;   // [depth] node[d][j]'s items: pos[run[d][j] .. run[d][j+1])
  };
  struct Candidate {
    double score;
    uint32_t node;   // child node at depth level_ + 1 in the base (kNoNode: none); within one
    uint32_t dnode;  // request (node, dnode) pairs are unique; the same in the delta
    int32_t row;
    int32_t code;
  };

  static void build_overlay(const SidTrie& t, const SearchRequest& q, Overlay& ov);
  // The children of node v (depth d) of t that the filter allows, into out; returns how many.
  static size_t gather_side(const SidTrie& t, const Overlay* ov, int d, uint32_t v, uint32_t* out);
  // Children of row i's prefix that the request's filter allows, into child_buf_ / dchild_buf_
  // (base and delta node, kNoNode where absent) and code_buf_, in code order; returns how many.
  size_t gather(size_t i, const Overlay* ov, const Overlay* dov);
  // Whether a's prefix (depth level_ + 1) is lexicographically before b's.
  bool prefix_before(const Candidate& a, const Candidate& b) const;
  bool ranks_first(double sa, const Candidate& a, double sb, const Candidate& b) const;
  // The codes of a prefix at depth d (d codes into out), from whichever trie holds it.
  void prefix_codes(int d, uint32_t node, uint32_t dnode, int32_t* out) const;
  // Their tokens and logits into tok_buf_ / logit_buf_; returns the largest logit (NaN if any is
  // NaN). Throws for a token id outside the row.
  double load_logits(size_t n, const float* row, int64_t vocab);
  [[noreturn]] static void bad_token(int level, int32_t code, int32_t tok, int64_t vocab);
  // Throws ModelOutputError for the first NaN / +inf of the n loaded logits of request r's row.
  [[noreturn]] void bad_allowed_logit(int32_t r, size_t n) const;
  // Rows [begin, end) of request r that cannot place a candidate: only checked for bad logits.
  void check_rows(int32_t r, size_t begin, size_t end, const float* logits, int64_t row_stride,
                  int64_t vocab, const Overlay* ov, const Overlay* dov);
  void select_request(int32_t r, size_t begin, size_t end, const float* logits, int64_t row_stride,
                      int64_t vocab);
  static void expand_items(const SidTrie& t, int levels, uint32_t leaf, const Overlay* ov, float score,
                           float logprob, size_t k, SearchResult& out);

  const SidTrie& trie_;
  const SidTrie* delta_;  // null: the base alone
  std::vector<SearchRequest> requests_;
  std::vector<Overlay> overlays_, doverlays_;  // the delta's overlay of a filter beside the base's
  std::vector<int32_t> overlay_of_;  // per request: index into overlays_, -1 for none
  int levels_ = 0;
  int level_ = 0;

  // Current rows: request, trie node at depth level_ (base and delta), score, raw log-probability.
  std::vector<int32_t> row_request_;
  std::vector<uint32_t> node_, dnode_;
  std::vector<double> score_, raw_;
  std::vector<int32_t> parents_, tokens_;
  // The next level, built by step() and swapped in at its end (so a throwing step changes nothing).
  std::vector<int32_t> next_request_, next_parents_, next_tokens_;
  std::vector<uint32_t> next_node_, next_dnode_;
  std::vector<double> next_score_, next_raw_;
  std::vector<double> row_lse_;  // whole-row logsumexp of a request's rows (NaN: not computed)
  // Scratch reused across rows and steps.
  std::vector<uint32_t> child_buf_, dchild_buf_, side_buf_;
  std::vector<int32_t> code_buf_;
  std::vector<int32_t> tok_buf_;
  std::vector<double> logit_buf_, exp_buf_;
  // Token of (level, code) at tok_[tok_begin_[level] + code] for code < tok_len_[level] (-1 or
  // beyond: none), and per level the smallest / largest token id (-1: none).
  std::vector<int32_t> tok_;
  std::vector<size_t> tok_begin_;
  std::vector<int32_t> tok_len_;
  std::vector<int32_t> tok_lo_, tok_hi_;
  std::vector<Candidate> heap_;
};

}  // namespace genrec
