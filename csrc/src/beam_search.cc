// genrec-lite: batched constrained beam search over semantic IDs. See genrec/beam_search.h.
#include "genrec/beam_search.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <string>
#include <utility>

namespace genrec {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Heap order: "a ranks before b" (higher score; on equal scores the smaller node, i.e. the
// lexicographically smaller SID, since nodes of a depth are numbered in prefix order).
inline bool ranks_before(double sa, uint32_t na, double sb, uint32_t nb) noexcept {
  return sa > sb || (sa == sb && na < nb);
}

}  // namespace

BeamSearch::BeamSearch(const SidTrie& trie, const SidTokenTable& tokens, std::vector<SearchRequest> requests)
    : trie_(trie), table_(tokens), requests_(std::move(requests)), levels_(trie.levels()) {
  if (tokens.levels != levels_) {
    throw InvalidArgument("the token table has " + std::to_string(tokens.levels) +
                          " levels; expected " + std::to_string(levels_) + " (the trie's levels)");
  }
  if (tokens.max_size < 0 ||
      tokens.ids.size() != static_cast<size_t>(tokens.levels) * static_cast<size_t>(tokens.max_size)) {
    throw InvalidArgument("the token table has " + std::to_string(tokens.ids.size()) + " ids and max_size " +
                          std::to_string(tokens.max_size) + "; expected levels x max_size = " +
                          std::to_string(tokens.levels) + " x " + std::to_string(tokens.max_size) + " ids");
  }
  if (requests_.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw InvalidArgument("got " + std::to_string(requests_.size()) + " requests; expected fewer than 2^31");
  }
  overlay_of_.assign(requests_.size(), -1);
  size_t total_beam = 0;
  for (size_t r = 0; r < requests_.size(); ++r) {
    const SearchRequest& q = requests_[r];
    if (q.k < 1) {
      throw InvalidArgument("request " + std::to_string(r) + " has k=" + std::to_string(q.k) + "; expected k >= 1");
    }
    if (q.beam < 1) {
      throw InvalidArgument("request " + std::to_string(r) + " has beam=" + std::to_string(q.beam) +
                            "; expected beam >= 1");
    }
    total_beam += static_cast<size_t>(q.beam);
    if (!q.has_allow && q.deny.empty()) continue;
    Overlay ov;
    build_overlay(q, ov);
    // A deny list of ids the trie lacks filters nothing: keep the unfiltered fast path.
    if (!ov.allow && ov.pos.empty()) continue;
    overlay_of_[r] = static_cast<int32_t>(overlays_.size());
    overlays_.push_back(std::move(ov));
  }

  // Level 0: one row per request at the root.
  const size_t n = requests_.size();
  row_request_.resize(n);
  for (size_t r = 0; r < n; ++r) row_request_[r] = static_cast<int32_t>(r);
  node_.assign(n, 0u);
  score_.assign(n, 0.0);
  // Room for the widest level up front, so the steps themselves do not allocate.
  const size_t cap = std::min<size_t>(total_beam, size_t{1} << 16);
  for (auto* v : {&next_request_, &next_parents_, &next_tokens_, &row_request_, &parents_, &tokens_}) v->reserve(cap);
  next_node_.reserve(cap);
  node_.reserve(cap);
  next_score_.reserve(cap);
  score_.reserve(cap);
}

void BeamSearch::build_overlay(const SearchRequest& q, Overlay& ov) const {
  const int L = levels_;
  auto positions = [&](const std::vector<int64_t>& ids) {
    std::vector<uint32_t> p;
    p.reserve(ids.size());
    for (int64_t id : ids) {
      const uint32_t x = trie_.item_position(id);
      if (x != SidTrie::kNoNode) p.push_back(x);  // unknown ids are ignored (documented)
    }
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
    return p;
  };
  ov.allow = q.has_allow;
  if (q.has_allow) {
    std::vector<uint32_t> allow = positions(q.allow);
    if (!q.deny.empty()) {  // allow and deny together: the allowed items not denied
      const std::vector<uint32_t> deny = positions(q.deny);
      ov.pos.reserve(allow.size());
      std::set_difference(allow.begin(), allow.end(), deny.begin(), deny.end(), std::back_inserter(ov.pos));
    } else {
      ov.pos = std::move(allow);
    }
  } else {
    ov.pos = positions(q.deny);
  }
  ov.node.assign(static_cast<size_t>(L) + 1, {});
  ov.run.assign(static_cast<size_t>(L) + 1, {});
  // Node of each listed position at each depth; positions are sorted, so per depth the nodes are
  // non-decreasing and a node's positions are one run.
  std::vector<uint32_t> path(static_cast<size_t>(L) + 1);
  for (size_t j = 0; j < ov.pos.size(); ++j) {
    path[static_cast<size_t>(L)] = trie_.leaf_of_position(ov.pos[j]);
    for (int d = L; d > 1; --d) path[static_cast<size_t>(d - 1)] = trie_.node_parent(d, path[static_cast<size_t>(d)]);
    for (int d = 1; d <= L; ++d) {
      std::vector<uint32_t>& nodes = ov.node[static_cast<size_t>(d)];
      if (nodes.empty() || nodes.back() != path[static_cast<size_t>(d)]) {
        nodes.push_back(path[static_cast<size_t>(d)]);
        ov.run[static_cast<size_t>(d)].push_back(static_cast<uint32_t>(j));
      }
    }
  }
  for (int d = 1; d <= L; ++d) ov.run[static_cast<size_t>(d)].push_back(static_cast<uint32_t>(ov.pos.size()));
}

size_t BeamSearch::gather(size_t i, const Overlay* ov, const float* row, int64_t vocab) {
  const int d = level_;  // the row's node is at depth d; its children at d + 1
  const uint32_t v = node_[i];
  const uint32_t b = trie_.child_begin(d, v), e = trie_.child_begin(d, v + 1);
  if (child_buf_.size() < e - b) {  // grows to the widest node once, then reused
    child_buf_.resize(e - b);
    logit_buf_.resize(e - b);
  }
  size_t n = 0;
  auto take = [&](uint32_t u) {
    const int32_t code = trie_.node_code(d + 1, u);
    const int32_t tok = table_.token(d, code);
    if (tok < 0 || tok >= vocab) {
      throw InvalidArgument(tok < 0 ? "the token table has no token (" + std::to_string(tok) + ") for level " +
                                          std::to_string(d) + " code " + std::to_string(code) +
                                          ", which the trie holds"
                                    : "the SID token of level " + std::to_string(d) + " code " +
                                          std::to_string(code) + " has id " + std::to_string(tok) +
                                          "; expected 0 <= id < " + std::to_string(vocab) +
                                          " (the length of a logits row)");
    }
    child_buf_[n] = u;
    logit_buf_[n] = static_cast<double>(row[tok]);
    ++n;
  };
  if (ov == nullptr) {
    for (uint32_t u = b; u < e; ++u)
      if (trie_.node_active(d + 1, u) != 0) take(u);
    return n;
  }
  // The listed nodes among the children: a contiguous part of the depth's sorted node list.
  const std::vector<uint32_t>& nodes = ov->node[static_cast<size_t>(d + 1)];
  const std::vector<uint32_t>& run = ov->run[static_cast<size_t>(d + 1)];
  size_t j = static_cast<size_t>(std::lower_bound(nodes.begin(), nodes.end(), b) - nodes.begin());
  if (ov->allow) {  // only children with an active listed item below
    for (; j < nodes.size() && nodes[j] < e; ++j) {
      for (uint32_t x = run[j]; x < run[j + 1]; ++x) {
        if (trie_.active_at(ov->pos[x])) {
          take(nodes[j]);
          break;
        }
      }
    }
    return n;
  }
  for (uint32_t u = b; u < e; ++u) {  // deny: children with more active items than active denied ones
    const uint32_t active = trie_.node_active(d + 1, u);
    if (active == 0) {
      if (j < nodes.size() && nodes[j] == u) ++j;
      continue;
    }
    if (j < nodes.size() && nodes[j] == u) {
      const uint32_t listed = run[j + 1] - run[j];
      bool ok = active > listed;  // more active items than denied ones at all: no need to look
      if (!ok) {
        uint32_t denied_active = 0;
        for (uint32_t x = run[j]; x < run[j + 1]; ++x) denied_active += trie_.active_at(ov->pos[x]) ? 1u : 0u;
        ok = active > denied_active;
      }
      ++j;
      if (!ok) continue;
    }
    take(u);
  }
  return n;
}

void BeamSearch::select_request(int32_t r, size_t begin, size_t end, const float* logits, int64_t row_stride,
                                int64_t vocab) {
  const int32_t o = overlay_of_[static_cast<size_t>(r)];
  const Overlay* ov = o < 0 ? nullptr : &overlays_[static_cast<size_t>(o)];
  const size_t cap = static_cast<size_t>(requests_[static_cast<size_t>(r)].beam);
  // A heap of the best `cap` candidates with the worst on top.
  auto worse_first = [](const Candidate& a, const Candidate& b) {
    return ranks_before(a.score, a.node, b.score, b.node);
  };
  heap_.clear();
  for (size_t i = begin; i < end; ++i) {
    const float* row = logits + static_cast<int64_t>(i) * row_stride;
    const size_t n = gather(i, ov, row, vocab);
    if (n == 0) continue;  // a dead beam: nothing valid below its prefix
    // log-softmax over the allowed codes, in double, summed in code order
    double m = kNegInf;
    for (size_t j = 0; j < n; ++j) m = logit_buf_[j] > m ? logit_buf_[j] : m;
    if (!std::isfinite(m)) continue;  // all -inf, or +inf: no finite score (the reference drops them)
    double s = 0.0;
    for (size_t j = 0; j < n; ++j) s += std::exp(logit_buf_[j] - m);
    const double lse = m + std::log(s);
    const double base = score_[i];
    // The row's best candidate cannot enter a full heap: skip the row.
    if (heap_.size() == cap && base + (m - lse) < heap_.front().score) continue;
    for (size_t j = 0; j < n; ++j) {
      const double sc = base + (logit_buf_[j] - lse);
      if (!(sc > kNegInf)) continue;  // -inf or NaN
      const uint32_t u = child_buf_[j];
      if (heap_.size() < cap) {
        heap_.push_back({sc, u, static_cast<int32_t>(i)});
        std::push_heap(heap_.begin(), heap_.end(), worse_first);
      } else if (ranks_before(sc, u, heap_.front().score, heap_.front().node)) {
        std::pop_heap(heap_.begin(), heap_.end(), worse_first);
        heap_.back() = {sc, u, static_cast<int32_t>(i)};
        std::push_heap(heap_.begin(), heap_.end(), worse_first);
      }
    }
  }
  std::sort_heap(heap_.begin(), heap_.end(), worse_first);  // best first
  const int d = level_ + 1;
  for (const Candidate& c : heap_) {
    next_request_.push_back(r);
    next_node_.push_back(c.node);
    next_score_.push_back(c.score);
    next_parents_.push_back(c.row);
    next_tokens_.push_back(table_.token(level_, trie_.node_code(d, c.node)));
  }
}

void BeamSearch::step(const float* logits, int64_t row_stride) { step(logits, row_stride, row_stride); }

void BeamSearch::step(const float* logits, int64_t row_stride, int64_t vocab) {
  if (done()) {
    throw InvalidArgument("step() called at level " + std::to_string(level_) + " of " + std::to_string(levels_) +
                          "; the search is done (read results())");
  }
  const size_t n_rows = node_.size();
  if (n_rows > 0) {
    if (logits == nullptr) throw InvalidArgument("logits is null; expected " + std::to_string(n_rows) + " rows");
    if (vocab < 1 || row_stride < vocab) {
      throw InvalidArgument("logits rows have " + std::to_string(vocab) + " values " + std::to_string(row_stride) +
                            " apart; expected 1 <= values <= row stride");
    }
  }
  next_request_.clear();
  next_node_.clear();
  next_score_.clear();
  next_parents_.clear();
  next_tokens_.clear();
  for (size_t i = 0; i < n_rows;) {  // rows are grouped by request
    const int32_t r = row_request_[i];
    size_t end = i + 1;
    while (end < n_rows && row_request_[end] == r) ++end;
    select_request(r, i, end, logits, row_stride, vocab);
    i = end;
  }
  row_request_.swap(next_request_);
  node_.swap(next_node_);
  score_.swap(next_score_);
  parents_.swap(next_parents_);
  tokens_.swap(next_tokens_);
  ++level_;
}

void BeamSearch::expand_items(uint32_t leaf, const Overlay* ov, float score, size_t k, SearchResult& out) const {
  // Items of different leaves are different, and a request's final beams are different leaves,
  // so the expansion needs no duplicate check.
  const int L = levels_;
  auto add = [&](uint32_t p) {
    out.items.push_back(trie_.item_at(p));
    out.scores.push_back(score);
  };
  const uint32_t b = trie_.child_begin(L, leaf), e = trie_.child_begin(L, leaf + 1);
  if (ov == nullptr) {
    for (uint32_t p = b; p < e && out.items.size() < k; ++p)
      if (trie_.active_at(p)) add(p);
    return;
  }
  const std::vector<uint32_t>& nodes = ov->node[static_cast<size_t>(L)];
  const auto it = std::lower_bound(nodes.begin(), nodes.end(), leaf);
  const bool listed = it != nodes.end() && *it == leaf;
  const size_t j = static_cast<size_t>(it - nodes.begin());
  if (ov->allow) {  // the leaf's allowed items, in position (= build-row) order
    if (!listed) return;
    const std::vector<uint32_t>& run = ov->run[static_cast<size_t>(L)];
    for (uint32_t x = run[j]; x < run[j + 1] && out.items.size() < k; ++x)
      if (trie_.active_at(ov->pos[x])) add(ov->pos[x]);
    return;
  }
  // deny: walk the leaf's positions and its denied run side by side
  uint32_t x = 0, x_end = 0;
  if (listed) {
    x = ov->run[static_cast<size_t>(L)][j];
    x_end = ov->run[static_cast<size_t>(L)][j + 1];
  }
  for (uint32_t p = b; p < e && out.items.size() < k; ++p) {
    while (x < x_end && ov->pos[x] < p) ++x;
    if (x < x_end && ov->pos[x] == p) continue;
    if (trie_.active_at(p)) add(p);
  }
}

std::vector<SearchResult> BeamSearch::results() const {
  if (!done()) {
    throw InvalidArgument("results() called at level " + std::to_string(level_) + " of " +
                          std::to_string(levels_) + "; expected a finished search (step() every level)");
  }
  const int L = levels_;
  std::vector<SearchResult> out(requests_.size());
  for (size_t i = 0; i < node_.size(); ++i) {
    const size_t r = static_cast<size_t>(row_request_[i]);
    SearchResult& res = out[r];
    const size_t at = res.sids.size();
    res.sids.resize(at + static_cast<size_t>(L));
    uint32_t v = node_[i];
    for (int d = L; d >= 1; --d) {
      res.sids[at + static_cast<size_t>(d - 1)] = trie_.node_code(d, v);
      v = trie_.node_parent(d, v);
    }
    const float sc = static_cast<float>(score_[i]);
    res.sid_scores.push_back(sc);
    const size_t k = static_cast<size_t>(requests_[r].k);
    if (res.items.size() < k) {
      const int32_t o = overlay_of_[r];
      expand_items(node_[i], o < 0 ? nullptr : &overlays_[static_cast<size_t>(o)], sc, k, res);
    }
  }
  return out;
}

}  // namespace genrec
