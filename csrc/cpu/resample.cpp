// CPU backend of resample (reference.resample; contract in common/args.h).
// Pass 1, parallel over agents: validate the column, build its cdf (double, sequential in b, exactly
// the reference's cumsum) and its ESS. Pass 2, parallel over draws: binary search of each draw.
#include <algorithm>
#include <memory>

#include "common/backends.h"
#include "common/cpu_parallel.h"
#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {
namespace {

// std::upper_bound (the number of entries <= x) of a sorted array, without branches on the data: the
// next probe is a conditional move, so a draw costs no mispredictions, and both candidates of the next
// probe are prefetched while this one loads. A B-long cdf of doubles outgrows the caches at large B,
// where std::upper_bound spent its time on mispredicted branches waiting for cache misses (measured:
// 0.6x of PyTorch's searchsorted at B = 256k, N = 27).
inline int64_t upper_bound_branchless(const double* sorted, int64_t n, double x) {
  const double* base = sorted;
  while (n > 1) {
    const int64_t half = n >> 1;
    __builtin_prefetch(base + (half >> 1));
    __builtin_prefetch(base + half + (half >> 1));
    base = base[half] <= x ? base + half : base;
    n -= half;
  }
  return (base - sorted) + (n == 1 && *base <= x);
}

}  // namespace

template <typename T>
int64_t resample_cpu(const ResampleArgs<T>& a) {
  const int64_t B = a.B, N = a.N;
  std::unique_ptr<double[]> cdf(new double[B * N]);  // [N, B]: agent i's cdf is contiguous

  const int64_t status = parallel_chunks(N, 1, a.num_threads, [&](int64_t, int64_t i, int64_t) {
    const T* log_rho = a.log_rho + i;  // column i, stride N
    T max = neg_inf<T>();
    for (int64_t b = 0; b < B; ++b) {
      const T x = log_rho[b * N];
      if (x != x || x == -neg_inf<T>()) return pack_status(b * N + i, kLogRhoInvalid);
      max = max_(max, x);
    }
    if (max == neg_inf<T>()) return pack_status(B * N + i, kNoPositiveWeight);
    double* column = cdf.get() + i * B;
    double total = 0.0, sum_squares = 0.0;
    for (int64_t b = 0; b < B; ++b) {
      const double w = double(exp_(T(log_rho[b * N] - max)));  // exp in T, then widened (as the reference)
      total += w;
      sum_squares += w * w;
      column[b] = total;
    }
    a.ess[i] = T(total * total / sum_squares);
    return kStatusOk;
  });
  if (status != kStatusOk) return status;

  const bool systematic = a.method == kResampleSystematic;
  parallel_chunks(B, chunk_items(N * 16), a.num_threads, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = 0; i < N; ++i) {  // agent-major: the chunk's searches of one cdf run back to back (cache)
      const double* column = cdf.get() + i * B;
      const double total = column[B - 1];
      for (int64_t k = begin; k < end; ++k) {
        const double point = systematic ? (double(k) + a.uniforms[i]) / double(B) * total
                                        : a.uniforms[k * N + i] * total;
        // First b with cdf[b] > point (searchsorted right=True): a zero-weight b never qualifies.
        const int64_t index = upper_bound_branchless(column, B, point);
        a.indices[k * N + i] = std::min(index, B - 1);
      }
    }
    return kStatusOk;
  });
  return kStatusOk;
}

template int64_t resample_cpu<float>(const ResampleArgs<float>&);
template int64_t resample_cpu<double>(const ResampleArgs<double>&);

}  // namespace inspo
