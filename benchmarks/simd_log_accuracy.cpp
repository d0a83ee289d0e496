// Accuracy of the CPU backend's lane-wise log (csrc/common/cpu_simd.h: simd::log) against the correctly
// rounded log (long double reference), at each vector width: every positive float (2^31 values), and
// doubles (random positive bit patterns, and values in [0.5, 2] where the polynomial does all the work).
// Prints the largest error in ulps, beside glibc's std::log over the same values, and the special values.
// It regenerates the numbers quoted in cpu_simd.h (x86-64 with AVX-512; minutes on one core):
//   g++ -std=gnu++17 -O3 -fno-math-errno -Icsrc benchmarks/simd_log_accuracy.cpp -o /tmp/simd_log_accuracy
//   /tmp/simd_log_accuracy [double_millions=200]
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

using inspo::simd::log_array;

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
using LogFn = void (*)(const T*, T*, int64_t);

#define INSPO_AVX2 __attribute__((target("avx2,fma"), flatten))
#define INSPO_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"), flatten))
template <typename T>
void log16(const T* x, T* y, int64_t n) {
  log_array<T, 16>(x, y, n);
}
template <typename T>
INSPO_AVX2 void log32(const T* x, T* y, int64_t n) {
  log_array<T, 32>(x, y, n);
}
template <typename T>
INSPO_AVX512 void log64(const T* x, T* y, int64_t n) {
  log_array<T, 64>(x, y, n);
}

struct Worst {
  double ours = 0, glibc = 0;
  double at = 0;
};

template <typename T>
void check(const std::vector<T>& x, std::vector<T>& y, LogFn<T> fn, Worst& w) {
  fn(x.data(), y.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const long double ref = std::log((long double)x[i]);
    const double e = ulp_error<T>(y[i], ref);
    if (e > w.ours) w.ours = e, w.at = double(x[i]);
    w.glibc = std::max(w.glibc, ulp_error<T>(std::log(x[i]), ref));
  }
}

int main(int argc, char** argv) {
  const int64_t double_millions = argc > 1 ? std::atoll(argv[1]) : 200;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const int widths[3] = {16, 32, 64};
  const bool runs[3] = {true, avx2, avx512};
  const LogFn<float> float_fns[3] = {log16<float>, log32<float>, log64<float>};
  const LogFn<double> double_fns[3] = {log16<double>, log32<double>, log64<double>};
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
      check(x, y, float_fns[k], w);
    }
    std::printf("float  %2d-byte vectors: max %.3f ulp at %a (glibc logf: %.3f)\n", widths[k], w.ours, w.at, w.glibc);
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
      check(x, y, double_fns[k], w);
    }
    std::printf("double %2d-byte vectors: max %.3f ulp at %a (glibc log: %.3f)\n", widths[k], w.ours, w.at, w.glibc);
  }
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> special = {0.0, -0.0, 1.0, inf, -inf, nan, -1.0, 0x1p-1074, 0x1p-1022, 0x1.fffffffffffffp1023};
  std::vector<double> out(special.size());
  log16<double>(special.data(), out.data(), int64_t(special.size()));
  for (size_t i = 0; i < special.size(); ++i)
    std::printf("log(%a) = %a  (glibc %a)\n", special[i], out[i], std::log(special[i]));
  return 0;
}
