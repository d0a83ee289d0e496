// CPU backend of soft_bellman_target (reference.soft_bellman_target; contract in common/args.h).
// Parallel over samples; each sample walks its N agents' rows twice (maxima, then sums of exp), then
// takes the logs of the N sums together, as vectors. Rows of up to kMaxRowLanesA actions run W at a time, one per
// lane (common/cpu_row_lanes.h).
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/backends.h"
#include "common/cpu_parallel.h"
#include "common/cpu_row_lanes.h"
#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {

using BellmanNeeds = StaticNeeds</*logits=*/true, /*kl=*/true, /*target=*/false, /*lookahead=*/false, /*q=*/false>;

// Samples [begin, end) with their next-step rows W at a time, one per lane (A <= kMaxRowLanesA,
// common/cpu_row_lanes.h): each row's KL, entropy and log-ratio term, then each sample's sums. The rows of a
// terminal (or invalid) sample are read with the others' but neither checked nor used.
template <typename T, int Bytes>
int64_t row_lanes_chunk(const SoftBellmanTargetArgs<T>& a, int64_t begin, int64_t end, const Temperatures<T>& temps) {
  using L = simd::Lanes<T, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
  constexpr int W = L::W;
  const int64_t N = a.N, A = a.A;
  const int64_t first_row = begin * N, n = (end - begin) * N;
  std::vector<typename L::IntT> live((n + W - 1) / W * W);  // masks: -1 a row of a live, valid sample
  std::vector<T> log_ratio_terms(live.size());
  int64_t status = kStatusOk;
  for (int64_t b = begin; b < end; ++b) {
    const T done = a.done[b];
    const int64_t code = bellman_sample_code(done, a.reward[b], a.q_next + b);
    if (code != 0) status = std::min(status, pack_status(b * N, code));
    std::fill(live.begin() + (b - begin) * N, live.begin() + (b - begin + 1) * N, code == 0 && done == T(0) ? -1 : 0);
  }
  const V zero{};
  for (int64_t r0 = 0; r0 < n; r0 += W) {
    const int64_t row = first_row + r0, rows = std::min<int64_t>(W, n - r0);
    const simd::RowLanes<T, Bytes> r =
        simd::row_lanes<T, Bytes, BellmanNeeds>(a.next_logits + row * A, a.next_log_mu + row * A, nullptr,
                                                a.next_avail + row * A, a.next_actions + row, rows, A, temps, nullptr);
    const I is_live = simd::load<I>(live.data() + r0);
    const I ok = r.valid() & is_live;
    status =
        std::min(status, simd::block_status(r, ok | ~is_live, row, rows, a.next_actions, a.next_avail, A, int64_t(0)));
    const V log_exp_logits = simd::log<T, Bytes>(r.exp_logits);
    // not live or invalid: 0 (a terminal sample's rows are 0 by the contract)
    simd::store_lanes(
        a.kl + row,
        simd::select(ok, kl_from_sums(r.exp_logits, r.exp_logits_shift, r.exp_logits_log_mu, log_exp_logits), zero),
        rows);
    simd::store_lanes(a.entropy + row,
                      simd::select(ok, entropy_from_sums(r.exp_logits, r.exp_logits_shift, log_exp_logits), zero),
                      rows);
    const V term = taken_log_prob(r.logit_taken, r.max_logits, log_exp_logits) - r.log_mu_taken;
    const V term_or_zero = simd::select(ok, term, zero);
    std::memcpy(log_ratio_terms.data() + r0, &term_or_zero, sizeof(V));
  }
  for (int64_t b = begin; b < end; ++b) {  // each sample's sums over its agents
    if (live[(b - begin) * N] != 0) {
      bellman_sample_outputs(a, b, log_ratio_terms.data() + (b - begin) * N);
    } else {  // terminal or invalid: none of the next-step inputs is used
      a.target[b] = a.reward[b];
      a.log_ratio[b] = T(0);
    }
  }
  return status;
}

template <typename T>
int64_t soft_bellman_target_cpu(const SoftBellmanTargetArgs<T>& a) {
  const int64_t N = a.N, A = a.A;
  const Temperatures<T> temps = make_temperatures<T>(a.alpha, a.beta, 0.0);
  using Needs = BellmanNeeds;
  const int64_t rows = a.B * N;
  return parallel_chunks(a.B, chunk_items(N * A), a.num_threads, [&](int64_t, int64_t begin, int64_t end) {
    if (A <= kMaxRowLanesA) {
      return with_widest_vector(
          [&](auto width) { return row_lanes_chunk<T, decltype(width)::value>(a, begin, end, temps); });
    }
    return with_vector_width<T>(A, [&](auto width) {
      constexpr int Bytes = decltype(width)::value;
      int64_t status = kStatusOk;
      // Per-agent values of the current sample (reused by every sample of the chunk). The logs of the
      // rows' sums are taken together, as vectors, once the sample's rows are summed; the array has room
      // for whole vectors (padding: ones).
      AgentScratch<RowMax<T>> maxima(N);
      AgentScratch<RowSums<T>> row_sums_of(N);
      AgentScratch<int64_t> row_code(N);  // 0: a valid row, else its StatusCode
      AgentScratch<T> log_ratio_terms(N);
      constexpr int64_t W = simd::Lanes<T, Bytes>::W;
      const int64_t n_logs = (N + W - 1) / W * W;
      AgentScratch<T, 64 + 16> sums_to_log(n_logs), logs(n_logs);
      std::fill(sums_to_log.data(), sums_to_log.data() + n_logs, T(1));
      for (int64_t b = begin; b < end; ++b) {
        const T done = a.done[b], reward = a.reward[b];
        const int64_t code = bellman_sample_code(done, reward, a.q_next + b);
        T* kl_out = a.kl + b * N;
        T* entropy_out = a.entropy + b * N;
        if (code != 0 || done == T(1)) {  // terminal (or invalid): none of the next-step inputs is read
          if (code != 0) status = std::min(status, pack_status(b * N, code));
          std::fill(kl_out, kl_out + N, T(0));
          std::fill(entropy_out, entropy_out + N, T(0));
          a.target[b] = reward;
          a.log_ratio[b] = T(0);
          continue;
        }
        for (int64_t i = 0; i < N; ++i) {  // the two sweeps over each row: maxima, then sums of exp
          const int64_t row = b * N + i;
          const T* logits = a.next_logits + row * A;
          const T* log_mu = a.next_log_mu + row * A;
          const bool* avail = a.next_avail + row * A;
          const int64_t readable = (rows - row) * A;
          const RowMax<T> m = row_max<T, Needs, Bytes>(logits, log_mu, nullptr, avail, A, readable, temps);
          row_code[i] = row_error(m, a.next_actions[row], A, avail);
          if (row_code[i] != 0) {
            status = std::min(status, pack_status(row, row_code[i]));
            sums_to_log[i] = T(1);
            continue;
          }
          maxima[i] = m;
          row_sums_of[i] = row_sums<T, Needs, Bytes>(logits, log_mu, nullptr, avail, A, readable, m, temps, nullptr);
          sums_to_log[i] = row_sums_of[i].exp_logits;
        }
        simd::log_array<T, Bytes>(sums_to_log.data(), logs.data(), n_logs);
        for (int64_t i = 0; i < N; ++i) {  // each row's KL, entropy and log-ratio term from its sums and log S
          if (row_code[i] != 0) {
            kl_out[i] = entropy_out[i] = log_ratio_terms[i] = T(0);
            continue;
          }
          const int64_t row = b * N + i, taken = row * A + a.next_actions[row];
          kl_out[i] = kl_from_sums(row_sums_of[i], logs[i]);
          entropy_out[i] = entropy_from_sums(row_sums_of[i], logs[i]);
          log_ratio_terms[i] = taken_log_prob(a.next_logits[taken], maxima[i], logs[i]) - a.next_log_mu[taken];
        }
        bellman_sample_outputs(a, b, log_ratio_terms.data());
      }
      return status;
    });
  });
}

INSPO_INSTANTIATE_CPU(soft_bellman_target)

}  // namespace inspo
