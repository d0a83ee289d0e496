// Accuracy of the CPU backend's lane-wise log and exp (csrc/common/cpu_simd.h: simd::log, simd::exp) against the
// correctly rounded functions (long double references), at each vector width.
// log: every positive float (2^31 values), and doubles (random positive bit patterns, and values in [0.5, 2] where
// the polynomial does all the work); beside glibc's std::log over the same values, and the special values.
// exp: every float whose exp is finite and at least 2^-125 (below, the kernels flush to 0 by design), and doubles
// (uniform over the range, and its top [709, 709.79], where 2^k alone would overflow); beside glibc's std::exp, and
// the count of non-finite results where exp is finite; and whether the AVX-512 float exp gives the 32-byte one's bits
// at every float.
// It regenerates the numbers quoted in cpu_simd.h (x86-64 with AVX-512; minutes on one core):
//   g++ -std=gnu++17 -O3 -fno-math-errno -ffp-contract=off -Icsrc benchmarks/simd_accuracy.cpp -o /tmp/simd_accuracy
//   /tmp/simd_accuracy [double_millions=200]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/cpu_simd.h"

namespace inspo {
int cpu_vector_bytes() { return 64; }  // not used here; defined for the header's declaration
}  // namespace inspo

using inspo::simd::LaneFunction;
using inspo::simd::map_array;

// |got - ref| in ulps of ref rounded to T; 0 when both are the same special value, huge when only one is.
template <typename T>
double ulp_error(T got, long double ref) {
  const double huge = 1e30;
  if (std::isnan(double(ref))) return std::isnan(got) ? 0 : huge;
  if (std::isinf(double(ref))) return got == T(ref) ? 0 : huge;
  const T rounded = T(ref);
  if (rounded == 0) return got == 0 ? 0 : huge;
  const long double up = std::nextafter(rounded, std::numeric_limits<T>::infinity());
  const long double down = std::nextafter(rounded, -std::numeric_limits<T>::infinity());
  return double(std::fabs((long double)got - ref) / ((up - down) / 2));
}

template <typename T>
using MapFn = void (*)(const T*, T*, int64_t);

#define INSPO_AVX2 __attribute__((target("avx2,fma"), flatten))
#define INSPO_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"), flatten))
template <LaneFunction F, typename T>
void map16(const T* x, T* y, int64_t n) {
  map_array<F, T, 16>(x, y, n);
}
template <LaneFunction F, typename T>
INSPO_AVX2 void map32(const T* x, T* y, int64_t n) {
  map_array<F, T, 32>(x, y, n);
}
template <LaneFunction F, typename T>
INSPO_AVX512 void map64(const T* x, T* y, int64_t n) {
  map_array<F, T, 64>(x, y, n);
}

struct Worst {
  double ours = 0, glibc = 0;
  double at = 0;
  int64_t not_finite = 0;  // exp: non-finite results where exp is finite
};

template <typename T>
void check_log(const std::vector<T>& x, std::vector<T>& y, MapFn<T> fn, Worst& w) {
  fn(x.data(), y.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const long double ref = std::log((long double)x[i]);
    const double e = ulp_error<T>(y[i], ref);
    if (e > w.ours) w.ours = e, w.at = double(x[i]);
    w.glibc = std::max(w.glibc, ulp_error<T>(std::log(x[i]), ref));
  }
}

// Only where exp(x) is finite and at least 2^min_exponent (2^-125, 2^-1021): below, the kernels flush to 0.
template <typename T>
void check_exp(const std::vector<T>& x, std::vector<T>& y, MapFn<T> fn, Worst& w) {
  fn(x.data(), y.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const long double ref = std::exp((long double)x[i]);
    const T rounded = T(ref);
    if (!(rounded >= std::ldexp(T(1), std::numeric_limits<T>::min_exponent)) || std::isinf(rounded)) continue;
    if (!std::isfinite(y[i])) ++w.not_finite;
    const double e = ulp_error<T>(y[i], ref);
    if (e > w.ours) w.ours = e, w.at = double(x[i]);
    w.glibc = std::max(w.glibc, ulp_error<T>(std::exp(x[i]), ref));
  }
}

int main(int argc, char** argv) {
  const int64_t double_millions = argc > 1 ? std::atoll(argv[1]) : 200;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const int widths[3] = {16, 32, 64};
  const bool runs[3] = {true, avx2, avx512};
  constexpr LaneFunction kLog = LaneFunction::log, kExp = LaneFunction::exp;
  const MapFn<float> float_fns[3] = {map16<kLog, float>, map32<kLog, float>, map64<kLog, float>};
  const MapFn<double> double_fns[3] = {map16<kLog, double>, map32<kLog, double>, map64<kLog, double>};
  const int64_t chunk = 1 << 20;
  for (int k = 0; k < 3; ++k) {
    if (!runs[k]) continue;
    Worst w;
    std::vector<float> x(chunk), y(chunk);
    for (uint64_t begin = 0; begin < (uint64_t(1) << 31); begin += chunk) {  // every non-negative float
      for (int64_t i = 0; i < chunk; ++i) {
        const uint32_t bits = uint32_t(begin + i);
        std::memcpy(&x[i], &bits, sizeof bits);
      }
      check_log(x, y, float_fns[k], w);
    }
    std::printf("log float  %2d-byte vectors: max %.3f ulp at %a (glibc logf: %.3f)\n", widths[k], w.ours, w.at,
                w.glibc);
  }
  for (int k = 0; k < 3; ++k) {
    if (!runs[k]) continue;
    Worst w;
    std::mt19937_64 rng(1);
    std::vector<double> x(chunk), y(chunk);
    for (int64_t rep = 0; rep < double_millions; ++rep) {
      for (int64_t i = 0; i < chunk; ++i) {
        if (rep % 2 == 0) {
          x[i] = 0.5 + 1.5 * double(rng() >> 11) * 0x1p-53;
        } else {
          const uint64_t bits = rng() >> 1;  // a positive bit pattern: normals, subnormals, inf, NaN
          std::memcpy(&x[i], &bits, sizeof bits);
        }
      }
      check_log(x, y, double_fns[k], w);
    }
    std::printf("log double %2d-byte vectors: max %.3f ulp at %a (glibc log: %.3f)\n", widths[k], w.ours, w.at,
                w.glibc);
  }
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> special = {0.0, -0.0, 1.0,       inf,       -inf,
                                       nan, -1.0, 0x1p-1074, 0x1p-1022, 0x1.fffffffffffffp1023};
  std::vector<double> out(special.size());
  map16<kLog, double>(special.data(), out.data(), int64_t(special.size()));
  for (size_t i = 0; i < special.size(); ++i)
    std::printf("log(%a) = %a  (glibc %a)\n", special[i], out[i], std::log(special[i]));

  const MapFn<float> float_exps[3] = {map16<kExp, float>, map32<kExp, float>, map64<kExp, float>};
  if (runs[1] &&
      runs[2]) {  // the AVX-512 float exp has its own instructions (scalef, ...), meant to give the same bits
    int64_t differ = 0;
    std::vector<float> x(chunk), y32(chunk), y64(chunk);
    for (uint64_t begin = 0; begin < (uint64_t(1) << 32); begin += chunk) {  // every float bit pattern
      for (int64_t i = 0; i < chunk; ++i) {
        const uint32_t bits = uint32_t(begin + i);
        std::memcpy(&x[i], &bits, sizeof bits);
      }
      float_exps[1](x.data(), y32.data(), chunk);
      float_exps[2](x.data(), y64.data(), chunk);
      for (int64_t i = 0; i < chunk; ++i) differ += std::memcmp(&y32[i], &y64[i], sizeof(float)) != 0;
    }
    std::printf("exp float  64-byte vs 32-byte vectors: %lld of 2^32 inputs give different bits\n",
                static_cast<long long>(differ));
  }
  const MapFn<double> double_exps[3] = {map16<kExp, double>, map32<kExp, double>, map64<kExp, double>};
  for (int k = 0; k < 3; ++k) {
    if (!runs[k]) continue;
    Worst w;
    std::vector<float> x, y(chunk);
    for (uint64_t bits = 0; bits <= 0xFFFFFFFFull; ++bits) {  // every float in [-87.4, 88.73]
      const uint32_t b = uint32_t(bits);
      float v;
      std::memcpy(&v, &b, sizeof v);
      if (v >= -87.4f && v <= 88.73f) x.push_back(v);
      if (int64_t(x.size()) == chunk || (bits == 0xFFFFFFFFull && !x.empty())) {
        y.resize(x.size());
        check_exp(x, y, float_exps[k], w);
        x.clear();
      }
    }
    std::printf("exp float  %2d-byte vectors: max %.3f ulp at %a, %lld non-finite (glibc expf: %.3f)\n", widths[k],
                w.ours, w.at, static_cast<long long>(w.not_finite), w.glibc);
  }
  for (int k = 0; k < 3; ++k) {
    if (!runs[k]) continue;
    Worst w;
    std::mt19937_64 rng(2);
    std::vector<double> x(chunk), y(chunk);
    for (int64_t rep = 0; rep < double_millions / 5; ++rep) {  // 5x fewer: each costs a long double exp
      const double low = rep % 2 == 0 ? -708.0 : 709.0;
      for (int64_t i = 0; i < chunk; ++i) x[i] = low + (709.79 - low) * double(rng() >> 11) * 0x1p-53;
      check_exp(x, y, double_exps[k], w);
    }
    std::printf("exp double %2d-byte vectors: max %.3f ulp at %a, %lld non-finite (glibc exp: %.3f)\n", widths[k],
                w.ours, w.at, static_cast<long long>(w.not_finite), w.glibc);
  }
  return 0;
}
