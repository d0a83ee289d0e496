// Accuracy of the CPU backend's lane-wise exp (csrc/common/cpu_simd.h: simd::exp) against the correctly rounded exp
// (long double reference), at each vector width: every float whose exp is at least 2^-125 (below, the kernels flush
// to 0 by design), and doubles (random ones over the normal range, and the top 0.8 of it, where 2^k alone would
// overflow). Prints the largest error in ulps and where, and the number of non-finite results where the exp is
// finite. It regenerates the numbers quoted in cpu_simd.h (x86-64 with AVX-512; minutes on one core):
//   g++ -std=gnu++17 -O3 -fno-math-errno -ffp-contract=off -Icsrc benchmarks/simd_exp_accuracy.cpp -o /tmp/exp_acc
//   /tmp/exp_acc
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/cpu_simd.h"

namespace inspo {
int cpu_vector_bytes() { return 64; }  // not used here; defined for the header's declaration
}  // namespace inspo

using inspo::simd::exp_array;

#define INSPO_AVX2 __attribute__((target("avx2,fma"), flatten))
#define INSPO_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"), flatten))
template <typename T>
void exp16(const T* x, T* y, int64_t n) {
  exp_array<T, 16>(x, y, n);
}
template <typename T>
INSPO_AVX2 void exp32(const T* x, T* y, int64_t n) {
  exp_array<T, 32>(x, y, n);
}
template <typename T>
INSPO_AVX512 void exp64(const T* x, T* y, int64_t n) {
  exp_array<T, 64>(x, y, n);
}
template <typename T>
using ExpFn = void (*)(const T*, T*, int64_t);

struct Worst {
  double ulps = 0, at = 0;
  int64_t not_finite = 0;
};

// Errors of fn over x, in ulps of the reference rounded to T; only where exp(x) is finite and not flushed.
template <typename T>
void check(const std::vector<T>& x, std::vector<T>& y, ExpFn<T> fn, Worst& w) {
  fn(x.data(), y.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const long double ref = std::exp((long double)x[i]);
    const T rounded = T(ref);
    // below 2^min_exponent (2^-125, 2^-1021) the kernels flush to 0 by design (cpu_simd.h)
    if (!(rounded >= std::ldexp(T(1), std::numeric_limits<T>::min_exponent)) || std::isinf(rounded)) continue;
    if (!std::isfinite(y[i])) {
      ++w.not_finite;
      continue;
    }
    const long double ulp = (long double)std::nextafter(rounded, std::numeric_limits<T>::infinity()) - rounded;
    const double e = double(std::fabs((long double)y[i] - ref) / ulp);
    if (e > w.ulps) w.ulps = e, w.at = double(x[i]);
  }
}

template <typename T>
void report(const char* type, const int* widths, const bool* runs, const Worst* worst) {
  for (int k = 0; k < 3; ++k) {
    if (!runs[k]) continue;
    std::printf("%s, %d-byte vectors: largest error %.3f ulp (at %.9g), %lld non-finite where exp is finite\n", type,
                widths[k], worst[k].ulps, worst[k].at, static_cast<long long>(worst[k].not_finite));
  }
}

int main() {
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const int widths[3] = {16, 32, 64};
  const bool runs[3] = {true, avx2, avx512};
  const ExpFn<float> float_fns[3] = {exp16<float>, exp32<float>, exp64<float>};
  const ExpFn<double> double_fns[3] = {exp16<double>, exp32<double>, exp64<double>};

  // Every float in [-87.4, 88.73] (beyond: exp is no normal float), in batches.
  Worst float_worst[3];
  std::vector<float> x, y;
  const auto flush = [&] {
    y.resize(x.size());
    for (int k = 0; k < 3; ++k)
      if (runs[k]) check(x, y, float_fns[k], float_worst[k]);
    x.clear();
  };
  for (uint64_t bits = 0; bits <= 0xFFFFFFFFull; ++bits) {
    const uint32_t b = uint32_t(bits);
    float v;
    std::memcpy(&v, &b, sizeof v);
    if (v >= -87.4f && v <= 88.73f) x.push_back(v);
    if (x.size() == (size_t(1) << 22)) flush();
  }
  flush();
  report<float>("float", widths, runs, float_worst);

  // Doubles: 2e7 uniform over [-708, 709.79], 2e7 over the top [709.0, 709.79].
  Worst double_worst[3];
  std::mt19937_64 generator(0);
  for (const double low : {-708.0, 709.0}) {
    std::uniform_real_distribution<double> uniform(low, 709.79);
    std::vector<double> xd(20000000), yd(xd.size());
    for (double& v : xd) v = uniform(generator);
    for (int k = 0; k < 3; ++k)
      if (runs[k]) check(xd, yd, double_fns[k], double_worst[k]);
  }
  report<double>("double", widths, runs, double_worst);
  return 0;
}
