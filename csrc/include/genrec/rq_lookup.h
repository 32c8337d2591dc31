// genrec-lite: residual-quantizer lookup (vector -> L codes) for the serving path.
//
// Gives a new (cold-start) item its semantic ID from the trained RQ codebooks, without torch.
//
// The rule (greedy residual nearest codeword), for one float32 vector x of dimension D:
//   r = x
//   for l in 0..L-1:
//     code[l] = argmin_k  sum_i (double(r_i) - double(C[l,k,i]))^2     (sum in index order i = 0..D-1,
//                                                                        ties -> lowest k)
//     r = r - C[l, code[l]]                                              (float32, elementwise)
//
// Exactness: the codes are exactly those of the rule above (the double-precision distances),
// although the search itself runs in float32 SIMD: the float scores ||c||^2 - 2 r.c come with a
// rigorous error bound, and every codeword whose score lies within that bound of the best one is
// re-scored in double precision before the decision. Inputs must be finite.
//
// Memory: the codebooks, a SIMD-friendly float32 copy and (on AVX2 builds) an int8 copy that the
// one-item path scans first (about 2.3x the codebook bytes in all, see memory_bytes()).
// Each thread that encodes keeps a small scratch buffer (one block of residuals and scores).
//
// Thread safety: a ResidualQuantizer is immutable after construction; any number of threads may
// call encode/decode concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "genrec/errors.h"

namespace genrec {

class ResidualQuantizer {
 public:
  /// codebooks: levels x codebook_size x dim float32, row-major; copied. Throws InvalidArgument
  /// for non-positive sizes, dim > 2^20, or non-finite values.
  ResidualQuantizer(const float* codebooks, int levels, int codebook_size, int dim);
  ~ResidualQuantizer();
  ResidualQuantizer(ResidualQuantizer&&) noexcept;
  ResidualQuantizer& operator=(ResidualQuantizer&&) noexcept;
  ResidualQuantizer(const ResidualQuantizer&) = delete;
  ResidualQuantizer& operator=(const ResidualQuantizer&) = delete;

  /// Encode n vectors (x: n x dim float32, row-major) into codes (n x levels int32, row-major).
  /// n_threads > 1 splits the items over that many std::threads (fewer for small n).
  /// Throws InvalidArgument naming the row for a non-finite input value (nothing useful is left
  /// in `codes` then), or when a residual overflows float32.
  void encode(const float* x, int64_t n, int32_t* codes, int n_threads = 1) const;

  /// Sum of the codewords, added in level order in float32: out (n x dim) = C[0,c0] + C[1,c1] + ...
  /// Throws OutOfRange naming row, level and code for a code outside [0, codebook_size).
  void decode(const int32_t* codes, int64_t n, float* out) const;

  int levels() const noexcept { return levels_; }
  int codebook_size() const noexcept { return codebook_size_; }
  int dim() const noexcept { return dim_; }
  /// The codebooks as given: levels x codebook_size x dim float32.
  const float* codebooks() const noexcept { return codebooks_.data(); }
  /// Heap bytes owned by this object.
  size_t memory_bytes() const noexcept;

 private:
  struct Impl;
  int levels_ = 0, codebook_size_ = 0, dim_ = 0;
  std::vector<float> codebooks_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace genrec
