// CPU backend of resample (reference.resample; contract in common/args.h).
// Pass 1, parallel over the S * N columns (problem, agent): validate the column and its uniforms, build
// its cdf (double, sequential in b, exactly the reference's cumsum) and its ESS. Pass 2, parallel over
// draws: binary search of each draw in its own problem's column.
#include <algorithm>
#include <memory>

#include "common/backends.h"
#include "common/cpu_parallel.h"
#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {
namespace {

// Searches of one sorted array run this many at a time, in lockstep.
constexpr int kLockstepSearches = 16;

// std::upper_bound (the number of entries <= x) of kLockstepSearches points in a sorted array. Without branches on
// the data: the next probe is a conditional move, so a draw costs no mispredictions (std::upper_bound spent its time
// on mispredicted branches waiting for cache misses: 0.6x of PyTorch's searchsorted at B = 256k, N = 27). In
// lockstep: every search of an n-long array takes the same steps, so they advance level by level together, and each
// level's kLockstepSearches loads are independent and overlap, where one search waits for each of its loads in turn
// (a cache miss per level once a B-long cdf outgrows the caches).
inline void upper_bounds_lockstep(const double* sorted, int64_t n, const double* x, int64_t* out) {
  const double* base[kLockstepSearches];
  for (int k = 0; k < kLockstepSearches; ++k) base[k] = sorted;
  while (n > 1) {
    const int64_t half = n >> 1;
    for (int k = 0; k < kLockstepSearches; ++k) base[k] = base[k][half] <= x[k] ? base[k] + half : base[k];
    n -= half;
  }
  for (int k = 0; k < kLockstepSearches; ++k) out[k] = (base[k] - sorted) + (n == 1 && *base[k] <= x[k]);
}

}  // namespace

template <typename T>
int64_t resample_cpu(const ResampleArgs<T>& a) {
  const int64_t S = a.S, B = a.B, N = a.N;
  std::unique_ptr<double[]> cdf(new double[S * B * N]);  // [S, N, B]: column (s, i)'s cdf is contiguous
  const bool systematic = a.method == kResampleSystematic;

  const int64_t status = parallel_chunks(S * N, 1, a.num_threads, [&](int64_t, int64_t column_index, int64_t) {
    const int64_t s = column_index / N, i = column_index % N, first = s * B * N + i;  // flat index of b = 0
    const T* log_rho = a.log_rho + first;                                             // column (s, i), stride N
    int64_t status = kStatusOk;
    // The draws' uniforms of this column (all errors of the column are found, the smallest wins).
    for (int64_t k = 0; k < (systematic ? 1 : B); ++k) {
      const double u = a.uniforms[(systematic ? s * N + i : first) + k * N];
      if (!(u >= 0.0 && u < 1.0)) {
        status = pack_status(first + k * N, kUniformInvalid);
        break;
      }
    }
    T max = neg_inf<T>();
    for (int64_t b = 0; b < B; ++b) {
      const T x = log_rho[b * N];
      if (x != x || x == -neg_inf<T>()) return std::min(status, pack_status(first + b * N, kLogRhoInvalid));
      max = max_(max, x);
    }
    if (max == neg_inf<T>()) return std::min(status, pack_status(S * B * N + s * N + i, kNoPositiveWeight));
    if (status != kStatusOk) return status;
    double* column = cdf.get() + column_index * B;
    double total = 0.0, sum_squares = 0.0;
    for (int64_t b = 0; b < B; ++b) {
      const double w = double(exp_(T(log_rho[b * N] - max)));  // exp in T, then widened (as the reference)
      total += w;
      sum_squares += w * w;
      column[b] = total;
    }
    a.ess[column_index] = T(total * total / sum_squares);
    return kStatusOk;
  });
  if (status != kStatusOk) return status;

  // Draws: flat draw rows r = s * B + k (a chunk may span problems; every draw is independent).
  parallel_chunks(S * B, chunk_items(N * 16), a.num_threads, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = 0; i < N; ++i) {  // agent-major: the chunk's searches of one cdf run back to back (cache)
      for (int64_t first = begin; first < end;) {  // the chunk's part of one problem s
        const int64_t s = first / B, last = std::min(end, (s + 1) * B);
        const double* column = cdf.get() + (s * N + i) * B;
        const double total = column[B - 1];
        const auto point = [&](int64_t r) {
          return systematic ? (double(r - s * B) + a.uniforms[s * N + i]) / double(B) * total
                            : a.uniforms[r * N + i] * total;
        };
        // First b with cdf[b] > point (searchsorted right=True): a zero-weight b never qualifies.
        for (int64_t r = first; r < last; r += kLockstepSearches) {
          const int64_t n = std::min<int64_t>(kLockstepSearches, last - r);
          double points[kLockstepSearches];
          int64_t found[kLockstepSearches];
          // a last group of n < kLockstepSearches draws repeats its last point in the lanes past it
          for (int64_t k = 0; k < kLockstepSearches; ++k) points[k] = point(r + std::min(k, n - 1));
          upper_bounds_lockstep(column, B, points, found);
          for (int64_t k = 0; k < n; ++k) a.indices[(r + k) * N + i] = std::min(found[k], B - 1);
        }
        first = last;
      }
    }
    return kStatusOk;
  });
  return kStatusOk;
}

INSPO_INSTANTIATE_CPU(resample)

}  // namespace inspo
