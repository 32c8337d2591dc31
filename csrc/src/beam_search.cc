// genrec-lite: batched constrained beam search over semantic IDs. See genrec/beam_search.h.
#include "genrec/beam_search.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <utility>

namespace genrec {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();


// 2^k for kd = k + shift, the rounding trick of the exp kernels below (shift = 1.5 * 2^mantissa_bits,
// so k sits in kd's low mantissa bits): the bits of 2^k are (k + bias) << mantissa_bits.
template <class F, class Bits>
inline F pow2_of_shifted(F kd, F shift, Bits bias, int mantissa_bits) noexcept {
  Bits kbits, shift_bits;
  std::memcpy(&kbits, &kd, sizeof kd);
  std::memcpy(&shift_bits, &shift, sizeof shift);
  const Bits scale_bits = (kbits - shift_bits + bias) << mantissa_bits;
  F scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return scale;
}

// exp(x) for x <= 0 (not NaN), in double, to about 1 ulp: x = k ln2 + r with |r| <= ln2 / 2 (ln2
// split in two so k * ln2_hi is exact), exp(r) by its Taylor series to degree 13 (truncation
// below 1e-17), times 2^k. Below -700 the result is 0, which leaves a softmax sum >= 1 unchanged.
// Every step is one IEEE operation in a fixed order (no FMA), so the AVX2 and the scalar paths
// give the same bits as each other and as the numpy copy of this kernel in the tests.
// (libm's exp, one call per element, took about half of the search's time.)
constexpr double kExpMin = -700.0;
constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2Hi = 0.6931471803691238;     // 0x3fe62e42fee00000: 21 low bits zero
constexpr double kLn2Lo = 1.9082149292705877e-10;
constexpr double kShift = 6755399441055744.0;      // 1.5 * 2^52: adding it rounds to an integer
constexpr double kTaylor[14] = {1.0, 1.0, 0.5, 0.16666666666666666, 0.041666666666666664,
                                0.008333333333333333, 0.001388888888888889, 0.0001984126984126984,
                                2.48015873015873e-05, 2.7557319223985893e-06, 2.755731922398589e-07,
                                2.505210838544172e-08, 2.08767569878681e-09, 1.6059043836821613e-10};

inline double exp_nonpositive(double x) noexcept {
  const double xc = x < kExpMin ? kExpMin : x;
  const double kd = xc * kLog2e + kShift;
  const double k = kd - kShift;
  const double r = (xc - k * kLn2Hi) - k * kLn2Lo;
  double p = kTaylor[13];
  for (int i = 12; i >= 0; --i) p = p * r + kTaylor[i];
  return x < kExpMin ? 0.0 : p * pow2_of_shifted<double, uint64_t>(kd, kShift, 1023, 52);  // k in [-1010, 0]
}

// exp(d) for d <= 0 (not NaN) in float32: the kernel of log_sum_exp_row, which reads `vocab`
// logits a row, so it is built for speed. d = k ln2 + r with |r| <= ln2 / 2 (ln2 in two parts),
// exp(r) by its Taylor series to degree 7 (truncation below 1e-8 relative) in Horner form with
// fused multiply-adds, times 2^k; d below -80 counts as -80 (e^-80 < 2e-35 adds nothing next to
// the row maximum's term 1, and 2^k stays a normal float). Each step is one IEEE operation (an
// FMA rounds once), so the AVX2 path, the scalar path (std::fma) and the numpy copy in the tests
// give the same bits; within 2 ulp of float of exp.
constexpr float kExpMinF = -80.0f;
constexpr float kLog2eF = 1.4426950216293335f;
constexpr float kLn2HiF = 0.693145751953125f;  // 0x3f317200: 16 significant bits
constexpr float kLn2LoF = 1.428606765330187e-06f;
constexpr float kShiftF = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
constexpr float kTaylorF[8] = {1.0f, 1.0f, 0.5f, 0.1666666716337204f, 0.0416666679084301f,
                               0.008333333767950535f, 0.0013888889225199819f, 0.00019841270113829523f};

inline float exp_nonpositive_f32(float d) noexcept {
  const float xc = d < kExpMinF ? kExpMinF : d;
  const float kd = std::fma(xc, kLog2eF, kShiftF);
  const float k = kd - kShiftF;
  const float r = std::fma(-k, kLn2LoF, std::fma(-k, kLn2HiF, xc));
  float p = kTaylorF[7];
  for (int i = 6; i >= 0; --i) p = std::fma(p, r, kTaylorF[i]);
  return p * pow2_of_shifted<float, uint32_t>(kd, kShiftF, 127, 23);  // k in [-116, 0]
}

// out[j] = exp(x[j] - m) for j < n (x[j] <= m, no NaN).
void exp_shifted(const double* x, double m, double* out, size_t n) noexcept {
  size_t j = 0;
#if defined(__AVX2__)
  const __m256d vm = _mm256_set1_pd(m), vmin = _mm256_set1_pd(kExpMin), vlog2e = _mm256_set1_pd(kLog2e);
  const __m256d vshift = _mm256_set1_pd(kShift), vhi = _mm256_set1_pd(kLn2Hi), vlo = _mm256_set1_pd(kLn2Lo);
  const __m256i bias = _mm256_set1_epi64x(1023), shift_bits = _mm256_castpd_si256(vshift);
  for (; j + 4 <= n; j += 4) {
    const __m256d v = _mm256_sub_pd(_mm256_loadu_pd(x + j), vm);
    const __m256d xc = _mm256_max_pd(v, vmin);
    const __m256d kd = _mm256_add_pd(_mm256_mul_pd(xc, vlog2e), vshift);
    const __m256d k = _mm256_sub_pd(kd, vshift);
    const __m256d r = _mm256_sub_pd(_mm256_sub_pd(xc, _mm256_mul_pd(k, vhi)), _mm256_mul_pd(k, vlo));
    __m256d p = _mm256_set1_pd(kTaylor[13]);
    for (int i = 12; i >= 0; --i) p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(kTaylor[i]));
    const __m256i e = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_sub_epi64(_mm256_castpd_si256(kd), shift_bits), bias), 52);
    const __m256d y = _mm256_mul_pd(p, _mm256_castsi256_pd(e));
    const __m256d under = _mm256_cmp_pd(v, vmin, _CMP_LT_OQ);
    _mm256_storeu_pd(out + j, _mm256_andnot_pd(under, y));
  }
#endif
  for (; j < n; ++j) out[j] = exp_nonpositive(x[j] - m);
}

}  // namespace

double log_sum_exp_row(const float* row, int64_t n) noexcept {
  constexpr float kInfF = std::numeric_limits<float>::infinity();
  const size_t len = n > 0 ? static_cast<size_t>(n) : 0;
  // Pass 1: the maximum, and whether any value is NaN or +inf (!(v < inf)).
  float m = -kInfF;
  bool bad = false;
  size_t j = 0;
#if defined(__AVX2__)
  {
    __m256 vmax = _mm256_set1_ps(-kInfF), vbad = _mm256_setzero_ps();
    const __m256 vinf = _mm256_set1_ps(kInfF);
    for (; j + 8 <= len; j += 8) {
      const __m256 v = _mm256_loadu_ps(row + j);
      vmax = _mm256_max_ps(vmax, v);
      vbad = _mm256_or_ps(vbad, _mm256_cmp_ps(v, vinf, _CMP_NLT_UQ));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, vmax);
    for (float v : lanes) m = v > m ? v : m;
    bad = _mm256_movemask_ps(vbad) != 0;
  }
#endif
  for (; j < len; ++j) {
    const float v = row[j];
    bad |= !(v < kInfF);
    m = v > m ? v : m;
  }
  if (bad) return std::numeric_limits<double>::quiet_NaN();
  if (m == -kInfF) return kNegInf;  // nothing finite (a row with a kept candidate never is)
  // Pass 2 (the row is in cache now): sum of exp(x - m) in double, lane j mod 8.
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  j = 0;
#if defined(__AVX2__) && defined(__FMA__)
  {
    const __m256 vm = _mm256_set1_ps(m), vmin = _mm256_set1_ps(kExpMinF), vlog2e = _mm256_set1_ps(kLog2eF);
    const __m256 vshift = _mm256_set1_ps(kShiftF), vhi = _mm256_set1_ps(kLn2HiF), vlo = _mm256_set1_ps(kLn2LoF);
    const __m256i bias = _mm256_set1_epi32(127), shift_bits = _mm256_castps_si256(vshift);
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
    for (; j + 8 <= len; j += 8) {
      const __m256 xc = _mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm), vmin);
      const __m256 kd = _mm256_fmadd_ps(xc, vlog2e, vshift);
      const __m256 k = _mm256_sub_ps(kd, vshift);
      const __m256 r = _mm256_fnmadd_ps(k, vlo, _mm256_fnmadd_ps(k, vhi, xc));
      __m256 p = _mm256_set1_ps(kTaylorF[7]);
      for (int i = 6; i >= 0; --i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kTaylorF[i]));
      const __m256i e = _mm256_slli_epi32(
          _mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(kd), shift_bits), bias), 23);
      const __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
      acc_lo = _mm256_add_pd(acc_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(y)));
      acc_hi = _mm256_add_pd(acc_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)));
    }
    _mm256_storeu_pd(acc, acc_lo);
    _mm256_storeu_pd(acc + 4, acc_hi);
  }
#endif
  for (; j < len; ++j) acc[j & 7] += static_cast<double>(exp_nonpositive_f32(row[j] - m));
  const double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  return static_cast<double>(m) + std::log(sum);
}

BeamSearch::BeamSearch(const SidTrie& trie, const SidTrie* delta, const SidTokenTable& tokens,
                       std::vector<SearchRequest> requests)
    : trie_(trie), delta_(delta), requests_(std::move(requests)), levels_(trie.levels()) {
  if (delta_ != nullptr && (delta_->levels() != levels_ || delta_->codebook_sizes() != trie.codebook_sizes())) {
    throw InvalidArgument("the delta trie has " + std::to_string(delta_->levels()) +
                          " levels or other code ranges than the base trie's " + std::to_string(levels_) +
                          "; expected the same");
  }
  if (tokens.levels != levels_) {
    throw InvalidArgument("the token table has " + std::to_string(tokens.levels) +
                          " levels; expected " + std::to_string(levels_) + " (the trie's levels)");
  }
  if (tokens.max_size < 0 ||
      tokens.ids.size() != static_cast<size_t>(tokens.levels) * static_cast<size_t>(tokens.max_size)) {
    throw InvalidArgument("the token table has " + std::to_string(tokens.ids.size()) + " ids and max_size " +
                          std::to_string(tokens.max_size) + "; expected levels x max_size = " +
                          std::to_string(tokens.levels) + " x " + std::to_string(tokens.max_size) + " ids");
  }
  if (requests_.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw InvalidArgument("got " + std::to_string(requests_.size()) + " requests; expected fewer than 2^31");
  }
  // The tokens of each level's codes (those both the trie's code range and the table hold) in one
  // flat array, and each level's token id range, for prefetching logit rows.
  tok_begin_.assign(static_cast<size_t>(levels_) + 1, 0);
  tok_len_.assign(static_cast<size_t>(levels_), 0);
  for (int l = 0; l < levels_; ++l) {
    tok_len_[static_cast<size_t>(l)] = std::min(trie.codebook_sizes()[static_cast<size_t>(l)], tokens.max_size);
    tok_begin_[static_cast<size_t>(l) + 1] = tok_begin_[static_cast<size_t>(l)] +
                                             static_cast<size_t>(tok_len_[static_cast<size_t>(l)]);
  }
  tok_.resize(tok_begin_.back());
  tok_lo_.assign(static_cast<size_t>(levels_), -1);
  tok_hi_.assign(static_cast<size_t>(levels_), -1);
  for (int l = 0; l < levels_; ++l) {
    int32_t& lo = tok_lo_[static_cast<size_t>(l)];
    int32_t& hi = tok_hi_[static_cast<size_t>(l)];
    for (int32_t c = 0; c < tok_len_[static_cast<size_t>(l)]; ++c) {
      const int32_t t = tokens.token(l, c);
      tok_[tok_begin_[static_cast<size_t>(l)] + static_cast<size_t>(c)] = t;
      if (t < 0) continue;
      lo = lo < 0 ? t : std::min(lo, t);
      hi = std::max(hi, t);
    }
  }
  overlay_of_.assign(requests_.size(), -1);
  size_t total_beam = 0;
  for (size_t r = 0; r < requests_.size(); ++r) {
    const SearchRequest& q = requests_[r];
    if (q.k < 1) {
      throw InvalidArgument("request " + std::to_string(r) + " has k=" + std::to_string(q.k) + "; expected k >= 1");
    }
    if (q.beam < 1) {
      throw InvalidArgument("request " + std::to_string(r) + " has beam=" + std::to_string(q.beam) +
                            "; expected beam >= 1");
    }
    total_beam += static_cast<size_t>(q.beam);
    if (!q.has_allow && q.deny.empty()) continue;
    Overlay ov, dov;
    build_overlay(trie_, q, ov);
    if (delta_ != nullptr) build_overlay(*delta_, q, dov);
    // A deny list of ids the tries lack filters nothing: keep the unfiltered fast path.
    if (!ov.allow && ov.pos.empty() && dov.pos.empty()) continue;
    overlay_of_[r] = static_cast<int32_t>(overlays_.size());
    overlays_.push_back(std::move(ov));
    doverlays_.push_back(std::move(dov));
  }

  // Level 0: one row per request at the root.
  const size_t n = requests_.size();
  row_request_.resize(n);
  for (size_t r = 0; r < n; ++r) row_request_[r] = static_cast<int32_t>(r);
  node_.assign(n, 0u);
  dnode_.assign(n, delta_ != nullptr ? 0u : SidTrie::kNoNode);
  score_.assign(n, 0.0);
  raw_.assign(n, 0.0);
  // Room for the widest level up front, so the steps themselves do not allocate.
  const size_t cap = std::min<size_t>(total_beam, size_t{1} << 16);
  for (auto* v : {&next_request_, &next_parents_, &next_tokens_, &row_request_, &parents_, &tokens_}) v->reserve(cap);
  for (auto* v : {&next_node_, &node_, &next_dnode_, &dnode_}) v->reserve(cap);
  for (auto* v : {&next_score_, &score_, &next_raw_, &raw_}) v->reserve(cap);
}

void BeamSearch::build_overlay(const SidTrie& t, const SearchRequest& q, Overlay& ov) {
  const int L = t.levels();
  auto positions = [&](const std::vector<int64_t>& ids) {
    std::vector<uint32_t> p;
    p.reserve(ids.size());
    for (int64_t id : ids) {
      const uint32_t x = t.item_position(id);
      if (x != SidTrie::kNoNode) p.push_back(x);  // unknown ids are ignored (documented)
    }
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
    return p;
  };
  ov.allow = q.has_allow;
  if (q.has_allow) {
    std::vector<uint32_t> allow = positions(q.allow);
    if (!q.deny.empty()) {  // allow and deny together: the allowed items not denied
      const std::vector<uint32_t> deny = positions(q.deny);
      ov.pos.reserve(allow.size());
      std::set_difference(allow.begin(), allow.end(), deny.begin(), deny.end(), std::back_inserter(ov.pos));
    } else {
      ov.pos = std::move(allow);
    }
  } else {
    ov.pos = positions(q.deny);
  }
  ov.node.assign(static_cast<size_t>(L) + 1, {});
  ov.run.assign(static_cast<size_t>(L) + 1, {});
  for (int d = 1; d <= L; ++d) {
    ov.node[static_cast<size_t>(d)].reserve(ov.pos.size());
    ov.run[static_cast<size_t>(d)].reserve(ov.pos.size() + 1);
  }
  // Node of each listed position at each depth; positions are sorted, so per depth the nodes are
  // non-decreasing and a node's positions are one run.
  std::vector<uint32_t> path(static_cast<size_t>(L) + 1);
  for (size_t j = 0; j < ov.pos.size(); ++j) {
    path[static_cast<size_t>(L)] = t.leaf_of_position(ov.pos[j]);
    for (int d = L; d > 1; --d) path[static_cast<size_t>(d - 1)] = t.node_parent(d, path[static_cast<size_t>(d)]);
    for (int d = 1; d <= L; ++d) {
      std::vector<uint32_t>& nodes = ov.node[static_cast<size_t>(d)];
      if (nodes.empty() || nodes.back() != path[static_cast<size_t>(d)]) {
        nodes.push_back(path[static_cast<size_t>(d)]);
        ov.run[static_cast<size_t>(d)].push_back(static_cast<uint32_t>(j));
      }
    }
  }
  for (int d = 1; d <= L; ++d) ov.run[static_cast<size_t>(d)].push_back(static_cast<uint32_t>(ov.pos.size()));
}

[[noreturn]] void BeamSearch::bad_token(int level, int32_t code, int32_t tok, int64_t vocab) {
  if (tok < 0) {
    throw InvalidArgument("the token table has no token (" + std::to_string(tok) + ") for level " +
                          std::to_string(level) + " code " + std::to_string(code) + ", which the trie holds");
  }
  throw InvalidArgument("the SID token of level " + std::to_string(level) + " code " + std::to_string(code) +
                        " has id " + std::to_string(tok) + "; expected 0 <= id < " + std::to_string(vocab) +
                        " (the length of a logits row)");
}

size_t BeamSearch::gather_side(const SidTrie& t, const Overlay* ov, int d, uint32_t v, uint32_t* out) {
  // the node's children are at depth d + 1
  const uint32_t b = t.child_begin(d, v), e = t.child_begin(d, v + 1);
  size_t n = 0;
  if (ov == nullptr) {
    const std::atomic<uint32_t>* active = t.active_counts(d + 1);
    for (uint32_t u = b; u < e; ++u) {
      out[n] = u;
      n += active[u].load(std::memory_order_relaxed) != 0 ? 1 : 0;  // branch-free: most are active
    }
    // Pairs with the trie's release updates: what this search reads below these nodes later is
    // at least as new as the counts read here.
    std::atomic_thread_fence(std::memory_order_acquire);
    return n;
  }
  // The listed nodes among the children: a contiguous part of the depth's sorted node list.
  const std::vector<uint32_t>& nodes = ov->node[static_cast<size_t>(d + 1)];
  const std::vector<uint32_t>& run = ov->run[static_cast<size_t>(d + 1)];
  size_t j = static_cast<size_t>(std::lower_bound(nodes.begin(), nodes.end(), b) - nodes.begin());
  if (ov->allow) {  // only children with an active listed item below
    for (; j < nodes.size() && nodes[j] < e; ++j) {
      for (uint32_t x = run[j]; x < run[j + 1]; ++x) {
        if (t.active_at(ov->pos[x])) {
          out[n++] = nodes[j];
          break;
        }
      }
    }
    return n;
  }
  for (uint32_t u = b; u < e; ++u) {  // deny: children with more active items than active denied ones
    const uint32_t active = t.node_active(d + 1, u);
    const bool listed = j < nodes.size() && nodes[j] == u;
    if (active == 0) {
      j += listed ? 1 : 0;
      continue;
    }
    if (listed) {
      bool ok = active > run[j + 1] - run[j];  // more active items than denied ones at all: no need to look
      if (!ok) {
        uint32_t denied_active = 0;
        for (uint32_t x = run[j]; x < run[j + 1]; ++x) denied_active += t.active_at(ov->pos[x]) ? 1u : 0u;
        ok = active > denied_active;
      }
      ++j;
      if (!ok) continue;
    }
    out[n++] = u;
  }
  return n;
}

size_t BeamSearch::gather(size_t i, const Overlay* ov, const Overlay* dov) {
  const int d = level_;  // the row's nodes are at depth d; their children at d + 1
  const uint32_t v = node_[i], dv = dnode_[i];
  const size_t nb = v == SidTrie::kNoNode ? 0 : trie_.child_begin(d, v + 1) - trie_.child_begin(d, v);
  const size_t nd = dv == SidTrie::kNoNode ? 0 : delta_->child_begin(d, dv + 1) - delta_->child_begin(d, dv);
  if (child_buf_.size() < nb + nd) {  // grows to the widest node once, then reused
    for (auto* b : {&child_buf_, &dchild_buf_, &side_buf_}) b->resize(nb + nd);
    for (auto* b : {&tok_buf_, &code_buf_}) b->resize(nb + nd);
    logit_buf_.resize(nb + nd);
    exp_buf_.resize(nb + nd);
  }
  if (nd == 0) {  // the base alone (always so without a delta)
    const size_t n = nb == 0 ? 0 : gather_side(trie_, ov, d, v, child_buf_.data());
    const int32_t* codes = trie_.node_codes(d + 1);
    for (size_t j = 0; j < n; ++j) code_buf_[j] = codes[child_buf_[j]];
    if (delta_ != nullptr) std::fill_n(dchild_buf_.begin(), n, SidTrie::kNoNode);
    return n;
  }
  // Both: the base's allowed children into child_buf_'s tail, the delta's into side_buf_, then
  // merged by code (a code both hold is one child with both nodes).
  uint32_t* base = child_buf_.data() + nd;
  const size_t na = nb == 0 ? 0 : gather_side(trie_, ov, d, v, base);
  const size_t nx = gather_side(*delta_, dov, d, dv, side_buf_.data());
  const int32_t* bc = trie_.node_codes(d + 1);
  const int32_t* dc = delta_->node_codes(d + 1);
  size_t a = 0, x = 0, n = 0;
  while (a < na || x < nx) {  // n <= a + x: writing child_buf_[n] never overtakes base[a]
    const int32_t ca = a < na ? bc[base[a]] : std::numeric_limits<int32_t>::max();
    const int32_t cx = x < nx ? dc[side_buf_[x]] : std::numeric_limits<int32_t>::max();
    const uint32_t u = ca <= cx ? base[a] : SidTrie::kNoNode;
    const uint32_t du = cx <= ca ? side_buf_[x] : SidTrie::kNoNode;
    a += ca <= cx ? 1 : 0;
    x += cx <= ca ? 1 : 0;
    child_buf_[n] = u;
    dchild_buf_[n] = du;
    code_buf_[n++] = std::min(ca, cx);
  }
  return n;
}

double BeamSearch::load_logits(size_t n, const float* row, int64_t vocab) {
  const int d = level_;
  const int32_t* level_tokens = tok_.data() + tok_begin_[static_cast<size_t>(d)];
  const int32_t n_tokens = tok_len_[static_cast<size_t>(d)];
  const int32_t* codes = code_buf_.data();
  int32_t* toks = tok_buf_.data();
  bool bad = false;
  for (size_t j = 0; j < n; ++j) {
    const int32_t c = codes[j];
    const int32_t tok = c < n_tokens ? level_tokens[c] : -1;
    bad |= static_cast<uint64_t>(static_cast<int64_t>(tok)) >= static_cast<uint64_t>(vocab);  // < 0 too
    toks[j] = tok;
  }
  if (bad) {
    for (size_t j = 0; j < n; ++j) {
      if (tok_buf_[j] < 0 || tok_buf_[j] >= vocab) {
        bad_token(d, code_buf_[j], tok_buf_[j], vocab);
      }
    }
  }
  double m = kNegInf;
  bool nan = false;
  double* x = logit_buf_.data();
  for (size_t j = 0; j < n; ++j) {
    x[j] = static_cast<double>(row[toks[j]]);
    m = x[j] > m ? x[j] : m;
    nan |= x[j] != x[j];
  }
  // A NaN logit makes the whole row NaN in the reference (then -inf): report no finite maximum.
  return nan ? std::numeric_limits<double>::quiet_NaN() : m;
}

void BeamSearch::bad_allowed_logit(int32_t r, size_t n) const {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < n; ++j) {
    const double x = logit_buf_[j];
    if (!(x < kInf)) throw ModelOutputError(r, level_, tok_buf_[j], code_buf_[j], x);
  }
  throw Error("internal: no NaN or +inf among the logits reported to hold one");
}

void BeamSearch::check_rows(int32_t r, size_t begin, size_t end, const float* logits, int64_t row_stride,
                            int64_t vocab, const Overlay* ov, const Overlay* dov) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (size_t i = begin; i < end; ++i) {
    const size_t n = gather(i, ov, dov);
    if (n > 0 && !(load_logits(n, logits + static_cast<int64_t>(i) * row_stride, vocab) < kInf))
      bad_allowed_logit(r, n);
  }
}

void BeamSearch::select_request(int32_t r, size_t begin, size_t end, const float* logits, int64_t row_stride,
                                int64_t vocab) {
  const int32_t o = overlay_of_[static_cast<size_t>(r)];
  const Overlay* ov = o < 0 ? nullptr : &overlays_[static_cast<size_t>(o)];
  const Overlay* dov = o < 0 || delta_ == nullptr ? nullptr : &doverlays_[static_cast<size_t>(o)];
  const size_t cap = static_cast<size_t>(requests_[static_cast<size_t>(r)].beam);
  // A heap of the best `cap` candidates with the worst on top.
  auto worse_first = [this](const Candidate& a, const Candidate& b) {
    return ranks_first(a.score, a, b.score, b);
  };
  heap_.clear();
  const int32_t lo = tok_lo_[static_cast<size_t>(level_)], hi = tok_hi_[static_cast<size_t>(level_)];
  // This level's SID tokens within a few cache lines (added tokens are consecutive): fetch the
  // next row's while scoring this one, since fresh logit rows are rarely in cache.
  const bool prefetch = lo >= 0 && hi < vocab && hi - lo < 1024;
  bool full = false;
  double worst = kNegInf;  // the heap's worst score once it is full
  for (size_t i = begin; i < end; ++i) {
    const double base = score_[i];
    // A candidate never scores above its row (its log-probability is <= 0, also after rounding),
    // and rows come best first: once a row cannot beat a full heap, no later row can (their
    // allowed logits are still checked: a broken model output is an error wherever it shows).
    if (full && base < worst) {
      check_rows(r, i, end, logits, row_stride, vocab, ov, dov);
      break;
    }
    const float* row = logits + static_cast<int64_t>(i) * row_stride;
    if (prefetch && i + 1 < node_.size()) {
      const float* next = row + row_stride;
      for (int32_t t = lo; t <= hi; t += 16) __builtin_prefetch(next + t);
      __builtin_prefetch(next + hi);
    }
    const size_t n = gather(i, ov, dov);
    if (n == 0) continue;  // a dead beam: nothing valid below its prefix
    // log-softmax over the allowed codes, in double, summed in code order
    const double m = load_logits(n, row, vocab);
    if (!(m < std::numeric_limits<double>::infinity())) bad_allowed_logit(r, n);  // NaN or +inf
    if (m == kNegInf) continue;  // all -inf: a dead beam
    const double* x = logit_buf_.data();
    double* ex = exp_buf_.data();
    exp_shifted(x, m, ex, n);
    double s = 0.0;
    for (size_t j = 0; j < n; ++j) s += ex[j];
    const double lse = m + std::log(s);
    if (full && base + (m - lse) < worst) continue;  // not even the row's best gets in
    for (size_t j = 0; j < n; ++j) {
      const double sc = base + (x[j] - lse);
      if (!(sc > kNegInf)) continue;  // -inf or NaN
      if (full && sc < worst) continue;
      const Candidate c{sc, child_buf_[j], delta_ != nullptr ? dchild_buf_[j] : SidTrie::kNoNode,
                        static_cast<int32_t>(i), code_buf_[j]};
      if (!full) {
        heap_.push_back(c);
        std::push_heap(heap_.begin(), heap_.end(), worse_first);
        full = heap_.size() == cap;
      } else if (ranks_first(sc, c, heap_.front().score, heap_.front())) {
        std::pop_heap(heap_.begin(), heap_.end(), worse_first);
        heap_.back() = c;
        std::push_heap(heap_.begin(), heap_.end(), worse_first);
      } else {
        continue;
      }
      if (full) worst = heap_.front().score;
    }
  }
  std::sort_heap(heap_.begin(), heap_.end(), worse_first);  // best first
  const int32_t* level_tokens = tok_.data() + tok_begin_[static_cast<size_t>(level_)];
  // Raw log-probabilities: one whole-row logsumexp per row that keeps a candidate.
  row_lse_.assign(end - begin, std::numeric_limits<double>::quiet_NaN());
  for (const Candidate& c : heap_) {
    const size_t i = static_cast<size_t>(c.row);
    const float* row = logits + static_cast<int64_t>(i) * row_stride;
    const int32_t tok = level_tokens[c.code];  // checked in load_logits
    double& lse = row_lse_[i - begin];
    if (lse != lse) {
      lse = log_sum_exp_row(row, vocab);
      if (lse != lse) {  // a NaN or +inf outside the allowed logits (those were checked)
        int64_t t = 0;
        while (row[t] < std::numeric_limits<float>::infinity()) ++t;
        throw ModelOutputError(r, level_, static_cast<int32_t>(t), -1, row[t]);
      }
    }
    next_request_.push_back(r);
    next_node_.push_back(c.node);
    next_dnode_.push_back(c.dnode);
    next_score_.push_back(c.score);
    next_raw_.push_back(raw_[i] + (static_cast<double>(row[tok]) - lse));
    next_parents_.push_back(c.row);
    next_tokens_.push_back(tok);
  }
}

void BeamSearch::step(const float* logits, int64_t row_stride) { step(logits, row_stride, row_stride); }

void BeamSearch::step(const float* logits, int64_t row_stride, int64_t vocab) {
  if (done()) {
    throw InvalidArgument("step() called at level " + std::to_string(level_) + " of " + std::to_string(levels_) +
                          "; the search is done (read results())");
  }
  const size_t n_rows = node_.size();
  if (n_rows > 0) {
    if (logits == nullptr) throw InvalidArgument("logits is null; expected " + std::to_string(n_rows) + " rows");
    if (vocab < 1 || row_stride < vocab) {
      throw InvalidArgument("logits rows have " + std::to_string(vocab) + " values " + std::to_string(row_stride) +
                            " apart; expected 1 <= values <= row stride");
    }
  }
  next_request_.clear();
  next_node_.clear();
  next_dnode_.clear();
  next_score_.clear();
  next_raw_.clear();
  next_parents_.clear();
  next_tokens_.clear();
  for (size_t i = 0; i < n_rows;) {  // rows are grouped by request
    const int32_t r = row_request_[i];
    size_t end = i + 1;
    while (end < n_rows && row_request_[end] == r) ++end;
    select_request(r, i, end, logits, row_stride, vocab);
    i = end;
  }
  row_request_.swap(next_request_);
  node_.swap(next_node_);
  dnode_.swap(next_dnode_);
  score_.swap(next_score_);
  raw_.swap(next_raw_);
  parents_.swap(next_parents_);
  tokens_.swap(next_tokens_);
  ++level_;
}

void BeamSearch::expand_items(const SidTrie& t, int levels, uint32_t leaf, const Overlay* ov, float score,
                              float logprob, size_t k, SearchResult& out) {
  // Items of different leaves are different, and a request's final beams are different leaves
  // (the base and the delta hold different items), so the expansion needs no duplicate check.
  const int L = levels;
  auto add = [&](uint32_t p) {
    out.items.push_back(t.item_at(p));
    out.scores.push_back(score);
    out.logprobs.push_back(logprob);
  };
  const uint32_t b = t.child_begin(L, leaf), e = t.child_begin(L, leaf + 1);
  if (ov == nullptr) {
    for (uint32_t p = b; p < e && out.items.size() < k; ++p)
      if (t.active_at(p)) add(p);
    return;
  }
  const std::vector<uint32_t>& nodes = ov->node[static_cast<size_t>(L)];
  const auto it = std::lower_bound(nodes.begin(), nodes.end(), leaf);
  const bool listed = it != nodes.end() && *it == leaf;
  const size_t j = static_cast<size_t>(it - nodes.begin());
  if (ov->allow) {  // the leaf's allowed items, in position (= build-row) order
    if (!listed) return;
    const std::vector<uint32_t>& run = ov->run[static_cast<size_t>(L)];
    for (uint32_t x = run[j]; x < run[j + 1] && out.items.size() < k; ++x)
      if (t.active_at(ov->pos[x])) add(ov->pos[x]);
    return;
  }
  // deny: walk the leaf's positions and its denied run side by side
  uint32_t x = 0, x_end = 0;
  if (listed) {
    x = ov->run[static_cast<size_t>(L)][j];
    x_end = ov->run[static_cast<size_t>(L)][j + 1];
  }
  for (uint32_t p = b; p < e && out.items.size() < k; ++p) {
    while (x < x_end && ov->pos[x] < p) ++x;
    if (x < x_end && ov->pos[x] == p) continue;
    if (t.active_at(p)) add(p);
  }
}

std::vector<SearchResult> BeamSearch::results() const {
  if (!done()) {
    throw InvalidArgument("results() called at level " + std::to_string(level_) + " of " +
                          std::to_string(levels_) + "; expected a finished search (step() every level)");
  }
  const int L = levels_;
  std::vector<SearchResult> out(requests_.size());
  for (size_t i = 0; i < node_.size(); ++i) {
    const size_t r = static_cast<size_t>(row_request_[i]);
    SearchResult& res = out[r];
    const size_t at = res.sids.size();
    res.sids.resize(at + static_cast<size_t>(L));
    prefix_codes(L, node_[i], dnode_[i], res.sids.data() + at);
    const float sc = static_cast<float>(score_[i]), lp = static_cast<float>(raw_[i]);
    res.sid_scores.push_back(sc);
    res.sid_logprobs.push_back(lp);
    const size_t k = static_cast<size_t>(requests_[r].k);
    const int32_t o = overlay_of_[r];
    // a leaf's base items first, then the delta's: the build-row order of the merged trie
    if (res.items.size() < k && node_[i] != SidTrie::kNoNode)
      expand_items(trie_, L, node_[i], o < 0 ? nullptr : &overlays_[static_cast<size_t>(o)], sc, lp, k, res);
    if (res.items.size() < k && dnode_[i] != SidTrie::kNoNode)
      expand_items(*delta_, L, dnode_[i], o < 0 ? nullptr : &doverlays_[static_cast<size_t>(o)], sc, lp, k, res);
  }
  return out;
}

void BeamSearch::prefix_codes(int d, uint32_t node, uint32_t dnode, int32_t* out) const {
  const SidTrie& t = node != SidTrie::kNoNode ? trie_ : *delta_;
  uint32_t v = node != SidTrie::kNoNode ? node : dnode;
  for (; d >= 1; --d) {
    out[d - 1] = t.node_code(d, v);
    v = t.node_parent(d, v);
  }
}

bool BeamSearch::prefix_before(const Candidate& a, const Candidate& b) const {
  // Nodes of one trie and depth are numbered in prefix order; across the two, compare the codes.
  if (a.node != SidTrie::kNoNode && b.node != SidTrie::kNoNode) return a.node < b.node;
  if (a.node == SidTrie::kNoNode && b.node == SidTrie::kNoNode) return a.dnode < b.dnode;
  const int d = level_ + 1;
  std::vector<int32_t> ca(static_cast<size_t>(d)), cb(static_cast<size_t>(d));  // only on a tie
  prefix_codes(d, a.node, a.dnode, ca.data());
  prefix_codes(d, b.node, b.dnode, cb.data());
  return ca < cb;
}

bool BeamSearch::ranks_first(double sa, const Candidate& a, double sb, const Candidate& b) const {
  // higher score first; on equal scores the lexicographically smaller SID
  return sa > sb || (sa == sb && (delta_ == nullptr ? a.node < b.node : prefix_before(a, b)));
}

}  // namespace genrec
