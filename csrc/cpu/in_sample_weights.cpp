// CPU backend of in_sample_weights (reference.in_sample_weights; contract in common/args.h).
// Every row (b, i) is independent: parallel over the B * N rows.
#include <algorithm>

#include "common/backends.h"
#include "common/cpu_parallel.h"
#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {

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
      for (int64_t row = begin; row < end; ++row) {
        const T* q = a.q_local + row * A;
        const T* log_mu = a.log_mu + row * A;
        const bool* avail = a.avail + row * A;
        const int64_t readable = (rows - row) * A;
        const int64_t action = a.actions[row];
        const RowMax<T> m = row_max<T, Needs, Bytes>(nullptr, log_mu, q, avail, A, readable, temps);
        const int64_t code = row_error(m, action, A, avail);
        if (code != 0) {
          status = std::min(status, pack_status(row, code));
          a.value[row] = a.log_weight[row] = a.weight[row] = T(0);
          continue;
        }
        const RowSums<T> s = row_sums<T, Needs, Bytes>(nullptr, log_mu, q, avail, A, readable, m, temps, nullptr);
        const T value = soft_value(m, s, temps);
        const T log_weight = in_sample_log_weight(log_mu[action], q[action], value, temps);
        a.value[row] = value;
        a.log_weight[row] = log_weight;
        a.weight[row] = clipped_weight(log_weight, log_w_max);
      }
      return status;
    });
  });
}

template int64_t in_sample_weights_cpu<float>(const InSampleWeightsArgs<float>&);
template int64_t in_sample_weights_cpu<double>(const InSampleWeightsArgs<double>&);

}  // namespace inspo
