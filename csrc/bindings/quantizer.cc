// genrec-lite Python bindings: the residual-quantizer lookup (genrec/rq_lookup.h).
#include "convert.h"

#include "genrec/rq_lookup.h"

namespace genrec_py {
using namespace nb::literals;

namespace {

const char* kRqDoc = R"doc(Greedy residual-quantizer lookup: vectors -> semantic-ID codes, on CPU.

ResidualQuantizer(codebooks) with codebooks of shape (levels, codebook_size, dim) (copied).
For each vector, level by level: code = the nearest codeword to the residual, residual -= it.
The codes equal those of the double-precision rule of genrec_lite.sid.quantize (distances
sum((r_i - c_i)^2) in float64, summed in index order, ties to the lowest code; the tests hold
them to an exact implementation), although the search runs in float32 SIMD.
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

}  // namespace

void bind_quantizer(nb::module_& m) {
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
}

}  // namespace genrec_py
