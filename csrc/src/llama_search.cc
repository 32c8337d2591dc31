// genrec-lite: batched constrained beam search over llama.cpp (see llama_search.h).
#include "genrec/llama_search.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>

#include "genrec/errors.h"

namespace genrec {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Reusable llama_batch storage: one sequence id per token.
class Batch {
 public:
  void clear() {
    tokens_.clear();
    positions_.clear();
    seqs_.clear();
    logits_.clear();
  }
  void add(int32_t token, int32_t pos, int32_t seq, bool logits) {
    tokens_.push_back(token);
    positions_.push_back(pos);
    seqs_.push_back(seq);
    logits_.push_back(logits ? 1 : 0);
  }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  const std::vector<int32_t>& positions() const { return positions_; }
  const std::vector<int32_t>& seqs() const { return seqs_; }
  const std::vector<int8_t>& logits() const { return logits_; }

  llama::batch view() {
    const size_t n = tokens_.size();
    n_seq_.assign(n, 1);
    seq_ptr_.resize(n);
    for (size_t i = 0; i < n; ++i) seq_ptr_[i] = &seqs_[i];
    llama::batch b{};
    b.n_tokens = static_cast<int32_t>(n);
    b.tokens = tokens_.data();
    b.embd = nullptr;
    b.positions = positions_.data();
    b.n_seq_id = n_seq_.data();
    b.seq_ids = seq_ptr_.data();
    b.logits = logits_.data();
    return b;
  }

 private:
  std::vector<int32_t> tokens_, positions_, seqs_, n_seq_;
  std::vector<int8_t> logits_;
  std::vector<int32_t*> seq_ptr_;
};

// Wraps the llama.cpp calls: timing, error checks, optional recording.
class Runner {
 public:
  Runner(const llama::Api& api, const LlamaContextInfo& info, LlamaSearchStats* stats,
         LlamaSchedule* record)
      : api_(api), info_(info), stats_(stats), record_(record) {
    if (!api.complete()) throw InvalidArgument("the llama.cpp function table is incomplete");
    if (info.ctx == nullptr) throw InvalidArgument("the llama.cpp context is null");
    if (info.n_vocab <= 0 || info.n_ctx <= 0 || info.n_seq_max <= 0 || info.n_batch <= 0)
      throw InvalidArgument("llama.cpp context limits must be positive (n_vocab " +
                            std::to_string(info.n_vocab) + ", n_ctx " + std::to_string(info.n_ctx) +
                            ", n_seq_max " + std::to_string(info.n_seq_max) + ", n_batch " +
                            std::to_string(info.n_batch) + ")");
    mem_ = api.get_memory(info.ctx);
    if (mem_ == nullptr) throw Error("the llama.cpp context has no KV memory");
  }

  void clear() {
    // Metadata only: freed cells are overwritten before they are read, and wiping the tensors
    // would cost a memset of the whole KV buffer per call (milliseconds for small models).
    api_.memory_clear(mem_, false);
    if (record_) record_->ops.push_back({LlamaSchedule::kClear});
  }
  void seq_rm(int32_t seq, int32_t p0 = -1, int32_t p1 = -1) {
    api_.memory_seq_rm(mem_, seq, p0, p1);
    if (record_) record_->ops.push_back({LlamaSchedule::kSeqRm, seq, 0, p0, p1});
  }
  void seq_cp(int32_t src, int32_t dst, int32_t p0 = -1, int32_t p1 = -1) {
    api_.memory_seq_cp(mem_, src, dst, p0, p1);
    if (record_) record_->ops.push_back({LlamaSchedule::kSeqCp, src, dst, p0, p1});
  }
  // Frees every cell but those of seq (and drops other sequences' tags from its cells).
  void seq_keep(int32_t seq) {
    api_.memory_seq_keep(mem_, seq);
    if (record_) record_->ops.push_back({LlamaSchedule::kSeqKeep, seq});
  }

  // Decodes the batch; returns the logits rows of its flagged tokens, in batch order, as one
  // contiguous (rows x n_vocab) block (null when no token is flagged).
  const float* decode(Batch& batch) {
    if (record_) {
      LlamaSchedule::Op op{LlamaSchedule::kDecode};
      op.begin = static_cast<int64_t>(record_->tokens.size());
      auto append = [](auto& dst, const auto& src) { dst.insert(dst.end(), src.begin(), src.end()); };
      append(record_->tokens, batch.tokens());
      append(record_->positions, batch.positions());
      append(record_->seqs, batch.seqs());
      append(record_->logits, batch.logits());
      op.end = static_cast<int64_t>(record_->tokens.size());
      record_->ops.push_back(op);
    }
    out_index_.clear();
    const auto& flags = batch.logits();
    for (size_t i = 0; i < flags.size(); ++i)
      if (flags[i]) out_index_.push_back(static_cast<int32_t>(i));
    const llama::batch b = batch.view();
    const auto t = Clock::now();
    const int32_t rc = api_.decode(info_.ctx, b);
    if (stats_) {
      stats_->decode_s += seconds_since(t);
      stats_->decode_calls += 1;
      stats_->decoded_tokens += b.n_tokens;
    }
    if (rc != 0)
      throw Error("llama_decode failed with status " + std::to_string(rc) + " on a batch of " +
                  std::to_string(b.n_tokens) + " tokens (KV cache of " +
                  std::to_string(info_.n_ctx) + " cells)");
    const int64_t n_out = static_cast<int64_t>(out_index_.size());
    if (n_out == 0) return nullptr;
    // llama.cpp keeps the requested rows contiguous in batch order; verify rather than assume
    // (llama_get_logits_ith takes the token's index in the batch), and gather them otherwise.
    const float* base = api_.get_logits(info_.ctx);
    const int64_t v = info_.n_vocab;
    const bool contiguous =
        base != nullptr && api_.get_logits_ith(info_.ctx, out_index_.front()) == base &&
        api_.get_logits_ith(info_.ctx, out_index_.back()) == base + (n_out - 1) * v;
    if (contiguous) return base;
    gathered_.resize(static_cast<size_t>(n_out * v));
    for (int64_t i = 0; i < n_out; ++i) {
      const float* row = api_.get_logits_ith(info_.ctx, out_index_[static_cast<size_t>(i)]);
      if (row == nullptr) throw Error("llama.cpp returned no logits for batch token " +
                                      std::to_string(out_index_[static_cast<size_t>(i)]));
      std::memcpy(gathered_.data() + i * v, row, sizeof(float) * static_cast<size_t>(v));
    }
    return gathered_.data();
  }

 private:
  const llama::Api& api_;
  const LlamaContextInfo& info_;
  LlamaSearchStats* stats_;
  LlamaSchedule* record_;
  llama::memory* mem_ = nullptr;
  std::vector<float> gathered_;
  std::vector<int32_t> out_index_;
};

// Requests [begin, end) that share one pass over the context.
struct Group {
  size_t begin, end;
};

// Groups of requests that fit the context; `seqs_max` is what is left of its sequences besides
// the prefix cache's.
std::vector<Group> plan_groups(const LlamaContextInfo& info, int64_t seqs_max,
                               const std::vector<SearchSpace>& spaces,
                               const std::vector<int32_t>& space_of,
                               const std::vector<std::vector<int32_t>>& prompts,
                               const std::vector<SearchRequest>& requests) {
  std::vector<Group> groups;
  int64_t seqs = 0, cells = 0, prefill = 0;
  size_t begin = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const int64_t beam = requests[i].beam;
    const int64_t len = static_cast<int64_t>(prompts[i].size());
    const int levels = spaces[static_cast<size_t>(space_of[i])].tokens->levels;
    // every SID token ever decoded for this request takes a cell until the group ends
    const int64_t need = len + beam * std::max(levels - 1, 0);
    if (len == 0) throw InvalidArgument("request " + std::to_string(i) + " has an empty prompt");
    if (i > begin && (seqs + beam > seqs_max || cells + need > info.n_ctx ||
                      prefill + len > info.n_batch || seqs + beam > info.n_batch)) {
      groups.push_back({begin, i});
      begin = i;
      seqs = cells = prefill = 0;
    }
    if (beam > seqs_max || need > info.n_ctx || len > info.n_batch || beam > info.n_batch)
      throw InvalidArgument("request " + std::to_string(i) + " (prompt of " + std::to_string(len) +
                            " tokens, beam " + std::to_string(beam) + ") needs " +
                            std::to_string(need) + " KV cells and " + std::to_string(beam) +
                            " sequences; the context has " + std::to_string(info.n_ctx) +
                            " cells, " + std::to_string(seqs_max) + " sequences and a batch of " +
                            std::to_string(info.n_batch) + " tokens for it (a context with more "
                            "cells takes it)");
    seqs += beam;
    cells += need;
    prefill += len;
  }
  if (begin < requests.size()) groups.push_back({begin, requests.size()});
  return groups;
}

// How the calls of one search use the prefix cache: `seq` holds `reuse` cached tokens that every
// prompt starts with (seq < 0: no cache).
struct PrefixUse {
  int32_t seq = -1;
  int32_t reuse = 0;
  LlamaPrefixCache* cache = nullptr;
};

// Frees every cell but the cached prefix's (all of them without a cached prefix).
void keep_only_prefix(Runner& run, const PrefixUse& pre) {
  if (pre.seq >= 0 && !pre.cache->tokens.empty())
    run.seq_keep(pre.seq);
  else
    run.clear();
}

void search_group(Runner& run, const LlamaContextInfo& info, const std::vector<SearchSpace>& spaces,
                  const std::vector<int32_t>& space_of, const std::vector<std::vector<int32_t>>& prompts,
                  const std::vector<SearchRequest>& requests, Group g, const PrefixUse& pre,
                  std::vector<SearchResult>& out) {
  const size_t n = g.end - g.begin;
  // One BeamSearch per space the group uses, over its requests in group order. The batch and the
  // logits rows run space by space, each space's rows in its search's order, so every search
  // reads one contiguous block of rows.
  std::vector<std::vector<int32_t>> members(spaces.size());  // group-local request indices
  for (size_t r = 0; r < n; ++r) members[static_cast<size_t>(space_of[g.begin + r])].push_back(static_cast<int32_t>(r));
  struct Part {
    std::unique_ptr<BeamSearch> search;
    const std::vector<int32_t>* member;      // search request i is group request (*member)[i]
    std::vector<int32_t> slot, new_slot;      // sequence of each current row
    std::vector<int32_t> req_of_in, children;
    std::vector<char> taken;
  };
  std::vector<Part> parts;
  for (size_t s = 0; s < spaces.size(); ++s) {
    if (members[s].empty()) continue;
    std::vector<SearchRequest> reqs;
    reqs.reserve(members[s].size());
    for (int32_t r : members[s]) reqs.push_back(requests[g.begin + static_cast<size_t>(r)]);
    Part part;
    part.search = std::make_unique<BeamSearch>(*spaces[s].trie, spaces[s].delta, *spaces[s].tokens,
                                               std::move(reqs));
    part.member = &members[s];
    parts.push_back(std::move(part));
  }
  // A bad logit names the request by its index in the group (llama_beam_search adds the group's).
  const auto step = [](Part& part, const float* logits, int64_t vocab) {
    try {
      part.search->step(logits, vocab);
    } catch (const ModelOutputError& e) {
      throw ModelOutputError((*part.member)[static_cast<size_t>(e.request())], e.level(), e.token(),
                             e.code(), e.value());
    }
  };

  // Sequence slots: request r owns [base[r], base[r] + beam_r); its prompt goes to base[r].
  std::vector<int32_t> base(n), prompt_len(n);
  std::vector<std::vector<int32_t>> free_slots(n);
  int32_t next = 0;
  for (size_t r = 0; r < n; ++r) {
    const int32_t beam = requests[g.begin + r].beam;
    base[r] = next;
    prompt_len[r] = static_cast<int32_t>(prompts[g.begin + r].size());
    for (int32_t s = beam - 1; s >= 1; --s) free_slots[r].push_back(next + s);
    next += beam;
  }

  keep_only_prefix(run, pre);  // the previous group's cells go
  Batch batch;
  for (auto& part : parts) {
    for (int32_t r : *part.member) {
      const auto& p = prompts[g.begin + static_cast<size_t>(r)];
      const int32_t seq = base[static_cast<size_t>(r)];
      if (pre.reuse > 0) run.seq_cp(pre.seq, seq, 0, pre.reuse);
      for (size_t t = static_cast<size_t>(pre.reuse); t < p.size(); ++t)
        batch.add(p[t], static_cast<int32_t>(t), seq, t + 1 == p.size());
      part.slot.push_back(seq);  // at level 0 the rows are the requests
    }
  }
  const float* logits = run.decode(batch);
  for (int level = 0;; ++level) {
    // every unfinished search has rows() rows in this block, in part order
    bool more = false;
    int64_t offset = 0;
    for (auto& part : parts) {
      if (part.search->done()) continue;
      const int64_t rows = part.search->rows();
      part.req_of_in = part.search->row_request();  // whose pool a row's slot returns to
      step(part, rows == 0 ? nullptr : logits + offset * info.n_vocab, info.n_vocab);
      offset += rows;
      more = more || !part.search->done();
    }
    if (!more) break;
    batch.clear();
    for (auto& part : parts) {
      if (part.search->done()) continue;
      const auto& parents = part.search->parents();
      const auto& toks = part.search->tokens();
      const auto& row_req = part.search->row_request();
      const auto& member = *part.member;
      const size_t rows_in = part.slot.size(), rows_out = parents.size();
      part.children.assign(rows_in, 0);
      for (int32_t p : parents) part.children[static_cast<size_t>(p)] += 1;
      for (size_t i = 0; i < rows_in; ++i) {
        if (part.children[i] == 0) {
          run.seq_rm(part.slot[i]);
          free_slots[static_cast<size_t>(member[static_cast<size_t>(part.req_of_in[i])])].push_back(part.slot[i]);
        }
      }
      part.taken.assign(rows_in, 0);
      part.new_slot.resize(rows_out);
      for (size_t j = 0; j < rows_out; ++j) {
        const size_t p = static_cast<size_t>(parents[j]);
        if (!part.taken[p]) {
          part.taken[p] = 1;
          part.new_slot[j] = part.slot[p];
        } else {
          auto& pool = free_slots[static_cast<size_t>(member[static_cast<size_t>(row_req[j])])];
          if (pool.empty()) throw Error("beam search produced more beams than its sequence slots");
          const int32_t s = pool.back();
          pool.pop_back();
          run.seq_cp(part.slot[p], s);
          part.new_slot[j] = s;
        }
      }
      part.slot.swap(part.new_slot);
      for (size_t j = 0; j < rows_out; ++j) {
        const size_t r = static_cast<size_t>(member[static_cast<size_t>(row_req[j])]);
        batch.add(toks[j], prompt_len[r] + level, part.slot[j], true);
      }
    }
    // every request may be dead (filters left nothing): finish the protocol without decoding
    logits = batch.tokens().empty() ? nullptr : run.decode(batch);
  }
  std::vector<SearchResult> res(n);
  for (auto& part : parts) {
    auto got = part.search->results();
    for (size_t i = 0; i < got.size(); ++i) res[static_cast<size_t>((*part.member)[i])] = std::move(got[i]);
  }
  for (auto& r : res) out.push_back(std::move(r));
}

}  // namespace

std::vector<SearchResult> llama_beam_search(const llama::Api& api, const LlamaContextInfo& info,
                                            const SidTrie& trie, const SidTrie* delta,
                                            const SidTokenTable& tokens,
                                            const std::vector<std::vector<int32_t>>& prompts,
                                            const std::vector<SearchRequest>& requests,
                                            LlamaSearchStats* stats, LlamaSchedule* record,
                                            LlamaPrefixCache* cache) {
  return llama_beam_search(api, info, {SearchSpace{&trie, delta, &tokens}},
                           std::vector<int32_t>(requests.size(), 0), prompts, requests, stats,
                           record, cache);
}

std::vector<SearchResult> llama_beam_search(const llama::Api& api, const LlamaContextInfo& info,
                                            const std::vector<SearchSpace>& spaces,
                                            const std::vector<int32_t>& space_of,
                                            const std::vector<std::vector<int32_t>>& prompts,
                                            const std::vector<SearchRequest>& requests,
                                            LlamaSearchStats* stats, LlamaSchedule* record,
                                            LlamaPrefixCache* cache) {
  const auto t0 = Clock::now();
  if (prompts.size() != requests.size())
    throw InvalidArgument(std::to_string(prompts.size()) + " prompts for " +
                          std::to_string(requests.size()) + " requests; expected one each");
  if (space_of.size() != requests.size())
    throw InvalidArgument(std::to_string(space_of.size()) + " space indices for " +
                          std::to_string(requests.size()) + " requests; expected one each");
  for (size_t s = 0; s < spaces.size(); ++s)
    if (spaces[s].trie == nullptr || spaces[s].tokens == nullptr)
      throw InvalidArgument("search space " + std::to_string(s) + " has no " +
                            (spaces[s].trie == nullptr ? "trie" : "token table"));
  for (size_t i = 0; i < requests.size(); ++i) {
    if (space_of[i] < 0 || static_cast<size_t>(space_of[i]) >= spaces.size())
      throw InvalidArgument("request " + std::to_string(i) + ": search space " +
                            std::to_string(space_of[i]) + "; expected 0.." +
                            std::to_string(static_cast<int64_t>(spaces.size()) - 1));
    if (requests[i].beam < 1 || requests[i].k < 1)
      throw InvalidArgument("request " + std::to_string(i) + ": k=" + std::to_string(requests[i].k) +
                            ", beam=" + std::to_string(requests[i].beam) + "; expected both >= 1");
    for (int32_t t : prompts[i])
      if (t < 0 || t >= info.n_vocab)
        throw InvalidArgument("request " + std::to_string(i) + ": prompt token " + std::to_string(t) +
                              " outside the vocabulary of " + std::to_string(info.n_vocab));
  }
  Runner run(api, info, stats, record);
  PrefixUse pre;
  if (cache != nullptr && info.n_seq_max >= 2) {
    pre.cache = cache;
    pre.seq = static_cast<int32_t>(info.n_seq_max - 1);
    // the stem every prompt starts with (the longest of each, leaving it a token to decode);
    // prompts with different stems, or none, reuse nothing
    const std::vector<int32_t>* stem = nullptr;
    for (size_t i = 0; i < prompts.size(); ++i) {
      const std::vector<int32_t>* best = nullptr;
      for (const auto& s : cache->stems)
        if (!s.empty() && s.size() < prompts[i].size() &&
            (best == nullptr || s.size() > best->size()) &&
            std::equal(s.begin(), s.end(), prompts[i].begin()))
          best = &s;
      if (i > 0 && best != stem) {
        stem = nullptr;
        break;
      }
      stem = best;
    }
    const bool hit = stem != nullptr && cache->tokens == *stem;
    if (record) {
      record->uses_prefix = true;
      if (hit) record->prefix_before = cache->tokens;
    }
    if (!hit && !cache->tokens.empty()) {
      run.clear();  // the old stem's cells go
      cache->tokens.clear();
    }
    if (stem != nullptr && !hit) {
      // decoded alone, so that its cells hold the same values whatever ran before
      run.clear();
      Batch b;
      for (size_t t = 0; t < stem->size(); ++t) b.add((*stem)[t], static_cast<int32_t>(t), pre.seq, false);
      run.decode(b);
      cache->tokens = *stem;
    }
    pre.reuse = stem != nullptr ? static_cast<int32_t>(stem->size()) : 0;
  }
  std::vector<SearchResult> out;
  out.reserve(requests.size());
  // The prefix cache's sequence is not the groups' to use; its cells (the stem) are counted in
  // every prompt's length.
  const int64_t reserved_seqs = pre.seq >= 0 ? 1 : 0;
  const auto groups = plan_groups(info, info.n_seq_max - reserved_seqs, spaces, space_of, prompts, requests);
  const auto reset = [&] {  // leave the context reusable, its prefix cache empty
    run.clear();
    if (cache != nullptr) cache->tokens.clear();
  };
  size_t g = 0;
  try {
    for (; g < groups.size(); ++g)
      search_group(run, info, spaces, space_of, prompts, requests, groups[g], pre, out);
  } catch (const ModelOutputError& e) {
    reset();
    throw e.for_batch(static_cast<int64_t>(groups[g].begin));  // a group numbers its requests from 0
  } catch (...) {
    reset();
    throw;
  }
  keep_only_prefix(run, pre);
  if (record != nullptr && pre.seq >= 0) record->prefix_after = cache->tokens;
  if (stats) {
    stats->groups += static_cast<int64_t>(groups.size());
    stats->total_s += seconds_since(t0);
  }
  return out;
}

void llama_replay(const llama::Api& api, const LlamaContextInfo& info, const LlamaSchedule& s,
                  LlamaSearchStats* stats, LlamaPrefixCache* cache) {
  {
    // Untimed set-up: the KV state the schedule was recorded from.
    Runner setup(api, info, nullptr, nullptr);
    if (!s.uses_prefix) {
      setup.clear();
      if (cache != nullptr) cache->tokens.clear();
    } else {
      if (cache == nullptr || info.n_seq_max < 2)
        throw InvalidArgument("this schedule was recorded with a prefix cache; replay it on a "
                              "context with its prefix cache");
      const int32_t seq = static_cast<int32_t>(info.n_seq_max - 1);
      const auto& want = s.prefix_before;
      const bool holds = cache->tokens.size() >= want.size() &&
                         std::equal(want.begin(), want.end(), cache->tokens.begin());
      if (holds) {
        setup.seq_keep(seq);
        if (cache->tokens.size() > want.size()) setup.seq_rm(seq, static_cast<int32_t>(want.size()), -1);
      } else {
        setup.clear();
        cache->tokens.clear();  // until the prefix below is decoded
        if (!want.empty()) {
          Batch b;
          for (size_t t = 0; t < want.size(); ++t) b.add(want[t], static_cast<int32_t>(t), seq, false);
          setup.decode(b);
        }
      }
      cache->tokens = want;
    }
  }
  const auto t0 = Clock::now();
  Runner run(api, info, stats, nullptr);
  Batch batch;
  try {
    for (const auto& op : s.ops) {
      switch (op.kind) {
        case LlamaSchedule::kClear: run.clear(); break;
        case LlamaSchedule::kSeqRm: run.seq_rm(op.a, op.p0, op.p1); break;
        case LlamaSchedule::kSeqCp: run.seq_cp(op.a, op.b, op.p0, op.p1); break;
        case LlamaSchedule::kSeqKeep: run.seq_keep(op.a); break;
        case LlamaSchedule::kDecode: {
          batch.clear();
          for (int64_t i = op.begin; i < op.end; ++i) {
            const size_t u = static_cast<size_t>(i);
            batch.add(s.tokens[u], s.positions[u], s.seqs[u], s.logits[u] != 0);
          }
          // read the logits like the search does (the pointer lookups), but score nothing
          run.decode(batch);
          break;
        }
      }
    }
  } catch (...) {
    run.clear();  // leave the context reusable, its cache empty
    if (cache != nullptr) cache->tokens.clear();
    throw;
  }
  if (s.uses_prefix) cache->tokens = s.prefix_after;
  if (stats) stats->total_s += seconds_since(t0);
}

// ---------------------------------------------------------------------------------------------
// LlamaContext

LlamaContext::LlamaContext(const llama::Api& api, const LlamaContextInfo& info, bool prefix_cache)
    : api_(api), info_(info), has_cache_(prefix_cache) {
  if (!api.complete()) throw InvalidArgument("the llama.cpp api holds a null function address");
  if (info.ctx == nullptr) throw InvalidArgument("the llama.cpp context is null");
  if (info.n_seq_max < 1 || info.n_ctx < info.n_seq_max || info.n_batch < 1 || info.n_vocab < 1) {
    throw InvalidArgument("llama.cpp context limits n_ctx=" + std::to_string(info.n_ctx) +
                          ", n_seq_max=" + std::to_string(info.n_seq_max) + ", n_batch=" +
                          std::to_string(info.n_batch) + ", n_vocab=" + std::to_string(info.n_vocab) +
                          "; expected n_ctx >= n_seq_max >= 1, n_batch >= 1, n_vocab >= 1");
  }
  if (prefix_cache && info.n_seq_max < 2) {
    throw InvalidArgument("n_seq_max=" + std::to_string(info.n_seq_max) +
                          " leaves no sequence for the prefix cache; expected >= 2");
  }
}

std::unique_lock<std::mutex> LlamaContext::claim() const {
  std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
  if (!lock.owns_lock()) {
    throw InvalidArgument("this LlamaContext is in use by another thread; one search per context at a time");
  }
  return lock;
}

std::vector<SearchResult> LlamaContext::search(const SidTrie& trie, const SidTrie* delta,
                                               const SidTokenTable& tokens,
                                               const std::vector<std::vector<int32_t>>& prompts,
                                               const std::vector<SearchRequest>& requests,
                                               LlamaSearchStats* stats, LlamaSchedule* record) {
  auto lock = claim();
  return llama_beam_search(api_, info_, trie, delta, tokens, prompts, requests, stats, record,
                           has_cache_ ? &cache_ : nullptr);
}

std::vector<SearchResult> LlamaContext::search(const std::vector<SearchSpace>& spaces,
                                               const std::vector<int32_t>& space_of,
                                               const std::vector<std::vector<int32_t>>& prompts,
                                               const std::vector<SearchRequest>& requests,
                                               LlamaSearchStats* stats, LlamaSchedule* record) {
  auto lock = claim();
  return llama_beam_search(api_, info_, spaces, space_of, prompts, requests, stats, record,
                           has_cache_ ? &cache_ : nullptr);
}

void LlamaContext::replay(const LlamaSchedule& schedule, LlamaSearchStats* stats) {
  auto lock = claim();
  llama_replay(api_, info_, schedule, stats, has_cache_ ? &cache_ : nullptr);
}

void LlamaContext::set_stems(std::vector<std::vector<int32_t>> stems) {
  auto lock = claim();
  if (!has_cache_) return;
  // as a new cache: the next search holding one of these stems decodes it from a cleared context
  cache_.stems = std::move(stems);
  cache_.tokens.clear();
}

void LlamaContext::set_api(const llama::Api& api) {
  if (!api.complete()) throw InvalidArgument("the llama.cpp api holds a null function address");
  auto lock = claim();
  api_ = api;
}

std::vector<std::vector<int32_t>> LlamaContext::stems() const {
  auto lock = claim();
  return cache_.stems;
}

std::vector<int32_t> LlamaContext::cached_tokens() const {
  auto lock = claim();
  return cache_.tokens;
}

}  // namespace genrec
