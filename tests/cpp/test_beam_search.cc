// BeamSearch (csrc/src/beam_search.cc): a hand-made logits table whose best beams are known, the
// constraint to real SIDs, k / beam handling, NaN / +inf logits, filters, and an exhaustive
// comparison on random SIDs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <vector>

#include "check.h"
#include "genrec/beam_search.h"
#include "genrec/sid_trie.h"

using genrec::BeamSearch;
using genrec::SearchRequest;
using genrec::SearchResult;
using genrec::SidTokenTable;
using genrec::SidTrie;
using I32 = std::vector<int32_t>;
using I64 = std::vector<int64_t>;

namespace {

const float kNegInf = -std::numeric_limits<float>::infinity();

SidTokenTable table_of(int levels, int max_size, int32_t first_token) {
  SidTokenTable t;
  t.levels = levels;
  t.max_size = max_size;
  for (int l = 0; l < levels; ++l)
    for (int c = 0; c < max_size; ++c) t.ids.push_back(first_token + l * max_size + c);
  return t;
}

SearchRequest request(int k, int beam, I64 deny = {}, bool has_allow = false, I64 allow = {}) {
  SearchRequest q;
  q.k = k;
  q.beam = beam;
  q.deny = std::move(deny);
  q.has_allow = has_allow;
  q.allow = std::move(allow);
  return q;
}

// The logits row of a request's beam with a given prefix (vocab floats).
using LogitFn = std::function<std::vector<float>(int32_t request, const I32& prefix)>;

// Runs a search to the end, feeding each row the logits f gives for its request and prefix.
std::vector<SearchResult> drive(BeamSearch& s, const SidTokenTable& table, int64_t vocab, const LogitFn& f) {
  std::vector<I32> prefix(static_cast<size_t>(s.rows()));
  while (!s.done()) {
    std::vector<float> logits(static_cast<size_t>(s.rows() * vocab));
    for (size_t i = 0; i < prefix.size(); ++i) {
      const std::vector<float> row = f(s.row_request()[i], prefix[i]);
      std::copy(row.begin(), row.end(), logits.begin() + static_cast<int64_t>(i) * vocab);
    }
    const int level = s.level();
    s.step(logits.data(), vocab);
    std::vector<I32> next;
    for (size_t j = 0; j < s.parents().size(); ++j) {
      I32 p = prefix[static_cast<size_t>(s.parents()[j])];
      int32_t code = -1;
      for (int32_t c = 0; c < table.max_size; ++c)
        if (table.token(level, c) == s.tokens()[j]) code = c;
      p.push_back(code);
      next.push_back(p);
    }
    prefix.swap(next);
  }
  return s.results();
}

// ---- The hand-made case: two levels of three codes, SID token of (level, code) = 10 + 3*level + code,
// vocab 20. Items: (0,0) -> 100 and 104 (a shared SID, 100 built first), (0,1) -> 101,
// (1,2) -> 102, (2,0) -> 103. (0,2), (1,0), (1,1)... are not real SIDs.
const I32 kCodes = {0, 0,  0, 1,  1, 2,  2, 0,  0, 0};
const I64 kIds = {100, 101, 102, 103, 104};
constexpr int64_t kVocab = 20;
int32_t tok(int level, int code) { return 10 + 3 * level + code; }

// Probabilities (over the allowed codes): level 0: code 0 .5, code 1 .3, code 2 .2; after 0:
// code 0 .55, code 1 .45 (so the best SID is (1,2) at .3 although greedy takes (0,0) at .275);
// after 1: only code 2 is real (its token shares the row with a non-SID token of the same logit:
// raw probability .5); after 2: code 0. After 0, token (1, 2) has a large logit but (0,2) is no
// SID. Request 1 prefers code 2 at level 0 (.7 / .2 / .1).
std::vector<float> hand_logits(int32_t r, const I32& prefix) {
  std::vector<float> row(kVocab, kNegInf);
  if (prefix.empty()) {
    const double p[2][3] = {{.5, .3, .2}, {.2, .1, .7}};
    for (int c = 0; c < 3; ++c) row[tok(0, c)] = static_cast<float>(std::log(p[r][c]));
  } else if (prefix[0] == 0) {
    row[tok(1, 0)] = static_cast<float>(std::log(.55));
    row[tok(1, 1)] = static_cast<float>(std::log(.45));
    row[tok(1, 2)] = 5.0f;
  } else if (prefix[0] == 1) {
    row[tok(1, 2)] = static_cast<float>(std::log(.5));
    row[3] = static_cast<float>(std::log(.5));
  } else {
    row[tok(1, 0)] = 0.0f;
  }
  return row;
}

std::vector<SearchResult> hand_search(const SidTrie& trie, std::vector<SearchRequest> requests) {
  const SidTokenTable table = table_of(2, 3, 10);
  BeamSearch s(trie, table, std::move(requests));
  return drive(s, table, kVocab, hand_logits);
}

SidTrie hand_trie() { return SidTrie(kCodes.data(), kIds.data(), 5, 2, {3, 3}); }

}  // namespace

TEST_CASE(beam_finds_the_known_best_beams) {
  SidTrie trie = hand_trie();
  const SidTokenTable table = table_of(2, 3, 10);
  BeamSearch s(trie, table, {request(3, 3)});
  CHECK_EQ(s.levels(), 2);
  CHECK_EQ(s.rows(), 1);
  std::vector<float> row0 = hand_logits(0, {});
  s.step(row0.data(), kVocab);
  CHECK_EQ(s.level(), 1);
  CHECK_EQ(s.parents(), (I32{0, 0, 0}));
  CHECK_EQ(s.tokens(), (I32{tok(0, 0), tok(0, 1), tok(0, 2)}));  // best first
  CHECK_NEAR(s.row_scores()[1], std::log(.3), 1e-6);

  std::vector<SearchResult> res = hand_search(trie, {request(3, 3)});
  REQUIRE_EQ(res.size(), size_t{1});
  const SearchResult& r = res[0];
  CHECK_EQ(r.items, (I64{102, 100, 104}));  // (1,2) .3, then (0,0)'s two items; k = 3 cuts 101
  CHECK_EQ(r.sids, (I32{1, 2,  0, 0,  0, 1}));
  REQUIRE_EQ(r.sid_scores.size(), size_t{3});
  CHECK_NEAR(r.sid_scores[0], std::log(.3), 1e-5);
  CHECK_NEAR(r.sid_scores[1], std::log(.275), 1e-5);
  CHECK_NEAR(r.sid_scores[2], std::log(.225), 1e-5);
  REQUIRE_EQ(r.scores.size(), size_t{3});
  CHECK_NEAR(r.scores[1], std::log(.275), 1e-5);
  CHECK_NEAR(r.scores[2], std::log(.275), 1e-5);  // 104 shares 100's SID
  // Raw log-probabilities use the whole row: (1,2) keeps .5 of its row, (0,0) competes with the
  // large non-SID logit of token (1,2).
  CHECK_NEAR(r.logprobs[0], std::log(.3) + std::log(.5), 1e-5);
  const double lse = std::log(.55 + .45 + std::exp(5.0));
  CHECK_NEAR(r.logprobs[1], std::log(.5) + std::log(.55) - lse, 1e-5);
}

TEST_CASE(beam_stays_on_real_sids) {
  SidTrie trie = hand_trie();
  std::vector<SearchResult> res = hand_search(trie, {request(10, 20)});
  // Every real SID, best first, and nothing else: token (1,2) after code 0 is never taken.
  CHECK_EQ(res[0].items, (I64{102, 100, 104, 101, 103}));
  CHECK_EQ(res[0].sids, (I32{1, 2,  0, 0,  0, 1,  2, 0}));
  for (size_t i = 0; i < res[0].sids.size(); i += 2) CHECK(!trie.items(&res[0].sids[i], 2).empty());
}

TEST_CASE(beam_width_and_k) {
  SidTrie trie = hand_trie();
  // beam 1 is greedy: (0,0) only, both of its items (fewer than k).
  CHECK_EQ(hand_search(trie, {request(3, 1)})[0].items, (I64{100, 104}));
  // beam 2 keeps codes 0 and 1 at level 0 and so finds (1,2).
  CHECK_EQ(hand_search(trie, {request(3, 2)})[0].items, (I64{102, 100, 104}));
  CHECK_EQ(hand_search(trie, {request(1, 2)})[0].items, (I64{102}));
  CHECK_EQ(hand_search(trie, {request(1, 2)})[0].sids, (I32{1, 2,  0, 0}));  // all final beams

  // Two requests in one batch: rows are grouped by request; each keeps its own beam and k.
  const SidTokenTable table = table_of(2, 3, 10);
  BeamSearch s(trie, table, {request(3, 3), request(1, 2)});
  CHECK_EQ(s.n_requests(), 2);
  CHECK_EQ(s.rows(), 2);
  std::vector<SearchResult> res = drive(s, table, kVocab, hand_logits);
  CHECK_EQ(res[0].items, (I64{102, 100, 104}));
  CHECK_EQ(res[1].items, (I64{103}));
  CHECK_NEAR(res[1].sid_scores[0], std::log(.7), 1e-5);

  using genrec::InvalidArgument;
  CHECK_THROWS_AS(BeamSearch(trie, table, {request(0, 3)}), InvalidArgument);
  CHECK_THROWS_AS(BeamSearch(trie, table, {request(3, 0)}), InvalidArgument);
  CHECK_THROWS_AS(BeamSearch(trie, table_of(3, 3, 10), {request(3, 3)}), InvalidArgument);
  BeamSearch unfinished(trie, table, {request(3, 3)});
  CHECK_THROWS_AS(unfinished.results(), InvalidArgument);
  BeamSearch finished(trie, table, {request(3, 3)});
  drive(finished, table, kVocab, hand_logits);
  std::vector<float> row(kVocab, 0.0f);
  CHECK_THROWS_AS(finished.step(row.data(), kVocab), InvalidArgument);
}

TEST_CASE(beam_bad_logits_raise_model_output_error) {
  SidTrie trie = hand_trie();
  const SidTokenTable table = table_of(2, 3, 10);
  const float kNaN = std::numeric_limits<float>::quiet_NaN();
  const float kInf = std::numeric_limits<float>::infinity();
  struct Bad { int32_t token; float value; int32_t code; };
  // An allowed SID token (NaN, +inf) and a token outside the SID columns of a kept row.
  for (const Bad& b : {Bad{tok(0, 1), kNaN, 1}, Bad{tok(0, 2), kInf, 2}, Bad{5, kNaN, -1}}) {
    BeamSearch s(trie, table, {request(3, 3)});
    std::vector<float> row = hand_logits(0, {});
    row[b.token] = b.value;
    bool thrown = false;
    try {
      s.step(row.data(), kVocab);
    } catch (const genrec::ModelOutputError& e) {
      thrown = true;
      CHECK_EQ(e.request(), 0);
      CHECK_EQ(e.level(), 0);
      CHECK_EQ(e.token(), b.token);
      CHECK_EQ(e.code(), b.code);
      CHECK_EQ(std::isnan(e.value()), std::isnan(b.value));
    }
    CHECK(thrown);
    // The search is unchanged after the throw and finishes normally.
    CHECK_EQ(s.level(), 0);
    CHECK_EQ(drive(s, table, kVocab, hand_logits)[0].items, (I64{102, 100, 104}));
  }
  // A bad logit in request 1 names request 1.
  BeamSearch s(trie, table, {request(3, 3), request(3, 3)});
  std::vector<float> rows = hand_logits(0, {}), second = hand_logits(1, {});
  second[tok(0, 0)] = kInf;
  rows.insert(rows.end(), second.begin(), second.end());
  try {
    s.step(rows.data(), kVocab);
    CHECK(!"expected ModelOutputError");
  } catch (const genrec::ModelOutputError& e) {
    CHECK_EQ(e.request(), 1);
    CHECK_EQ(e.code(), 0);
  }
}

TEST_CASE(beam_filters_and_active_mask) {
  {
    SidTrie trie = hand_trie();
    // deny 102: code 1 has nothing left below it, so level 0 renormalises over codes 0 and 2.
    std::vector<SearchResult> res = hand_search(trie, {request(3, 3, {102})});
    CHECK_EQ(res[0].items, (I64{100, 104, 101}));
    CHECK_NEAR(res[0].scores[0], std::log(.5 / .7 * .55), 1e-5);
    // deny one item of a shared SID: the other stays.
    CHECK_EQ(hand_search(trie, {request(3, 3, {100})})[0].items, (I64{102, 104, 101}));
    // allow list: only these items (ids the trie lacks are ignored).
    res = hand_search(trie, {request(3, 3, {}, true, {101, 103, 999})});
    CHECK_EQ(res[0].items, (I64{101, 103}));
    CHECK_NEAR(res[0].scores[0], std::log(.5 / .7), 1e-5);
    // an unknown id in deny filters nothing
    CHECK_EQ(hand_search(trie, {request(3, 3, {999})})[0].items, (I64{102, 100, 104}));
  }
  SidTrie trie = hand_trie();
  const int64_t off[] = {102};
  trie.set_active(off, 1, false);
  CHECK_EQ(hand_search(trie, {request(3, 3)})[0].items, (I64{100, 104, 101}));
}

TEST_CASE(beam_matches_exhaustive_ranking_on_random_sids) {
  // 3 levels of 4 codes, 40 items (some SIDs shared); beam >= number of SIDs makes the search
  // exhaustive, so it must rank every SID by its summed per-level log-softmax over allowed codes.
  const int L = 3, K = 4, n = 40;
  const int32_t first_token = 7;
  const int64_t vocab = first_token + L * K + 5;
  uint32_t state = 12345;
  auto next = [&state]() { state = state * 1664525u + 1013904223u; return state >> 8; };
  I32 codes(n * L);
  I64 ids(n);
  for (int i = 0; i < n; ++i) {
    ids[i] = 500 + 3 * i;
    for (int l = 0; l < L; ++l) codes[i * L + l] = static_cast<int32_t>(next() % K);
  }
  SidTrie trie(codes.data(), ids.data(), n, L, {K, K, K});
  const SidTokenTable table = table_of(L, K, first_token);
  // A fixed pseudo-random logit per (prefix, column).
  auto logit = [](const I32& prefix, int64_t col) {
    uint32_t h = 2166136261u;
    for (int32_t c : prefix) h = (h ^ static_cast<uint32_t>(c + 1)) * 16777619u;
    h = (h ^ static_cast<uint32_t>(col + 101)) * 16777619u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return static_cast<float>((h % 60001u) / 10000.0 - 3.0);
  };
  LogitFn f = [&](int32_t, const I32& prefix) {
    std::vector<float> row(static_cast<size_t>(vocab));
    for (int64_t j = 0; j < vocab; ++j) row[static_cast<size_t>(j)] = logit(prefix, j);
    return row;
  };
  BeamSearch s(trie, table, {request(n, 64)});
  const SearchResult res = drive(s, table, vocab, f)[0];

  std::set<I32> sids;
  for (int i = 0; i < n; ++i) sids.insert(I32(codes.begin() + i * L, codes.begin() + (i + 1) * L));
  std::vector<std::pair<double, I32>> ranked;
  for (const I32& sid : sids) {
    double score = 0;
    for (int l = 0; l < L; ++l) {
      const I32 prefix(sid.begin(), sid.begin() + l);
      std::set<int32_t> allowed;
      for (const I32& other : sids)
        if (std::equal(prefix.begin(), prefix.end(), other.begin())) allowed.insert(other[l]);
      double sum = 0;
      for (int32_t c : allowed) sum += std::exp(static_cast<double>(logit(prefix, table.token(l, c))));
      score += static_cast<double>(logit(prefix, table.token(l, sid[l]))) - std::log(sum);
    }
    ranked.push_back({score, sid});
  }
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  I64 expected_items;
  I32 expected_sids;
  for (const auto& [score, sid] : ranked) {
    expected_sids.insert(expected_sids.end(), sid.begin(), sid.end());
    for (int i = 0; i < n; ++i)
      if (std::equal(sid.begin(), sid.end(), codes.begin() + i * L)) expected_items.push_back(ids[i]);
  }
  CHECK_EQ(res.sids, expected_sids);
  CHECK_EQ(res.items, expected_items);
  REQUIRE_EQ(res.sid_scores.size(), ranked.size());
  for (size_t j = 0; j < ranked.size(); ++j) CHECK_NEAR(res.sid_scores[j], ranked[j].first, 1e-5);
}

TEST_CASE(beam_over_base_and_delta_equals_one_trie) {
  // 60 items on 3 levels of 3 codes (many shared SIDs and prefixes); the last 25 rows form the
  // delta. Coarse logits (0 or 1) make scores tie, so the tie-break across the two tries counts.
  const int L = 3, K = 3, n = 60, m = 35;
  const int32_t first_token = 4;
  const int64_t vocab = first_token + L * K;
  uint32_t state = 777;
  auto next = [&state]() { state = state * 1664525u + 1013904223u; return state >> 8; };
  I32 codes(n * L);
  I64 ids(n);
  for (int i = 0; i < n; ++i) {
    ids[i] = 1000 - 7 * i;
    for (int l = 0; l < L; ++l) codes[i * L + l] = static_cast<int32_t>(next() % K);
  }
  const I32 sizes = {K, K, K};
  SidTrie merged(codes.data(), ids.data(), n, L, sizes);
  SidTrie base(codes.data(), ids.data(), m, L, sizes);
  SidTrie delta(codes.data() + m * L, ids.data() + m, n - m, L, sizes);
  const I64 paused = {ids[3], ids[40], ids[41], ids[59]};
  merged.set_active(paused.data(), static_cast<int64_t>(paused.size()), false);
  base.set_active(paused.data(), 1, false);
  delta.set_active(paused.data() + 1, 3, false);
  const SidTokenTable table = table_of(L, K, first_token);
  LogitFn f = [&](int32_t r, const I32& prefix) {
    std::vector<float> row(static_cast<size_t>(vocab));
    for (int64_t j = 0; j < vocab; ++j) {
      uint32_t h = 2166136261u ^ static_cast<uint32_t>(r);
      for (int32_t c : prefix) h = (h ^ static_cast<uint32_t>(c + 1)) * 16777619u;
      h = (h ^ static_cast<uint32_t>(j + 1)) * 16777619u;
      row[static_cast<size_t>(j)] = static_cast<float>((h >> 7) % 2);
    }
    return row;
  };
  std::vector<SearchRequest> reqs = {request(10, 5), request(20, 40), request(8, 6, {ids[0], ids[50], ids[36]}),
                                     request(5, 4, {ids[45]}, true, {ids[1], ids[2], ids[45], ids[46], ids[58]})};
  BeamSearch one(merged, table, reqs);
  BeamSearch two(base, &delta, table, reqs);
  const std::vector<SearchResult> want = drive(one, table, vocab, f), got = drive(two, table, vocab, f);
  REQUIRE_EQ(got.size(), want.size());
  for (size_t r = 0; r < want.size(); ++r) {
    CHECK_EQ(got[r].items, want[r].items);
    CHECK_EQ(got[r].sids, want[r].sids);
    CHECK_EQ(got[r].scores, want[r].scores);
    CHECK_EQ(got[r].sid_logprobs, want[r].sid_logprobs);
  }
  const I32 other_sizes = {K, K, K + 1};
  SidTrie other(codes.data(), ids.data(), 1, L, other_sizes);
  CHECK_THROWS_AS(BeamSearch(base, &other, table, reqs), genrec::InvalidArgument);
}
