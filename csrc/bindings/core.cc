// genrec-lite: Python bindings of the C++ core (module genrec_lite._core).
//
// The only file that knows about Python. Conventions:
//  * Array arguments accept anything numpy.asarray accepts. Arrays already of the right dtype and
//    C-contiguous are used in place; others are converted (float64 -> float32 rounds; integer
//    arrays are range-checked when narrowed to int32). A wrong shape, a non-numeric dtype or an
//    out-of-range value raises genrec_lite.errors.InvalidArgumentError naming the argument.
//  * C++ errors arrive as the genrec_lite.errors classes (see genrec/errors.h).
//  * The GIL is released around the C++ work (input conversion included); no Python object is
//    touched while it is released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "genrec/beam_search.h"
#include "genrec/errors.h"
#include "genrec/llama_search.h"
#include "genrec/rq_lookup.h"
#include "genrec/sid_trie.h"

namespace nb = nanobind;
using namespace nb::literals;
using genrec::InvalidArgument;

namespace {

// ---------------------------------------------------------------------------------------------
// Errors: C++ -> genrec_lite.errors (imported lazily, when the first error is raised).

// Raises genrec_lite.errors.<cls>(msg, **attrs).
void raise_python(const char* cls, const char* msg, PyObject* fallback, nb::dict attrs = {}) {
  try {
    nb::object type = nb::module_::import_("genrec_lite.errors").attr(cls);
    nb::object inst = nb::steal(PyObject_Call(type.ptr(), nb::make_tuple(msg).ptr(), attrs.ptr()));
    if (!inst.is_valid()) throw nb::python_error();
    PyErr_SetObject(type.ptr(), inst.ptr());
  } catch (const nb::python_error&) {  // the package is not importable: a builtin type will do
    PyErr_SetString(fallback, msg);
  }
}

void translate_errors(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const genrec::UnknownItem& e) {
    nb::dict attrs;
    attrs["value"] = nb::int_(e.item_id());
    raise_python("UnknownItemError", e.what(), PyExc_KeyError, attrs);
  } catch (const genrec::ModelOutputError& e) {
    nb::dict attrs;
    attrs["request"] = e.request();
    attrs["level"] = e.level();
    attrs["token"] = e.token();
    attrs["code"] = e.code() >= 0 ? nb::object(nb::int_(e.code())) : nb::none();
    attrs["value"] = e.value();
    raise_python("ModelOutputError", e.what(), PyExc_RuntimeError, attrs);
  } catch (const genrec::InvalidArgument& e) {
    raise_python("InvalidArgumentError", e.what(), PyExc_ValueError);
  } catch (const genrec::Error& e) {
    raise_python("GenrecError", e.what(), PyExc_RuntimeError);
  }
}

// ---------------------------------------------------------------------------------------------
// Input arrays.

using AnyArray = nb::ndarray<nb::ro, nb::device::cpu>;
namespace dl = nb::dlpack;

std::string dtype_name(dl::dtype dt) {
  switch (static_cast<dl::dtype_code>(dt.code)) {
    case dl::dtype_code::Int: return "int" + std::to_string(dt.bits);
    case dl::dtype_code::UInt: return "uint" + std::to_string(dt.bits);
    case dl::dtype_code::Float: return "float" + std::to_string(dt.bits);
    case dl::dtype_code::Bool: return "bool";
    case dl::dtype_code::Complex: return "complex" + std::to_string(2 * dt.bits);
    default: return "dtype code " + std::to_string(dt.code) + " (" + std::to_string(dt.bits) + " bits)";
  }
}

std::string shape_str(const AnyArray& a) {
  std::string s = "(";
  for (size_t i = 0; i < a.ndim(); ++i) {
    s += std::to_string(a.shape(i));
    if (a.ndim() == 1 || i + 1 < a.ndim()) s += ",";
    if (i + 1 < a.ndim()) s += " ";
  }
  return s + ")";
}

// str(obj) as a std::string ("?" if that fails). Holds the GIL.
std::string py_str(nb::handle obj) {
  PyObject* s = PyObject_Str(obj.ptr());
  if (s == nullptr) {
    PyErr_Clear();
    return "?";
  }
  const char* c = PyUnicode_AsUTF8(s);
  std::string out = c != nullptr ? c : "?";
  if (c == nullptr) PyErr_Clear();
  Py_DECREF(s);
  return out;
}

// Any array-like as a CPU ndarray (no copy when it already is one). Holds the GIL.
AnyArray as_array(nb::handle obj, const char* name) {
  AnyArray a;
  if (nb::try_cast(obj, a, /*convert=*/false)) return a;
  try {
    nb::object arr = nb::module_::import_("numpy").attr("asarray")(obj);
    if (nb::try_cast(arr, a, false)) return a;
    std::string dt = py_str(arr.attr("dtype"));
    throw InvalidArgument(std::string(name) + " has dtype " + dt + "; expected a numeric array");
  } catch (const nb::python_error& e) {
    throw InvalidArgument(std::string(name) + " is not array-like (" +
                          py_str(obj.type().attr("__name__")) + "): " + e.what());
  }
}

bool is_c_contiguous(const AnyArray& a) {
  int64_t expect = 1;
  for (size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) != 1 && a.stride_ptr() != nullptr && a.stride(i) != expect) return false;
    expect *= static_cast<int64_t>(a.shape(i));
  }
  return true;
}

// Calls f(linear C-order index, value) for every element, reading it as Src.
template <class Src, class F>
void for_each_element(const AnyArray& a, F&& f) {
  const Src* base = reinterpret_cast<const Src*>(a.data());
  const size_t nd = a.ndim();
  const size_t total = a.size();
  if (total == 0) return;
  if (nd == 0) {
    f(size_t{0}, base[0]);
    return;
  }
  std::vector<int64_t> strides(nd);
  int64_t expect = 1;
  for (size_t i = nd; i-- > 0;) {
    strides[i] = a.stride_ptr() != nullptr ? a.stride(i) : expect;
    expect *= static_cast<int64_t>(a.shape(i));
  }
  const size_t inner = a.shape(nd - 1);
  const int64_t is = strides[nd - 1];
  std::vector<size_t> idx(nd, 0);
  for (size_t o = 0; o < total / inner; ++o) {
    int64_t off = 0;
    for (size_t i = 0; i + 1 < nd; ++i) off += static_cast<int64_t>(idx[i]) * strides[i];
    for (size_t j = 0; j < inner; ++j) f(o * inner + j, base[off + static_cast<int64_t>(j) * is]);
    for (size_t i = nd - 1; i-- > 0;) {  // next outer index
      if (++idx[i] < a.shape(i)) break;
      idx[i] = 0;
    }
  }
}

// Dispatch on the dtype: g(Src{}) for the supported numeric types.
template <class G>
void dispatch_numeric(const AnyArray& a, const char* name, const char* expected, bool allow_float, G&& g) {
  const dl::dtype dt = a.dtype();
  const auto code = static_cast<dl::dtype_code>(dt.code);
  if (dt.lanes == 1) {
    if (code == dl::dtype_code::Int) {
      switch (dt.bits) {
        case 8: return g(int8_t{});
        case 16: return g(int16_t{});
        case 32: return g(int32_t{});
        case 64: return g(int64_t{});
      }
    } else if (code == dl::dtype_code::UInt) {
      switch (dt.bits) {
        case 8: return g(uint8_t{});
        case 16: return g(uint16_t{});
        case 32: return g(uint32_t{});
        case 64: return g(uint64_t{});
      }
    } else if (code == dl::dtype_code::Float && allow_float) {
      switch (dt.bits) {
        case 32: return g(float{});
        case 64: return g(double{});
      }
    }
  }
  if (a.size() == 0) return;  // an empty array of any dtype (e.g. np.asarray([])) is fine
  throw InvalidArgument(std::string(name) + " has dtype " + dtype_name(dt) + "; expected " + expected);
}

std::string index_str(const AnyArray& a, size_t linear) {
  std::vector<size_t> idx(a.ndim());
  for (size_t i = a.ndim(); i-- > 0;) {
    idx[i] = linear % a.shape(i);
    linear /= a.shape(i);
  }
  std::string s = "[";
  for (size_t i = 0; i < idx.size(); ++i) s += (i ? ", " : "") + std::to_string(idx[i]);
  return s + "]";
}

// float32 C-order data: in place when possible, else converted into storage. No GIL needed.
const float* float32_data(const AnyArray& a, std::vector<float>& storage, const char* name) {
  if (a.dtype() == nb::dtype<float>() && is_c_contiguous(a)) return static_cast<const float*>(a.data());
  storage.resize(std::max<size_t>(a.size(), 1));
  dispatch_numeric(a, name, "a float32 array (float64 and integer arrays are converted)", true, [&](auto tag) {
    using Src = decltype(tag);
    for_each_element<Src>(a, [&](size_t i, Src v) { storage[i] = static_cast<float>(v); });
  });
  return storage.data();
}

// Integer data as T (int32 or int64), range-checked. No GIL needed.
template <class T>
const T* int_data(const AnyArray& a, std::vector<T>& storage, const char* name) {
  if (a.dtype() == nb::dtype<T>() && is_c_contiguous(a)) return static_cast<const T*>(a.data());
  storage.resize(std::max<size_t>(a.size(), 1));
  const char* expected = std::is_same_v<T, int32_t> ? "an integer array (int32)" : "an integer array (int64)";
  dispatch_numeric(a, name, expected, false, [&](auto tag) {
    using Src = decltype(tag);
    for_each_element<Src>(a, [&](size_t i, Src v) {
      const bool fits = std::is_signed_v<Src>
                            ? (static_cast<int64_t>(v) >= std::numeric_limits<T>::min() &&
                               static_cast<int64_t>(v) <= std::numeric_limits<T>::max())
                            : static_cast<uint64_t>(v) <= static_cast<uint64_t>(std::numeric_limits<T>::max());
      if (!fits) {
        throw genrec::OutOfRange(std::string(name) + index_str(a, i) + " is " + std::to_string(v) +
                                 "; expected a value that fits in " +
                                 (std::is_same_v<T, int32_t> ? "int32" : "int64"));
      }
      storage[i] = static_cast<T>(v);
    });
  });
  return storage.data();
}

// A short integer sequence (prefix, sid, ids): list/tuple fast path, else any 1-D array-like.
template <class T>
void read_sequence(nb::handle obj, std::vector<T>& out, const char* name) {
  out.clear();
  if (nb::isinstance<nb::list>(obj) || nb::isinstance<nb::tuple>(obj)) {
    const size_t n = nb::len(obj);
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      nb::handle item = obj[i];
      int64_t v;
      if (!nb::try_cast(item, v, true) || nb::isinstance<nb::float_>(item)) {
        throw InvalidArgument(std::string(name) + "[" + std::to_string(i) + "] is " +
                              py_str(nb::repr(item)) + "; expected an integer");
      }
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) {
        throw genrec::OutOfRange(std::string(name) + "[" + std::to_string(i) + "] is " +
                                 std::to_string(v) + "; expected a value that fits in " +
                                 (std::is_same_v<T, int32_t> ? "int32" : "int64"));
      }
      out.push_back(static_cast<T>(v));
    }
    return;
  }
  AnyArray a = as_array(obj, name);
  if (a.ndim() > 1) {
    throw InvalidArgument(std::string(name) + " has shape " + shape_str(a) + "; expected a 1-D sequence");
  }
  std::vector<T> storage;
  const T* p = int_data<T>(a, storage, name);
  out.assign(p, p + a.size());
}

// ---------------------------------------------------------------------------------------------
// Output arrays: numpy arrays that own a heap buffer.

template <class T>
nb::ndarray<nb::numpy, T> owned_array(std::unique_ptr<T[]> data, std::initializer_list<size_t> shape) {
  T* raw = data.release();
  nb::capsule owner(raw, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  return nb::ndarray<nb::numpy, T>(raw, shape, owner);
}

template <class T>
nb::ndarray<nb::numpy, T> vector_array(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  if (heap->capacity() == 0) heap->reserve(1);  // a valid data pointer even when empty
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(heap->data(), {heap->size()}, owner);
}

int resolve_threads(int n_threads) {
  if (n_threads < 0) {
    throw InvalidArgument("n_threads is " + std::to_string(n_threads) +
                          "; expected >= 1 (or 0 for all hardware threads)");
  }
  if (n_threads == 0) return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return n_threads;
}

// ---------------------------------------------------------------------------------------------
// ResidualQuantizer

const char* kRqDoc = R"doc(Greedy residual-quantizer lookup: vectors -> semantic-ID codes, on CPU.

ResidualQuantizer(codebooks) with codebooks of shape (levels, codebook_size, dim) (copied).
For each vector, level by level: code = the nearest codeword to the residual, residual -= it.
The codes equal those of the double-precision rule (distances sum((r_i - c_i)^2) in float64,
summed in index order, ties to the lowest code) of
genrec_lite.sid.quantize.residual_encode_reference, although the search runs in float32 SIMD.
Immutable and thread-safe; the GIL is released while it works.)doc";

void rq_init(genrec::ResidualQuantizer* self, nb::handle codebooks) {
  AnyArray a = as_array(codebooks, "codebooks");
  if (a.ndim() != 3) {
    throw InvalidArgument("codebooks has shape " + shape_str(a) +
                          "; expected (levels, codebook_size, dim)");
  }
  for (size_t i = 0; i < 3; ++i) {
    if (a.shape(i) == 0 || a.shape(i) > static_cast<size_t>(std::numeric_limits<int>::max())) {
      throw InvalidArgument("codebooks has shape " + shape_str(a) + "; expected every size >= 1");
    }
  }
  nb::gil_scoped_release release;
  std::vector<float> storage;
  const float* p = float32_data(a, storage, "codebooks");
  new (self) genrec::ResidualQuantizer(p, static_cast<int>(a.shape(0)), static_cast<int>(a.shape(1)),
                                       static_cast<int>(a.shape(2)));
}

nb::object rq_encode(const genrec::ResidualQuantizer& q, nb::handle x, int n_threads) {
  AnyArray a = as_array(x, "x");
  const size_t dim = static_cast<size_t>(q.dim());
  if ((a.ndim() != 1 && a.ndim() != 2) || a.shape(a.ndim() - 1) != dim) {
    throw InvalidArgument("x has shape " + shape_str(a) + "; expected (n, " + std::to_string(dim) +
                          ") or (" + std::to_string(dim) + ",)");
  }
  const int threads = resolve_threads(n_threads);
  const bool single = a.ndim() == 1;
  const size_t n = single ? 1 : a.shape(0);
  const size_t L = static_cast<size_t>(q.levels());
  std::unique_ptr<int32_t[]> out(new int32_t[std::max<size_t>(n * L, 1)]);
  {
    nb::gil_scoped_release release;
    std::vector<float> storage;
    const float* p = float32_data(a, storage, "x");
    q.encode(p, static_cast<int64_t>(n), out.get(), threads);
  }
  if (single) return nb::cast(owned_array(std::move(out), {L}));
  return nb::cast(owned_array(std::move(out), {n, L}));
}

nb::object rq_decode(const genrec::ResidualQuantizer& q, nb::handle codes) {
  AnyArray a = as_array(codes, "codes");
  const size_t L = static_cast<size_t>(q.levels());
  if ((a.ndim() != 1 && a.ndim() != 2) || a.shape(a.ndim() - 1) != L) {
    throw InvalidArgument("codes has shape " + shape_str(a) + "; expected (n, " + std::to_string(L) +
                          ") or (" + std::to_string(L) + ",)");
  }
  const bool single = a.ndim() == 1;
  const size_t n = single ? 1 : a.shape(0);
  const size_t dim = static_cast<size_t>(q.dim());
  std::unique_ptr<float[]> out(new float[std::max<size_t>(n * dim, 1)]);
  {
    nb::gil_scoped_release release;
    std::vector<int32_t> storage;
    const int32_t* p = int_data<int32_t>(a, storage, "codes");
    q.decode(p, static_cast<int64_t>(n), out.get());
  }
  if (single) return nb::cast(owned_array(std::move(out), {dim}));
  return nb::cast(owned_array(std::move(out), {n, dim}));
}

nb::object rq_codebooks(const genrec::ResidualQuantizer& q) {
  const size_t L = q.levels(), K = q.codebook_size(), D = q.dim();
  std::unique_ptr<float[]> out(new float[L * K * D]);
  std::memcpy(out.get(), q.codebooks(), sizeof(float) * L * K * D);
  return nb::cast(owned_array(std::move(out), {L, K, D}));
}

// ---------------------------------------------------------------------------------------------
// SidTrie

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

// ---------------------------------------------------------------------------------------------
// BeamSearch (driven from Python one SID level at a time, e.g. over onnxruntime logits)

genrec::SidTokenTable token_table_from(nb::handle obj) {
  AnyArray a = as_array(obj, "token_table");
  if (a.ndim() != 2 || a.shape(0) == 0 || a.shape(1) == 0 ||
      a.shape(1) > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw InvalidArgument("token_table has shape " + shape_str(a) +
                          "; expected (levels, max codebook size), -1 where a level has no code");
  }
  genrec::SidTokenTable t;
  t.levels = static_cast<int>(a.shape(0));
  t.max_size = static_cast<int>(a.shape(1));
  std::vector<int32_t> storage;
  const int32_t* p = int_data<int32_t>(a, storage, "token_table");
  t.ids.assign(p, p + a.size());
  return t;
}

// Item ids of an allow/deny entry: a list, tuple or array, or any other iterable (set, range...).
void read_ids(nb::handle obj, std::vector<int64_t>& out, const std::string& name) {
  if (nb::isinstance<nb::list>(obj) || nb::isinstance<nb::tuple>(obj) || nb::ndarray_check(obj)) {
    read_sequence<int64_t>(obj, out, name.c_str());
    return;
  }
  PyObject* as_list = PySequence_List(obj.ptr());
  if (as_list == nullptr) {
    PyErr_Clear();
    throw InvalidArgument(name + " is " + py_str(nb::repr(obj)) + "; expected an iterable of item ids or None");
  }
  read_sequence<int64_t>(nb::steal(as_list), out, name.c_str());
}

std::vector<genrec::SearchRequest> requests_from(nb::handle obj) {
  if (!nb::isinstance<nb::list>(obj) && !nb::isinstance<nb::tuple>(obj)) {
    throw InvalidArgument("requests is " + py_str(obj.type().attr("__name__")) +
                          "; expected a list of dicts {k, beam, allow, deny}");
  }
  const size_t n = nb::len(obj);
  std::vector<genrec::SearchRequest> out(n);
  for (size_t i = 0; i < n; ++i) {
    nb::handle d = obj[i];
    const std::string where = "requests[" + std::to_string(i) + "]";
    if (!nb::isinstance<nb::dict>(d)) {
      throw InvalidArgument(where + " is " + py_str(nb::repr(d)) + "; expected a dict {k, beam, allow, deny}");
    }
    nb::dict dict = nb::borrow<nb::dict>(d);
    genrec::SearchRequest& q = out[i];
    for (auto [key, value] : dict) {
      const std::string name = py_str(key);
      if (name == "k" || name == "beam") {
        int64_t v = 0;
        const bool is_int = !nb::isinstance<nb::float_>(value) && !PyBool_Check(value.ptr()) &&
                            nb::try_cast(value, v, true);
        if (!is_int || v < 1 || v > (1 << 20)) {
          throw InvalidArgument(where + "['" + name + "'] is " + py_str(nb::repr(value)) +
                                "; expected an integer, 1 <= " + name + " <= 2^20");
        }
        (name == "k" ? q.k : q.beam) = static_cast<int>(v);
      } else if (name == "allow") {
        q.has_allow = !value.is_none();
        if (q.has_allow) read_ids(value, q.allow, where + "['allow']");
      } else if (name == "deny") {
        if (!value.is_none()) read_ids(value, q.deny, where + "['deny']");
      } else {
        throw InvalidArgument(where + " has the unknown key '" + name + "'; expected k, beam, allow, deny");
      }
    }
  }
  return out;
}

// levels < 0: infer it from the first result with beams (old callers).
nb::list results_to_python(std::vector<genrec::SearchResult>&& results, int levels = -1) {
  nb::list out;
  for (auto& r : results) {
    const size_t n_beams = r.sid_scores.size();
    const size_t L = levels >= 0 ? static_cast<size_t>(levels) : (n_beams ? r.sids.size() / n_beams : 0);
    nb::dict d;
    d["items"] = vector_array(std::move(r.items));
    d["scores"] = vector_array(std::move(r.scores));
    d["logprobs"] = vector_array(std::move(r.logprobs));
    auto* heap = new std::vector<int32_t>(std::move(r.sids));
    if (heap->capacity() == 0) heap->reserve(1);
    nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<int32_t>*>(p); });
    d["sids"] = nb::ndarray<nb::numpy, int32_t>(heap->data(), {n_beams, L}, owner);
    d["sid_scores"] = vector_array(std::move(r.sid_scores));
    d["sid_logprobs"] = vector_array(std::move(r.sid_logprobs));
    out.append(d);
  }
  return out;
}

// Keeps the tries alive while the search exists, owns the search, and lets one thread at a time
// use it (the step runs without the GIL, so two Python threads could otherwise overlap).
struct PyBeamSearch {
  PyBeamSearch(nb::object t, nb::object d, std::unique_ptr<genrec::BeamSearch> s)
      : trie_ref(std::move(t)), delta_ref(std::move(d)), search(std::move(s)) {}
  nb::object trie_ref, delta_ref;
  std::unique_ptr<genrec::BeamSearch> search;
  mutable std::mutex busy;
};

// Holds a search's lock for a call; a second thread gets an error instead of a data race.
class SearchLock {
 public:
  explicit SearchLock(const PyBeamSearch& b) : lock_(b.busy, std::try_to_lock) {
    if (!lock_.owns_lock()) {
      throw InvalidArgument("this BeamSearch is in use by another thread; drive one search from one thread");
    }
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

const char* kBeamDoc = R"doc(Batched constrained beam search over SIDs; the caller runs the model.

BeamSearch(trie, token_table, requests, delta=None)
  delta: a second SidTrie with the same levels and code ranges holding other items (the items
  added since trie was built); the search then runs over both as over one trie holding both.
  token_table: int32 (levels, max codebook size), the token id of each (level, code), -1 for none.
  requests: a list of dicts {k, beam, allow, deny} (k, beam: ints >= 1, default 10 and 20;
  allow / deny: iterables of item ids or None; ids the trie lacks are ignored).
Protocol: while not done, give step() the logits of the `rows` current rows (level 0: each
request's prompt, last position, in request order). After a step, row j of the next level extends
row parents[j] by token tokens[j]; rows are grouped by request (row_request) and ranked best
first. results() after the last level: per request {items (int64, <= k), scores (float32),
logprobs (float32), sids (int32, (beams, levels)), sid_scores (float32), sid_logprobs
(float32)}, best first.

At each level the logits of the allowed SID tokens (codes with an active item below them that
passes the request's allow/deny lists) are log-softmaxed (float64) over those codes only; a
request keeps its `beam` best candidates (ties: the smaller SID first). A score is the sum of
those renormalised log-probabilities, so it moves when the allowed codes change (a paused or
filtered sibling raises it). A logprob is the model's raw log-probability of the SID: the sum over
levels of logit[token] - logsumexp(the whole logits row), which no catalog change moves. A NaN or
+inf among a row's allowed logits, or anywhere in the row of a beam that continues, raises
ModelOutputError (naming the request, level, token and value); -inf is a mask (a row of -inf
only is a dead beam). The same rule as the PyTorch reference decoder. The trie is kept alive by
the search; many searches may run at once on one trie, also while set_active() changes it. The
GIL is released in step() and results().)doc";

void beam_init(PyBeamSearch* self, nb::object trie, nb::handle token_table, nb::handle requests,
               nb::object delta) {
  const genrec::SidTrie& t = nb::cast<const genrec::SidTrie&>(trie);
  const genrec::SidTrie* d = delta.is_none() ? nullptr : &nb::cast<const genrec::SidTrie&>(delta);
  genrec::SidTokenTable table = token_table_from(token_table);
  std::vector<genrec::SearchRequest> reqs = requests_from(requests);
  std::unique_ptr<genrec::BeamSearch> s;
  {
    nb::gil_scoped_release release;
    s = std::make_unique<genrec::BeamSearch>(t, d, table, std::move(reqs));
  }
  new (self) PyBeamSearch(std::move(trie), std::move(delta), std::move(s));
}

void beam_step(PyBeamSearch& self, nb::handle logits) {
  SearchLock lock(self);
  genrec::BeamSearch& s = *self.search;
  if (s.done()) s.step(nullptr, 1);  // raises the "search is done" error
  AnyArray a = as_array(logits, "logits");
  const int64_t rows = s.rows();
  if (a.ndim() != 2 || static_cast<int64_t>(a.shape(0)) != rows || (rows > 0 && a.shape(1) == 0)) {
    throw InvalidArgument("logits has shape " + shape_str(a) + "; expected (" + std::to_string(rows) +
                          ", vocab), one row per current beam (level " + std::to_string(s.level()) + ")");
  }
  if (rows == 0) {
    nb::gil_scoped_release release;
    s.step(nullptr, 1);
    return;
  }
  const int64_t vocab = static_cast<int64_t>(a.shape(1));
  // float32 rows with contiguous values are read in place, whatever their row stride (e.g. a
  // slice of a (batch, seq, vocab) array); anything else is converted to a C-order copy.
  const bool in_place = a.dtype() == nb::dtype<float>() &&
                        (is_c_contiguous(a) ||
                         ((vocab == 1 || a.stride(1) == 1) && (rows == 1 || a.stride(0) >= vocab)));
  nb::gil_scoped_release release;
  if (in_place) {
    const int64_t stride = (rows == 1 || is_c_contiguous(a)) ? vocab : static_cast<int64_t>(a.stride(0));
    s.step(static_cast<const float*>(a.data()), stride, vocab);
  } else {
    std::vector<float> storage;
    s.step(float32_data(a, storage, "logits"), vocab, vocab);
  }
}

template <class T>
nb::ndarray<nb::numpy, T> locked_copy(const PyBeamSearch& b, const std::vector<T>& (genrec::BeamSearch::*get)() const) {
  SearchLock lock(b);
  return vector_array(std::vector<T>(((*b.search).*get)()));
}

// ---------------------------------------------------------------------------------------------
// Beam search over llama.cpp (contexts and function addresses come from llama-cpp-python)

genrec::llama::Api llama_api_from(nb::handle obj) {
  std::vector<int64_t> a;
  read_sequence(obj, a, "api");
  if (a.size() != 8) {
    throw InvalidArgument("api has " + std::to_string(a.size()) + " addresses; expected 8");
  }
  genrec::llama::Api api;
  api.decode = reinterpret_cast<genrec::llama::decode_fn>(static_cast<uintptr_t>(a[0]));
  api.get_logits = reinterpret_cast<genrec::llama::get_logits_fn>(static_cast<uintptr_t>(a[1]));
  api.get_logits_ith = reinterpret_cast<genrec::llama::get_logits_ith_fn>(static_cast<uintptr_t>(a[2]));
  api.get_memory = reinterpret_cast<genrec::llama::get_memory_fn>(static_cast<uintptr_t>(a[3]));
  api.memory_clear = reinterpret_cast<genrec::llama::memory_clear_fn>(static_cast<uintptr_t>(a[4]));
  api.memory_seq_rm = reinterpret_cast<genrec::llama::memory_seq_rm_fn>(static_cast<uintptr_t>(a[5]));
  api.memory_seq_cp = reinterpret_cast<genrec::llama::memory_seq_cp_fn>(static_cast<uintptr_t>(a[6]));
  api.memory_seq_keep = reinterpret_cast<genrec::llama::memory_seq_keep_fn>(static_cast<uintptr_t>(a[7]));
  if (!api.complete()) throw InvalidArgument("api holds a null function address");
  return api;
}

genrec::LlamaContextInfo llama_info_from(int64_t ctx, nb::handle limits) {
  std::vector<int64_t> l;
  read_sequence(limits, l, "limits");
  if (l.size() != 4) {
    throw InvalidArgument("limits has " + std::to_string(l.size()) +
                          " values; expected (n_ctx, n_seq_max, n_batch, n_vocab)");
  }
  genrec::LlamaContextInfo info;
  info.ctx = reinterpret_cast<genrec::llama::context*>(static_cast<uintptr_t>(ctx));
  info.n_ctx = l[0];
  info.n_seq_max = l[1];
  info.n_batch = l[2];
  info.n_vocab = l[3];
  return info;
}

nb::dict llama_stats_dict(const genrec::LlamaSearchStats& s) {
  nb::dict d;
  d["total_s"] = s.total_s;
  d["decode_s"] = s.decode_s;
  d["decode_calls"] = s.decode_calls;
  d["decoded_tokens"] = s.decoded_tokens;
  d["groups"] = s.groups;
  return d;
}

const char* kLlamaSearchDoc = R"doc(Batched constrained beam search over a llama.cpp context.

llama_beam_search(api, ctx, limits, trie, token_table, prompts, requests, record=False,
                  prefix_cache=None, delta=None) -> (results, stats, schedule or None)
api: the addresses of (llama_decode, llama_get_logits, llama_get_logits_ith, llama_get_memory,
llama_memory_clear, llama_memory_seq_rm, llama_memory_seq_cp, llama_memory_seq_keep) in the
loaded libllama; ctx: a llama_context pointer created with a unified KV cache; limits: (n_ctx,
n_seq_max, n_batch, n_vocab); prompts: one list of token ids per request; requests: as for
BeamSearch; prefix_cache: this context's LlamaPrefixCache, to reuse the stem the prompts share
across calls (the last sequence id is then reserved for it); delta: as for BeamSearch. The whole search runs in C++ with
the GIL released; one call per context at a time.)doc";

nb::tuple llama_search_py(nb::handle api_obj, int64_t ctx, nb::handle limits, const genrec::SidTrie& trie,
                          nb::handle token_table, nb::handle prompts_obj, nb::handle requests_obj,
                          bool record, genrec::LlamaPrefixCache* cache, const genrec::SidTrie* delta) {
  const genrec::llama::Api api = llama_api_from(api_obj);
  const genrec::LlamaContextInfo info = llama_info_from(ctx, limits);
  genrec::SidTokenTable table = token_table_from(token_table);
  std::vector<genrec::SearchRequest> requests = requests_from(requests_obj);
  std::vector<std::vector<int32_t>> prompts;
  if (!nb::isinstance<nb::list>(prompts_obj) && !nb::isinstance<nb::tuple>(prompts_obj)) {
    throw InvalidArgument("prompts must be a list of token-id lists");
  }
  const size_t n = nb::len(prompts_obj);
  prompts.resize(n);
  for (size_t i = 0; i < n; ++i) read_sequence(prompts_obj[i], prompts[i], "prompts[i]");
  genrec::LlamaSearchStats stats;
  std::unique_ptr<genrec::LlamaSchedule> schedule;
  if (record) schedule = std::make_unique<genrec::LlamaSchedule>();
  std::vector<genrec::SearchResult> results;
  {
    nb::gil_scoped_release release;
    results = genrec::llama_beam_search(api, info, trie, delta, table, prompts, requests, &stats,
                                        schedule.get(), cache);
  }
  nb::object sched = nb::none();
  if (schedule) sched = nb::cast(std::move(*schedule));
  return nb::make_tuple(results_to_python(std::move(results)), llama_stats_dict(stats), sched);
}

nb::dict llama_replay_py(nb::handle api_obj, int64_t ctx, nb::handle limits,
                         const genrec::LlamaSchedule& schedule, genrec::LlamaPrefixCache* cache) {
  const genrec::llama::Api api = llama_api_from(api_obj);
  const genrec::LlamaContextInfo info = llama_info_from(ctx, limits);
  genrec::LlamaSearchStats stats;
  {
    nb::gil_scoped_release release;
    genrec::llama_replay(api, info, schedule, &stats, cache);
  }
  return llama_stats_dict(stats);
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "genrec-lite C++ core: residual-quantizer lookup, the semantic-ID trie and beam search.";
  nb::register_exception_translator(translate_errors);

  nb::class_<genrec::ResidualQuantizer>(m, "ResidualQuantizer", kRqDoc)
      .def("__init__", &rq_init, "codebooks"_a,
           "Copy the codebooks, shape (levels, codebook_size, dim), float32 (others converted).")
      .def("encode", &rq_encode, "x"_a, "n_threads"_a = 1,
           "Codes of x: shape (n, dim) -> int32 (n, levels); shape (dim,) -> (levels,).\n"
           "n_threads > 1 splits the items over threads (0 = all hardware threads).\n"
           "Raises InvalidArgumentError naming the row for a non-finite value.")
      .def("decode", &rq_decode, "codes"_a,
           "Sum of the codewords (float32, in level order): (n, levels) -> (n, dim); (levels,) -> (dim,).")
      .def_prop_ro("levels", &genrec::ResidualQuantizer::levels, "Number of levels L.")
      .def_prop_ro("codebook_size", &genrec::ResidualQuantizer::codebook_size, "Codewords per level K.")
      .def_prop_ro("dim", &genrec::ResidualQuantizer::dim, "Vector dimension D.")
      .def_prop_ro("codebooks", &rq_codebooks, "A copy of the codebooks, float32 (levels, codebook_size, dim).")
      .def("memory_bytes", &genrec::ResidualQuantizer::memory_bytes, "Heap bytes owned.")
      .def("__getstate__", &rq_codebooks)
      .def("__setstate__", &rq_init)
      .def("__repr__", [](const genrec::ResidualQuantizer& q) {
        return "ResidualQuantizer(levels=" + std::to_string(q.levels()) + ", codebook_size=" +
               std::to_string(q.codebook_size()) + ", dim=" + std::to_string(q.dim()) + ")";
      });

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

  nb::class_<PyBeamSearch>(m, "BeamSearch", kBeamDoc)
      .def("__init__", &beam_init, "trie"_a, "token_table"_a, "requests"_a, "delta"_a = nb::none())
      .def_prop_ro("level", [](const PyBeamSearch& b) { SearchLock l(b); return b.search->level(); },
                   "The SID level the next step() scores (levels once done).")
      .def_prop_ro("levels", [](const PyBeamSearch& b) { return b.search->levels(); })
      .def_prop_ro("done", [](const PyBeamSearch& b) { SearchLock l(b); return b.search->done(); })
      .def_prop_ro("n_requests", [](const PyBeamSearch& b) { return b.search->n_requests(); })
      .def_prop_ro("rows", [](const PyBeamSearch& b) { SearchLock l(b); return b.search->rows(); },
                   "Logit rows the next step() expects.")
      .def_prop_ro("row_request", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::row_request);
      }, nb::rv_policy::move, "Request index of each current row (int32).")
      .def_prop_ro("row_scores", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::row_scores);
      }, nb::rv_policy::move, "Score of each current row so far (float64).")
      .def_prop_ro("row_logprobs", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::row_logprobs);
      }, nb::rv_policy::move, "Raw log-probability of each current row so far (float64).")
      .def("step", &beam_step, "logits"_a,
           "Score one level: logits (rows, vocab), float32 (other dtypes are converted); rows may "
           "be any stride apart.")
      .def_prop_ro("parents", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::parents);
      }, nb::rv_policy::move, "For each new row, the previous row it extends (int32).")
      .def_prop_ro("tokens", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::tokens);
      }, nb::rv_policy::move, "For each new row, the SID token to feed (int32).")
      .def("results", [](const PyBeamSearch& b) {
        std::vector<genrec::SearchResult> r;
        {
          SearchLock lock(b);
          nb::gil_scoped_release release;
          r = b.search->results();
        }
        return results_to_python(std::move(r), b.search->levels());
      }, "Per request: {items, scores, logprobs, sids, sid_scores, sid_logprobs}, after the last level.")
      .def("__repr__", [](const PyBeamSearch& b) -> std::string {
        std::unique_lock<std::mutex> lock(b.busy, std::try_to_lock);
        if (!lock.owns_lock()) return "BeamSearch(<in use by another thread>)";
        const genrec::BeamSearch& s = *b.search;
        return "BeamSearch(requests=" + std::to_string(s.n_requests()) + ", level=" + std::to_string(s.level()) +
               "/" + std::to_string(s.levels()) + ", rows=" + std::to_string(s.rows()) + ")";
      });

  nb::class_<genrec::LlamaSchedule>(m, "LlamaSchedule",
                                     "The llama.cpp operations of one search, for llama_replay.")
      .def_prop_ro("n_ops", [](const genrec::LlamaSchedule& s) { return s.ops.size(); })
      .def_prop_ro("n_tokens", [](const genrec::LlamaSchedule& s) { return s.tokens.size(); });
  nb::class_<genrec::LlamaPrefixCache>(m, "LlamaPrefixCache",
                                        "Which prompt prefix one llama.cpp context keeps in its KV cache.")
      .def(nb::init<>())
      .def("__init__", [](genrec::LlamaPrefixCache* c, std::vector<std::vector<int32_t>> stems) {
        new (c) genrec::LlamaPrefixCache{std::move(stems), {}};
      }, "stems"_a, "A cache that keeps, per search, the longest of `stems` (token-id lists) every prompt starts with.")
      .def_prop_ro("stems", [](const genrec::LlamaPrefixCache& c) { return c.stems; },
                   "The prefixes worth keeping (lists of token ids).")
      .def_prop_ro("tokens", [](const genrec::LlamaPrefixCache& c) {
        nb::list l;
        for (int32_t t : c.tokens) l.append(t);
        return l;
      }, "The cached prompt tokens (one of the stems, or empty), a list.");
  m.def("llama_beam_search", &llama_search_py, "api"_a, "ctx"_a, "limits"_a, "trie"_a,
        "token_table"_a, "prompts"_a, "requests"_a, "record"_a = false,
        "prefix_cache"_a.none() = nb::none(), "delta"_a.none() = nb::none(), kLlamaSearchDoc);
  m.def("llama_replay", &llama_replay_py, "api"_a, "ctx"_a, "limits"_a, "schedule"_a,
        "prefix_cache"_a.none() = nb::none(),
        "Replay a recorded schedule: the same decode calls and KV operations, no search.\n"
        "A schedule recorded with a prefix cache needs that context's prefix_cache.");
}
