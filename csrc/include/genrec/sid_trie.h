// genrec-lite: the semantic-ID prefix trie used to constrain decoding to SIDs of real items.
//
// Built once from a table of SIDs (n rows of L codes) and their item ids. Several items may share
// a full SID (collision mode "none"): that leaf then holds several items, kept in the row order
// given at build. Every item also has an "active" flag (all active after the build) that can be
// changed at any time without a rebuild, e.g. to hide out-of-stock or paused ads; the queries only
// ever return codes and items with at least one active item below them.
//
// Layout: flat arrays only, no per-node heap objects. Depth t (0 = root, L = leaves) holds its
// nodes in lexicographic order of their prefixes; per depth: the last code of each node, its
// parent, the range of its children in depth t+1 (CSR), and an atomic count of active items
// below it. Leaves point to ranges of item positions; item id -> position goes through a dense
// table when the ids are dense, else through sorted ids + a permutation (binary search).
//
// Thread safety: all const methods may run concurrently with each other and with set_active /
// set_all_active. Writers are serialised by an internal mutex (readers never lock); each item's
// flag and each node's count are atomics, so the counts are exact once a writer returns, and a
// reader never crashes or sees a torn value. A read that
// overlaps a write sees, node by node, either the state before or after it: e.g. a child code
// returned by allowed_next had an active item below it at the moment it was read (activation
// updates counts leaf-first and deactivation root-first, so a child observed active while an item
// is being activated is reachable all the way down). Reads that start after a write returned see
// its effect.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "genrec/errors.h"

namespace genrec {

class SidTrie {
 public:
  /// codes: n x levels int32, row-major; item_ids: n int64, all different.
  /// codebook_sizes: the code range of each level (0 <= code < size), or empty to infer it as
  /// max code + 1 per level. Throws OutOfRange for a code outside its range, InvalidArgument for
  /// a repeated item id or bad sizes.
  SidTrie(const int32_t* codes, const int64_t* item_ids, int64_t n, int levels,
          const std::vector<int32_t>& codebook_sizes = {});
  /// A new trie holding base's items minus remove_ids plus the n_add rows of add_codes (n_add x
  /// levels) / add_ids, the same as a build from base's rows (in their order, removed ones
  /// dropped) followed by the added rows, but made by one linear merge of base's sorted items
  /// with the added rows (sorted here), so the cost is a copy of the catalog, not a sort of it.
  /// Base's active flags carry over (added items start active). base is only read; the caller
  /// keeps writers of base out meanwhile. Throws UnknownItem for a remove id base lacks,
  /// InvalidArgument for an added id already held (and not removed) or repeated, OutOfRange for
  /// a code outside its level's range.
  SidTrie(const SidTrie& base, const int32_t* add_codes, const int64_t* add_ids, int64_t n_add,
          const int64_t* remove_ids, int64_t n_remove);
  ~SidTrie();
  SidTrie(const SidTrie&) = delete;
  SidTrie& operator=(const SidTrie&) = delete;

  int levels() const noexcept { return levels_; }
  /// The code range of each level.
  const std::vector<int32_t>& codebook_sizes() const noexcept { return sizes_; }
  int64_t n_items() const noexcept { return static_cast<int64_t>(ids_by_pos_.size()); }
  /// Number of distinct full SIDs (leaves).
  int64_t n_sids() const noexcept { return static_cast<int64_t>(depth_[levels_].code.size()); }
  /// Number of active items.
  int64_t n_active() const noexcept;

  /// Sorted codes c such that prefix + [c] has at least one active item below it. len must be
  /// < levels (0 = root); throws OutOfRange for a bad length or a code outside its level's range.
  /// A prefix that no item has gives an empty result.
  std::vector<int32_t> allowed_next(const int32_t* prefix, int len) const;
  /// Same, into out (room for codebook_sizes()[len] codes); returns how many were written.
  int allowed_next(const int32_t* prefix, int len, int32_t* out) const;
  /// allowed_next for m prefixes of the same length (m x len int32, row-major), as CSR:
  /// the codes of prefix i are codes[offsets[i] .. offsets[i+1]).
  void allowed_next_batch(const int32_t* prefixes, int64_t m, int len, std::vector<int64_t>& offsets,
                          std::vector<int32_t>& codes) const;

  /// For m prefixes of one length len < levels (m x len int32): 1 + the largest code of a child
  /// of each prefix's node, active or not, or 0 when the prefix has no item; into out (m values).
  /// (What a new item joining that prefix is numbered with on a level that counts collisions.)
  void next_codes(const int32_t* prefixes, int64_t m, int len, int32_t* out) const;

  /// Number of active items below a prefix (0 <= len <= levels; a full SID at len == levels).
  /// A prefix that no item has gives 0.
  int64_t active_below(const int32_t* prefix, int len) const;

  /// Items whose SID is exactly sid (len must equal levels), in build-row order; only the active
  /// ones unless active_only is false. An SID that no item has gives an empty result.
  std::vector<int64_t> items(const int32_t* sid, int len, bool active_only = true) const;

  /// The SID of an item (levels codes into out). Throws UnknownItem.
  void codes_of(int64_t item_id, int32_t* out) const;
  bool contains(int64_t item_id) const noexcept;
  /// Throws UnknownItem.
  bool is_active(int64_t item_id) const;

  /// Mark items active or inactive; returns how many changed state. All ids are checked first:
  /// an unknown id throws UnknownItem and changes nothing. Repeated ids are fine.
  int64_t set_active(const int64_t* item_ids, int64_t n, bool active);
  /// Mark every item active or inactive; returns how many changed state.
  int64_t set_all_active(bool active);

  /// Heap bytes owned by the trie.
  size_t memory_bytes() const noexcept;

  // ---- Node-level read access, for searches that walk the trie themselves (BeamSearch). ----
  // Depth t (0 = the root, levels() = the leaves) holds n_nodes(t) nodes numbered in lexicographic
  // order of their prefixes, so comparing two nodes of one depth compares their prefixes. Item
  // positions 0..n_items()-1 are in trie order: leaf by leaf, build-row order within a leaf, so
  // the items below any node occupy a contiguous range of positions. These accessors do not check
  // their arguments: pass only depths, nodes and positions that the trie itself handed out. They
  // keep the thread-safety guarantees above (counts and flags are atomic reads).
  static constexpr uint32_t kNoNode = 0xFFFFFFFFu;
  uint32_t n_nodes(int depth) const noexcept { return static_cast<uint32_t>(depth_[depth].size()); }
  /// Children of a node at depth < levels(): nodes [child_begin(node), child_begin(node + 1)) of
  /// depth + 1, in code order. At depth levels() the same range holds the leaf's item positions.
  uint32_t child_begin(int depth, uint32_t node) const noexcept { return depth_[depth].child_begin[node]; }
  /// The last code of a node at depth >= 1.
  int32_t node_code(int depth, uint32_t node) const noexcept { return depth_[depth].code[node]; }
  /// The parent (at depth - 1) of a node at depth >= 1.
  uint32_t node_parent(int depth, uint32_t node) const noexcept { return depth_[depth].parent[node]; }
  /// Active items below a node, as read now.
  uint32_t node_active(int depth, uint32_t node) const noexcept {
    return depth_[depth].active[node].load(std::memory_order_acquire);
  }
  /// The same per-depth arrays as raw pointers, for tight loops: n_nodes(depth) + 1 child
  /// begins, n_nodes(depth) codes (depth >= 1) and active counts (read them atomically).
  const uint32_t* child_begins(int depth) const noexcept { return depth_[depth].child_begin.data(); }
  const int32_t* node_codes(int depth) const noexcept { return depth_[depth].code.data(); }
  const std::atomic<uint32_t>* active_counts(int depth) const noexcept { return depth_[depth].active.get(); }
  int64_t item_at(uint32_t pos) const noexcept { return ids_by_pos_[pos]; }
  /// Whether the item at a position is active, as read now.
  bool active_at(uint32_t pos) const noexcept {
    return active_by_pos_[pos].load(std::memory_order_acquire) != 0;
  }
  /// Position of an item id, or kNoNode when the trie does not hold it.
  uint32_t item_position(int64_t item_id) const noexcept { return position_of(item_id); }
  /// The leaf (node at depth levels()) that holds an item position.
  uint32_t leaf_of_position(uint32_t pos) const noexcept { return leaf_of(pos); }

 private:
  struct Depth {
    std::vector<int32_t> code;         // last code of each node (empty at the root)
    std::vector<uint32_t> parent;      // parent index in the depth above (empty at the root)
    std::vector<uint32_t> child_begin; // CSR into the depth below (or into item positions at L)
    std::unique_ptr<std::atomic<uint32_t>[]> active;  // active items below each node
    size_t size() const noexcept { return child_begin.empty() ? 0 : child_begin.size() - 1; }
  };

  static constexpr uint32_t kNone = 0xFFFFFFFFu;

  // Node index at depth len for the prefix, or kNone; checks each code against its level's range.
  uint32_t find_node(const int32_t* prefix, int len) const;
  uint32_t position_of(int64_t item_id) const noexcept;  // kNone if unknown
  uint32_t require_position(int64_t item_id) const;
  uint32_t leaf_of(uint32_t pos) const noexcept;
  bool apply(uint32_t pos, uint32_t leaf, bool active, std::vector<uint32_t>& path);
  // The nodes, items, flags and counts from rows already in trie order (sorted: nn x levels_,
  // freed here); active: one flag per row, or empty for all active.
  void build_sorted(std::vector<int32_t>& sorted, std::vector<int64_t> ids, const std::vector<uint8_t>& active);
  // The id -> position map of ids_by_pos_; row_of(pos) names the input row of a position in the
  // error for a repeated id.
  template <class RowOf>
  void build_index(RowOf row_of);

  int levels_ = 0;
  std::vector<int32_t> sizes_;
  std::vector<Depth> depth_;              // levels_ + 1 entries
  std::vector<int64_t> ids_by_pos_;       // item ids in trie order (leaf by leaf, build-row order)
  std::unique_ptr<std::atomic<uint8_t>[]> active_by_pos_;
  // id -> position: dense table (dense_pos_[id - dense_base_]) or sorted ids + positions.
  bool dense_ = false;
  int64_t dense_base_ = 0;
  std::vector<uint32_t> dense_pos_;
  std::vector<int64_t> sorted_ids_;
  std::vector<uint32_t> sorted_pos_;
  std::mutex write_mutex_;  // serialises set_active / set_all_active
};

}  // namespace genrec
