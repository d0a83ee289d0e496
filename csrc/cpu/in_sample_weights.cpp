// CPU backend of in_sample_weights (reference.in_sample_weights; contract in common/args.h).
// Every row (b, i) is independent: parallel over the B * N rows. Rows of up to kMaxRowLanesA actions run W at a
// time, one per lane (common/cpu_row_lanes.h); longer ones one at a time, their entries across lanes.
#include <algorithm>

#include "common/backends.h"
#include "common/cpu_parallel.h"
#include "common/cpu_row_lanes.h"
#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {

// Rows are finished in groups of kGroup: the logs of their sums and the exps of their weights are taken
// together, as vectors (a multiple of every vector width, so without a scalar tail).
constexpr int64_t kGroup = 64;

using WeightNeeds = StaticNeeds</*logits=*/false, /*kl=*/false, /*target=*/true, /*lookahead=*/false, /*q=*/true>;

// Rows [begin, end) W at a time, one per lane (A <= kMaxRowLanesA, common/cpu_row_lanes.h).
template <typename T, int Bytes>
int64_t row_lanes_chunk(const InSampleWeightsArgs<T>& a, int64_t begin, int64_t end, const Temperatures<T>& temps) {
  using L = simd::Lanes<T, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
  constexpr int W = L::W;
  const int64_t A = a.A;
  const V log_w_max = simd::splat<V>(T(a.log_w_max)), zero{};
  int64_t status = kStatusOk;
  for (int64_t row = begin; row < end; row += W) {
    const int64_t rows = std::min<int64_t>(W, end - row);
    const simd::RowLanes<T, Bytes> r = simd::row_lanes<T, Bytes, WeightNeeds>(
        nullptr, a.log_mu + row * A, a.q_local + row * A, a.avail + row * A, a.actions + row, rows, A, temps, nullptr);
    const I ok = r.valid();
    status = std::min(status, simd::block_status(r, ok, row, rows, a.actions, a.avail, A, 0));
    const V log_exp_target = simd::log<T, Bytes>(r.exp_target);
    const V log_weight = in_sample_log_weight(r.log_mu_taken, r.q_taken, r.max_target, log_exp_target, temps);
    // invalid rows: 0 everywhere (the call fails anyway)
    simd::store_lanes(a.value + row, simd::select(ok, soft_value(r.max_target, log_exp_target, temps), zero), rows);
    simd::store_lanes(a.log_weight + row, simd::select(ok, log_weight, zero), rows);
    simd::store_lanes(a.weight + row, simd::select(ok, simd::exp<T, Bytes>(min_(log_weight, log_w_max)), zero), rows);
  }
  return status;
}

template <typename T>
int64_t in_sample_weights_cpu(const InSampleWeightsArgs<T>& a) {
  const int64_t A = a.A;
  const Temperatures<T> temps = make_temperatures<T>(a.alpha, a.beta, 0.0);
  using Needs = WeightNeeds;
  const T log_w_max = T(a.log_w_max);

  const int64_t rows = a.B * a.N;
  return parallel_chunks(rows, chunk_items(A), a.num_threads, [&](int64_t, int64_t begin, int64_t end) {
    if (A <= kMaxRowLanesA) {
      return with_widest_vector(
          [&](auto width) { return row_lanes_chunk<T, decltype(width)::value>(a, begin, end, temps); });
    }
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
