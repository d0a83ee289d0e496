// CPU backend of sequential_policy_loss (reference.sequential_policy_loss; contract in common/args.h).
//
// One pass over [B, N, A]: parallel over fixed chunks of samples. Rows of up to kMaxRowLanesA actions run
// across lanes (common/cpu_row_lanes.h: W rows at once, one per lane; run_chunk_row_lanes); longer rows run
// one at a time, their entries across lanes (run_chunk below). There, per sample, each agent's row gives
// log pi(a), H, KL, the clipped weight w and d_cur / d_upd (two sweeps over A: maxima, then sums of
// exp, which also store the unnormalized softmax in the gradient buffer; the logs of the sums, and the
// exps of w, of all agents of the sample are then taken together, as vectors); then the ordered
// teammate log-ratios; then each row's gradient is finished in place (still in L1). Per-agent sums
// over the chunk's samples go to a per-chunk slot (double), and the slots are added in chunk order at
// the end, so the result does not depend on the thread count. With S problems, each problem has its
// own chunks (the same as a call on that problem alone) and its own per-agent sums.
#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "common/backends.h"
#include "common/cpu_parallel.h"
#include "common/cpu_row_lanes.h"
#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {
namespace {

constexpr int64_t kSamplesPerChunk = 256;  // fixes the summation grouping (thread-count independent)

// The factor c w / B of row `row`'s gradient c w (softmax - onehot(a)) / B (c w = `cw`; `inv_batch` = 1 / B).
// Self-normalized (row_log_rho given): w only, and the row's log rho is kept for run, which applies c / norm once the
// column's max and sum are known.
template <typename T>
inline T gradient_factor(int64_t row, T weight, T cw, T log_rho, T* row_log_rho, T inv_batch) {
  if (row_log_rho == nullptr) return cw * inv_batch;
  row_log_rho[row] = log_rho;
  return weight;
}

// Turns row `row` of the gradient buffer, holding the row's unnormalized softmax, into its gradient (0 at unavailable
// entries; see gradient_factor).
template <typename T>
inline void finish_gradient_row(const SequentialPolicyLossArgs<T>& a, int64_t row, T weight, T cw, T inv_sum_exp,
                                T log_rho, T* row_log_rho, T inv_batch) {
  const int64_t A = a.A;
  T* grad = a.grad + row * A;
  const T factor = gradient_factor(row, weight, cw, log_rho, row_log_rho, inv_batch);
  const T scale = factor * inv_sum_exp;
  for (int64_t j = 0; j < A; ++j) grad[j] *= scale;
  const int64_t action = a.actions[row];
  if (action >= 0 && action < A) grad[action] -= factor;
}

// One chunk of samples [begin, end): per-agent sums into `sums` (N slots), the gradient rows in place.
// Needs::lookahead: ratios with predecessors="target" (the eta-lookahead of each row is needed).
// Self-normalized ratios: the rows' c = exp(log rho - max_b log rho) needs the column's max, known only
// after every chunk, so the gradient rows are written with c = 1 and log rho goes to `row_log_rho`
// ([B, N]; null otherwise) for the final scaling pass (run).
// [begin, end) are flat samples of one problem, whose order is `order`.
template <typename T, typename Needs, int Bytes>
int64_t run_chunk(const SequentialPolicyLossArgs<T>& a, int64_t begin, int64_t end, const int64_t* order,
                  AgentSums* sums, T* row_log_rho) {
  const int64_t N = a.N, A = a.A, rows = a.S * a.B * a.N;
  const bool use_ratio = a.ratio != kRatioNone;
  constexpr bool target_mode = Needs::lookahead;
  const bool read_updated = use_ratio && !target_mode;
  const Temperatures<T> temps = make_temperatures<T>(a.alpha, a.beta, a.eta);
  const T log_rho_max = T(a.log_rho_max), log_w_max = T(a.log_w_max), inv_batch = T(1.0 / double(a.B));
  int64_t status = kStatusOk;
  // Per-agent values of the current sample (reused by every sample of the chunk). The arrays that go
  // through exp_array / log_array have room for whole vectors (no scalar tail); their extra entries
  // hold 0 (exp) or 1 (log), which cost nothing special, and are never read.
  constexpr int64_t W = simd::Lanes<T, Bytes>::W, W_double = simd::Lanes<double, Bytes>::W;
  const auto whole_vectors = [](int64_t n, int64_t lanes) { return (n + lanes - 1) / lanes * lanes; };
  const int64_t N_padded = whole_vectors(N, W);
  AgentScratch<T> d_cur(N), d_upd(N), log_pi_taken(N), inv_sum_exp(N);
  AgentScratch<T> log_rho(N_padded), rho(N_padded), log_weight(N_padded), weight(N_padded);
  AgentScratch<RowMax<T>> maxima(N);
  AgentScratch<RowSums<T>> row_sums_of(N);
  AgentScratch<int64_t> row_code(N);  // 0: a valid row, else its StatusCode
  // The sums whose logs each row needs, by kind: [0, N) S, [N, 2N) the target's, [2N, 3N) the lookahead's
  // (target mode). Their logs are taken together, as vectors, once the sample's rows are summed.
  constexpr int64_t kLogKinds = target_mode ? 3 : 2;
  const int64_t n_logs = whole_vectors(kLogKinds * N, W);
  AgentScratch<T, 3 * 64 + 16> sums_to_log(n_logs), logs(n_logs);
  // The ESS accumulators' exps: log rho - the running max, and its exp.
  const int64_t N_padded_double = whole_vectors(N, W_double);
  AgentScratch<double> ess_shifted(N_padded_double), ess_exp(N_padded_double);
  std::fill(sums_to_log.data(), sums_to_log.data() + n_logs, T(1));
  std::fill(log_weight.data(), log_weight.data() + N_padded, T(0));
  std::fill(log_rho.data(), log_rho.data() + N_padded, T(0));  // stays 0 without ratios
  std::fill(rho.data(), rho.data() + N_padded, T(1));          // c = 1 without ratios
  std::fill(ess_shifted.data(), ess_shifted.data() + N_padded_double, 0.0);
  for (int64_t b = begin; b < end; ++b) {
    for (int64_t i = 0; i < N; ++i) {  // the two sweeps over each row: maxima, then sums of exp
      const int64_t row = b * N + i;
      const T* logits = a.logits + row * A;
      const T* log_mu = a.log_mu + row * A;
      const T* q = a.q_local + row * A;
      const bool* avail = a.avail + row * A;
      const int64_t readable = (rows - row) * A;
      const int64_t action = a.actions[row];
      const RowMax<T> m = row_max<T, Needs, Bytes>(logits, log_mu, q, avail, A, readable, temps);
      int64_t code = row_error(m, action, A, avail);
      if (code == 0 && read_updated && !is_log_prob(a.updated_log_probs[row])) code = kUpdatedLogProbInvalid;
      row_code[i] = code;
      if (code != 0) {
        status = std::min(status, pack_status(row, code));
        for (int64_t k = 0; k < kLogKinds; ++k) sums_to_log[k * N + i] = T(1);
        continue;
      }
      T* grad = a.compute_grad ? a.grad + row * A : nullptr;  // receives exp(l - max_l)
      const RowSums<T> s = row_sums<T, Needs, Bytes>(logits, log_mu, q, avail, A, readable, m, temps, grad);
      maxima[i] = m;
      row_sums_of[i] = s;
      sums_to_log[i] = s.exp_logits;
      sums_to_log[N + i] = s.exp_target;
      if (target_mode) sums_to_log[2 * N + i] = s.exp_lookahead;
    }
    simd::log_array<T, Bytes>(sums_to_log.data(), logs.data(), n_logs);
    for (int64_t i = 0; i < N; ++i) {  // each row's results from its sums and their logs
      if (row_code[i] != 0) {
        d_cur[i] = d_upd[i] = log_pi_taken[i] = inv_sum_exp[i] = T(0);
        log_weight[i] = neg_inf<T>();  // w = 0
        continue;
      }
      const int64_t row = b * N + i;
      const int64_t action = a.actions[row];
      const T logit_taken = a.logits[row * A + action], log_mu_taken = a.log_mu[row * A + action];
      const T q_taken = a.q_local[row * A + action];
      const RowMax<T>& m = maxima[i];
      const RowSums<T>& s = row_sums_of[i];
      const T log_exp_logits = logs[i];
      log_pi_taken[i] = taken_log_prob(logit_taken, m, log_exp_logits);
      inv_sum_exp[i] = T(1) / s.exp_logits;
      // clipped_weight's exponent: the exps of all N agents run together below, as vectors
      log_weight[i] = min_(in_sample_log_weight(log_mu_taken, q_taken, m, logs[N + i], temps), log_w_max);
      sums[i].entropy += double(entropy_from_sums(s, log_exp_logits));
      sums[i].kl += double(kl_from_sums(s, log_exp_logits));
      if (use_ratio) {
        d_cur[i] = log_pi_taken[i] - log_mu_taken;
        const T log_hat = target_mode
                              ? taken_lookahead_log_prob(logit_taken, log_mu_taken, q_taken, m, logs[2 * N + i], temps)
                              : a.updated_log_probs[row];
        d_upd[i] = log_hat - log_mu_taken;
      }
    }
    simd::exp_array<T, Bytes>(log_weight.data(), weight.data(), N_padded);
    if (use_ratio) {
      ordered_log_ratios(d_cur.data(), d_upd.data(), order, N, log_rho_max, log_rho.data());
      simd::exp_array<T, Bytes>(log_rho.data(), rho.data(), N_padded);
    }
    for (int64_t i = 0; i < N; ++i) {
      const T cw = rho[i] * weight[i];  // c w (c = rho, or 1 without ratios)
      sums[i].loss += double(cw * log_pi_taken[i]);
      sums[i].weight += double(weight[i]);
      sums[i].rho += double(rho[i]);
      // the ESS accumulator's add, its exp taken below for all agents at once (-inf: exp 0 adds nothing)
      const double x = double(log_rho[i]);
      if (x > -std::numeric_limits<double>::infinity()) {
        sums[i].ess.raise_max(x);
        ess_shifted[i] = x - sums[i].ess.max;
      } else {
        ess_shifted[i] = -std::numeric_limits<double>::infinity();
      }
      if (a.compute_grad)
        finish_gradient_row(a, b * N + i, weight[i], cw, inv_sum_exp[i], log_rho[i], row_log_rho, inv_batch);
    }
    simd::exp_array<double, Bytes>(ess_shifted.data(), ess_exp.data(), N_padded_double);
    for (int64_t i = 0; i < N; ++i) sums[i].ess.add_exp(ess_exp[i], double(weight[i]) * double(log_pi_taken[i]));
  }
  return status;
}

// The same chunk as run_chunk, its rows W at a time, one per lane (A <= kMaxRowLanesA). Each row's
// results go to per-row arrays of the chunk; the teammate ratios then run per sample, and the per-agent
// sums in sample order, as in run_chunk.
template <typename T, typename Needs, int Bytes>
int64_t run_chunk_row_lanes(const SequentialPolicyLossArgs<T>& a, int64_t begin, int64_t end, const int64_t* order,
                            AgentSums* sums, T* row_log_rho) {
  using L = simd::Lanes<T, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
  constexpr int W = L::W;
  const int64_t N = a.N, A = a.A;
  const bool use_ratio = a.ratio != kRatioNone;
  constexpr bool target_mode = Needs::lookahead;
  const bool read_updated = use_ratio && !target_mode;
  const Temperatures<T> temps = make_temperatures<T>(a.alpha, a.beta, a.eta);
  const V log_w_max = simd::splat<V>(T(a.log_w_max));
  const T inv_batch = T(1.0 / double(a.B));
  const int64_t first_row = begin * N, n = (end - begin) * N;  // the chunk's rows, whole samples
  // Per-row arrays with room for whole vectors: every block stores all W lanes (lanes past n are never read).
  const int64_t n_padded = (n + W - 1) / W * W;
  std::vector<T> log_pi_taken(n_padded), weight(n_padded), entropy(n_padded), kl(n_padded);
  std::vector<T> d_cur(n_padded), d_upd(n_padded);
  std::vector<T> log_rho(n_padded, T(0)), rho(n_padded, T(1));  // c = 1 without ratios
  std::vector<double> ess_shifted(n), ess_exp(n);
  std::vector<typename L::IntT> valid(n_padded);  // masks: -1 valid, 0 not
  int64_t status = kStatusOk;
  const auto store = [](auto* out, const auto& v) { std::memcpy(out, &v, sizeof v); };

  for (int64_t r0 = 0; r0 < n; r0 += W) {  // the two passes and each row's results, W rows at a time
    const int64_t row = first_row + r0, rows = std::min<int64_t>(W, n - r0);
    T* log_prob_grad = a.compute_grad ? a.grad + row * A : nullptr;  // softmax - onehot(a)
    const simd::RowLanes<T, Bytes> r =
        simd::row_lanes<T, Bytes, Needs>(a.logits + row * A, a.log_mu + row * A, a.q_local + row * A, a.avail + row * A,
                                         a.actions + row, rows, A, temps, log_prob_grad);
    V updated{};
    if (read_updated) std::memcpy(&updated, a.updated_log_probs + row, size_t(rows) * sizeof(T));
    I ok = r.valid();
    if (read_updated) ok &= simd::finite_mask(updated) & (updated <= T(0));
    store(valid.data() + r0, ok);
    status = std::min(status, simd::block_status(r, ok, row, rows, a.actions, a.avail, A, kUpdatedLogProbInvalid));
    const V log_exp_logits = simd::log<T, Bytes>(r.exp_logits);
    const V log_pi = taken_log_prob(r.logit_taken, r.max_logits, log_exp_logits);
    const V log_w =
        in_sample_log_weight(r.log_mu_taken, r.q_taken, r.max_target, simd::log<T, Bytes>(r.exp_target), temps);
    const V zero{};
    // invalid rows: log pi = 0 and w = 0, so they add nothing (the call fails anyway)
    store(log_pi_taken.data() + r0, simd::select(ok, log_pi, zero));
    store(weight.data() + r0, simd::select(ok, simd::exp<T, Bytes>(min_(log_w, log_w_max)), zero));
    store(entropy.data() + r0,
          simd::select(ok, entropy_from_sums(r.exp_logits, r.exp_logits_shift, log_exp_logits), zero));
    store(kl.data() + r0,
          simd::select(ok, kl_from_sums(r.exp_logits, r.exp_logits_shift, r.exp_logits_log_mu, log_exp_logits), zero));
    if (use_ratio) {
      V log_hat = updated;
      if constexpr (target_mode)
        log_hat = taken_lookahead_log_prob(r.logit_taken, r.log_mu_taken, r.q_taken, r.max_lookahead,
                                           simd::log<T, Bytes>(r.exp_lookahead), temps);
      store(d_cur.data() + r0, simd::select(ok, log_pi - r.log_mu_taken, zero));
      store(d_upd.data() + r0, simd::select(ok, log_hat - r.log_mu_taken, zero));
    }
  }
  if (use_ratio) {
    for (int64_t b = 0; b < end - begin; ++b)
      ordered_log_ratios(d_cur.data() + b * N, d_upd.data() + b * N, order, N, T(a.log_rho_max),
                         log_rho.data() + b * N);
    simd::exp_array<T, Bytes>(log_rho.data(), rho.data(), n);
  }
  // The ESS accumulators' exps, taken together: each row's log rho minus its agent's running max, the max
  // that raise_max reaches below, row by row, before each add_exp (-inf: exp 0 adds nothing). i = r % N.
  std::vector<double> running_max(N);
  for (int64_t i = 0; i < N; ++i) running_max[i] = sums[i].ess.max;
  for (int64_t r = 0, i = 0; r < n; ++r, i = i + 1 == N ? 0 : i + 1) {
    const double x = double(log_rho[r]);
    double& max = running_max[i];
    if (x > max) max = x;
    ess_shifted[r] = x > -std::numeric_limits<double>::infinity() ? x - max : x;
  }
  simd::exp_array<double, Bytes>(ess_shifted.data(), ess_exp.data(), n);
  // The per-agent sums, in sample order; each gradient row finished in place. i = r % N.
  for (int64_t r = 0, i = 0; r < n; ++r, i = i + 1 == N ? 0 : i + 1) {
    const int64_t row = first_row + r;
    const T cw = rho[r] * weight[r];  // c w (c = rho, or 1 without ratios)
    AgentSums& s = sums[i];
    s.loss += double(cw * log_pi_taken[r]);
    s.weight += double(weight[r]);
    s.rho += double(rho[r]);
    if (valid[r] != 0) {
      s.entropy += double(entropy[r]);
      s.kl += double(kl[r]);
    }
    if (double(log_rho[r]) > -std::numeric_limits<double>::infinity()) s.ess.raise_max(double(log_rho[r]));
    s.ess.add_exp(ess_exp[r], double(weight[r]) * double(log_pi_taken[r]));
    if (a.compute_grad) {  // the row holds softmax - onehot(a)
      const T factor = gradient_factor(row, weight[r], cw, log_rho[r], row_log_rho, inv_batch);
      T* grad = a.grad + row * A;
      for (int64_t j = 0; j < A; ++j) grad[j] *= factor;
    }
  }
  return status;
}

// Rows per block of the self-normalized scaling pass: their exps go through the vector exp together.
constexpr int64_t kScaledRowsBlock = 256;

// Self-normalized ratios: multiplies gradient rows [first, first + n) (n <= kScaledRowsBlock) by their c / norm =
// exp(log rho - shift) / norm, with the column's shift = max_b log rho and its norm known (double, as the sums).
template <typename T, int Bytes>
void scale_self_normalized_rows(const SequentialPolicyLossArgs<T>& a, const T* row_log_rho, const double* shift,
                                const double* inv_norm, int64_t first, int64_t n) {
  const int64_t A = a.A, B = a.B, N = a.N;
  double shifted[kScaledRowsBlock], c[kScaledRowsBlock];
  int64_t columns[kScaledRowsBlock];
  // row -> column s * N + i, counted up (no division per row)
  int64_t s = first / (B * N), b = first % (B * N) / N, i = first % N;
  for (int64_t k = 0; k < n; ++k) {
    columns[k] = s * N + i;
    shifted[k] = double(row_log_rho[first + k]) - shift[columns[k]];
    if (++i == N) {
      i = 0;
      if (++b == B) b = 0, ++s;
    }
  }
  simd::exp_array<double, Bytes>(shifted, c, n);
  for (int64_t k = 0; k < n; ++k) {
    const T scale = T(c[k] * inv_norm[columns[k]]);
    T* grad = a.grad + (first + k) * A;
    for (int64_t j = 0; j < A; ++j) grad[j] *= scale;
  }
}

template <typename T, typename Needs>
int64_t run(const SequentialPolicyLossArgs<T>& a) {
  const int64_t S = a.S, B = a.B, N = a.N;
  const int64_t n_chunks = (B + kSamplesPerChunk - 1) / kSamplesPerChunk;  // per problem
  std::vector<AgentSums> partials(S * n_chunks * N);
  const bool self_normalized = a.ratio == kRatioSelfNormalized;
  std::vector<T> row_log_rho(self_normalized && a.compute_grad ? S * B * N : 0);
  T* const row_log_rho_data = row_log_rho.empty() ? nullptr : row_log_rho.data();

  // Chunk c = s * n_chunks + k: samples [k * kSamplesPerChunk, ...) of problem s.
  const auto chunk = [&](int64_t c, int64_t, int64_t) {
    const int64_t s = c / n_chunks, begin = s * B + (c % n_chunks) * kSamplesPerChunk;
    const int64_t end = std::min(begin + kSamplesPerChunk, (s + 1) * B);
    const int64_t* order = a.order + s * a.order_stride;
    AgentSums* sums = partials.data() + c * N;
    if (a.A <= kMaxRowLanesA) {
      return with_widest_vector([&](auto width) {
        return run_chunk_row_lanes<T, Needs, decltype(width)::value>(a, begin, end, order, sums, row_log_rho_data);
      });
    }
    return with_vector_width<T>(a.A, [&](auto width) {
      return run_chunk<T, Needs, decltype(width)::value>(a, begin, end, order, sums, row_log_rho_data);
    });
  };
  const int64_t status = parallel_chunks(S * n_chunks, 1, a.num_threads, chunk);
  if (status != kStatusOk) return status;

  // Self-normalized: each column's shift max_b log rho and 1 / norm; a row's c / norm = exp(log rho - shift) / norm.
  std::vector<double> shift(S * N), inv_norm(S * N);
  for (int64_t column = 0; column < S * N; ++column) {
    const int64_t s = column / N, i = column % N;
    AgentSums total;
    for (int64_t c = 0; c < n_chunks; ++c) total.merge(partials[(s * n_chunks + c) * N + i]);
    write_agent_outputs(a, column, total);
    shift[column] = total.ess.max;
    inv_norm[column] = 1.0 / loss_norm(a, total);
  }
  if (row_log_rho_data != nullptr) {  // the rows' c / norm, now that the column's max and norm are known
    parallel_chunks(S * B * N, std::max(kScaledRowsBlock, chunk_items(a.A)), a.num_threads,
                    [&](int64_t, int64_t begin, int64_t end) {
                      return with_widest_vector([&](auto width) {
                        for (int64_t first = begin; first < end; first += kScaledRowsBlock)
                          scale_self_normalized_rows<T, decltype(width)::value>(
                              a, row_log_rho_data, shift.data(), inv_norm.data(), first,
                              std::min(kScaledRowsBlock, end - first));
                        return kStatusOk;
                      });
                    });
  }
  return kStatusOk;
}

}  // namespace

template <typename T>
int64_t sequential_policy_loss_cpu(const SequentialPolicyLossArgs<T>& a) {
  if (!orders_are_permutations(a.order, a.S, a.N, a.order_stride)) return pack_status(0, kOrderNotPermutation);
  if (a.ratio != kRatioNone && a.predecessors == kPredecessorsTarget)
    return run<T, StaticNeeds</*logits=*/true, /*kl=*/true, /*target=*/true, /*lookahead=*/true, /*q=*/true>>(a);
  return run<T, StaticNeeds</*logits=*/true, /*kl=*/true, /*target=*/true, /*lookahead=*/false, /*q=*/true>>(a);
}

INSPO_INSTANTIATE_CPU(sequential_policy_loss)

}  // namespace inspo
