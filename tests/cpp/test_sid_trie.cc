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
