// genrec-lite Python bindings: what every binding file shares - the error translation, array
// conversion (any array-like in, numpy arrays out) and small argument checks.
//
// Conventions of every binding:
//  * Array arguments accept anything numpy.asarray accepts. Arrays already of the right dtype and
//    C-contiguous are used in place; others are converted (float64 -> float32 rounds; integer
//    arrays are range-checked when narrowed to int32). A wrong shape, a non-numeric dtype or an
//    out-of-range value raises genrec_lite.errors.InvalidArgumentError naming the argument.
//  * C++ errors arrive as the genrec_lite.errors classes (see genrec/errors.h).
//  * The GIL is released around the C++ work (input conversion included); no Python object is
//    touched while it is released.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "genrec/errors.h"

namespace genrec_py {

namespace nb = nanobind;
using genrec::InvalidArgument;


// ---------------------------------------------------------------------------------------------
// Errors: C++ -> genrec_lite.errors (imported lazily, when the first error is raised).

// Raises genrec_lite.errors.<cls>(msg, **attrs).
inline void raise_python(const char* cls, const char* msg, PyObject* fallback, nb::dict attrs = {}) {
  try {
    nb::object type = nb::module_::import_("genrec_lite.errors").attr(cls);
    nb::object inst = nb::steal(PyObject_Call(type.ptr(), nb::make_tuple(msg).ptr(), attrs.ptr()));
    if (!inst.is_valid()) throw nb::python_error();
    PyErr_SetObject(type.ptr(), inst.ptr());
  } catch (const nb::python_error&) {  // the package is not importable: a builtin type will do
    PyErr_SetString(fallback, msg);
  }
}

inline void translate_errors(const std::exception_ptr& p, void*) {
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

inline std::string dtype_name(dl::dtype dt) {
  switch (static_cast<dl::dtype_code>(dt.code)) {
    case dl::dtype_code::Int: return "int" + std::to_string(dt.bits);
    case dl::dtype_code::UInt: return "uint" + std::to_string(dt.bits);
    case dl::dtype_code::Float: return "float" + std::to_string(dt.bits);
    case dl::dtype_code::Bool: return "bool";
    case dl::dtype_code::Complex: return "complex" + std::to_string(2 * dt.bits);
    default: return "dtype code " + std::to_string(dt.code) + " (" + std::to_string(dt.bits) + " bits)";
  }
}

inline std::string shape_str(const AnyArray& a) {
  std::string s = "(";
  for (size_t i = 0; i < a.ndim(); ++i) {
    s += std::to_string(a.shape(i));
    if (a.ndim() == 1 || i + 1 < a.ndim()) s += ",";
    if (i + 1 < a.ndim()) s += " ";
  }
  return s + ")";
}

// str(obj) as a std::string ("?" if that fails). Holds the GIL.
inline std::string py_str(nb::handle obj) {
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
inline AnyArray as_array(nb::handle obj, const char* name) {
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

inline bool is_c_contiguous(const AnyArray& a) {
  int64_t expect = 1;
  for (size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) != 1 && a.stride_ptr() != nullptr && a.stride(i) != expect) return false;
    expect *= static_cast<int64_t>(a.shape(i));
  }
  return true;
}

// Calls f(linear C-order index, value) for every element, reading it as Src.
template <class Src, class F>
inline void for_each_element(const AnyArray& a, F&& f) {
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
inline void dispatch_numeric(const AnyArray& a, const char* name, const char* expected, bool allow_float, G&& g) {
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

inline std::string index_str(const AnyArray& a, size_t linear) {
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
inline const float* float32_data(const AnyArray& a, std::vector<float>& storage, const char* name) {
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
inline void read_sequence(nb::handle obj, std::vector<T>& out, const char* name) {
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

inline int resolve_threads(int n_threads) {
  if (n_threads < 0) {
    throw InvalidArgument("n_threads is " + std::to_string(n_threads) +
                          "; expected >= 1 (or 0 for all hardware threads)");
  }
  if (n_threads == 0) return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return n_threads;
}

// Each concept's classes and functions, added to the module by module.cc.
void bind_quantizer(nb::module_& m);
void bind_trie(nb::module_& m);
void bind_search(nb::module_& m);

}  // namespace genrec_py
