// genrec-lite: semantic-ID prefix trie. See genrec/sid_trie.h.
#include "genrec/sid_trie.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

namespace genrec {
namespace {

constexpr int64_t kMaxCountingRange = int64_t{1} << 22;  // above this, sort by comparisons

template <class T>
size_t bytes_of(const std::vector<T>& v) noexcept {
  return v.capacity() * sizeof(T);
}

template <class T>
std::unique_ptr<std::atomic<T>[]> atomic_array(size_t n) {
  std::unique_ptr<std::atomic<T>[]> a(new std::atomic<T>[n == 0 ? 1 : n]);
  for (size_t i = 0; i < n; ++i) a[i].store(0, std::memory_order_relaxed);
  return a;
}

}  // namespace

SidTrie::SidTrie(const int32_t* codes, const int64_t* item_ids, int64_t n, int levels,
                 const std::vector<int32_t>& codebook_sizes)
    : levels_(levels) {
  if (levels < 1) {
    throw InvalidArgument("codes have " + std::to_string(levels) + " levels; expected >= 1");
  }
  if (n < 0) throw InvalidArgument("n is " + std::to_string(n) + "; expected n >= 0");
  if (n >= static_cast<int64_t>(kNone)) {
    throw InvalidArgument("n is " + std::to_string(n) + "; expected fewer than " +
                          std::to_string(kNone) + " items");
  }
  if (n > 0 && (codes == nullptr || item_ids == nullptr)) {
    throw InvalidArgument("SidTrie got a null pointer for codes or item_ids");
  }
  const size_t nn = static_cast<size_t>(n);
  const size_t L = static_cast<size_t>(levels);

  // Code ranges: given (and every code checked against them) or inferred.
  if (!codebook_sizes.empty()) {
    if (codebook_sizes.size() != L) {
      throw InvalidArgument("codebook_sizes has " + std::to_string(codebook_sizes.size()) +
                            " entries; expected one per level (" + std::to_string(levels) + ")");
    }
    for (size_t t = 0; t < L; ++t) {
      if (codebook_sizes[t] < 1) {
        throw InvalidArgument("codebook_sizes[" + std::to_string(t) + "] is " +
                              std::to_string(codebook_sizes[t]) + "; expected >= 1");
      }
    }
    sizes_ = codebook_sizes;
  } else {
    sizes_.assign(L, 0);
  }
  for (size_t i = 0; i < nn; ++i) {
    for (size_t t = 0; t < L; ++t) {
      const int32_t c = codes[i * L + t];
      const bool bad = c < 0 || (!codebook_sizes.empty() && c >= sizes_[t]);
      if (bad) {
        std::string expected = codebook_sizes.empty()
                                   ? "expected code >= 0"
                                   : "expected 0 <= code < " + std::to_string(sizes_[t]);
        throw OutOfRange("codes row " + std::to_string(i) + " level " + std::to_string(t) +
                         " has code " + std::to_string(c) + "; " + expected);
      }
      if (codebook_sizes.empty() && c >= sizes_[t]) {
        if (c == std::numeric_limits<int32_t>::max()) {
          throw OutOfRange("codes row " + std::to_string(i) + " level " + std::to_string(t) +
                           " has code " + std::to_string(c) + "; expected code < 2^31 - 1");
        }
        sizes_[t] = c + 1;
      }
    }
  }

  // Order the rows lexicographically by code, stably (rows with the same SID keep their order).
  std::vector<uint32_t> perm(nn);
  std::iota(perm.begin(), perm.end(), 0u);
  const bool counting = std::all_of(sizes_.begin(), sizes_.end(),
                                    [](int32_t k) { return k <= kMaxCountingRange; });
  if (counting) {  // LSD radix sort: one stable counting pass per level, last level first
    std::vector<uint32_t> tmp(nn);
    std::vector<uint32_t> start;
    for (size_t t = L; t-- > 0;) {
      start.assign(static_cast<size_t>(sizes_[t]) + 1, 0u);
      for (size_t i = 0; i < nn; ++i) ++start[static_cast<size_t>(codes[perm[i] * L + t]) + 1];
      for (size_t k = 1; k < start.size(); ++k) start[k] += start[k - 1];
      for (size_t i = 0; i < nn; ++i) tmp[start[codes[perm[i] * L + t]]++] = perm[i];
      perm.swap(tmp);
    }
  } else {
    std::stable_sort(perm.begin(), perm.end(), [&](uint32_t a, uint32_t b) {
      return std::lexicographical_compare(codes + a * L, codes + a * L + L, codes + b * L,
                                          codes + b * L + L);
    });
  }
  std::vector<int32_t> sorted(nn * L);
  for (size_t i = 0; i < nn; ++i) std::copy(codes + perm[i] * L, codes + perm[i] * L + L, &sorted[i * L]);
  std::vector<int64_t> ids(nn);
  for (size_t i = 0; i < nn; ++i) ids[i] = item_ids[perm[i]];
  build_sorted(sorted, std::move(ids), {});
  build_index([&](uint32_t pos) { return perm[pos]; });
}

void SidTrie::build_sorted(std::vector<int32_t>& sorted, std::vector<int64_t> ids,
                           const std::vector<uint8_t>& active) {
  const size_t L = static_cast<size_t>(levels_);
  const size_t nn = ids.size();
  // First level at which row i differs from row i - 1 (0 for the first row, L if identical).
  auto first_diff = [&](size_t i) -> size_t {
    if (i == 0) return 0;
    const int32_t* a = &sorted[(i - 1) * L];
    const int32_t* b = &sorted[i * L];
    size_t t = 0;
    while (t < L && a[t] == b[t]) ++t;
    return t;
  };

  // Count the nodes of each depth, then fill code and parent.
  depth_.resize(L + 1);
  std::vector<size_t> count(L + 1, 0);
  count[0] = 1;
  for (size_t i = 0; i < nn; ++i)
    for (size_t t = first_diff(i); t < L; ++t) ++count[t + 1];
  for (size_t t = 1; t <= L; ++t) {
    depth_[t].code.resize(count[t]);
    depth_[t].parent.resize(count[t]);
  }
  std::vector<uint32_t> cur(L + 1, 0);  // current node per depth
  std::vector<uint32_t> next(L + 1, 0);
  std::vector<uint32_t> leaf_begin;
  leaf_begin.reserve(count[L] + 1);
  for (size_t i = 0; i < nn; ++i) {
    const size_t f = first_diff(i);
    for (size_t t = f; t < L; ++t) {
      const uint32_t node = next[t + 1]++;
      depth_[t + 1].code[node] = sorted[i * L + t];
      depth_[t + 1].parent[node] = cur[t];
      cur[t + 1] = node;
    }
    if (f < L) leaf_begin.push_back(static_cast<uint32_t>(i));
  }
  leaf_begin.push_back(static_cast<uint32_t>(nn));
  sorted.clear();
  sorted.shrink_to_fit();

  // Children ranges (CSR) from the parents, which are non-decreasing within a depth.
  for (size_t t = 0; t < L; ++t) {
    std::vector<uint32_t>& cb = depth_[t].child_begin;
    cb.assign(count[t] + 1, 0u);
    for (uint32_t p : depth_[t + 1].parent) ++cb[p + 1];
    for (size_t k = 1; k < cb.size(); ++k) cb[k] += cb[k - 1];
  }
  depth_[L].child_begin = std::move(leaf_begin);

  // Items in trie order with their flags; per-node active counts.
  ids_by_pos_ = std::move(ids);
  active_by_pos_ = atomic_array<uint8_t>(nn);
  for (size_t i = 0; i < nn; ++i) {
    active_by_pos_[i].store(active.empty() ? 1 : active[i], std::memory_order_relaxed);
  }
  for (size_t t = 0; t <= L; ++t) depth_[t].active = atomic_array<uint32_t>(count[t]);
  for (size_t v = 0; v < count[L]; ++v) {
    uint32_t c = 0;
    for (uint32_t p = depth_[L].child_begin[v]; p < depth_[L].child_begin[v + 1]; ++p) {
      c += active_by_pos_[p].load(std::memory_order_relaxed);
    }
    depth_[L].active[v].store(c, std::memory_order_relaxed);
  }
  for (size_t t = L; t > 0; --t) {
    for (size_t v = 0; v < count[t]; ++v) {
      const uint32_t c = depth_[t].active[v].load(std::memory_order_relaxed);
      depth_[t - 1].active[depth_[t].parent[v]].fetch_add(c, std::memory_order_relaxed);
    }
  }

}

template <class RowOf>
void SidTrie::build_index(RowOf row_of) {
  const size_t nn = ids_by_pos_.size();
  // Item id -> position: a dense table when the ids are dense, else sorted ids.
  auto duplicate = [&](int64_t id, uint32_t pos_a, uint32_t pos_b) {
    uint32_t ra = row_of(pos_a), rb = row_of(pos_b);
    if (ra > rb) std::swap(ra, rb);
    throw InvalidArgument("item_ids has " + std::to_string(id) + " at rows " + std::to_string(ra) +
                          " and " + std::to_string(rb) + "; expected unique ids");
  };
  if (nn > 0) {
    const auto mm = std::minmax_element(ids_by_pos_.begin(), ids_by_pos_.end());
    const long double range = static_cast<long double>(*mm.second) - static_cast<long double>(*mm.first) + 1.0L;
    if (range <= 2.0L * static_cast<long double>(nn) + 64.0L) {
      dense_ = true;
      dense_base_ = *mm.first;
      dense_pos_.assign(static_cast<size_t>(range), kNone);
      for (size_t p = 0; p < nn; ++p) {
        uint32_t& slot = dense_pos_[static_cast<size_t>(ids_by_pos_[p] - dense_base_)];
        if (slot != kNone) duplicate(ids_by_pos_[p], slot, static_cast<uint32_t>(p));
        slot = static_cast<uint32_t>(p);
      }
    } else {
      std::vector<std::pair<int64_t, uint32_t>> pairs(nn);
      for (size_t p = 0; p < nn; ++p) pairs[p] = {ids_by_pos_[p], static_cast<uint32_t>(p)};
      std::sort(pairs.begin(), pairs.end());
      sorted_ids_.resize(nn);
      sorted_pos_.resize(nn);
      for (size_t k = 0; k < nn; ++k) {
        if (k > 0 && pairs[k].first == pairs[k - 1].first) duplicate(pairs[k].first, pairs[k - 1].second, pairs[k].second);
        sorted_ids_[k] = pairs[k].first;
        sorted_pos_[k] = pairs[k].second;
      }
    }
  }
}

SidTrie::SidTrie(const SidTrie& base, const int32_t* add_codes, const int64_t* add_ids, int64_t n_add,
                 const int64_t* remove_ids, int64_t n_remove)
    : levels_(base.levels_), sizes_(base.sizes_) {
  if (n_add < 0 || n_remove < 0) {
    throw InvalidArgument("n_add is " + std::to_string(n_add) + " and n_remove " + std::to_string(n_remove) +
                          "; expected both >= 0");
  }
  if ((n_add > 0 && (add_codes == nullptr || add_ids == nullptr)) || (n_remove > 0 && remove_ids == nullptr)) {
    throw InvalidArgument("SidTrie got a null pointer for the added or removed items");
  }
  const size_t L = static_cast<size_t>(levels_);
  const size_t nb = base.ids_by_pos_.size();
  const size_t na = static_cast<size_t>(n_add);
  for (size_t i = 0; i < na; ++i) {
    for (size_t t = 0; t < L; ++t) {
      const int32_t c = add_codes[i * L + t];
      if (c < 0 || c >= sizes_[t]) {
        throw OutOfRange("added row " + std::to_string(i) + " level " + std::to_string(t) + " has code " +
                         std::to_string(c) + "; expected 0 <= code < " + std::to_string(sizes_[t]));
      }
    }
  }
  std::vector<uint8_t> gone(nb, 0);
  size_t n_gone = 0;
  for (int64_t k = 0; k < n_remove; ++k) {
    const uint32_t p = base.require_position(remove_ids[k]);
    n_gone += gone[p] ? 0 : 1;
    gone[p] = 1;
  }
  // Added ids: new to base (or removed by this change) and all different.
  std::vector<uint32_t> by_id(na);
  std::iota(by_id.begin(), by_id.end(), 0u);
  std::sort(by_id.begin(), by_id.end(), [&](uint32_t a, uint32_t b) { return add_ids[a] < add_ids[b]; });
  for (size_t k = 0; k < na; ++k) {
    const int64_t id = add_ids[by_id[k]];
    if (k > 0 && add_ids[by_id[k - 1]] == id) {
      throw InvalidArgument("the added item_ids repeat " + std::to_string(id) + "; expected unique ids");
    }
    const uint32_t p = base.position_of(id);
    if (p != kNone && !gone[p]) {
      throw InvalidArgument("item id " + std::to_string(id) + " is already in the trie; expected new ids");
    }
  }
  const size_t nn = nb - n_gone + na;
  if (nn >= static_cast<size_t>(kNone)) {
    throw InvalidArgument("the trie would hold " + std::to_string(nn) + " items; expected fewer than " +
                          std::to_string(kNone));
  }
  // Added rows in SID order (stable: equal SIDs keep their row order).
  std::vector<uint32_t> order(na);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return std::lexicographical_compare(add_codes + a * L, add_codes + a * L + L, add_codes + b * L,
                                        add_codes + b * L + L);
  });
  // Merge: base's leaves are in SID order already; an added row goes after the base items of an
  // equal SID (a build puts base rows before added ones).
  std::vector<int32_t> sorted(nn * L);
  std::vector<int64_t> ids(nn);
  std::vector<uint8_t> active(nn);
  std::vector<uint32_t> new_pos(nb, kNone);  // base position -> position here
  std::vector<uint32_t> row_at(nn);          // position -> row (base rows, then added ones)
  std::vector<int32_t> leaf_codes(L);
  size_t out = 0, j = 0;
  auto emit_added = [&](size_t i) {
    std::copy(add_codes + i * L, add_codes + i * L + L, &sorted[out * L]);
    ids[out] = add_ids[i];
    active[out] = 1;
    row_at[out] = static_cast<uint32_t>(nb + i);
    ++out;
  };
  const Depth& leaves = base.depth_[L];
  for (uint32_t leaf = 0; leaf < leaves.size(); ++leaf) {
    uint32_t v = leaf;
    for (size_t t = L; t > 0; --t) {
      leaf_codes[t - 1] = base.depth_[t].code[v];
      v = base.depth_[t].parent[v];
    }
    while (j < na && std::lexicographical_compare(add_codes + order[j] * L, add_codes + order[j] * L + L,
                                                  leaf_codes.begin(), leaf_codes.end())) {
      emit_added(order[j++]);
    }
    for (uint32_t p = leaves.child_begin[leaf]; p < leaves.child_begin[leaf + 1]; ++p) {
      if (gone[p]) continue;
      std::copy(leaf_codes.begin(), leaf_codes.end(), &sorted[out * L]);
      ids[out] = base.ids_by_pos_[p];
      active[out] = base.active_by_pos_[p].load(std::memory_order_acquire);
      row_at[out] = p;
      new_pos[p] = static_cast<uint32_t>(out);
      ++out;
    }
  }
  while (j < na) emit_added(order[j++]);
  build_sorted(sorted, std::move(ids), active);

  // Id -> position: merge base's sorted ids (positions moved) with the added ones where both are
  // sparse; a dense table is rebuilt (linear in the id range).
  if (!base.dense_ && nn > 0) {
    const auto mm = std::minmax_element(ids_by_pos_.begin(), ids_by_pos_.end());
    const long double range = static_cast<long double>(*mm.second) - static_cast<long double>(*mm.first) + 1.0L;
    if (range > 2.0L * static_cast<long double>(nn) + 64.0L) {
      sorted_ids_.resize(nn);
      sorted_pos_.resize(nn);
      std::vector<uint32_t> added_pos(na);  // position of added row i
      for (size_t p = 0; p < nn; ++p) {
        if (row_at[p] >= nb) added_pos[row_at[p] - nb] = static_cast<uint32_t>(p);
      }
      size_t a = 0, k = 0, o = 0;
      const size_t ns = base.sorted_ids_.size();
      while (a < ns || k < na) {
        const bool take_base = k >= na || (a < ns && base.sorted_ids_[a] < add_ids[by_id[k]]);
        if (take_base) {
          const uint32_t p = new_pos[base.sorted_pos_[a]];
          if (p != kNone) {
            sorted_ids_[o] = base.sorted_ids_[a];
            sorted_pos_[o++] = p;
          }
          ++a;
        } else {
          sorted_ids_[o] = add_ids[by_id[k]];
          sorted_pos_[o++] = added_pos[by_id[k]];
          ++k;
        }
      }
      return;
    }
  }
  build_index([&](uint32_t pos) { return row_at[pos]; });
}

SidTrie::~SidTrie() = default;

void SidTrie::next_codes(const int32_t* prefixes, int64_t m, int len, int32_t* out) const {
  if (m < 0) throw InvalidArgument("m is " + std::to_string(m) + "; expected m >= 0");
  if (len < 0 || len >= levels_) {
    throw OutOfRange("prefix has length " + std::to_string(len) + "; expected 0 <= length < " +
                     std::to_string(levels_) + " (the number of levels)");
  }
  for (int64_t i = 0; i < m; ++i) {
    const uint32_t v = find_node(prefixes + i * len, len);
    out[i] = 0;
    if (v == kNone) continue;
    const uint32_t b = depth_[len].child_begin[v], e = depth_[len].child_begin[v + 1];
    if (e > b) out[i] = depth_[len + 1].code[e - 1] + 1;
  }
}

int64_t SidTrie::n_active() const noexcept {
  return depth_[0].active[0].load(std::memory_order_acquire);
}

uint32_t SidTrie::find_node(const int32_t* prefix, int len) const {
  uint32_t v = 0;
  for (int t = 0; t < len; ++t) {
    const int32_t c = prefix[t];
    if (c < 0 || c >= sizes_[t]) {
      throw OutOfRange("prefix[" + std::to_string(t) + "] is " + std::to_string(c) +
                       "; expected 0 <= code < " + std::to_string(sizes_[t]) +
                       " (the code range of level " + std::to_string(t) + ")");
    }
    if (v == kNone) continue;  // keep checking the remaining codes
    const uint32_t b = depth_[t].child_begin[v], e = depth_[t].child_begin[v + 1];
    const std::vector<int32_t>& cc = depth_[t + 1].code;
    if (static_cast<int64_t>(e - b) == sizes_[t]) {  // every code present: direct index
      v = b + static_cast<uint32_t>(c);
    } else {
      const auto it = std::lower_bound(cc.begin() + b, cc.begin() + e, c);
      v = (it != cc.begin() + e && *it == c) ? static_cast<uint32_t>(it - cc.begin()) : kNone;
    }
  }
  return v;
}

int SidTrie::allowed_next(const int32_t* prefix, int len, int32_t* out) const {
  if (len < 0 || len >= levels_) {
    throw OutOfRange("prefix has length " + std::to_string(len) + "; expected 0 <= length < " +
                     std::to_string(levels_) + " (the number of levels)");
  }
  const uint32_t v = find_node(prefix, len);
  if (v == kNone || depth_[len].active[v].load(std::memory_order_acquire) == 0) return 0;
  const Depth& below = depth_[len + 1];
  const uint32_t b = depth_[len].child_begin[v], e = depth_[len].child_begin[v + 1];
  int k = 0;
  for (uint32_t u = b; u < e; ++u) {
    if (below.active[u].load(std::memory_order_acquire) != 0) out[k++] = below.code[u];
  }
  return k;
}

std::vector<int32_t> SidTrie::allowed_next(const int32_t* prefix, int len) const {
  if (len < 0 || len >= levels_) {
    allowed_next(prefix, len, nullptr);  // throws the length error
  }
  std::vector<int32_t> out(static_cast<size_t>(sizes_[len]));
  out.resize(static_cast<size_t>(allowed_next(prefix, len, out.data())));
  return out;
}

void SidTrie::allowed_next_batch(const int32_t* prefixes, int64_t m, int len,
                                 std::vector<int64_t>& offsets, std::vector<int32_t>& codes) const {
  if (m < 0) throw InvalidArgument("m is " + std::to_string(m) + "; expected m >= 0");
  if (len < 0 || len >= levels_) {
    allowed_next(prefixes, len, nullptr);  // throws the length error
  }
  offsets.assign(static_cast<size_t>(m) + 1, 0);
  codes.clear();
  std::vector<int32_t> buf(static_cast<size_t>(sizes_[len]));
  for (int64_t i = 0; i < m; ++i) {
    const int k = allowed_next(prefixes + i * len, len, buf.data());
    codes.insert(codes.end(), buf.begin(), buf.begin() + k);
    offsets[static_cast<size_t>(i) + 1] = static_cast<int64_t>(codes.size());
  }
}

int64_t SidTrie::active_below(const int32_t* prefix, int len) const {
  if (len < 0 || len > levels_) {
    throw OutOfRange("prefix has length " + std::to_string(len) + "; expected 0 <= length <= " +
                     std::to_string(levels_) + " (the number of levels)");
  }
  const uint32_t v = find_node(prefix, len);
  return v == kNone ? 0 : static_cast<int64_t>(depth_[len].active[v].load(std::memory_order_acquire));
}

std::vector<int64_t> SidTrie::items(const int32_t* sid, int len, bool active_only) const {
  if (len != levels_) {
    throw OutOfRange("sid has length " + std::to_string(len) + "; expected " +
                     std::to_string(levels_) + " codes (the number of levels)");
  }
  std::vector<int64_t> out;
  const uint32_t v = find_node(sid, len);
  if (v == kNone) return out;
  const uint32_t b = depth_[levels_].child_begin[v], e = depth_[levels_].child_begin[v + 1];
  out.reserve(e - b);
  for (uint32_t p = b; p < e; ++p) {
    if (!active_only || active_by_pos_[p].load(std::memory_order_acquire) != 0) {
      out.push_back(ids_by_pos_[p]);
    }
  }
  return out;
}

uint32_t SidTrie::position_of(int64_t item_id) const noexcept {
  if (dense_) {
    if (item_id < dense_base_) return kNone;
    const uint64_t off = static_cast<uint64_t>(item_id) - static_cast<uint64_t>(dense_base_);
    return off < dense_pos_.size() ? dense_pos_[off] : kNone;
  }
  const auto it = std::lower_bound(sorted_ids_.begin(), sorted_ids_.end(), item_id);
  if (it == sorted_ids_.end() || *it != item_id) return kNone;
  return sorted_pos_[static_cast<size_t>(it - sorted_ids_.begin())];
}

uint32_t SidTrie::require_position(int64_t item_id) const {
  const uint32_t p = position_of(item_id);
  if (p == kNone) {
    throw UnknownItem("item id " + std::to_string(item_id) + " is not in the SID trie (" +
                      std::to_string(n_items()) + " items)", item_id);
  }
  return p;
}

uint32_t SidTrie::leaf_of(uint32_t pos) const noexcept {
  // The last leaf whose first position is <= pos (leaves are non-empty). A branch-free binary
  // search: the compare compiles to a conditional move, so random positions cost no mispredicts.
  const std::vector<uint32_t>& lb = depth_[levels_].child_begin;
  const uint32_t* base = lb.data();
  size_t len = lb.size();
  while (len > 1) {
    const size_t half = len / 2;
    base = base[half] <= pos ? base + half : base;
    len -= half;
  }
  return static_cast<uint32_t>(base - lb.data());
}

void SidTrie::codes_of(int64_t item_id, int32_t* out) const {
  uint32_t v = leaf_of(require_position(item_id));
  for (int t = levels_; t > 0; --t) {
    out[t - 1] = depth_[t].code[v];
    v = depth_[t].parent[v];
  }
}

bool SidTrie::contains(int64_t item_id) const noexcept { return position_of(item_id) != kNone; }

bool SidTrie::is_active(int64_t item_id) const {
  return active_by_pos_[require_position(item_id)].load(std::memory_order_acquire) != 0;
}

bool SidTrie::apply(uint32_t pos, uint32_t leaf, bool active, std::vector<uint32_t>& path) {
  const uint8_t want = active ? 1 : 0;
  if (active_by_pos_[pos].load(std::memory_order_relaxed) == want) return false;
  path[static_cast<size_t>(levels_)] = leaf;
  for (int t = levels_; t > 0; --t) path[t - 1] = depth_[t].parent[path[t]];
  if (active) {  // leaf first: a node seen active has its path below already counted
    active_by_pos_[pos].store(want, std::memory_order_release);
    for (int t = levels_; t >= 0; --t) depth_[t].active[path[t]].fetch_add(1, std::memory_order_acq_rel);
  } else {  // root first: a subtree stops being offered before its leaves empty
    for (int t = 0; t <= levels_; ++t) depth_[t].active[path[t]].fetch_sub(1, std::memory_order_acq_rel);
    active_by_pos_[pos].store(want, std::memory_order_release);
  }
  return true;
}

int64_t SidTrie::set_active(const int64_t* item_ids, int64_t n, bool active) {
  if (n < 0) throw InvalidArgument("n is " + std::to_string(n) + "; expected n >= 0");
  std::vector<uint32_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = require_position(item_ids[i]);
  std::vector<uint32_t> path(static_cast<size_t>(levels_) + 1);
  std::lock_guard<std::mutex> lock(write_mutex_);
  int64_t changed = 0;
  for (uint32_t p : pos) changed += apply(p, leaf_of(p), active, path) ? 1 : 0;
  return changed;
}

int64_t SidTrie::set_all_active(bool active) {
  std::vector<uint32_t> path(static_cast<size_t>(levels_) + 1);
  std::lock_guard<std::mutex> lock(write_mutex_);
  int64_t changed = 0;
  const std::vector<uint32_t>& lb = depth_[levels_].child_begin;
  for (uint32_t leaf = 0; leaf + 1 < lb.size(); ++leaf)
    for (uint32_t p = lb[leaf]; p < lb[leaf + 1]; ++p) changed += apply(p, leaf, active, path) ? 1 : 0;
  return changed;
}

size_t SidTrie::memory_bytes() const noexcept {
  size_t b = sizeof(*this) + bytes_of(sizes_) + depth_.capacity() * sizeof(Depth) +
             bytes_of(ids_by_pos_) + ids_by_pos_.size() * sizeof(std::atomic<uint8_t>) +
             bytes_of(dense_pos_) + bytes_of(sorted_ids_) + bytes_of(sorted_pos_);
  for (const Depth& d : depth_) {
    b += bytes_of(d.code) + bytes_of(d.parent) + bytes_of(d.child_begin) +
         d.size() * sizeof(std::atomic<uint32_t>);
  }
  return b;
}

}  // namespace genrec
