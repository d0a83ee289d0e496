// Row drivers of the CPU backend: the two passes of inspo_math.h (add_max / add_sums) over a whole row,
// written with GCC/Clang vector extensions, W lanes at a time, for three vector widths: 16 bytes (SSE2,
// the x86-64 baseline every build targets), 32 (AVX2 + FMA) and 64 (AVX-512). The wider bodies are
// compiled for their instruction set by `with_vector_width` (target attributes, chosen at run time from
// cpuid), so a portable build (no -march) still runs 8 or 16 float lanes where the CPU has them.
//
// Why explicit vectors: the auto-vectorizer leaves these loops scalar under the default flags (no
// -ffast-math, -ftrapping-math: it will not reassociate the sums or if-convert the masked selects),
// and the scalar exp dominates the cost.
// Determinism: each lane accumulates its own entries (j = lane, lane + W, ...) and the lanes are added
// in a fixed order, so a row's sums never depend on the thread count; they depend (in the last bits)
// on the vector width, which is fixed for a given machine (INSPO_CPU_VECTOR_BYTES caps it).
// The tail of a row (A not a multiple of W) is read with one full vector load when the arrays extend
// that far (the next rows of the contiguous [B, N, A] inputs), its extra lanes marked unavailable;
// only the last rows of the arrays copy their tail into a padded block. Every formula treats the
// extra lanes like masked actions: their values are only ever read through a select on the mask.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

// Vectors of 32 and 64 bytes only exist inside the AVX2 / AVX-512 target bodies (with_vector_width), where GCC's x86
// builtins for them are available.
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define INSPO_X86_BUILTINS 1
#include <immintrin.h>  // declares the builtins (GCC declares those of an instruction set with its intrinsics)
#endif

// Every function here is inline and internal to the module: the vector ABI note does not apply. Off for
// the rest of the translation unit (no pop): templates instantiated at its end report there, and
// inspo_math.h's element formulas are instantiated on vectors.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "common/inspo_math.h"

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

// Lanes of T in a vector of Bytes bytes (16, 32 or 64). A width wider than the instruction set the
// code is compiled for is emulated by GCC, slowly (measured: a 32-byte exp on SSE2 ran 3.5x slower than
// the 16-byte one): Bytes > 16 is only instantiated inside with_vector_width's target functions.
template <typename T, int Bytes>
struct Lanes {
  static constexpr int W = Bytes / sizeof(T);
  typedef T V __attribute__((vector_size(Bytes)));
  // Integers of the lane width: masks (all ones / zero) and bit patterns.
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> IntT;
  typedef IntT I __attribute__((vector_size(Bytes)));
  typedef uint8_t Bytes_ __attribute__((vector_size(W)));  // W bools
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
template <typename T, int Bytes>
inline typename Lanes<T, Bytes>::I avail_mask(const bool* avail) {
  using L = Lanes<T, Bytes>;
  const typename L::Bytes_ bytes = load<typename L::Bytes_>(avail);
  return __builtin_convertvector(bytes != 0, typename L::I);  // -1 / 0 bytes, sign-extended
}

// Lanes 0 .. n-1 set (all ones), the others zero.
template <typename T, int Bytes>
inline typename Lanes<T, Bytes>::I first_lanes(int64_t n) {
  using L = Lanes<T, Bytes>;
  typename L::I index;
  for (int k = 0; k < L::W; ++k) index[k] = k;
  return index < splat<typename L::I>(typename L::IntT(n));
}

// Finite lanes: x - x is 0 for finite x and NaN for +-inf / NaN.
template <typename V>
inline auto finite_mask(V x) {
  return (x - x) == 0;
}

// mask ? a : b, lane-wise, for a mask of -1 / 0 lanes that is not itself a comparison (loaded, converted or combined
// from comparisons): one blend instruction at the AVX2 / AVX-512 widths. Measured with GCC 12 (Intel Sapphire Rapids,
// docs/PERFORMANCE.md, Kernel work 12): once the exp below holds fused multiply-adds, GCC expanded `mask ? a : b` on
// such a mask lane by lane, a branch per lane, inside the AVX-512 bodies (the policy loss 2x slower at A >= 32), and
// the same select written as bit operations made it expand the comparisons of the exp that took the result.
template <typename I, typename V>
inline V select(I mask, V a, V b) {
#if defined(INSPO_X86_BUILTINS)
  using T = std::remove_reference_t<decltype(a[0])>;
  if constexpr (sizeof(V) == 64 && sizeof(T) == 4)
    return __builtin_ia32_blendmps_512_mask(b, a, __builtin_ia32_cvtd2mask512(mask));
  using Word = std::conditional_t<sizeof(T) == 8, long long, int>;  // the builtin's lane type (dependent on T)
  typedef Word Words __attribute__((vector_size(64)));
  if constexpr (sizeof(V) == 64 && sizeof(T) == 8)
    return __builtin_ia32_blendmpd_512_mask(b, a, __builtin_ia32_cvtq2mask512((Words)mask));
  if constexpr (sizeof(V) == 32 && sizeof(T) == 4) return __builtin_ia32_blendvps256(b, a, (V)mask);
  if constexpr (sizeof(V) == 32 && sizeof(T) == 8) return __builtin_ia32_blendvpd256(b, a, (V)mask);
#endif
  return (V)(((I)a & mask) | ((I)b & ~mask));
}

// a * b + c, lane-wise, for the polynomials of exp and log: one fused multiply-add (rounded once) at the AVX2 /
// AVX-512 widths, whose target bodies have FMA; a multiply and an add at 16 bytes (SSE2). Only here: the rest of the
// backend builds with -ffp-contract=off (CMakeLists.txt), for values that must be the same bits wherever they are
// computed (inspo_math.h closed_form_logit); a polynomial's value is computed in one place.
template <typename V, typename S>
inline V mul_add(V a, V b, S c) {
  using T = std::remove_reference_t<decltype(a[0])>;
  const V cv = splat<V>(T(c));
#if defined(INSPO_X86_BUILTINS)
  if constexpr (sizeof(V) == 64 && sizeof(T) == 4) return __builtin_ia32_vfmaddps512_mask(a, b, cv, -1, 4);
  if constexpr (sizeof(V) == 64 && sizeof(T) == 8) return __builtin_ia32_vfmaddpd512_mask(a, b, cv, -1, 4);
  if constexpr (sizeof(V) == 32 && sizeof(T) == 4) return __builtin_ia32_vfmaddps256(a, b, cv);
  if constexpr (sizeof(V) == 32 && sizeof(T) == 8) return __builtin_ia32_vfmaddpd256(a, b, cv);
#endif
  return a * b + cv;
}

// Horner's rule with mul_add: c[0] x^(n-1) + c[1] x^(n-2) + ... + c[n-1].
template <typename V, typename T, size_t n>
inline V horner(V x, const T (&c)[n]) {
  V p = splat<V>(c[0]);
  for (size_t k = 1; k < n; ++k) p = mul_add(p, x, c[k]);
  return p;
}

// scale / m! for m = n, n - 1, ..., 0: the Taylor coefficients of scale e^r, highest power first (m! is exact in T:
// 7! in float, 13! in double; scale is a power of two, so the polynomial's value is exactly scale times that of
// scale 1, at every step).
template <typename T, int n, int scale>
struct ScaledTaylor {
  T c[n + 1]{};
  constexpr ScaledTaylor() {
    T factorial = 1;
    for (int m = 0; m <= n; ++m) {
      if (m > 0) factorial *= T(m);
      c[n - m] = T(scale) / factorial;
    }
  }
};

#if defined(INSPO_X86_BUILTINS)
// The float exp (below) at AVX-512 width, for the lanes of `lanes` (the others 0): the same steps in fewer
// instructions, to the same bits (benchmarks/simd_accuracy.cpp compares every float): min / max (x86's, whose NaN case
// is the selects'), k by rounding (the magic constant's rounding), 2^k by scalef (exact, so e^r times 2^k in one step,
// with no k = 128 overflow to avoid: the polynomial of e^r itself, half the other's at every step).
typedef float Floats16 __attribute__((vector_size(64)));
inline Floats16 exp_avx512(Floats16 x, __mmask16 lanes) {
  const Floats16 lo = splat<Floats16>(-86.9f), hi = splat<Floats16>(88.72283905f);
  const Floats16 xc = __builtin_ia32_maxps512_mask(__builtin_ia32_minps512_mask(x, hi, x, -1, 4), lo, x, -1, 4);
  const Floats16 kd = __builtin_ia32_rndscaleps_mask(xc * 1.44269504088896341f, 0x08, xc, -1, 4);  // nearest, quiet
  const Floats16 r = (xc - kd * 0.693359375f) - kd * -2.12194440e-4f;
  constexpr ScaledTaylor<float, 7, 1> taylor;
  const __mmask16 in_range = __builtin_ia32_cmpps512_mask(x, lo, _CMP_GT_OQ, lanes, 4);
  return __builtin_ia32_scalefps512_mask(horner(r, taylor.c), kd, Floats16{}, in_range, 4);
}
#endif

// exp, lane-wise: Cody-Waite reduction x = k ln2 + r and a Taylor polynomial for e^r (against the correctly rounded
// exp: <= 0.94 ulp over every float and <= 0.87 ulp over 4e7 doubles with mul_add's fused steps, 1.22 and 1.17 ulp at
// 16 bytes; finite up to the largest finite result; benchmarks/simd_accuracy.cpp). Results below ~2^-125 (float) /
// 2^-1021 (double), -inf and NaN give exactly 0. The flush threshold keeps every intermediate a normal number: a
// subnormal product costs a microcode assist of ~100 cycles per lane, and masked entries (-inf) would hit it on every
// call (measured: 3x slower rows when 30% of the actions are masked).
template <typename T, int Bytes>
inline std::enable_if_t<std::is_same<T, float>::value, typename Lanes<T, Bytes>::V> exp(typename Lanes<T, Bytes>::V x) {
  using L = Lanes<float, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
#if defined(INSPO_X86_BUILTINS)
  if constexpr (Bytes == 64) return exp_avx512(x, __mmask16(-1));
#endif
  const V lo = splat<V>(-86.9f), hi = splat<V>(88.72283905f);  // k >= -125
  const V magic = splat<V>(12582912.0f);                       // 0x1.8p23
  V xc = x < hi ? x : hi;
  xc = xc > lo ? xc : lo;  // NaN -> hi
  const V kd = (xc * 1.44269504088896341f + magic) - magic;
  const V r = (xc - kd * 0.693359375f) - kd * -2.12194440e-4f;
  // 2 e^r (every coefficient doubled: the same bits as 2 times the Taylor sum), times 2^(k - 1): k reaches 128
  // (x in [88.03, 88.72]), whose 2^k is no float
  constexpr ScaledTaylor<float, 7, 2> two_taylor;
  const V p = horner(r, two_taylor.c);
  const V biased = kd + (126.0f + 12582912.0f);
  const I scale_bits = ((I)biased) << 23;
  const V result = p * (V)scale_bits;
  return x > lo ? result : splat<V>(0.0f);
}

template <typename T, int Bytes>
inline std::enable_if_t<std::is_same<T, double>::value, typename Lanes<T, Bytes>::V> exp(
    typename Lanes<T, Bytes>::V x) {
  using L = Lanes<double, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
  const V lo = splat<V>(-708.0), hi = splat<V>(709.782712893384);  // k >= -1021
  const V magic = splat<V>(6755399441055744.0);                    // 0x1.8p52
  V xc = x < hi ? x : hi;
  xc = xc > lo ? xc : lo;
  const V kd = (xc * 1.4426950408889634 + magic) - magic;
  const V r = (xc - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
  // 2 e^r (every coefficient doubled: the same bits as 2 times the Taylor sum), times 2^(k - 1): k reaches 1024
  // (x in [709.44, 709.78]), whose 2^k is no double
  constexpr ScaledTaylor<double, 13, 2> two_taylor;
  const V p = horner(r, two_taylor.c);
  const V biased = kd + (1022.0 + 6755399441055744.0);
  const I scale_bits = ((I)biased) << 52;
  const V result = p * (V)scale_bits;
  return x > lo ? result : splat<V>(0.0);
}

// mask ? exp(x) : 0, lane-wise, for a mask of -1 / 0 lanes; x may hold anything (inf, NaN) outside the mask. At
// AVX-512 float width the mask joins the exp's own (no select).
template <typename T, int Bytes>
inline typename Lanes<T, Bytes>::V exp_where(typename Lanes<T, Bytes>::I mask, typename Lanes<T, Bytes>::V x) {
#if defined(INSPO_X86_BUILTINS)
  if constexpr (Bytes == 64 && std::is_same<T, float>::value) return exp_avx512(x, __builtin_ia32_cvtd2mask512(mask));
#endif
  return exp<T, Bytes>(select(mask, x, splat<typename Lanes<T, Bytes>::V>(neg_inf<T>())));
}

// Constants of `log` for each lane type.
template <typename T>
struct LogConstants;
template <>
struct LogConstants<float> {
  static constexpr int mantissa_bits = 23;
  static constexpr int32_t sqrt_half_bits = 0x3f3504f3;  // the bits of float(sqrt(1/2))
  static constexpr float min_normal = 1.17549435e-38f;   // 2^-126
  static constexpr float subnormal_scale = 16777216.0f;  // 2^24: any subnormal times it is normal
  static constexpr int32_t subnormal_exponent = 24;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;  // ln2_hi * k is exact
  static constexpr int terms = 4;  // of the series in s^2: the first left out is < 3e-9 relative
};
template <>
struct LogConstants<double> {
  static constexpr int mantissa_bits = 52;
  static constexpr int64_t sqrt_half_bits = 0x3fe6a09e667f3bcdLL;  // the bits of double(sqrt(1/2))
  static constexpr double min_normal = 2.2250738585072014e-308;    // 2^-1022
  static constexpr double subnormal_scale = 18014398509481984.0;   // 2^54
  static constexpr int64_t subnormal_exponent = 54;
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  static constexpr int terms = 10;  // the first left out is < 7e-19 relative
};

// log, lane-wise. x = 2^k m with m in [sqrt(1/2), sqrt(2)) by integer ops on the bits (subnormals are
// scaled to normal first), f = m - 1 (exact). log(1 + f) = 2 atanh(s) with s = f / (2 + f), |s| < 0.172:
// 2s + s R with R = sum_n 2 s^2n / (2n + 1), the Taylor series, truncated where its next term no longer
// matters (LogConstants::terms). With 2s = f - s f the result is assembled as
// k ln2_hi + (f - (f^2/2 - s (f^2/2 + R))) + k ln2_lo: the large terms k ln2_hi and f are exact and only
// small corrections are rounded, so the error stays below one ulp.
// Measured by benchmarks/simd_accuracy.cpp against the correctly rounded log (a long double
// reference; every positive float, and 10^8 random positive double bit patterns plus 10^8 doubles in
// [0.5, 2], at each vector width): float <= 0.86 ulp (glibc's logf: 0.82), double <= 0.86 ulp (glibc's
// log: 0.52). log(1) = 0, log(+inf) = +inf, log(+-0) = -inf, log(x < 0) = NaN, log(NaN) = NaN,
// subnormals as accurate as the rest.
template <typename T, int Bytes>
inline typename Lanes<T, Bytes>::V log(typename Lanes<T, Bytes>::V x) {
  using L = Lanes<T, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
  using C = LogConstants<T>;
  const I tiny = x < splat<V>(C::min_normal);
  const V xs = tiny ? x * C::subnormal_scale : x;
  // Subtracting sqrt(1/2)'s bits moves the exponent boundary from m = 1 to m = sqrt(1/2); the mantissa
  // bits plus sqrt(1/2)'s bits give m back.
  const I offset = (I)xs - C::sqrt_half_bits;
  const I k_int = (offset >> C::mantissa_bits) - (tiny ? splat<I>(C::subnormal_exponent) : I{});
  const I mantissa_mask = splat<I>((typename L::IntT(1) << C::mantissa_bits) - 1);
  const V m = (V)((offset & mantissa_mask) + C::sqrt_half_bits);
  const V k = __builtin_convertvector(k_int, V);
  const V f = m - T(1);
  const V s = f / (f + T(2));
  const V z = s * s;
  V p = splat<V>(T(2) / T(2 * C::terms + 1));
  for (int n = C::terms - 1; n >= 1; --n) p = mul_add(p, z, T(2) / T(2 * n + 1));
  const V r = z * p;
  const V half_f2 = T(0.5) * f * f;
  const V result = k * C::ln2_hi - ((half_f2 - (s * (half_f2 + r) + k * C::ln2_lo)) - f);
  const V inf = splat<V>(std::numeric_limits<T>::infinity());
  const V special = x == T(0) ? -inf : splat<V>(std::numeric_limits<T>::quiet_NaN());
  return x > T(0) ? (x < inf ? result : x) : special;
}

// out[k] = exp(x[k]) / log(x[k]) for k < n (per-agent values of a sample), W at a time; the tail through
// a block padded with ones.
enum class LaneFunction { exp, log };

template <LaneFunction F, typename T, int Bytes>
inline typename Lanes<T, Bytes>::V apply(typename Lanes<T, Bytes>::V v) {
  if constexpr (F == LaneFunction::log) {
    return log<T, Bytes>(v);
  } else {
    return exp<T, Bytes>(v);
  }
}

template <LaneFunction F, typename T, int Bytes>
inline void map_array(const T* x, T* out, int64_t n) {
  using V = typename Lanes<T, Bytes>::V;
  constexpr int W = Lanes<T, Bytes>::W;
  int64_t k = 0;
  for (; k + W <= n; k += W) {
    const V y = apply<F, T, Bytes>(load<V>(x + k));
    std::memcpy(out + k, &y, sizeof y);
  }
  if (k < n) {
    T padded[W];
    for (int j = 0; j < W; ++j) padded[j] = k + j < n ? x[k + j] : T(1);
    const V y = apply<F, T, Bytes>(load<V>(padded));
    for (int64_t j = 0; j < n - k; ++j) out[k + j] = y[j];
  }
}

template <typename T, int Bytes>
inline void exp_array(const T* x, T* out, int64_t n) {
  map_array<LaneFunction::exp, T, Bytes>(x, out, n);
}

template <typename T, int Bytes>
inline void log_array(const T* x, T* out, int64_t n) {
  map_array<LaneFunction::log, T, Bytes>(x, out, n);
}

// Horizontal reductions: halve the vector until one lane is left (log2(W) vector steps instead of W - 1
// dependent scalar ones; a fixed order, so the result does not depend on anything but the lanes).
template <typename Op, typename V>
inline auto reduce_lanes(V v, Op op) {
  constexpr int W = sizeof(V) / sizeof(v[0]);
  if constexpr (W == 2) {
    return op(v[0], v[1]);
  } else {
    typedef std::remove_cv_t<std::remove_reference_t<decltype(v[0])>> E;
    typedef E H __attribute__((vector_size(sizeof(V) / 2)));
    H low, high;
    std::memcpy(&low, &v, sizeof low);
    std::memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof low, sizeof high);
    return reduce_lanes(op(low, high), op);
  }
}

template <typename V>
inline auto sum_lanes(V v) {
  return reduce_lanes(v, [](auto x, auto y) { return x + y; });
}
template <typename V>
inline auto max_lanes(V v) {
  return reduce_lanes(v, [](auto x, auto y) { return x > y ? x : y; });
}
template <typename I>
inline bool any_lanes(I v) {
  return reduce_lanes(v, [](auto x, auto y) { return x | y; }) != 0;
}

// One block of W entries of a row: the lanes of each input (0 where Needs does not read it) and the
// availability mask. `readable` is how many entries every input array holds from the row's start
// (>= A): a block within it is one vector load per input, lanes past the row's end marked unavailable;
// a tail block past it (the last rows of the arrays) is copied into a padded block.
template <typename T, int Bytes, typename Needs>
struct Block {
  using L = Lanes<T, Bytes>;
  typename L::V logits, log_mu, q;
  typename L::I avail;

  Block(const T* logits_row, const T* log_mu_row, const T* q_row, const bool* avail_row, int64_t j0, int64_t A,
        int64_t readable) {
    constexpr int W = L::W;
    if (j0 + W <= readable) {
      logits = Needs::logits ? load<typename L::V>(logits_row + j0) : typename L::V{};
      log_mu = load<typename L::V>(log_mu_row + j0);
      q = Needs::q ? load<typename L::V>(q_row + j0) : typename L::V{};
      avail = avail_mask<T, Bytes>(avail_row + j0);
      if (j0 + W > A) avail &= first_lanes<T, Bytes>(A - j0);
    } else {  // tail at the end of the arrays: copy the n < W remaining entries, pad with unavailable zeros
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
      avail = avail_mask<T, Bytes>(a);
    }
  }
};

}  // namespace simd

// Pass 1 over a whole row (add_max over every entry). Pointers Needs does not read may be null;
// `readable` (>= A): entries every input array holds from the row's start (see simd::Block).
template <typename T, typename Needs, int Bytes>
inline RowMax<T> row_max(const T* logits, const T* log_mu, const T* q, const bool* avail, int64_t A, int64_t readable,
                         const Temperatures<T>& t) {
  using L = simd::Lanes<T, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
  constexpr int W = L::W;
  const V ninf = simd::splat<V>(neg_inf<T>());
  V max_logits = ninf, max_target = ninf, max_lookahead = ninf;
  I n_avail_lanes{}, bad_logits{}, bad_log_mu{}, bad_q{};
  for (int64_t j0 = 0; j0 < A; j0 += W) {
    const simd::Block<T, Bytes, Needs> blk(logits, log_mu, q, avail, j0, A, readable);
    n_avail_lanes -= blk.avail;  // mask lanes are -1
    bad_log_mu |= blk.avail & ~simd::finite_mask(blk.log_mu);
    if (Needs::logits) {
      bad_logits |= blk.avail & ~simd::finite_mask(blk.logits);
      const V l = simd::select(blk.avail, blk.logits, ninf);
      max_logits = max_logits > l ? max_logits : l;
    }
    if (Needs::q) bad_q |= blk.avail & ~simd::finite_mask(blk.q);
    if (Needs::target) {
      const V z = simd::select(blk.avail, closed_form_logit(blk.log_mu, blk.q, t), ninf);
      max_target = max_target > z ? max_target : z;
    }
    if (Needs::lookahead) {
      const V h = simd::select(blk.avail, lookahead_logit(blk.logits, blk.log_mu, blk.q, t), ninf);
      max_lookahead = max_lookahead > h ? max_lookahead : h;
    }
  }
  RowMax<T> m{int64_t(simd::sum_lanes(n_avail_lanes)), false, false, false, neg_inf<T>(), neg_inf<T>(), neg_inf<T>()};
  if (simd::any_lanes(bad_logits | bad_log_mu | bad_q)) {  // rare: which input is bad
    m.bad_logits = simd::any_lanes(bad_logits);
    m.bad_log_mu = simd::any_lanes(bad_log_mu);
    m.bad_q = simd::any_lanes(bad_q);
  }
  if (Needs::logits) m.logits = simd::max_lanes(max_logits);
  if (Needs::target) m.target = simd::max_lanes(max_target);
  if (Needs::lookahead) m.lookahead = simd::max_lanes(max_lookahead);
  return m;
}

// Pass 2 over a whole row (add_sums over every entry). When `softmax_out` is not null it receives
// exp(l - max_l) (0 at the unavailable entries): the unnormalized softmax.
template <typename T, typename Needs, int Bytes>
inline RowSums<T> row_sums(const T* logits, const T* log_mu, const T* q, const bool* avail, int64_t A, int64_t readable,
                           const RowMax<T>& m, const Temperatures<T>& t, T* softmax_out) {
  using L = simd::Lanes<T, Bytes>;
  using V = typename L::V;
  constexpr int W = L::W;
  const V ninf = simd::splat<V>(neg_inf<T>()), zero{};
  V s{}, s_shift{}, s_log_mu{}, s_target{}, s_lookahead{};
  for (int64_t j0 = 0; j0 < A; j0 += W) {
    const simd::Block<T, Bytes, Needs> blk(logits, log_mu, q, avail, j0, A, readable);
    if (Needs::logits) {
      const V shifted = simd::select(blk.avail, blk.logits - m.logits, ninf);
      const V e = simd::exp<T, Bytes>(shifted);  // exactly 0 at unavailable entries
      if (softmax_out != nullptr) {
        if (j0 + W <= A) {
          std::memcpy(softmax_out + j0, &e, sizeof e);
        } else {
          for (int64_t k = 0; k < A - j0; ++k) softmax_out[j0 + k] = e[k];
        }
      }
      s += e;
      s_shift += simd::select(blk.avail, e * shifted, zero);
      if (Needs::kl) s_log_mu += simd::select(blk.avail, e * blk.log_mu, zero);
    }
    if (Needs::target)
      s_target +=
          simd::exp<T, Bytes>(simd::select(blk.avail, closed_form_logit(blk.log_mu, blk.q, t) - m.target, ninf));
    if (Needs::lookahead)
      s_lookahead += simd::exp<T, Bytes>(
          simd::select(blk.avail, lookahead_logit(blk.logits, blk.log_mu, blk.q, t) - m.lookahead, ninf));
  }
  RowSums<T> sums = RowSums<T>::zero();
  if (Needs::logits) {
    sums.exp_logits = simd::sum_lanes(s);
    sums.exp_logits_shift = simd::sum_lanes(s_shift);
  }
  if (Needs::kl) sums.exp_logits_log_mu = simd::sum_lanes(s_log_mu);
  if (Needs::target) sums.exp_target = simd::sum_lanes(s_target);
  if (Needs::lookahead) sums.exp_lookahead = simd::sum_lanes(s_lookahead);
  return sums;
}

// ---- run-time choice of the vector width ------------------------------------------------------------

// Widest vector (bytes) this CPU runs well: 64 (AVX-512 F/BW/DQ/VL), 32 (AVX2 + FMA) or 16 (SSE2),
// capped by the environment variable INSPO_CPU_VECTOR_BYTES (16, 32 or 64) when set. Read once.
int cpu_vector_bytes();

// Whether the rows-across-lanes blocks (cpu_row_lanes.h) transpose AVX-512 float rows with gathers (true) or in
// registers (false): gathers on Intel CPUs with AMX, registers elsewhere (each measured faster there,
// docs/PERFORMANCE.md), unless the environment variable INSPO_CPU_ROW_TRANSPOSE says `gathers` or `registers`. Read
// once.
bool cpu_row_gathers();

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define INSPO_CPU_DISPATCH 1
#define INSPO_TARGET_AVX2 __attribute__((target("avx2,fma"), flatten))
#define INSPO_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"), flatten))

namespace simd {
template <int Bytes, typename Body>
INSPO_TARGET_AVX2 int64_t run_avx2(const Body& body) {
  return body(std::integral_constant<int, Bytes>{});
}
template <int Bytes, typename Body>
INSPO_TARGET_AVX512 int64_t run_avx512(const Body& body) {
  return body(std::integral_constant<int, Bytes>{});
}
}  // namespace simd
#endif

// body(std::integral_constant<int, Bytes>) compiled for the widest instruction set of this CPU, with
// vectors of Bytes bytes: the CPU's widest, but no wider than a row of A entries of T needs (a row of
// 5 floats runs 8 lanes even where 16 are available: lanes past the row are pure overhead, and every
// row pays horizontal reductions that grow with the width). `flatten` inlines everything body calls
// into the target function, so the row drivers and the exp run as AVX2 / AVX-512 code. Call it inside
// the parallel loop (per chunk): an OpenMP region is outlined into a function of its own, which would
// not inherit the target.
template <typename T, typename Body>
inline int64_t with_vector_width(int64_t A, const Body& body) {
#if defined(INSPO_CPU_DISPATCH)
  const bool wide_rows = A * int64_t(sizeof(T)) > 32;
  switch (cpu_vector_bytes()) {
    case 64:
      return wide_rows ? simd::run_avx512<64>(body) : simd::run_avx512<32>(body);
    case 32:
      return simd::run_avx2<32>(body);
    default:
      break;
  }
#else
  (void)A;
#endif
  return body(std::integral_constant<int, 16>{});
}

}  // namespace inspo
