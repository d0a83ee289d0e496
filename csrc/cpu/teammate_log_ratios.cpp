// CPU backend of teammate_log_ratios (reference.teammate_log_ratios; contract in common/args.h).
// Parallel over the samples of every problem (S * B): each sample computes d_cur / d_upd for its N agents (the logs of
// their sums taken together, as vectors), then the ordered sums. Rows of up to kMaxRowLanesA actions run W at a time,
// one per lane (common/cpu_row_lanes.h).
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "common/backends.h"
#include "common/cpu_parallel.h"
#include "common/cpu_row_lanes.h"
#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {
namespace {

// Samples [begin, end) with their rows W at a time, one per lane (A <= kMaxRowLanesA, common/cpu_row_lanes.h):
// d_cur / d_upd of every row of the chunk, then the ordered sums per sample.
template <typename T, typename Needs, int Bytes>
int64_t row_lanes_chunk(const TeammateLogRatiosArgs<T>& a, int64_t begin, int64_t end, const Temperatures<T>& temps) {
  using L = simd::Lanes<T, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
  constexpr int W = L::W;
  constexpr bool target_mode = Needs::lookahead;
  const int64_t N = a.N, A = a.A;
  const int64_t first_row = begin * N, n = (end - begin) * N;
  const int64_t n_padded = (n + W - 1) / W * W;  // whole vectors: every block stores all W lanes
  std::vector<T> d_cur(n_padded), d_upd(n_padded);
  const V zero{};
  int64_t status = kStatusOk;
  for (int64_t r0 = 0; r0 < n; r0 += W) {
    const int64_t row = first_row + r0, rows = std::min<int64_t>(W, n - r0);
    const T* q = target_mode ? a.q_local + row * A : nullptr;
    const simd::RowLanes<T, Bytes> r = simd::row_lanes<T, Bytes, Needs>(
        a.logits + row * A, a.log_mu + row * A, q, a.avail + row * A, a.actions + row, rows, A, temps, nullptr);
    I ok = r.valid();
    V log_hat{};
    if constexpr (target_mode) {
      log_hat = taken_lookahead_log_prob(r.logit_taken, r.log_mu_taken, r.q_taken, r.max_lookahead,
                                         simd::log<T, Bytes>(r.exp_lookahead), temps);
    } else {
      std::memcpy(&log_hat, a.updated_log_probs + row, size_t(rows) * sizeof(T));
      ok &= simd::finite_mask(log_hat) & (log_hat <= T(0));
    }
    status = std::min(status, simd::block_status(r, ok, row, rows, a.actions, a.avail, A, kUpdatedLogProbInvalid));
    const V log_pi = taken_log_prob(r.logit_taken, r.max_logits, simd::log<T, Bytes>(r.exp_logits));
    const V d_cur_lanes = simd::select(ok, log_pi - r.log_mu_taken, zero),
            d_upd_lanes = simd::select(ok, log_hat - r.log_mu_taken, zero);
    std::memcpy(d_cur.data() + r0, &d_cur_lanes, sizeof(V));  // invalid rows: 0 (the call fails anyway)
    std::memcpy(d_upd.data() + r0, &d_upd_lanes, sizeof(V));
  }
  for (int64_t b = begin; b < end; ++b) {
    const int64_t* order = a.order + (b / a.B) * a.order_stride;  // this sample's problem's order
    const int64_t r = (b - begin) * N;
    ordered_log_ratios(d_cur.data() + r, d_upd.data() + r, order, N, T(a.log_rho_max), a.log_rho + b * N);
  }
  return status;
}

// Needs::lookahead: predecessors="target" (the eta-lookahead, reads q_local); else "policy".
template <typename T, typename Needs>
int64_t run(const TeammateLogRatiosArgs<T>& a) {
  const int64_t N = a.N, A = a.A;
  constexpr bool target_mode = Needs::lookahead;
  const Temperatures<T> temps = make_temperatures<T>(a.alpha, a.beta, a.eta);
  const T log_rho_max = T(a.log_rho_max);

  const int64_t samples = a.S * a.B, rows = samples * N;
  return parallel_chunks(samples, chunk_items(N * A), a.num_threads, [&](int64_t, int64_t begin, int64_t end) {
    if (A <= kMaxRowLanesA) {
      return with_widest_vector(
          [&](auto width) { return row_lanes_chunk<T, Needs, decltype(width)::value>(a, begin, end, temps); });
    }
    return with_vector_width<T>(A, [&](auto width) {
      constexpr int Bytes = decltype(width)::value;
      int64_t status = kStatusOk;
      // Per-agent values of the current sample (reused by every sample of the chunk). The logs the rows
      // need ([0, N) of S, [N, 2N) of the lookahead sums in target mode) are taken together, as vectors,
      // once the sample's rows are summed; the array has room for whole vectors (padding: ones).
      AgentScratch<T> d_cur(N), d_upd(N);
      AgentScratch<RowMax<T>> maxima(N);
      AgentScratch<int64_t> row_code(N);  // 0: a valid row, else its StatusCode
      constexpr int64_t W = simd::Lanes<T, Bytes>::W, kLogKinds = target_mode ? 2 : 1;
      const int64_t n_logs = (kLogKinds * N + W - 1) / W * W;
      AgentScratch<T, 2 * 64 + 16> sums_to_log(n_logs), logs(n_logs);
      std::fill(sums_to_log.data(), sums_to_log.data() + n_logs, T(1));
      for (int64_t b = begin; b < end; ++b) {
        for (int64_t i = 0; i < N; ++i) {  // the two sweeps over each row: maxima, then sums of exp
          const int64_t row = b * N + i;
          const T* logits = a.logits + row * A;
          const T* log_mu = a.log_mu + row * A;
          const T* q = target_mode ? a.q_local + row * A : nullptr;
          const bool* avail = a.avail + row * A;
          const int64_t readable = (rows - row) * A;
          const RowMax<T> m = row_max<T, Needs, Bytes>(logits, log_mu, q, avail, A, readable, temps);
          int64_t code = row_error(m, a.actions[row], A, avail);
          if (code == 0 && !target_mode && !is_log_prob(a.updated_log_probs[row])) code = kUpdatedLogProbInvalid;
          row_code[i] = code;
          if (code != 0) {
            status = std::min(status, pack_status(row, code));
            for (int64_t k = 0; k < kLogKinds; ++k) sums_to_log[k * N + i] = T(1);
            continue;
          }
          const RowSums<T> s = row_sums<T, Needs, Bytes>(logits, log_mu, q, avail, A, readable, m, temps, nullptr);
          maxima[i] = m;
          sums_to_log[i] = s.exp_logits;
          if (target_mode) sums_to_log[N + i] = s.exp_lookahead;
        }
        simd::log_array<T, Bytes>(sums_to_log.data(), logs.data(), n_logs);
        for (int64_t i = 0; i < N; ++i) {  // d_cur / d_upd from the maxima and the logs
          if (row_code[i] != 0) {
            d_cur[i] = d_upd[i] = T(0);
            continue;
          }
          const int64_t row = b * N + i, taken = row * A + a.actions[row];
          const T logit_taken = a.logits[taken], log_mu_taken = a.log_mu[taken];
          d_cur[i] = taken_log_prob(logit_taken, maxima[i], logs[i]) - log_mu_taken;
          if (target_mode) {
            const T log_hat =
                taken_lookahead_log_prob(logit_taken, log_mu_taken, a.q_local[taken], maxima[i], logs[N + i], temps);
            d_upd[i] = log_hat - log_mu_taken;
          } else {
            d_upd[i] = a.updated_log_probs[row] - log_mu_taken;
          }
        }
        const int64_t* order = a.order + (b / a.B) * a.order_stride;  // this sample's problem's order
        ordered_log_ratios(d_cur.data(), d_upd.data(), order, N, log_rho_max, a.log_rho + b * N);
      }
      return status;
    });
  });
}

}  // namespace

template <typename T>
int64_t teammate_log_ratios_cpu(const TeammateLogRatiosArgs<T>& a) {
  if (!orders_are_permutations(a.order, a.S, a.N, a.order_stride)) return pack_status(0, kOrderNotPermutation);
  if (a.predecessors == kPredecessorsTarget)
    return run<T, StaticNeeds</*logits=*/true, /*kl=*/false, /*target=*/false, /*lookahead=*/true, /*q=*/true>>(a);
  return run<T, StaticNeeds</*logits=*/true, /*kl=*/false, /*target=*/false, /*lookahead=*/false, /*q=*/false>>(a);
}

INSPO_INSTANTIATE_CPU(teammate_log_ratios)

}  // namespace inspo
