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
        const int64_t index = std::upper_bound(column, column + B, point) - column;
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
