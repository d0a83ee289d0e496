// CPU backend of in_sample_weights (reference.in_sample_weights; contract in common/args.h).
// Every row (b, i) is independent: parallel over the B * N rows.
#include <algorithm>

#include "common/backends.h"
#include "common/cpu_parallel.h"
#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {

// Rows are finished in groups of kGroup: the logs of their sums and the exps of their weights are taken
// together, as vectors (a multiple of every vector width, so without a scalar tail).
constexpr int64_t kGroup = 64;

template <typename T>
int64_t in_sample_weights_cpu(const InSampleWeightsArgs<T>& a) {
  const int64_t A = a.A;
  const Temperatures<T> temps = make_temperatures<T>(a.alpha, a.beta, 0.0);
  using Needs = StaticNeeds</*logits=*/false, /*kl=*/false, /*target=*/true, /*lookahead=*/false, /*q=*/true>;
  const T log_w_max = T(a.log_w_max);

  const int64_t rows = a.B * a.N;
  return parallel_chunks(rows, chunk_items(A), a.num_threads, [&](int64_t, int64_t begin, int64_t end) {
    return with_vector_width<T>(A, [&](auto width) {
      constexpr int Bytes = decltype(width)::value;
      int64_t status = kStatusOk;
      // Per row of the group. Entries past a short last group keep earlier (valid) values: their logs
      // and exps are taken and never read.
      RowMax<T> maxima[kGroup];
      int64_t codes[kGroup];  // 0: a valid row, else its StatusCode
      T sums[kGroup], logs[kGroup], clipped_log_weights[kGroup], weights[kGroup];
      std::fill(sums, sums + kGroup, T(1));
      std::fill(clipped_log_weights, clipped_log_weights + kGroup, T(0));
      for (int64_t first = begin; first < end; first += kGroup) {
        const int64_t n = std::min(kGroup, end - first);
        for (int64_t k = 0; k < n; ++k) {
          const int64_t row = first + k;
          const T* q = a.q_local + row * A;
          const T* log_mu = a.log_mu + row * A;
          const bool* avail = a.avail + row * A;
          const int64_t readable = (rows - row) * A;
          const RowMax<T> m = row_max<T, Needs, Bytes>(nullptr, log_mu, q, avail, A, readable, temps);
          codes[k] = row_error(m, a.actions[row], A, avail);
          if (codes[k] != 0) {
            status = std::min(status, pack_status(row, codes[k]));
            sums[k] = T(1);
            continue;
          }
          maxima[k] = m;
          sums[k] = row_sums<T, Needs, Bytes>(nullptr, log_mu, q, avail, A, readable, m, temps, nullptr).exp_target;
        }
        simd::log_array<T, Bytes>(sums, logs, kGroup);
        for (int64_t k = 0; k < n; ++k) {
          const int64_t row = first + k;
          if (codes[k] != 0) {
            a.value[row] = a.log_weight[row] = T(0);
            clipped_log_weights[k] = T(0);
            continue;
          }
          const int64_t taken = row * A + a.actions[row];
          const T value = soft_value(maxima[k], logs[k], temps);
          const T log_weight = in_sample_log_weight(a.log_mu[taken], a.q_local[taken], maxima[k], logs[k], temps);
          a.value[row] = value;
          a.log_weight[row] = log_weight;
          clipped_log_weights[k] = min_(log_weight, log_w_max);  // clipped_weight's exponent
        }
        simd::exp_array<T, Bytes>(clipped_log_weights, weights, kGroup);
        for (int64_t k = 0; k < n; ++k) a.weight[first + k] = codes[k] != 0 ? T(0) : weights[k];
      }
      return status;
    });
  });
}

INSPO_INSTANTIATE_CPU(in_sample_weights)

}  // namespace inspo
