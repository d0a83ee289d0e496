// CPU backend of teammate_log_ratios (reference.teammate_log_ratios; contract in common/args.h).
// Parallel over samples: each sample computes d_cur / d_upd for its N agents, then the ordered sums.
#include <algorithm>
#include <memory>

#include "common/backends.h"
#include "common/cpu_parallel.h"
#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {
namespace {

// Needs::lookahead: predecessors="target" (the eta-lookahead, reads q_local); else "policy".
template <typename T, typename Needs>
int64_t run(const TeammateLogRatiosArgs<T>& a) {
  const int64_t N = a.N, A = a.A;
  constexpr bool target_mode = Needs::lookahead;
  const Temperatures<T> temps = make_temperatures<T>(a.alpha, a.beta, a.eta);
  const T log_rho_max = T(a.log_rho_max);

  const int64_t rows = a.B * N;
  return parallel_chunks(a.B, chunk_items(N * A), a.num_threads, [&](int64_t, int64_t begin, int64_t end) {
    return with_vector_width<T>(A, [&](auto width) {
      constexpr int Bytes = decltype(width)::value;
      int64_t status = kStatusOk;
      AgentScratch<T> d_cur(N), d_upd(N);  // reused by every sample of the chunk
      for (int64_t b = begin; b < end; ++b) {
        for (int64_t i = 0; i < N; ++i) {
          const int64_t row = b * N + i;
          const T* logits = a.logits + row * A;
          const T* log_mu = a.log_mu + row * A;
          const T* q = target_mode ? a.q_local + row * A : nullptr;
          const bool* avail = a.avail + row * A;
          const int64_t readable = (rows - row) * A;
          const int64_t action = a.actions[row];
          const RowMax<T> m = row_max<T, Needs, Bytes>(logits, log_mu, q, avail, A, readable, temps);
          int64_t code = row_error(m, action, A, avail);
          if (code == 0 && !target_mode && !is_finite(a.updated_log_probs[row])) code = kUpdatedLogProbNonFinite;
          if (code != 0) {
            status = std::min(status, pack_status(row, code));
            d_cur[i] = d_upd[i] = T(0);
            continue;
          }
          const RowSums<T> s = row_sums<T, Needs, Bytes>(logits, log_mu, q, avail, A, readable, m, temps, nullptr);
          d_cur[i] = (logits[action] - logits_lse(m, s)) - log_mu[action];
          if (target_mode) {
            const T log_hat = lookahead_logit(logits[action], log_mu[action], q[action], temps) - lookahead_lse(m, s);
            d_upd[i] = log_hat - log_mu[action];
          } else {
            d_upd[i] = a.updated_log_probs[row] - log_mu[action];
          }
        }
        ordered_log_ratios(d_cur.data(), d_upd.data(), a.order, N, log_rho_max, a.log_rho + b * N);
      }
      return status;
    });
  });
}

}  // namespace

template <typename T>
int64_t teammate_log_ratios_cpu(const TeammateLogRatiosArgs<T>& a) {
  std::unique_ptr<bool[]> seen(new bool[a.N]);
  if (!is_permutation(a.order, a.N, seen.get())) return pack_status(0, kOrderNotPermutation);
  if (a.predecessors == kPredecessorsTarget)
    return run<T, StaticNeeds</*logits=*/true, /*kl=*/false, /*target=*/false, /*lookahead=*/true, /*q=*/true>>(a);
  return run<T, StaticNeeds</*logits=*/true, /*kl=*/false, /*target=*/false, /*lookahead=*/false, /*q=*/false>>(a);
}

template int64_t teammate_log_ratios_cpu<float>(const TeammateLogRatiosArgs<float>&);
template int64_t teammate_log_ratios_cpu<double>(const TeammateLogRatiosArgs<double>&);

}  // namespace inspo
