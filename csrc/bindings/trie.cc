// genrec-lite Python bindings: the semantic-ID prefix trie (genrec/sid_trie.h).
#include "convert.h"

#include "genrec/sid_trie.h"

namespace genrec_py {
using namespace nb::literals;

namespace {

const char* kTrieDoc = R"doc(Prefix trie over semantic IDs, with an active-item mask.

SidTrie(codes, item_ids, codebook_sizes=None): codes of shape (n, levels), one SID per item;
item_ids of shape (n,), all different. Items may share a SID (collisions): that SID then maps to
several items, in the row order given here. codebook_sizes (an int, or one per level) gives the
code range of each level; by default it is max code + 1.

All items start active. set_active()/set_all_active() change the mask at any time without a
rebuild, and the queries only offer codes and items with an active item below them. Queries may
run from many threads at once, also while the mask changes (the GIL is released).)doc";

void trie_init(genrec::SidTrie* self, nb::handle codes, nb::handle item_ids, nb::handle codebook_sizes) {
  AnyArray c = as_array(codes, "codes");
  AnyArray ids = as_array(item_ids, "item_ids");
  if (c.ndim() != 2 || c.shape(1) == 0) {
    throw InvalidArgument("codes has shape " + shape_str(c) + "; expected (n, levels) with levels >= 1");
  }
  if (ids.ndim() != 1 || ids.shape(0) != c.shape(0)) {
    throw InvalidArgument("item_ids has shape " + shape_str(ids) + "; expected (" +
                          std::to_string(c.shape(0)) + ",), one id per row of codes");
  }
  const int levels = static_cast<int>(c.shape(1));
  std::vector<int32_t> sizes;
  if (!codebook_sizes.is_none()) {
    if (nb::isinstance<nb::int_>(codebook_sizes)) {
      int64_t k = nb::cast<int64_t>(codebook_sizes);
      if (k < 1 || k > std::numeric_limits<int32_t>::max()) {
        throw InvalidArgument("codebook_sizes is " + std::to_string(k) + "; expected 1 <= size < 2^31");
      }
      sizes.assign(static_cast<size_t>(levels), static_cast<int32_t>(k));
    } else {
      read_sequence<int32_t>(codebook_sizes, sizes, "codebook_sizes");
      if (sizes.empty()) {
        throw InvalidArgument("codebook_sizes is empty; expected None, an int or one size per level");
      }
    }
  }
  nb::gil_scoped_release release;
  std::vector<int32_t> cs;
  std::vector<int64_t> is;
  const int32_t* cp = int_data<int32_t>(c, cs, "codes");
  const int64_t* ip = int_data<int64_t>(ids, is, "item_ids");
  new (self) genrec::SidTrie(cp, ip, static_cast<int64_t>(c.shape(0)), levels, sizes);
}

nb::ndarray<nb::numpy, int32_t> trie_allowed_next(const genrec::SidTrie& t, nb::handle prefix) {
  std::vector<int32_t> p;
  read_sequence<int32_t>(prefix, p, "prefix");
  std::vector<int32_t> out;
  {
    nb::gil_scoped_release release;
    out = t.allowed_next(p.data(), static_cast<int>(p.size()));
  }
  return vector_array(std::move(out));
}

nb::tuple trie_allowed_next_batch(const genrec::SidTrie& t, nb::handle prefixes) {
  AnyArray a = as_array(prefixes, "prefixes");
  if (a.ndim() != 2) {
    throw InvalidArgument("prefixes has shape " + shape_str(a) +
                          "; expected (m, length), all prefixes of the same length");
  }
  std::vector<int64_t> offsets;
  std::vector<int32_t> codes;
  {
    nb::gil_scoped_release release;
    std::vector<int32_t> storage;
    const int32_t* p = int_data<int32_t>(a, storage, "prefixes");
    t.allowed_next_batch(p, static_cast<int64_t>(a.shape(0)), static_cast<int>(a.shape(1)), offsets, codes);
  }
  return nb::make_tuple(vector_array(std::move(offsets)), vector_array(std::move(codes)));
}

nb::ndarray<nb::numpy, int64_t> trie_items(const genrec::SidTrie& t, nb::handle sid, bool active_only) {
  std::vector<int32_t> s;
  read_sequence<int32_t>(sid, s, "sid");
  std::vector<int64_t> out;
  {
    nb::gil_scoped_release release;
    out = t.items(s.data(), static_cast<int>(s.size()), active_only);
  }
  return vector_array(std::move(out));
}

nb::ndarray<nb::numpy, int32_t> trie_codes_of(const genrec::SidTrie& t, int64_t item_id) {
  std::unique_ptr<int32_t[]> out(new int32_t[static_cast<size_t>(t.levels())]);
  t.codes_of(item_id, out.get());
  return owned_array(std::move(out), {static_cast<size_t>(t.levels())});
}

int64_t trie_set_active(genrec::SidTrie& t, nb::handle item_ids, bool active) {
  std::vector<int64_t> ids;
  if (nb::isinstance<nb::int_>(item_ids)) {
    ids.push_back(nb::cast<int64_t>(item_ids));
  } else {
    read_sequence<int64_t>(item_ids, ids, "item_ids");
  }
  nb::gil_scoped_release release;
  return t.set_active(ids.data(), static_cast<int64_t>(ids.size()), active);
}

genrec::SidTrie* trie_derive(const genrec::SidTrie& t, nb::handle add_codes, nb::handle add_ids,
                             nb::handle remove_ids) {
  const size_t L = static_cast<size_t>(t.levels());
  AnyArray c = as_array(add_codes, "add_codes");
  AnyArray ids = as_array(add_ids, "add_ids");
  if (c.ndim() != 2 || c.shape(1) != L) {
    throw InvalidArgument("add_codes has shape " + shape_str(c) + "; expected (n, " + std::to_string(L) + ")");
  }
  if (ids.ndim() != 1 || ids.shape(0) != c.shape(0)) {
    throw InvalidArgument("add_ids has shape " + shape_str(ids) + "; expected (" + std::to_string(c.shape(0)) +
                          ",), one id per row of add_codes");
  }
  std::vector<int64_t> gone;
  if (!remove_ids.is_none()) read_sequence<int64_t>(remove_ids, gone, "remove_ids");
  nb::gil_scoped_release release;
  std::vector<int32_t> cs;
  std::vector<int64_t> is;
  const int32_t* cp = int_data<int32_t>(c, cs, "add_codes");
  const int64_t* ip = int_data<int64_t>(ids, is, "add_ids");
  return new genrec::SidTrie(t, cp, ip, static_cast<int64_t>(c.shape(0)), gone.data(),
                             static_cast<int64_t>(gone.size()));
}

nb::ndarray<nb::numpy, int32_t> trie_next_codes(const genrec::SidTrie& t, nb::handle prefixes) {
  AnyArray a = as_array(prefixes, "prefixes");
  if (a.ndim() != 2) {
    throw InvalidArgument("prefixes has shape " + shape_str(a) + "; expected (m, length)");
  }
  const size_t m = a.shape(0);
  std::unique_ptr<int32_t[]> out(new int32_t[std::max<size_t>(m, 1)]);
  {
    nb::gil_scoped_release release;
    std::vector<int32_t> storage;
    const int32_t* p = int_data<int32_t>(a, storage, "prefixes");
    t.next_codes(p, static_cast<int64_t>(m), static_cast<int>(a.shape(1)), out.get());
  }
  return owned_array(std::move(out), {m});
}

}  // namespace

void bind_trie(nb::module_& m) {
  nb::class_<genrec::SidTrie>(m, "SidTrie", kTrieDoc)
      .def("__init__", &trie_init, "codes"_a, "item_ids"_a, "codebook_sizes"_a = nb::none(),
           "Build from codes (n, levels) and item_ids (n,); codebook_sizes: None, an int or one per level.")
      .def_prop_ro("levels", &genrec::SidTrie::levels, "Number of levels L (codes per SID).")
      .def_prop_ro("codebook_sizes", [](const genrec::SidTrie& t) {
        nb::list l;
        for (int32_t k : t.codebook_sizes()) l.append(k);
        return nb::tuple(l);
      }, "The code range of each level, a tuple.")
      .def_prop_ro("n_items", &genrec::SidTrie::n_items, "Number of items.")
      .def_prop_ro("n_sids", &genrec::SidTrie::n_sids, "Number of distinct full SIDs.")
      .def_prop_ro("n_active", &genrec::SidTrie::n_active, "Number of active items.")
      .def("__len__", &genrec::SidTrie::n_items)
      .def("allowed_next", &trie_allowed_next, "prefix"_a,
           "Sorted int32 codes c such that prefix + [c] leads to an active item.\n"
           "prefix: a sequence of fewer than `levels` codes ([] = root); a prefix no item has gives [].")
      .def("allowed_next_batch", &trie_allowed_next_batch, "prefixes"_a,
           "allowed_next for m prefixes of one length, shape (m, length), as CSR:\n"
           "returns (offsets int64 (m+1,), codes int32); prefix i allows codes[offsets[i]:offsets[i+1]].")
      .def("items", &trie_items, "sid"_a, "active_only"_a = true,
           "Item ids (int64) whose SID is exactly sid, in build-row order (only active ones by default).")
      .def("codes_of", &trie_codes_of, "item_id"_a,
           "The SID of an item, int32 (levels,). Raises UnknownItemError.")
      .def("contains", &genrec::SidTrie::contains, "item_id"_a, "Whether the item is in the trie.")
      .def("__contains__", &genrec::SidTrie::contains, "item_id"_a)
      .def("is_active", &genrec::SidTrie::is_active, "item_id"_a,
           "Whether the item is active. Raises UnknownItemError.")
      .def("set_active", &trie_set_active, "item_ids"_a, "active"_a = true,
           "Mark items (an id or a sequence of ids) active or inactive; returns how many changed.\n"
           "All ids are checked first: an unknown id raises UnknownItemError and changes nothing.")
      .def("set_all_active", &genrec::SidTrie::set_all_active, "active"_a = true,
           nb::call_guard<nb::gil_scoped_release>(),
           "Mark every item active or inactive; returns how many changed.")
      .def("derive", &trie_derive, "add_codes"_a, "add_ids"_a, "remove_ids"_a = nb::none(),
           nb::rv_policy::take_ownership,
           "A new trie: these items minus remove_ids plus the rows add_codes (n, levels) / add_ids (n,),\n"
           "as a build from the remaining rows followed by the added ones would be, made by a linear\n"
           "merge (no sort of the catalog). Active flags carry over; added items start active.")
      .def("next_codes", &trie_next_codes, "prefixes"_a,
           "For prefixes (m, length < levels): 1 + the largest code below each prefix, active or\n"
           "not, or 0 where no item has the prefix (int32 (m,)).")
      .def("memory_bytes", &genrec::SidTrie::memory_bytes, "Heap bytes owned by the trie.")
      .def("__repr__", [](const genrec::SidTrie& t) {
        return "SidTrie(levels=" + std::to_string(t.levels()) + ", n_items=" + std::to_string(t.n_items()) +
               ", n_sids=" + std::to_string(t.n_sids()) + ", n_active=" + std::to_string(t.n_active()) + ")";
      });
}

}  // namespace genrec_py
