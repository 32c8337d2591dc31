// SidTrie (csrc/src/sid_trie.cc): build, allowed_next, items, active flags, errors.
#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "check.h"
#include "genrec/sid_trie.h"

using genrec::SidTrie;
using I32 = std::vector<int32_t>;
using I64 = std::vector<int64_t>;

namespace {

// Four items on three SIDs (two levels); items 12 and 13 share (1, 0). Level sizes 3 and 3.
const I32 kCodes = {0, 1,  0, 2,  1, 0,  1, 0};
const I64 kIds = {10, 11, 12, 13};

SidTrie small_trie(const I32& sizes = {}) { return SidTrie(kCodes.data(), kIds.data(), 4, 2, sizes); }

}  // namespace

TEST_CASE(trie_build_counts) {
  SidTrie t = small_trie();
  CHECK_EQ(t.levels(), 2);
  CHECK_EQ(t.codebook_sizes(), (I32{2, 3}));  // inferred: max code + 1 per level
  CHECK_EQ(t.n_items(), 4);
  CHECK_EQ(t.n_sids(), 3);
  CHECK_EQ(t.n_active(), 4);
  CHECK(t.memory_bytes() > 0);
  SidTrie sized = small_trie({3, 3});
  CHECK_EQ(sized.codebook_sizes(), (I32{3, 3}));
}

TEST_CASE(trie_allowed_next) {
  SidTrie t = small_trie({3, 3});
  CHECK_EQ(t.allowed_next(nullptr, 0), (I32{0, 1}));
  const int32_t p0[] = {0}, p1[] = {1}, p2[] = {2};
  CHECK_EQ(t.allowed_next(p0, 1), (I32{1, 2}));
  CHECK_EQ(t.allowed_next(p1, 1), (I32{0}));
  CHECK_EQ(t.allowed_next(p2, 1), I32{});  // a prefix no item has
  int32_t out[3];
  CHECK_EQ(t.allowed_next(p0, 1, out), 2);
  CHECK_EQ(out[0], 1);
  CHECK_EQ(out[1], 2);

  const int32_t prefixes[] = {1, 0, 2};
  I64 offsets;
  I32 codes;
  t.allowed_next_batch(prefixes, 3, 1, offsets, codes);
  CHECK_EQ(offsets, (I64{0, 1, 3, 3}));
  CHECK_EQ(codes, (I32{0, 1, 2}));
}

TEST_CASE(trie_items_and_codes) {
  SidTrie t = small_trie();
  const int32_t shared[] = {1, 0}, single[] = {0, 2}, none[] = {0, 0};
  CHECK_EQ(t.items(shared, 2), (I64{12, 13}));  // build-row order
  CHECK_EQ(t.items(single, 2), (I64{11}));
  CHECK_EQ(t.items(none, 2), I64{});
  int32_t sid[2] = {-1, -1};
  t.codes_of(11, sid);
  CHECK_EQ(sid[0], 0);
  CHECK_EQ(sid[1], 2);
  CHECK(t.contains(13));
  CHECK(!t.contains(14));
  const int32_t p1[] = {1};
  CHECK_EQ(t.active_below(nullptr, 0), 4);
  CHECK_EQ(t.active_below(p1, 1), 2);
  CHECK_EQ(t.active_below(shared, 2), 2);
}

TEST_CASE(trie_active_flags) {
  SidTrie t = small_trie();
  const int64_t off[] = {12, 13, 12};  // repeated ids are fine
  CHECK_EQ(t.set_active(off, 3, false), 2);
  CHECK_EQ(t.n_active(), 2);
  CHECK(!t.is_active(12));
  CHECK(t.is_active(10));
  CHECK_EQ(t.allowed_next(nullptr, 0), (I32{0}));  // nothing active below code 1 any more
  const int32_t shared[] = {1, 0};
  CHECK_EQ(t.items(shared, 2), I64{});
  CHECK_EQ(t.items(shared, 2, /*active_only=*/false), (I64{12, 13}));
  CHECK_EQ(t.active_below(shared, 2), 0);

  // An unknown id throws and changes nothing.
  const int64_t mixed[] = {10, 99};
  CHECK_THROWS_AS(t.set_active(mixed, 2, false), genrec::UnknownItem);
  CHECK(t.is_active(10));
  CHECK_EQ(t.n_active(), 2);

  const int64_t one[] = {13};
  CHECK_EQ(t.set_active(one, 1, true), 1);
  CHECK_EQ(t.items(shared, 2), (I64{13}));
  CHECK_EQ(t.set_all_active(true), 1);
  CHECK_EQ(t.n_active(), 4);
  CHECK_EQ(t.set_all_active(false), 4);
  CHECK_EQ(t.allowed_next(nullptr, 0), I32{});
}

TEST_CASE(trie_errors_on_bad_input) {
  using genrec::InvalidArgument;
  using genrec::OutOfRange;
  using genrec::UnknownItem;
  const I32 codes = {0, 1, 1, 0};
  const I64 ids = {1, 2}, repeated = {5, 5};
  CHECK_THROWS_AS(SidTrie(codes.data(), ids.data(), 2, 0), InvalidArgument);     // no levels
  CHECK_THROWS_AS(SidTrie(codes.data(), ids.data(), -1, 2), InvalidArgument);    // n < 0
  CHECK_THROWS_AS(SidTrie(nullptr, ids.data(), 2, 2), InvalidArgument);
  CHECK_THROWS_AS(SidTrie(codes.data(), repeated.data(), 2, 2), InvalidArgument);
  const I32 negative = {0, -1, 1, 0};
  CHECK_THROWS_AS(SidTrie(negative.data(), ids.data(), 2, 2), OutOfRange);
  CHECK_THROWS_AS(SidTrie(codes.data(), ids.data(), 2, 2, {2, 1}), OutOfRange);  // code 1 >= size 1
  CHECK_THROWS_AS(SidTrie(codes.data(), ids.data(), 2, 2, {2}), InvalidArgument);  // sizes per level
  CHECK_THROWS_AS(SidTrie(codes.data(), ids.data(), 2, 2, {2, 0}), InvalidArgument);

  SidTrie t = small_trie({3, 3});
  const int32_t bad_code[] = {3}, two[] = {0, 1};
  CHECK_THROWS_AS(t.allowed_next(two, 2), OutOfRange);     // length must be < levels
  CHECK_THROWS_AS(t.allowed_next(bad_code, 1), OutOfRange);  // code outside its level
  CHECK_THROWS_AS(t.items(two, 1), OutOfRange);            // an SID has exactly `levels` codes
  int32_t out[2];
  CHECK_THROWS_AS(t.codes_of(99, out), UnknownItem);
  CHECK_THROWS_AS(t.is_active(99), UnknownItem);
  // UnknownItem is an InvalidArgument (Python: UnknownItemError) and names the id.
  try {
    t.codes_of(99, out);
  } catch (const UnknownItem& e) {
    CHECK_EQ(e.item_id(), 99);
  }
}

TEST_CASE(trie_matches_brute_force_on_random_sids) {
  // 300 items on 3 levels of 5 codes, sparse ids (the sorted-id path), some SIDs shared.
  std::mt19937 rng(7);
  const int levels = 3, n = 300;
  I32 codes(n * levels);
  I64 ids(n);
  for (int i = 0; i < n; ++i) {
    ids[i] = 1000003LL * i + 17;
    for (int l = 0; l < levels; ++l) codes[i * levels + l] = static_cast<int32_t>(rng() % 5);
  }
  SidTrie t(codes.data(), ids.data(), n, levels, {5, 5, 5});
  std::set<I32> sids;
  for (int i = 0; i < n; ++i) sids.insert(I32(codes.begin() + i * levels, codes.begin() + (i + 1) * levels));
  CHECK_EQ(t.n_sids(), static_cast<int64_t>(sids.size()));

  // Deactivate every third item, then compare every prefix with a scan of the rows.
  I64 off;
  for (int i = 0; i < n; i += 3) off.push_back(ids[i]);
  t.set_active(off.data(), static_cast<int64_t>(off.size()), false);
  for (int len = 0; len < levels; ++len) {
    const int n_prefixes = len == 0 ? 1 : (len == 1 ? 5 : 25);
    for (int p = 0; p < n_prefixes; ++p) {
      const int32_t prefix[2] = {len == 2 ? p / 5 : p, p % 5};
      std::set<int32_t> expected;
      int64_t below = 0;
      for (int i = 0; i < n; ++i) {
        if (i % 3 == 0 || !std::equal(prefix, prefix + len, codes.begin() + i * levels)) continue;
        expected.insert(codes[i * levels + len]);
        ++below;
      }
      CHECK_EQ(t.allowed_next(prefix, len), I32(expected.begin(), expected.end()));
      CHECK_EQ(t.active_below(prefix, len), below);
    }
  }
  for (const I32& sid : sids) {
    I64 expected;
    for (int i = 0; i < n; ++i)
      if (i % 3 != 0 && std::equal(sid.begin(), sid.end(), codes.begin() + i * levels)) expected.push_back(ids[i]);
    CHECK_EQ(t.items(sid.data(), levels), expected);
  }
}

TEST_CASE(trie_derive_equals_a_build) {
  // Random tables with collisions and sparse or dense ids: derive(add, remove) must give the trie
  // a build from the remaining rows followed by the added ones gives, flags carried over.
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 40; ++trial) {
    const int L = 3;
    const I32 sizes = {4, 3, 5};
    const int n = static_cast<int>(rng() % 80);
    const bool dense = trial % 2 == 0;
    I32 codes;
    I64 ids;
    for (int i = 0; i < n; ++i) {
      for (int t = 0; t < L; ++t) codes.push_back(static_cast<int32_t>(rng() % sizes[t]));
      ids.push_back(dense ? 7 + i : static_cast<int64_t>(rng() >> 20) * (i % 2 ? -1 : 1));
    }
    SidTrie base(codes.data(), ids.data(), n, L, sizes);
    I64 paused, gone;
    for (int i = 0; i < n; ++i) {
      if (rng() % 3 == 0) paused.push_back(ids[i]);
      if (rng() % 5 == 0) gone.push_back(ids[i]);
    }
    base.set_active(paused.data(), static_cast<int64_t>(paused.size()), false);
    const int na = static_cast<int>(rng() % 20);
    I32 add_codes;
    I64 add_ids;
    for (int i = 0; i < na; ++i) {
      for (int t = 0; t < L; ++t) add_codes.push_back(static_cast<int32_t>(rng() % sizes[t]));
      add_ids.push_back(i == 0 && !gone.empty() ? gone[0] : (int64_t{1} << 40) + i);  // a removed id may come back
    }
    SidTrie got(base, add_codes.data(), add_ids.data(), na, gone.data(), static_cast<int64_t>(gone.size()));

    const std::set<int64_t> gone_set(gone.begin(), gone.end());
    I32 all_codes;
    I64 all_ids, still_paused;
    for (int i = 0; i < n; ++i) {
      if (gone_set.count(ids[i])) continue;
      all_codes.insert(all_codes.end(), codes.begin() + i * L, codes.begin() + (i + 1) * L);
      all_ids.push_back(ids[i]);
    }
    for (int64_t id : paused)
      if (!gone_set.count(id)) still_paused.push_back(id);
    all_codes.insert(all_codes.end(), add_codes.begin(), add_codes.end());
    all_ids.insert(all_ids.end(), add_ids.begin(), add_ids.end());
    SidTrie want(all_codes.data(), all_ids.data(), static_cast<int64_t>(all_ids.size()), L, sizes);
    want.set_active(still_paused.data(), static_cast<int64_t>(still_paused.size()), false);

    CHECK_EQ(got.n_items(), want.n_items());
    CHECK_EQ(got.n_sids(), want.n_sids());
    CHECK_EQ(got.n_active(), want.n_active());
    for (int d = 0; d <= L; ++d) {
      CHECK_EQ(got.n_nodes(d), want.n_nodes(d));
      for (uint32_t v = 0; v < got.n_nodes(d); ++v) {
        CHECK_EQ(got.node_active(d, v), want.node_active(d, v));
        CHECK_EQ(got.child_begin(d, v + 1), want.child_begin(d, v + 1));
        if (d > 0) CHECK_EQ(got.node_code(d, v), want.node_code(d, v));
      }
    }
    for (uint32_t p = 0; p < static_cast<uint32_t>(got.n_items()); ++p) {
      CHECK_EQ(got.item_at(p), want.item_at(p));
      CHECK_EQ(got.active_at(p), want.active_at(p));
      CHECK_EQ(got.item_position(got.item_at(p)), p);
    }
    for (int64_t id : gone_set) CHECK_EQ(got.contains(id), add_ids.empty() ? false : id == add_ids[0]);
    // next_codes: 1 + the largest extra code under each base prefix, on every prefix of length 2
    for (int32_t a = 0; a < 4; ++a) {
      for (int32_t b = 0; b < 3; ++b) {
        const int32_t pre[] = {a, b};
        int32_t x = -1, y = -1;
        got.next_codes(pre, 1, 2, &x);
        want.next_codes(pre, 1, 2, &y);
        CHECK_EQ(x, y);
        const I32 below = want.allowed_next(pre, 2);
        if (want.n_active() == want.n_items()) CHECK_EQ(x, below.empty() ? 0 : below.back() + 1);
      }
    }
  }
}

TEST_CASE(trie_derive_errors) {
  SidTrie t = small_trie({3, 3});
  const int64_t unknown[] = {99}, held[] = {12};
  const int32_t row[] = {0, 0}, bad_row[] = {0, 3};
  CHECK_THROWS_AS(SidTrie(t, nullptr, nullptr, 0, unknown, 1), genrec::UnknownItem);
  CHECK_THROWS_AS(SidTrie(t, row, held, 1, nullptr, 0), genrec::InvalidArgument);
  CHECK_THROWS_AS(SidTrie(t, bad_row, unknown, 1, nullptr, 0), genrec::OutOfRange);
  const int64_t twice[] = {50, 50};
  const int32_t rows[] = {0, 0, 1, 1};
  CHECK_THROWS_AS(SidTrie(t, rows, twice, 2, nullptr, 0), genrec::InvalidArgument);
  SidTrie back(t, row, held, 1, held, 1);  // removed and added again in one change: fine
  CHECK_EQ(back.n_items(), 4);
  const int32_t sid[] = {0, 0};
  CHECK_EQ(back.items(sid, 2), (I64{12}));
}
