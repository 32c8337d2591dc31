// The search over a llama.cpp context (csrc/src/llama_search.cc) and LlamaContext, without
// llama.cpp: a fake libllama whose logits row for a token depends on that token alone (a bigram
// model), so the answer must equal a BeamSearch fed the same rows by hand. Checked with the
// requests split into several groups, with and without the prompt-prefix cache (which must
// decode the shared stem once and change no result), on replay, and LlamaContext's checks.
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "genrec/beam_search.h"
#include "genrec/errors.h"
#include "genrec/llama_search.h"
#include "genrec/sid_trie.h"

using genrec::BeamSearch;
using genrec::LlamaContext;
using genrec::LlamaContextInfo;
using genrec::LlamaSearchStats;
using genrec::SearchRequest;
using genrec::SearchResult;
using genrec::SidTokenTable;
using genrec::SidTrie;
namespace llama = genrec::llama;
using I32 = std::vector<int32_t>;
using I64 = std::vector<int64_t>;

namespace {

constexpr int kVocab = 64;

// The logits row after `token`: a fixed pseudo-random row per token.
std::vector<float> row_after(int32_t token) {
  std::vector<float> row(kVocab);
  uint32_t h = 2166136261u ^ static_cast<uint32_t>(token);
  for (int j = 0; j < kVocab; ++j) {
    h = h * 16777619u + 0x9e3779b9u;
    row[static_cast<size_t>(j)] = static_cast<float>((h >> 8) % 1000) / 250.0f;
  }
  return row;
}

// The fake libllama: the context pointer points at one of these.
struct Fake {
  std::vector<float> out;       // the logits rows of the last decode
  std::vector<int32_t> row_of;  // batch index -> output row (-1: none)
  int64_t decoded = 0;
  int calls = 0;
  int fail_at = -1;  // the decode call that fails (returns 1), -1: none
};

Fake* fake(llama::context* ctx) { return reinterpret_cast<Fake*>(ctx); }

int32_t fake_decode(llama::context* ctx, llama::batch b) {
  Fake* f = fake(ctx);
  if (f->calls++ == f->fail_at) return 1;
  f->out.clear();
  f->row_of.assign(static_cast<size_t>(b.n_tokens), -1);
  for (int32_t i = 0; i < b.n_tokens; ++i) {
    if (!b.logits[i]) continue;
    f->row_of[static_cast<size_t>(i)] = static_cast<int32_t>(f->out.size() / kVocab);
    const std::vector<float> row = row_after(b.tokens[i]);
    f->out.insert(f->out.end(), row.begin(), row.end());
  }
  f->decoded += b.n_tokens;
  return 0;
}
float* fake_logits(llama::context* ctx) { return fake(ctx)->out.data(); }
float* fake_logits_ith(llama::context* ctx, int32_t i) {
  Fake* f = fake(ctx);
  const int32_t r = i >= 0 && static_cast<size_t>(i) < f->row_of.size() ? f->row_of[static_cast<size_t>(i)] : -1;
  return r < 0 ? nullptr : f->out.data() + static_cast<size_t>(r) * kVocab;
}
llama::memory* fake_memory(const llama::context* ctx) {
  return reinterpret_cast<llama::memory*>(const_cast<llama::context*>(ctx));
}
void fake_clear(llama::memory*, bool) {}
bool fake_seq_rm(llama::memory*, llama::seq_id, llama::pos, llama::pos) { return true; }
void fake_seq_cp(llama::memory*, llama::seq_id, llama::seq_id, llama::pos, llama::pos) {}
void fake_seq_keep(llama::memory*, llama::seq_id) {}

llama::Api fake_api() {
  llama::Api a;
  a.decode = fake_decode;
  a.get_logits = fake_logits;
  a.get_logits_ith = fake_logits_ith;
  a.get_memory = fake_memory;
  a.memory_clear = fake_clear;
  a.memory_seq_rm = fake_seq_rm;
  a.memory_seq_cp = fake_seq_cp;
  a.memory_seq_keep = fake_seq_keep;
  return a;
}

LlamaContextInfo info_of(Fake& f, int64_t n_seq_max, int64_t n_ctx = 4096) {
  LlamaContextInfo info;
  info.ctx = reinterpret_cast<llama::context*>(&f);
  info.n_ctx = n_ctx;
  info.n_seq_max = n_seq_max;
  info.n_batch = n_ctx;
  info.n_vocab = kVocab;
  return info;
}

// `levels` levels of 4 codes, SID token of (level, code) = first + 4 * level + code (the main
// space: 3 levels from 40, over 40 random items).
SidTokenTable table(int levels = 3, int32_t first = 40) {
  SidTokenTable t;
  t.levels = levels;
  t.max_size = 4;
  for (int l = 0; l < levels; ++l)
    for (int c = 0; c < 4; ++c) t.ids.push_back(first + 4 * l + c);
  return t;
}

SidTrie trie() {
  I32 codes;
  I64 ids;
  uint32_t h = 7;
  for (int64_t i = 0; i < 40; ++i) {
    for (int l = 0; l < 3; ++l) {
      h = h * 1103515245u + 12345u;
      codes.push_back(static_cast<int32_t>((h >> 16) % 4));
    }
    ids.push_back(1000 + i);
  }
  return SidTrie(codes.data(), ids.data(), 40, 3, {4, 4, 4});
}

// A shared stem (1, 2, 3) then a request's own tokens.
std::vector<I32> prompts(int n) {
  std::vector<I32> out;
  for (int i = 0; i < n; ++i) out.push_back({1, 2, 3, 10 + i % 7, 20 + i % 5});
  return out;
}

std::vector<SearchRequest> requests(int n) {
  std::vector<SearchRequest> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    out[static_cast<size_t>(i)].k = 5;
    out[static_cast<size_t>(i)].beam = 6 + i % 3;
  }
  return out;
}

// The same search driven by hand: each row gets the row after its last token.
std::vector<SearchResult> by_hand(const SidTrie& t, const std::vector<I32>& ps,
                                  const std::vector<SearchRequest>& reqs,
                                  const SidTokenTable& tab = table()) {
  BeamSearch s(t, tab, reqs);
  I32 last;
  for (const I32& p : ps) last.push_back(p.back());
  while (!s.done()) {
    std::vector<float> logits;
    for (int64_t i = 0; i < s.rows(); ++i) {
      const std::vector<float> row = row_after(last[static_cast<size_t>(i)]);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    s.step(logits.data(), kVocab);
    last = s.tokens();
  }
  return s.results();
}

void check_equal(const std::vector<SearchResult>& a, const std::vector<SearchResult>& b) {
  REQUIRE_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK_EQ(a[i].items, b[i].items);
    CHECK_EQ(a[i].sids, b[i].sids);
    REQUIRE_EQ(a[i].scores.size(), b[i].scores.size());
    for (size_t j = 0; j < a[i].scores.size(); ++j) CHECK_NEAR(a[i].scores[j], b[i].scores[j], 1e-5);
  }
}

// A second SID space (another view): 2 levels of 4 codes (table(2, 52)), 16 items.
SidTrie trie2() {
  I32 codes;
  I64 ids;
  for (int64_t i = 0; i < 16; ++i) {
    codes.push_back(static_cast<int32_t>(i / 4));
    codes.push_back(static_cast<int32_t>((i * 3) % 4));
    ids.push_back(2000 + i);
  }
  return SidTrie(codes.data(), ids.data(), 16, 2, {4, 4});
}

}  // namespace

TEST_CASE(llama_search_over_several_spaces_equals_one_search_per_space) {
  // two spaces of different depths, requests interleaved: each answer is its space's own search
  const SidTrie t1 = trie(), t2 = trie2();
  const SidTokenTable tab1 = table(), tab2 = table(2, 52);
  const auto ps = prompts(10);
  const auto reqs = requests(10);
  I32 space_of;
  std::vector<I32> p_of[2];
  std::vector<SearchRequest> r_of[2];
  for (size_t i = 0; i < ps.size(); ++i) {
    const int32_t s = static_cast<int32_t>((i * 7) % 3 == 0);
    space_of.push_back(s);
    p_of[s].push_back(ps[i]);
    r_of[s].push_back(reqs[i]);
  }
  const auto want0 = by_hand(t1, p_of[0], r_of[0], tab1);
  const auto want1 = by_hand(t2, p_of[1], r_of[1], tab2);
  const std::vector<genrec::SearchSpace> spaces{{&t1, nullptr, &tab1}, {&t2, nullptr, &tab2}};
  for (int64_t seqs : {256, 20}) {  // one group; several groups
    Fake f;
    LlamaSearchStats stats;
    const auto got = genrec::llama_beam_search(fake_api(), info_of(f, seqs), spaces, space_of, ps,
                                               reqs, &stats);
    std::vector<SearchResult> got_of[2];
    for (size_t i = 0; i < got.size(); ++i) got_of[space_of[i]].push_back(got[i]);
    check_equal(got_of[0], want0);
    check_equal(got_of[1], want1);
    if (seqs == 256) CHECK_EQ(stats.groups, 1);
  }
  Fake f;
  CHECK_THROWS_AS(genrec::llama_beam_search(fake_api(), info_of(f, 256), spaces, I32(10, 2), ps, reqs),
                  genrec::InvalidArgument);
  CHECK_THROWS_AS(genrec::llama_beam_search(fake_api(), info_of(f, 256), spaces, I32(9, 0), ps, reqs),
                  genrec::InvalidArgument);
}

TEST_CASE(llama_search_equals_beam_search_over_the_same_rows) {
  const SidTrie t = trie();
  const auto ps = prompts(12);
  const auto reqs = requests(12);
  const auto want = by_hand(t, ps, reqs);
  // 256 sequences: one group; 20: several groups (a request needs up to 8 beams)
  for (int64_t seqs : {256, 20}) {
    Fake f;
    LlamaSearchStats stats;
    const auto got = genrec::llama_beam_search(fake_api(), info_of(f, seqs), t, nullptr, table(), ps,
                                               reqs, &stats);
    check_equal(got, want);
    if (seqs == 20) CHECK(stats.groups > 1);
  }
}

TEST_CASE(llama_context_prefix_cache_decodes_the_stem_once_and_changes_nothing) {
  const SidTrie t = trie();
  const auto ps = prompts(6);
  const auto reqs = requests(6);
  const auto want = by_hand(t, ps, reqs);
  Fake plain_f, cached_f;
  LlamaContext plain(fake_api(), info_of(plain_f, 64), false);
  LlamaContext cached(fake_api(), info_of(cached_f, 64), true);
  cached.set_stems({{1, 2, 3}, {1, 2}});
  LlamaSearchStats s_plain, s_first, s_second;
  check_equal(plain.search(t, nullptr, table(), ps, reqs, &s_plain), want);
  check_equal(cached.search(t, nullptr, table(), ps, reqs, &s_first), want);
  CHECK_EQ(cached.cached_tokens(), (I32{1, 2, 3}));  // the longest stem every prompt starts with
  genrec::LlamaSchedule schedule;
  check_equal(cached.search(t, nullptr, table(), ps, reqs, &s_second, &schedule), want);
  // each request's prompt skips the 3 stem tokens; the first call decoded the stem once
  CHECK_EQ(s_plain.decoded_tokens - s_second.decoded_tokens, int64_t{6 * 3});
  CHECK_EQ(s_first.decoded_tokens, s_second.decoded_tokens + 3);
  LlamaSearchStats replayed;
  cached.replay(schedule, &replayed);
  CHECK_EQ(replayed.decoded_tokens, s_second.decoded_tokens);
  cached.set_stems({});
  CHECK(cached.cached_tokens().empty());
}

TEST_CASE(llama_context_after_a_failed_decode_serves_as_new) {
  const SidTrie t = trie();
  const auto ps = prompts(4);
  const auto reqs = requests(4);
  Fake f;
  LlamaContext ctx(fake_api(), info_of(f, 64), true);
  ctx.set_stems({{1, 2, 3}});
  f.fail_at = 2;  // the stem, the prompts, then the first SID level
  CHECK_THROWS_AS(ctx.search(t, nullptr, table(), ps, reqs), genrec::Error);
  CHECK(ctx.cached_tokens().empty());
  check_equal(ctx.search(t, nullptr, table(), ps, reqs), by_hand(t, ps, reqs));
}

TEST_CASE(llama_context_checks_what_it_is_made_of) {
  Fake f;
  llama::Api broken = fake_api();
  broken.memory_seq_cp = nullptr;
  CHECK_THROWS_AS(LlamaContext(broken, info_of(f, 64), false), genrec::InvalidArgument);
  LlamaContextInfo null_ctx = info_of(f, 64);
  null_ctx.ctx = nullptr;
  CHECK_THROWS_AS(LlamaContext(fake_api(), null_ctx, false), genrec::InvalidArgument);
  CHECK_THROWS_AS(LlamaContext(fake_api(), info_of(f, 64, 32), false), genrec::InvalidArgument);
  CHECK_THROWS_AS(LlamaContext(fake_api(), info_of(f, 1), true), genrec::InvalidArgument);
  LlamaContext ok(fake_api(), info_of(f, 1), false);  // one sequence is enough without the cache
  CHECK_EQ(ok.info().n_seq_max, int64_t{1});
  CHECK_THROWS_AS(ok.set_api(broken), genrec::InvalidArgument);
}
