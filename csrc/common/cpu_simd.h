// Row drivers of the CPU backend: the two passes of inspo_math.h (add_max / add_sums) over a whole row,
// written with GCC/Clang vector extensions, W lanes at a time (4 floats or 2 doubles with SSE2).
//
// Why explicit vectors: the auto-vectorizer leaves these loops scalar under the default flags (no
// -ffast-math, -ftrapping-math: it will not reassociate the sums or if-convert the masked selects),
// and the scalar exp dominates the cost. No -march is needed: the baseline x86-64 target has SSE2.
// Determinism: each lane accumulates its own entries (j = lane, lane + W, ...) and the lanes are added
// in a fixed order, so a row's sums never depend on threads or on the instruction set.
// The tail of a row (A not a multiple of W) is copied into a padded block whose extra entries are
// unavailable: every formula then treats them like masked actions.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/inspo_math.h"

// Every function here is inline and internal to the module: the vector ABI note does not apply.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace inspo {

// What a row driver computes, fixed at compile time (a RowNeeds as template arguments), so no
// per-entry branch remains. Pointers a driver does not read may be null.
template <bool Logits, bool Kl, bool Target, bool Lookahead, bool Q>
struct StaticNeeds {
  static constexpr bool logits = Logits, kl = Kl, target = Target, lookahead = Lookahead, q = Q;
  static_assert(!Kl || Logits, "KL needs the logits");
  static_assert(!Lookahead || (Logits && Q), "the lookahead needs the logits and q");
  static_assert(!Target || Q, "the closed-form target needs q");
};

namespace simd {

// Vector width: the widest the target enables at compile time: 16 bytes (SSE2, the x86-64 baseline)
// unless the build enables AVX (then 32). GCC's emulation of vectors wider than the target's
// registers is slow (measured: a 32-byte exp on SSE2 ran 3.5x slower than the 16-byte one).
#if defined(__AVX__)
#define INSPO_SIMD_BYTES 32
#else
#define INSPO_SIMD_BYTES 16
#endif

template <typename T>
struct Lanes {
  static constexpr int W = INSPO_SIMD_BYTES / sizeof(T);
  typedef T V __attribute__((vector_size(INSPO_SIMD_BYTES)));
  // Integers of the lane width: masks (all ones / zero) and bit patterns.
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> IntT;
  typedef IntT I __attribute__((vector_size(INSPO_SIMD_BYTES)));
  typedef uint8_t Bytes __attribute__((vector_size(W)));  // W bools
};

template <typename V, typename T>
inline V splat(T x) {
  return V{} + x;
}

template <typename V>
inline V load(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Lane masks (all ones / zero) of the available entries of a block.
template <typename T>
inline typename Lanes<T>::I avail_mask(const bool* avail) {
  using L = Lanes<T>;
  const typename L::Bytes bytes = load<typename L::Bytes>(avail);
  return __builtin_convertvector(bytes, typename L::I) != 0;
}

// Finite lanes: x - x is 0 for finite x and NaN for +-inf / NaN.
template <typename V>
inline auto finite_mask(V x) {
  return (x - x) == 0;
}

// exp, lane-wise: Cody-Waite reduction x = k ln2 + r and a Taylor polynomial for e^r (<= 1 ulp against
// std::exp, measured over the whole range). Results below ~2^-125 (float) / 2^-1021 (double), -inf and
// NaN give exactly 0. The flush threshold keeps every intermediate a normal number: a subnormal
// product costs a microcode assist of ~100 cycles per lane, and masked entries (-inf) would hit it on
// every call (measured: 3x slower rows when 30% of the actions are masked).
inline Lanes<float>::V exp(Lanes<float>::V x) {
  using L = Lanes<float>;
  const L::V lo = splat<L::V>(-86.9f), hi = splat<L::V>(88.72283905f);  // k >= -125
  const L::V magic = splat<L::V>(12582912.0f);  // 0x1.8p23
  L::V xc = x < hi ? x : hi;
  xc = xc > lo ? xc : lo;  // NaN -> lo
  const L::V kd = (xc * 1.44269504088896341f + magic) - magic;
  const L::V r = (xc - kd * 0.693359375f) - kd * -2.12194440e-4f;
  L::V p = splat<L::V>(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const L::V biased = kd + (127.0f + 12582912.0f);
  const L::I scale_bits = ((L::I)biased) << 23;
  const L::V result = p * (L::V)scale_bits;
  return x > lo ? result : splat<L::V>(0.0f);
}

inline Lanes<double>::V exp(Lanes<double>::V x) {
  using L = Lanes<double>;
  const L::V lo = splat<L::V>(-708.0), hi = splat<L::V>(709.782712893384);  // k >= -1021
  const L::V magic = splat<L::V>(6755399441055744.0);  // 0x1.8p52
  L::V xc = x < hi ? x : hi;
  xc = xc > lo ? xc : lo;
  const L::V kd = (xc * 1.4426950408889634 + magic) - magic;
  const L::V r = (xc - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
  L::V p = splat<L::V>(1.0 / 6227020800.0);
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const L::V biased = kd + (1023.0 + 6755399441055744.0);
  const L::I scale_bits = ((L::I)biased) << 52;
  const L::V result = p * (L::V)scale_bits;
  return x > lo ? result : splat<L::V>(0.0);
}

template <typename V, int W>
inline auto sum_lanes(V v) {
  auto s = v[0];
  for (int k = 1; k < W; ++k) s += v[k];
  return s;
}
template <typename V, int W>
inline auto max_lanes(V v) {
  auto m = v[0];
  for (int k = 1; k < W; ++k) m = m > v[k] ? m : v[k];
  return m;
}
template <typename I, int W>
inline bool any_lanes(I v) {
  bool any = false;
  for (int k = 0; k < W; ++k) any = any || v[k] != 0;
  return any;
}

// One block of W entries of a row: the lanes of each input (0 where Needs does not read it) and the
// availability mask. Full blocks read the row in place; the tail is copied into a padded block.
template <typename T, typename Needs>
struct Block {
  using L = Lanes<T>;
  typename L::V logits, log_mu, q;
  typename L::I avail;

  Block(const T* logits_row, const T* log_mu_row, const T* q_row, const bool* avail_row, int64_t j0,
        int64_t A) {
    constexpr int W = L::W;
    if (j0 + W <= A) {
      logits = Needs::logits ? load<typename L::V>(logits_row + j0) : typename L::V{};
      log_mu = load<typename L::V>(log_mu_row + j0);
      q = Needs::q ? load<typename L::V>(q_row + j0) : typename L::V{};
      avail = avail_mask<T>(avail_row + j0);
    } else {  // tail: copy the n < W remaining entries, pad with unavailable zeros
      const int64_t n = A - j0;
      T l[W] = {}, m[W] = {}, qq[W] = {};
      bool a[W] = {};
      for (int64_t k = 0; k < n; ++k) {
        if (Needs::logits) l[k] = logits_row[j0 + k];
        m[k] = log_mu_row[j0 + k];
        if (Needs::q) qq[k] = q_row[j0 + k];
        a[k] = avail_row[j0 + k];
      }
      logits = load<typename L::V>(l);
      log_mu = load<typename L::V>(m);
      q = load<typename L::V>(qq);
      avail = avail_mask<T>(a);
    }
  }
};

}  // namespace simd

// Pass 1 over a whole row (add_max over every entry). Pointers Needs does not read may be null.
template <typename T, typename Needs>
inline RowMax<T> row_max(const T* logits, const T* log_mu, const T* q, const bool* avail, int64_t A,
                         const Temperatures<T>& t) {
  using L = simd::Lanes<T>;
  using V = typename L::V;
  using I = typename L::I;
  constexpr int W = L::W;
  const V ninf = simd::splat<V>(neg_inf<T>());
  V max_logits = ninf, max_target = ninf, max_lookahead = ninf;
  I n_avail_lanes{}, bad_logits{}, bad_log_mu{}, bad_q{};
  for (int64_t j0 = 0; j0 < A; j0 += W) {
    const simd::Block<T, Needs> blk(logits, log_mu, q, avail, j0, A);
    n_avail_lanes -= blk.avail;  // mask lanes are -1
    bad_log_mu |= blk.avail & ~simd::finite_mask(blk.log_mu);
    if (Needs::logits) {
      bad_logits |= blk.avail & ~simd::finite_mask(blk.logits);
      const V l = blk.avail ? blk.logits : ninf;
      max_logits = max_logits > l ? max_logits : l;
    }
    if (Needs::q) bad_q |= blk.avail & ~simd::finite_mask(blk.q);
    if (Needs::target) {
      const V z = blk.avail ? closed_form_logit(blk.log_mu, blk.q, t) : ninf;
      max_target = max_target > z ? max_target : z;
    }
    if (Needs::lookahead) {
      const V h = blk.avail ? lookahead_logit(blk.logits, blk.log_mu, blk.q, t) : ninf;
      max_lookahead = max_lookahead > h ? max_lookahead : h;
    }
  }
  int64_t n_avail = 0;
  for (int k = 0; k < W; ++k) n_avail += n_avail_lanes[k];
  return RowMax<T>{n_avail,
                   simd::any_lanes<I, W>(bad_logits),
                   simd::any_lanes<I, W>(bad_log_mu),
                   simd::any_lanes<I, W>(bad_q),
                   simd::max_lanes<V, W>(max_logits),
                   simd::max_lanes<V, W>(max_target),
                   simd::max_lanes<V, W>(max_lookahead)};
}

// Pass 2 over a whole row (add_sums over every entry). When `softmax_out` is not null it receives
// exp(l - max_l) (0 at the unavailable entries): the unnormalized softmax.
template <typename T, typename Needs>
inline RowSums<T> row_sums(const T* logits, const T* log_mu, const T* q, const bool* avail, int64_t A,
                           const RowMax<T>& m, const Temperatures<T>& t, T* softmax_out) {
  using L = simd::Lanes<T>;
  using V = typename L::V;
  constexpr int W = L::W;
  const V ninf = simd::splat<V>(neg_inf<T>()), zero{};
  V s{}, s_shift{}, s_log_mu{}, s_target{}, s_lookahead{};
  for (int64_t j0 = 0; j0 < A; j0 += W) {
    const simd::Block<T, Needs> blk(logits, log_mu, q, avail, j0, A);
    if (Needs::logits) {
      const V shifted = blk.avail ? blk.logits - m.logits : ninf;
      const V e = simd::exp(shifted);  // exactly 0 at unavailable entries
      if (softmax_out != nullptr) {
        const int64_t n = A - j0 < W ? A - j0 : W;
        std::memcpy(softmax_out + j0, &e, sizeof(T) * n);
      }
      s += e;
      s_shift += blk.avail ? e * shifted : zero;
      if (Needs::kl) s_log_mu += blk.avail ? e * blk.log_mu : zero;
    }
    if (Needs::target) s_target += simd::exp(blk.avail ? closed_form_logit(blk.log_mu, blk.q, t) - m.target : ninf);
    if (Needs::lookahead)
      s_lookahead += simd::exp(blk.avail ? lookahead_logit(blk.logits, blk.log_mu, blk.q, t) - m.lookahead : ninf);
  }
  return RowSums<T>{simd::sum_lanes<V, W>(s), simd::sum_lanes<V, W>(s_shift), simd::sum_lanes<V, W>(s_log_mu),
                    simd::sum_lanes<V, W>(s_target), simd::sum_lanes<V, W>(s_lookahead)};
}

}  // namespace inspo

#pragma GCC diagnostic pop
