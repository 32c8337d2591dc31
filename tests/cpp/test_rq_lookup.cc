// ResidualQuantizer (csrc/src/rq_lookup.cc): encode / decode against a brute-force computation of
// the rule in genrec/rq_lookup.h on small random data, and errors on bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "genrec/rq_lookup.h"

using genrec::ResidualQuantizer;
using I32 = std::vector<int32_t>;
using F32 = std::vector<float>;

namespace {

// The rule, written out plainly: per level the codeword nearest to the float32 residual in double
// precision (sum in index order, ties -> lowest index), then the float32 subtraction.
I32 brute_encode(const F32& cb, int L, int K, int D, const F32& x, int64_t n) {
  I32 codes(static_cast<size_t>(n * L));
  for (int64_t i = 0; i < n; ++i) {
    F32 r(x.begin() + i * D, x.begin() + (i + 1) * D);
    for (int l = 0; l < L; ++l) {
      int best = 0;
      double best_d = std::numeric_limits<double>::infinity();
      for (int k = 0; k < K; ++k) {
        const float* c = &cb[(static_cast<size_t>(l) * K + k) * D];
        double d = 0;
        for (int j = 0; j < D; ++j) {
          const double diff = static_cast<double>(r[j]) - static_cast<double>(c[j]);
          d += diff * diff;
        }
        if (d < best_d) { best_d = d; best = k; }
      }
      codes[static_cast<size_t>(i * L + l)] = best;
      const float* c = &cb[(static_cast<size_t>(l) * K + best) * D];
      for (int j = 0; j < D; ++j) r[j] = r[j] - c[j];
    }
  }
  return codes;
}

F32 brute_decode(const F32& cb, int L, int K, int D, const I32& codes, int64_t n) {
  F32 out(static_cast<size_t>(n * D), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < D; ++j) {
      float s = cb[(static_cast<size_t>(codes[i * L]) * D) + j];
      for (int l = 1; l < L; ++l) s = s + cb[(static_cast<size_t>(l) * K + codes[i * L + l]) * D + j];
      out[static_cast<size_t>(i * D + j)] = s;
    }
  return out;
}

// Codebooks whose levels shrink like a trained RQ's (scale 1, 1/2, 1/4...); `grid` rounds every
// value to a multiple of 1/4, which makes exact distance ties common.
F32 random_values(std::mt19937& rng, size_t count, double scale, bool grid) {
  std::normal_distribution<double> normal(0.0, 1.0);
  F32 v(count);
  for (float& f : v) {
    const double x = normal(rng) * scale;
    f = static_cast<float>(grid ? std::round(x * 4.0) / 4.0 : x);
  }
  return v;
}

void check_against_brute_force(int L, int K, int D, int64_t n, bool grid, unsigned seed) {
  std::mt19937 rng(seed);
  F32 cb;
  for (int l = 0; l < L; ++l) {
    const F32 level = random_values(rng, static_cast<size_t>(K) * D, std::ldexp(1.0, -l), grid);
    cb.insert(cb.end(), level.begin(), level.end());
  }
  const F32 x = random_values(rng, static_cast<size_t>(n) * D, 1.2, grid);
  ResidualQuantizer q(cb.data(), L, K, D);
  CHECK_EQ(q.levels(), L);
  CHECK_EQ(q.codebook_size(), K);
  CHECK_EQ(q.dim(), D);
  const I32 expected = brute_encode(cb, L, K, D, x, n);
  I32 codes(static_cast<size_t>(n * L), -1);
  q.encode(x.data(), n, codes.data());
  CHECK_EQ(codes, expected);
  I32 threaded(static_cast<size_t>(n * L), -1);
  q.encode(x.data(), n, threaded.data(), 2);
  CHECK_EQ(threaded, expected);
  for (int64_t i = 0; i < std::min<int64_t>(n, 5); ++i) {  // the one-item path
    I32 one(static_cast<size_t>(L), -1);
    q.encode(x.data() + i * D, 1, one.data());
    CHECK_EQ(one, I32(expected.begin() + i * L, expected.begin() + (i + 1) * L));
  }
  F32 decoded(static_cast<size_t>(n * D));
  q.decode(codes.data(), n, decoded.data());
  CHECK_EQ(decoded, brute_decode(cb, L, K, D, codes, n));
}

}  // namespace

TEST_CASE(rq_encode_decode_small) { check_against_brute_force(2, 3, 5, 40, false, 1); }
TEST_CASE(rq_encode_decode_odd_sizes) { check_against_brute_force(3, 20, 37, 250, false, 2); }
TEST_CASE(rq_encode_decode_wide) { check_against_brute_force(4, 64, 96, 200, false, 3); }
TEST_CASE(rq_encode_decode_ties) { check_against_brute_force(3, 16, 8, 300, true, 4); }

TEST_CASE(rq_ties_go_to_the_lowest_code) {
  // Codewords 1 and 2 are equal and both nearest: code 1.
  const F32 cb = {5, 5,  1, 0,  1, 0,  -3, 2};
  ResidualQuantizer q(cb.data(), 1, 4, 2);
  const F32 x = {1.1f, 0.0f};
  int32_t code = -1;
  q.encode(x.data(), 1, &code);
  CHECK_EQ(code, 1);
}

TEST_CASE(rq_errors_on_bad_input) {
  using genrec::InvalidArgument;
  using genrec::OutOfRange;
  const F32 cb = {0, 0,  1, 1,  0, 1,  1, 0};  // 2 levels x 2 codes x dim 2
  CHECK_THROWS_AS(ResidualQuantizer(cb.data(), 0, 2, 2), InvalidArgument);
  CHECK_THROWS_AS(ResidualQuantizer(cb.data(), 2, 2, 0), InvalidArgument);
  CHECK_THROWS_AS(ResidualQuantizer(nullptr, 2, 2, 2), InvalidArgument);
  F32 bad = cb;
  bad[5] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(ResidualQuantizer(bad.data(), 2, 2, 2), InvalidArgument);

  ResidualQuantizer q(cb.data(), 2, 2, 2);
  const F32 x = {0.5f, 0.5f,  std::numeric_limits<float>::infinity(), 0.0f};
  I32 codes(4);
  CHECK_THROWS_AS(q.encode(x.data(), 2, codes.data()), InvalidArgument);  // row 1 is not finite
  CHECK_THROWS_AS(q.encode(x.data(), -1, codes.data()), InvalidArgument);
  const I32 bad_codes = {0, 1,  1, 2};
  F32 out(4);
  CHECK_THROWS_AS(q.decode(bad_codes.data(), 2, out.data()), OutOfRange);  // code 2 of 2
  const I32 negative = {-1, 0};
  CHECK_THROWS_AS(q.decode(negative.data(), 1, out.data()), OutOfRange);
}
