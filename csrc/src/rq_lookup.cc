// genrec-lite: residual-quantizer lookup. See genrec/rq_lookup.h for the rule and the exactness
// contract.
//
// How it is fast:
//  * Each level's codebook is stored as panels of 16 codewords laid out [dim][16], so that the
//    inner loop over the dimension reads two contiguous 8-float vectors per step.
//  * Items are processed in blocks of 96, their residuals packed [dim][6] per tile of 6 items.
//    The micro-kernel keeps a 6 x 16 tile of dot products in 12 AVX2 registers (one broadcast of
//    a residual value feeds two FMAs), which keeps the FMA units busy.
//  * One item (the serving call) is bound by memory traffic, not arithmetic: float32 codebooks of
//    3 x 256 x 384 do not fit in L2. On AVX2 builds it first scans an int8 copy of the codebooks
//    (c_k ~= s_k q_k) with an int16 copy of the residual (r ~= t p): exact int32 dot products
//    (vpmaddwd), and per codeword a rigorous interval for the true score,
//      |r.c_k - t s_k p.q_k| <= A e_k + Q_k F + D F e_k,
//    with e_k = max |c_k - s_k q_k|, Q_k = s_k sum|q_k|, F = max |r - t p|, A = t sum|p|
//    (all measured, not assumed). Only codewords whose interval reaches below the best upper end
//    survive (nearly always just one); they go through the float32 / double steps below.
//  * Scores are s_k = ||c_k||^2 - 2 r.c_k in float32. Every codeword whose score lies within a
//    rigorous bound of the best score is re-scored in double precision (the reference distance),
//    so the decision is exactly the one of the double-precision rule.
//
// Error bound used (u = 2^-24 = FLT_EPSILON / 2, any summation order, with or without FMA):
//   |fl(r.c) - r.c|  <= gamma_D * sum|r_i c_i| <= gamma_D * (||r||^2 + ||c||^2) / 2
//   |fl(||c||^2) - ||c||^2| <= ~u ||c||^2        (computed in double, rounded once)
//   s = fma(-2, dot, norm) rounds once: <= u |s| <= 2u (||r||^2 + ||c||^2)
// so each score is off by at most e = (gamma_D + 4.1u)(||r||^2 + max_k ||c_k||^2), and the
// candidates are the k with s_k <= s_min + 2e (+ the double reference's own error, 2^-29 times
// smaller, + an absolute allowance for subnormal underflow). We use
//   tol = (1.25 D + 8) * FLT_EPSILON * (||r||^2 + max||c||^2) + 4 (D + 4) * FLT_TRUE_MIN,
// which bounds 2e for D <= 2^20. When ||r||^2 + max||c||^2 is so large that float32 scores could
// overflow, every codeword is scored in double precision instead.
#include "genrec/rq_lookup.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <string>
#include <thread>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GENREC_RQ_AVX2 1
#endif

namespace genrec {
namespace {

constexpr int kNR = 16;                       // codewords per panel (two 8-float vectors)
constexpr int kMR = 6;                        // items per micro-tile
constexpr int kBlock = kMR * 16;              // items per block (96)
constexpr int kMaxDim = 1 << 20;              // the error bound above assumes D <= 2^20
constexpr double kFastLimit = FLT_MAX / 16.0; // beyond this ||r||^2 + max||c||^2, score in double

struct FreeDeleter {
  void operator()(void* p) const noexcept { std::free(p); }
};
template <class T>
using AlignedArray = std::unique_ptr<T[], FreeDeleter>;

// 64-byte aligned, zero-filled array of n trivially-constructible T.
template <class T>
AlignedArray<T> aligned_zeros(size_t n) {
  size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
  if (bytes == 0) bytes = 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return AlignedArray<T>(static_cast<T*>(p));
}

// Per-thread scratch memory, reused across calls (no allocation on the serving path).
struct Scratch {
  std::vector<float> f[3];
  std::vector<double> d;
  std::vector<int> idx;
  std::vector<int16_t> p16;
  std::vector<int32_t> i32;
  // A 64-byte aligned float buffer of at least n elements (contents unspecified).
  float* floats(int which, size_t n) {
    std::vector<float>& v = f[which];
    if (v.size() < n + 16) v.resize(n + 16);
    const uintptr_t p = reinterpret_cast<uintptr_t>(v.data());
    return v.data() + ((64 - (p & 63)) & 63) / sizeof(float);
  }
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// The reference distance: sum over i in index order of (double(r_i) - double(c_i))^2, each square
// rounded before it is added (the core is compiled with -ffp-contract=off, so no FMA here).
inline double exact_distance(const float* r, const float* c, int dim) {
  double acc = 0.0;
  for (int i = 0; i < dim; ++i) {
    const double t = static_cast<double>(r[i]) - static_cast<double>(c[i]);
    acc += t * t;
  }
  return acc;
}

// ||v||^2 in double (v[i * stride]), four partial sums to keep the adds pipelined. Only the error
// bound uses it, so the summation order does not matter.
inline double squared_norm(const float* v, int dim, int stride = 1) {
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
  int i = 0;
  for (; i + 4 <= dim; i += 4) {
    const double x0 = v[i * stride], x1 = v[(i + 1) * stride], x2 = v[(i + 2) * stride],
                 x3 = v[(i + 3) * stride];
    a0 += x0 * x0;
    a1 += x1 * x1;
    a2 += x2 * x2;
    a3 += x3 * x3;
  }
  for (; i < dim; ++i) {
    const double x = v[i * stride];
    a0 += x * x;
  }
  return (a0 + a1) + (a2 + a3);
}

// ---------------------------------------------------------------------------------------------
// Kernels. `a` is a tile of MR residuals packed [dim][MR]; `b` a panel of 16 codewords packed
// [dim][16]; out[i * ldo + j] = norms[j] - 2 * dot(a_i, b_j).

#ifdef GENREC_RQ_AVX2

template <int MR>
inline void tile_scores(const float* a, const float* b, int dim, const float* norms, float* out,
                        int64_t ldo) {
  __m256 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) {
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  for (int d = 0; d < dim; ++d) {
    const __m256 b0 = _mm256_load_ps(b + kNR * d);
    const __m256 b1 = _mm256_load_ps(b + kNR * d + 8);
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + MR * d + i);
      acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
    }
  }
  const __m256 m2 = _mm256_set1_ps(-2.0f);
  const __m256 n0 = _mm256_load_ps(norms), n1 = _mm256_load_ps(norms + 8);
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_ps(out + i * ldo, _mm256_fmadd_ps(m2, acc0[i], n0));
    _mm256_storeu_ps(out + i * ldo + 8, _mm256_fmadd_ps(m2, acc1[i], n1));
  }
}

// One item against P consecutive panels (panel stride `pstride` floats): 2P accumulators.
template <int P>
inline void vec_scores(const float* r, const float* b, size_t pstride, int dim, const float* norms,
                       float* out) {
  __m256 acc[2 * P];
  for (int p = 0; p < 2 * P; ++p) acc[p] = _mm256_setzero_ps();
  for (int d = 0; d < dim; ++d) {
    const __m256 rd = _mm256_broadcast_ss(r + d);
    for (int p = 0; p < P; ++p) {
      acc[2 * p] = _mm256_fmadd_ps(rd, _mm256_load_ps(b + p * pstride + kNR * d), acc[2 * p]);
      acc[2 * p + 1] =
          _mm256_fmadd_ps(rd, _mm256_load_ps(b + p * pstride + kNR * d + 8), acc[2 * p + 1]);
    }
  }
  const __m256 m2 = _mm256_set1_ps(-2.0f);
  for (int p = 0; p < 2 * P; ++p) {
    _mm256_storeu_ps(out + 8 * p, _mm256_fmadd_ps(m2, acc[p], _mm256_load_ps(norms + 8 * p)));
  }
}

// One item against G groups of 8 codewords stored as int8, two dimensions per 16-byte row:
// row (g, i) holds q[8g + j][2i], q[8g + j][2i + 1] for j = 0..7. p holds the item's int16 values
// (zero-padded to an even length). out[8g + j] = the exact int32 sum over d of p[d] q[8g + j][d].
template <int G>
inline void int8_dots(const int16_t* p, const int8_t* q, size_t gstride, int npairs, int32_t* out) {
  __m256i acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_si256();
  for (int i = 0; i < npairs; ++i) {
    int32_t pair;
    std::memcpy(&pair, p + 2 * i, sizeof(pair));
    const __m256i bp = _mm256_set1_epi32(pair);
    for (int g = 0; g < G; ++g) {
      const __m256i w = _mm256_cvtepi8_epi16(
          _mm_load_si128(reinterpret_cast<const __m128i*>(q + g * gstride + 16 * static_cast<size_t>(i))));
      acc[g] = _mm256_add_epi32(acc[g], _mm256_madd_epi16(w, bp));
    }
  }
  for (int g = 0; g < G; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * g), acc[g]);
}

inline float dot(const float* a, const float* b, int dim) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int d = 0;
  for (; d + 16 <= dim; d += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d + 8), _mm256_loadu_ps(b + d + 8), s1);
  }
  s0 = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float acc = _mm_cvtss_f32(h);
  for (; d < dim; ++d) acc = std::fma(a[d], b[d], acc);
  return acc;
}

inline float min_of(const float* s, int n) {  // n is a multiple of 16
  __m256 m0 = _mm256_load_ps(s), m1 = _mm256_load_ps(s + 8);
  for (int k = 16; k < n; k += 16) {
    m0 = _mm256_min_ps(m0, _mm256_loadu_ps(s + k));
    m1 = _mm256_min_ps(m1, _mm256_loadu_ps(s + k + 8));
  }
  m0 = _mm256_min_ps(m0, m1);
  __m128 h = _mm_min_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
  h = _mm_min_ps(h, _mm_movehl_ps(h, h));
  h = _mm_min_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}

// Number of s[k] <= thr, and the first such k (branch-free count, then a scan to the first).
inline int count_at_most(const float* s, int n, float thr, int* first) {
  const __m256 t = _mm256_set1_ps(thr);
  int count = 0;
  for (int k = 0; k < n; k += 8) {
    count += __builtin_popcount(static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + k), t, _CMP_LE_OQ))));
  }
  *first = -1;
  for (int k = 0; k < n; k += 8) {
    const unsigned mask =
        static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + k), t, _CMP_LE_OQ)));
    if (mask != 0) {
      *first = k + __builtin_ctz(mask);
      break;
    }
  }
  return count;
}

#else  // portable fallback (GCC/Clang auto-vectorise the j loops)

template <int MR>
inline void tile_scores(const float* a, const float* b, int dim, const float* norms, float* out,
                        int64_t ldo) {
  float acc[MR][kNR] = {};
  for (int d = 0; d < dim; ++d) {
    const float* bd = b + kNR * d;
    for (int i = 0; i < MR; ++i) {
      const float ai = a[MR * d + i];
      for (int j = 0; j < kNR; ++j) acc[i][j] += ai * bd[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < kNR; ++j) out[i * ldo + j] = norms[j] - 2.0f * acc[i][j];
}

template <int P>
inline void vec_scores(const float* r, const float* b, size_t pstride, int dim, const float* norms,
                       float* out) {
  for (int p = 0; p < P; ++p) tile_scores<1>(r, b + p * pstride, dim, norms + kNR * p, out + kNR * p, 0);
}

inline float dot(const float* a, const float* b, int dim) {
  float acc = 0.0f;
  for (int d = 0; d < dim; ++d) acc += a[d] * b[d];
  return acc;
}

inline float min_of(const float* s, int n) {
  float m = s[0];
  for (int k = 1; k < n; ++k) m = s[k] < m ? s[k] : m;
  return m;
}

inline int count_at_most(const float* s, int n, float thr, int* first) {
  int count = 0;
  *first = -1;
  for (int k = 0; k < n; ++k) {
    if (s[k] <= thr) {
      if (*first < 0) *first = k;
      ++count;
    }
  }
  return count;
}

#endif

}  // namespace

// ---------------------------------------------------------------------------------------------

struct ResidualQuantizer::Impl {
  int levels = 0, k = 0, dim = 0;
  int npanels = 0;         // ceil(K / 16)
  int kpad = 0;            // npanels * 16
  size_t panel_floats = 0; // dim * 16
  AlignedArray<float> panels;  // [levels][npanels][dim][16], zero-padded codewords
  AlignedArray<float> norms;   // [levels][kpad] float32 ||c||^2, +inf for the padding
  std::vector<double> max_norm;  // [levels] max_k ||c_k||^2 (double)
  const float* codebooks = nullptr;  // [levels][K][dim], owned by the ResidualQuantizer
  double tol_scale = 0.0, tol_abs = 0.0;
#ifdef GENREC_RQ_AVX2
  // The one-item path first scores every codeword with exact integer dot products of an int16
  // copy of the residual and an int8 copy of the codebooks (a quarter of the bytes, so it stays in
  // L2 cache between calls), each with a rigorous error bound; the survivors are re-scored in
  // float32 and, where still needed, in double.
  int groups = 0, npairs = 0, qmax_r = 0;  // ceil(K / 8), ceil(D / 2), int16 range of residuals
  AlignedArray<int8_t> q8;       // [levels][groups][npairs][8 codes x 2 dims]
  std::vector<double> q_scale;   // [levels][K] s_k: c ~= s_k q_k
  std::vector<double> q_err;     // [levels][K] max_i |c_ki - s_k q_ki|
  std::vector<double> q_abs;     // [levels][K] s_k sum_i |q_ki|
  std::vector<double> norm_d;    // [levels][K] ||c_k||^2 in double
#endif

  const float* panel(int level, int p) const {
    return panels.get() + (static_cast<size_t>(level) * npanels + p) * panel_floats;
  }
  const float* codeword(int level, int code) const {
    return codebooks + (static_cast<size_t>(level) * k + code) * dim;
  }

  // Every codeword scored in double precision (when float32 scores could overflow).
  int exact_all(const float* r, int level) const {
    int best = 0;
    double best_d = exact_distance(r, codeword(level, 0), dim);
    for (int c = 1; c < k; ++c) {
      const double dd = exact_distance(r, codeword(level, c), dim);
      if (dd < best_d) {
        best_d = dd;
        best = c;
      }
    }
    return best;
  }

  // The float32 threshold s_min + tol, rounded up so that no candidate is lost.
  float threshold(float smin, double tol) const {
    const double thr = static_cast<double>(smin) + tol;
    float thr_f = static_cast<float>(thr);
    if (static_cast<double>(thr_f) < thr) thr_f = std::nextafter(thr_f, INFINITY);
    return thr_f;
  }

  // Decide among candidate codes (ascending) that contain the exact argmin: float32 scores with
  // their error bound first, then double precision for the ones still too close to call.
  int refine(const float* r, int level, double r2, const int* cand, int ncand, float* fs) const {
    const float* nl = norms.get() + static_cast<size_t>(level) * kpad;
    float fmin = INFINITY;
    for (int j = 0; j < ncand; ++j) {
      fs[j] = std::fma(-2.0f, dot(r, codeword(level, cand[j]), dim), nl[cand[j]]);
      fmin = std::min(fmin, fs[j]);
    }
    const float thr = threshold(fmin, tol_scale * (r2 + max_norm[level]) + tol_abs);
    int best = -1, count = 0;
    for (int j = 0; j < ncand; ++j) {
      if (fs[j] <= thr) {
        ++count;
        if (best < 0) best = cand[j];
      }
    }
    if (count <= 1) return best;
    double best_d = 0.0;
    best = -1;
    for (int j = 0; j < ncand; ++j) {
      if (!(fs[j] <= thr)) continue;
      const double dd = exact_distance(r, codeword(level, cand[j]), dim);
      if (best < 0 || dd < best_d) {
        best_d = dd;
        best = cand[j];
      }
    }
    return best;
  }

#ifdef GENREC_RQ_AVX2
  // The one-item decision at one level: integer filter, then refine().
  int filter_int8(const float* r, int level, double r2, int* cand, float* fs) const {
    Scratch& sc = scratch();
    const size_t gk = static_cast<size_t>(groups) * 8;
    if (sc.p16.size() < 2 * static_cast<size_t>(npairs)) sc.p16.resize(2 * static_cast<size_t>(npairs));
    if (sc.i32.size() < gk) sc.i32.resize(gk);
    if (sc.d.size() < static_cast<size_t>(k)) sc.d.resize(static_cast<size_t>(k));
    int16_t* p = sc.p16.data();
    int32_t* dots = sc.i32.data();
    // r ~= t p with |p| <= qmax_r; F bounds |r_i - t p_i|, A = t sum |p_i|.
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 vmax = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= dim; d += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(r + d), abs_mask));
    float mb[8];
    _mm256_storeu_ps(mb, vmax);
    float mr = 0.0f;
    for (float v : mb) mr = std::max(mr, v);
    for (; d < dim; ++d) mr = std::max(mr, std::fabs(r[d]));
    double t = 0.0, F = 0.0, A = 0.0;
    if (mr > 0.0f) {
      t = static_cast<double>(mr) / qmax_r;
      const float inv = static_cast<float>(qmax_r / static_cast<double>(mr));
      // p = round(r * inv) clamped to +-qmax_r (any integers would do: the error is measured).
      const __m256 vinv = _mm256_set1_ps(inv);
      const __m256i lo = _mm256_set1_epi32(-qmax_r), hi = _mm256_set1_epi32(qmax_r);
      const __m256d vt = _mm256_set1_pd(t), dabs = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
      __m256i vsum = _mm256_setzero_si256();
      __m256d vF = _mm256_setzero_pd();
      d = 0;
      for (; d + 8 <= dim; d += 8) {
        const __m256 x = _mm256_loadu_ps(r + d);
        const __m256i v = _mm256_min_epi32(hi, _mm256_max_epi32(lo, _mm256_cvtps_epi32(_mm256_mul_ps(x, vinv))));
        const __m128i packed = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p + d), packed);
        vsum = _mm256_add_epi32(vsum, _mm256_abs_epi32(v));
        const __m256d e0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)),
                                         _mm256_mul_pd(vt, _mm256_cvtepi32_pd(_mm256_castsi256_si128(v))));
        const __m256d e1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)),
                                         _mm256_mul_pd(vt, _mm256_cvtepi32_pd(_mm256_extracti128_si256(v, 1))));
        vF = _mm256_max_pd(vF, _mm256_max_pd(_mm256_and_pd(e0, dabs), _mm256_and_pd(e1, dabs)));
      }
      int32_t sb[8];
      double fb[4];
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(sb), vsum);
      _mm256_storeu_pd(fb, vF);
      int64_t sum_abs = 0;
      for (int32_t v : sb) sum_abs += v;
      for (double v : fb) F = std::max(F, v);
      for (; d < dim; ++d) {
        int v = _mm_cvtss_si32(_mm_set_ss(r[d] * inv));
        v = std::max(-qmax_r, std::min(qmax_r, v));
        p[d] = static_cast<int16_t>(v);
        sum_abs += v < 0 ? -v : v;
        F = std::max(F, std::fabs(static_cast<double>(r[d]) - t * static_cast<double>(v)));
      }
      F += std::ldexp(static_cast<double>(mr), -50);  // the rounding of t * v above
      A = t * static_cast<double>(sum_abs) * (1.0 + std::ldexp(1.0, -40));
    } else {
      std::fill(p, p + dim, int16_t{0});
    }
    if (dim & 1) p[dim] = 0;
    const int8_t* q = q8.get() + static_cast<size_t>(level) * groups * npairs * 16;
    const size_t gstride = static_cast<size_t>(npairs) * 16;
    int g = 0;
    for (; g + 8 <= groups; g += 8) int8_dots<8>(p, q + g * gstride, gstride, npairs, dots + 8 * g);
    for (; g < groups; ++g) int8_dots<1>(p, q + g * gstride, gstride, npairs, dots + 8 * g);
    // True score s_k = ||c_k||^2 - 2 r.c_k lies within est_k -+ err_k (see the constructor).
    const size_t off = static_cast<size_t>(level) * k;
    const double* sk = q_scale.data() + off;
    const double* ek = q_err.data() + off;
    const double* qk = q_abs.data() + off;
    const double* nk = norm_d.data() + off;
    double* lo = sc.d.data();  // est_k - err_k
    // est_k = n_k - 2 t s_k dot_k;  err_k = 2 (A e_k + Q_k F + D F e_k)
    const __m256d t2 = _mm256_set1_pd(2.0 * t), ae = _mm256_set1_pd(2.0 * (A + dim * F)),
                  f2 = _mm256_set1_pd(2.0 * F);
    __m256d up = _mm256_set1_pd(INFINITY);
    int c = 0;
    for (; c + 4 <= k; c += 4) {
      const __m256d dt = _mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(dots + c)));
      const __m256d est = _mm256_sub_pd(_mm256_loadu_pd(nk + c),
                                        _mm256_mul_pd(_mm256_mul_pd(t2, _mm256_loadu_pd(sk + c)), dt));
      const __m256d err = _mm256_add_pd(_mm256_mul_pd(ae, _mm256_loadu_pd(ek + c)),
                                        _mm256_mul_pd(f2, _mm256_loadu_pd(qk + c)));
      _mm256_storeu_pd(lo + c, _mm256_sub_pd(est, err));
      up = _mm256_min_pd(up, _mm256_add_pd(est, err));
    }
    double ub[4];
    _mm256_storeu_pd(ub, up);
    double upper = std::min(std::min(ub[0], ub[1]), std::min(ub[2], ub[3]));
    for (; c < k; ++c) {
      const double est = nk[c] - 2.0 * t * sk[c] * static_cast<double>(dots[c]);
      const double err = 2.0 * (A + dim * F) * ek[c] + 2.0 * F * qk[c];
      lo[c] = est - err;
      upper = std::min(upper, est + err);
    }
    // Slack for double rounding here and the reference's own summation error.
    const double limit = upper + std::ldexp(r2 + max_norm[level], -28) + tol_abs;
    const __m256d lim = _mm256_set1_pd(limit);
    int ncand = 0;
    c = 0;
    for (; c + 4 <= k; c += 4) {
      unsigned mask = static_cast<unsigned>(
          _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(lo + c), lim, _CMP_LE_OQ)));
      while (mask != 0) {
        cand[ncand++] = c + __builtin_ctz(mask);
        mask &= mask - 1;
      }
    }
    for (; c < k; ++c)
      if (lo[c] <= limit) cand[ncand++] = c;
    return ncand == 1 ? cand[0] : refine(r, level, r2, cand, ncand, fs);
  }
#endif

  // Encode one vector (the serving case): no blocking, no allocation after the first call.
  void encode_one(const float* x, int64_t row, int32_t* codes) const {
    Scratch& sc = scratch();
    float* r = sc.floats(0, static_cast<size_t>(dim));
#ifdef GENREC_RQ_AVX2
    float* fs = sc.floats(2, static_cast<size_t>(kpad));
    if (sc.idx.size() < static_cast<size_t>(kpad)) sc.idx.resize(static_cast<size_t>(kpad));
    int* cand = sc.idx.data();
#else
    float* s = sc.floats(1, static_cast<size_t>(kpad));
#endif
    double r2 = squared_norm(x, dim);
    if (!std::isfinite(r2)) throw_non_finite(x, row);
    std::memcpy(r, x, sizeof(float) * static_cast<size_t>(dim));
    for (int level = 0; level < levels; ++level) {
      const double mx = max_norm[level];
      int code;
      if (!(r2 + mx <= kFastLimit)) {
        code = exact_all(r, level);
      } else {
#ifdef GENREC_RQ_AVX2
        code = filter_int8(r, level, r2, cand, fs);
#else
        const float* nl = norms.get() + static_cast<size_t>(level) * kpad;
        int p = 0;
        for (; p + 4 <= npanels; p += 4)
          vec_scores<4>(r, panel(level, p), panel_floats, dim, nl + p * kNR, s + p * kNR);
        for (; p < npanels; ++p)
          vec_scores<1>(r, panel(level, p), panel_floats, dim, nl + p * kNR, s + p * kNR);
        code = choose(s, level, r2, [&]() -> const float* { return r; });
#endif
      }
      codes[level] = code;
      if (level + 1 < levels) {
        const float* c = codeword(level, code);
        for (int d = 0; d < dim; ++d) r[d] -= c[d];
        const double acc = squared_norm(r, dim);
        if (!std::isfinite(acc)) throw_overflow(row, level);
        r2 = acc;
      }
    }
  }

  // Decide the code of one item at one level from its float scores s[0..kpad).
  // `row()` returns the item's residual as a contiguous float row (only called when needed).
  template <class RowFn>
  int choose(const float* s, int level, double r2, RowFn&& row) const {
    const double mx = max_norm[level];
    if (!(r2 + mx <= kFastLimit)) return exact_all(row(), level);  // float scores could overflow
    const float thr_f = threshold(min_of(s, kpad), tol_scale * (r2 + mx) + tol_abs);
    int first = -1;
    const int count = count_at_most(s, kpad, thr_f, &first);
    if (count <= 1) return first;
    // Several codewords are too close to call in float32: decide in double precision.
    const float* r = row();
    int best = -1;
    double best_d = 0.0;
    for (int c = first; c < k; ++c) {
      if (!(s[c] <= thr_f)) continue;
      const double dd = exact_distance(r, codeword(level, c), dim);
      if (best < 0 || dd < best_d) {
        best_d = dd;
        best = c;
      }
    }
    return best;
  }

  [[noreturn]] void throw_non_finite(const float* x, int64_t row) const {
    int col = 0;
    while (col < dim && std::isfinite(x[col])) ++col;
    const float v = col < dim ? x[col] : 0.0f;
    throw InvalidArgument("x row " + std::to_string(row) + " column " + std::to_string(col) +
                          " is " + (std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf")) +
                          "; expected finite float32 values");
  }

  [[noreturn]] void throw_overflow(int64_t row, int level) const {
    throw InvalidArgument("x row " + std::to_string(row) + ": the residual after level " +
                          std::to_string(level) +
                          " overflows float32; expected input values of moderate magnitude");
  }

  // Encode rows [begin, end) of x. Works block by block with its own buffers.
  void encode_range(const float* x, int64_t begin, int64_t end, int32_t* codes) const {
    const int64_t n = end - begin;
    if (n <= 0) return;
    if (n == 1) return encode_one(x + begin * dim, begin, codes + begin * levels);
    const int cap = static_cast<int>(std::min<int64_t>(n, kBlock));
    const int max_tiles = (cap + kMR - 1) / kMR;
    Scratch& sc = scratch();
    float* packed = sc.floats(0, static_cast<size_t>(max_tiles) * kMR * dim);
    float* scores = sc.floats(1, static_cast<size_t>(max_tiles) * kMR * kpad);
    float* rowbuf = sc.floats(2, static_cast<size_t>(dim));
    if (sc.d.size() < static_cast<size_t>(cap)) sc.d.resize(static_cast<size_t>(cap));
    double* r2 = sc.d.data();

    for (int64_t start = begin; start < end; start += kBlock) {
      const int nb = static_cast<int>(std::min<int64_t>(kBlock, end - start));
      const int ntiles = (nb + kMR - 1) / kMR;
      auto tile_rows = [&](int t) { return std::min(kMR, nb - t * kMR); };
      // Pack the block's rows [dim][m] per tile, and check them.
      for (int t = 0; t < ntiles; ++t) {
        const int m = tile_rows(t);
        float* a = packed + static_cast<size_t>(t) * kMR * dim;
        for (int i = 0; i < m; ++i) {
          const int64_t row = start + t * kMR + i;
          const float* xi = x + row * dim;
          const double nrm = squared_norm(xi, dim);
          if (!std::isfinite(nrm)) throw_non_finite(xi, row);
          r2[t * kMR + i] = nrm;
          for (int d = 0; d < dim; ++d) a[static_cast<size_t>(d) * m + i] = xi[d];
        }
      }
      for (int level = 0; level < levels; ++level) {
        const float* nl = norms.get() + static_cast<size_t>(level) * kpad;
        // Scores for every (item, codeword): panels outer so a panel stays in L1 across tiles.
        for (int p = 0; p < npanels; ++p) {
          const float* b = panel(level, p);
          for (int t = 0; t < ntiles; ++t) {
            const float* a = packed + static_cast<size_t>(t) * kMR * dim;
            float* out = scores + static_cast<size_t>(t) * kMR * kpad + p * kNR;
            switch (tile_rows(t)) {
              case 6: tile_scores<6>(a, b, dim, nl + p * kNR, out, kpad); break;
              case 5: tile_scores<5>(a, b, dim, nl + p * kNR, out, kpad); break;
              case 4: tile_scores<4>(a, b, dim, nl + p * kNR, out, kpad); break;
              case 3: tile_scores<3>(a, b, dim, nl + p * kNR, out, kpad); break;
              case 2: tile_scores<2>(a, b, dim, nl + p * kNR, out, kpad); break;
              default: break;  // single-item tile: below, 4 panels at a time
            }
          }
        }
        if (tile_rows(ntiles - 1) == 1) {
          const int t = ntiles - 1;
          const float* a = packed + static_cast<size_t>(t) * kMR * dim;
          float* out = scores + static_cast<size_t>(t) * kMR * kpad;
          int p = 0;
          for (; p + 4 <= npanels; p += 4)
            vec_scores<4>(a, panel(level, p), panel_floats, dim, nl + p * kNR, out + p * kNR);
          for (; p < npanels; ++p)
            vec_scores<1>(a, panel(level, p), panel_floats, dim, nl + p * kNR, out + p * kNR);
        }
        // Decide, then update the residuals.
        for (int t = 0; t < ntiles; ++t) {
          const int m = tile_rows(t);
          float* a = packed + static_cast<size_t>(t) * kMR * dim;
          for (int i = 0; i < m; ++i) {
            const int it = t * kMR + i;
            const int64_t row = start + it;
            auto row_fn = [&]() -> const float* {
              for (int d = 0; d < dim; ++d) rowbuf[d] = a[static_cast<size_t>(d) * m + i];
              return rowbuf;
            };
            const int code = choose(scores + static_cast<size_t>(it) * kpad, level, r2[it], row_fn);
            codes[row * levels + level] = code;
            if (level + 1 < levels) {
              const float* c = codeword(level, code);
              for (int d = 0; d < dim; ++d) a[static_cast<size_t>(d) * m + i] -= c[d];
              const double acc = squared_norm(a + i, dim, m);
              if (!std::isfinite(acc)) throw_overflow(row, level);
              r2[it] = acc;
            }
          }
        }
      }
    }
  }
};

ResidualQuantizer::ResidualQuantizer(const float* codebooks, int levels, int codebook_size, int dim)
    : levels_(levels), codebook_size_(codebook_size), dim_(dim) {
  if (levels <= 0 || codebook_size <= 0 || dim <= 0) {
    throw InvalidArgument("codebooks have shape (" + std::to_string(levels) + ", " +
                          std::to_string(codebook_size) + ", " + std::to_string(dim) +
                          "); expected levels, codebook_size and dim all >= 1");
  }
  if (dim > kMaxDim) {
    throw InvalidArgument("codebook dim is " + std::to_string(dim) + "; expected dim <= " +
                          std::to_string(kMaxDim));
  }
  if (codebooks == nullptr) throw InvalidArgument("codebooks is a null pointer; expected data");
  const size_t total = static_cast<size_t>(levels) * codebook_size * dim;
  codebooks_.assign(codebooks, codebooks + total);
  for (size_t i = 0; i < total; ++i) {
    if (!std::isfinite(codebooks_[i])) {
      const size_t l = i / (static_cast<size_t>(codebook_size) * dim);
      const size_t c = (i / dim) % codebook_size;
      throw InvalidArgument("codebooks[" + std::to_string(l) + ", " + std::to_string(c) + ", " +
                            std::to_string(i % dim) + "] is " + std::to_string(codebooks_[i]) +
                            "; expected finite values");
    }
  }
  impl_ = std::make_unique<Impl>();
  Impl& im = *impl_;
  im.levels = levels;
  im.k = codebook_size;
  im.dim = dim;
  im.npanels = (codebook_size + kNR - 1) / kNR;
  im.kpad = im.npanels * kNR;
  im.panel_floats = static_cast<size_t>(dim) * kNR;
  im.panels = aligned_zeros<float>(static_cast<size_t>(levels) * im.npanels * im.panel_floats);
  im.norms = aligned_zeros<float>(static_cast<size_t>(levels) * im.kpad);
  im.max_norm.assign(static_cast<size_t>(levels), 0.0);
  im.codebooks = codebooks_.data();
  im.tol_scale = (1.25 * dim + 8.0) * static_cast<double>(FLT_EPSILON);
  im.tol_abs = 4.0 * (dim + 4.0) * static_cast<double>(FLT_TRUE_MIN);
#ifdef GENREC_RQ_AVX2
  im.groups = (codebook_size + 7) / 8;
  im.npairs = (dim + 1) / 2;
  // int32 accumulation stays exact: 2 npairs * qmax_r * 127 < 2^31.
  im.qmax_r = static_cast<int>(std::min<int64_t>(32767, (int64_t{1} << 31) / (2 * int64_t{im.npairs} * 127) - 1));
  im.q8 = aligned_zeros<int8_t>(static_cast<size_t>(levels) * im.groups * im.npairs * 16);
  const size_t lk = static_cast<size_t>(levels) * codebook_size;
  im.q_scale.assign(lk, 0.0);
  im.q_err.assign(lk, 0.0);
  im.q_abs.assign(lk, 0.0);
  im.norm_d.assign(lk, 0.0);
#endif
  for (int l = 0; l < levels; ++l) {
    float* nl = im.norms.get() + static_cast<size_t>(l) * im.kpad;
    for (int c = 0; c < im.kpad; ++c) {
      if (c >= codebook_size) {
        nl[c] = INFINITY;  // padding never wins
        continue;
      }
      const float* cw = im.codeword(l, c);
      const double nrm = squared_norm(cw, dim);
      nl[c] = static_cast<float>(nrm);
      im.max_norm[l] = std::max(im.max_norm[l], nrm);
      float* p = im.panels.get() + (static_cast<size_t>(l) * im.npanels + c / kNR) * im.panel_floats;
      for (int d = 0; d < dim; ++d) p[static_cast<size_t>(d) * kNR + c % kNR] = cw[d];
#ifdef GENREC_RQ_AVX2
      // c_k ~= s_k q_k with int8 q_k; record max |c - s q| (exactly bounded) and s sum |q|.
      const size_t o = static_cast<size_t>(l) * codebook_size + c;
      float cmax = 0.0f;
      for (int d = 0; d < dim; ++d) cmax = std::max(cmax, std::fabs(cw[d]));
      const double sk = static_cast<double>(cmax) / 127.0;
      int64_t qsum = 0;
      double qerr = 0.0;
      int8_t* qrow = im.q8.get() + (static_cast<size_t>(l) * im.groups + c / 8) * im.npairs * 16;
      for (int d = 0; d < dim; ++d) {
        long v = sk > 0.0 ? std::lrint(static_cast<double>(cw[d]) / sk) : 0;
        v = std::max(-127L, std::min(127L, v));
        qrow[static_cast<size_t>(d / 2) * 16 + (c % 8) * 2 + (d & 1)] = static_cast<int8_t>(v);
        qsum += v < 0 ? -v : v;
        qerr = std::max(qerr, std::fabs(static_cast<double>(cw[d]) - sk * static_cast<double>(v)));
      }
      im.q_scale[o] = sk;
      im.q_err[o] = qerr + std::ldexp(static_cast<double>(cmax), -50);
      im.q_abs[o] = sk * static_cast<double>(qsum) * (1.0 + std::ldexp(1.0, -40));
      im.norm_d[o] = nrm;
#endif
    }
  }
}

ResidualQuantizer::~ResidualQuantizer() = default;
ResidualQuantizer::ResidualQuantizer(ResidualQuantizer&&) noexcept = default;
ResidualQuantizer& ResidualQuantizer::operator=(ResidualQuantizer&&) noexcept = default;

void ResidualQuantizer::encode(const float* x, int64_t n, int32_t* codes, int n_threads) const {
  if (n < 0) throw InvalidArgument("n is " + std::to_string(n) + "; expected n >= 0");
  if (n == 0) return;
  if (x == nullptr || codes == nullptr) throw InvalidArgument("encode got a null pointer");
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(n_threads, blocks));
  if (threads == 1) {
    impl_->encode_range(x, 0, n, codes);
    return;
  }
  // Contiguous chunks of whole blocks; the calling thread takes the first one.
  const int64_t per = (blocks + threads - 1) / threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads - 1));
  auto work = [&](int64_t t) {
    const int64_t b = std::min(n, t * per * kBlock), e = std::min(n, (t + 1) * per * kBlock);
    try {
      impl_->encode_range(x, b, e, codes);
    } catch (...) {
      errors[static_cast<size_t>(t)] = std::current_exception();
    }
  };
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  for (auto& err : errors)
    if (err) std::rethrow_exception(err);  // the first failing chunk, i.e. the lowest bad row
}

void ResidualQuantizer::decode(const int32_t* codes, int64_t n, float* out) const {
  if (n < 0) throw InvalidArgument("n is " + std::to_string(n) + "; expected n >= 0");
  if (n == 0) return;
  if (codes == nullptr || out == nullptr) throw InvalidArgument("decode got a null pointer");
  for (int64_t i = 0; i < n; ++i) {
    for (int l = 0; l < levels_; ++l) {
      const int32_t c = codes[i * levels_ + l];
      if (c < 0 || c >= codebook_size_) {
        throw OutOfRange("codes row " + std::to_string(i) + " level " + std::to_string(l) +
                         " has code " + std::to_string(c) + "; expected 0 <= code < " +
                         std::to_string(codebook_size_));
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    float* o = out + i * dim_;
    const int32_t* ci = codes + i * levels_;
    std::memcpy(o, impl_->codeword(0, ci[0]), sizeof(float) * dim_);
    for (int l = 1; l < levels_; ++l) {
      const float* c = impl_->codeword(l, ci[l]);
      for (int d = 0; d < dim_; ++d) o[d] += c[d];
    }
  }
}

size_t ResidualQuantizer::memory_bytes() const noexcept {
  size_t b = sizeof(*this) + codebooks_.capacity() * sizeof(float);
  if (impl_) {
    const Impl& im = *impl_;
    b += sizeof(Impl) + static_cast<size_t>(levels_) * im.npanels * im.panel_floats * sizeof(float) +
         static_cast<size_t>(levels_) * im.kpad * sizeof(float) + im.max_norm.capacity() * sizeof(double);
#ifdef GENREC_RQ_AVX2
    b += static_cast<size_t>(levels_) * im.groups * im.npairs * 16 +
         (im.q_scale.capacity() + im.q_err.capacity() + im.q_abs.capacity() + im.norm_d.capacity()) * sizeof(double);
#endif
  }
  return b;
}

}  // namespace genrec
