// Per-row math of the InSPO ops, shared by the CPU (csrc/cpu) and CUDA (csrc/cuda) backends.
//
// The definition of every formula is python/inspo_ext/reference.py; this header is its per-row twin.
// A "row" is one agent of one sample: A entries of logits / log_mu / q / avail, plus the taken action.
// Values at unavailable entries are never used (they may be NaN or +-inf): every read of them goes
// through a select, never through arithmetic whose result is later masked by multiplication.
//
// Two levels are provided so that any parallel layout computes the same numbers:
//   * element / merge / finalize helpers (RowMax, RowSums, add_*, merge, *_from_sums): for layouts
//     where several threads share one row (a CUDA warp per row): each thread runs pass 1 on its
//     entries, the maxima are merged, then pass 2 (sums of exp shifted by the merged maxima), the sums
//     are merged (plain addition), and the finalizers turn them into log-probs, entropy, KL, V, w.
//   * the CPU backend's drivers (common/cpu_simd.h: row_max, row_sums) run the same two passes over
//     a whole row, W lanes at a time.
// Stability: every log-sum-exp is shifted by the row maximum over the available entries, so logits
// of +-1e4 give exact softmaxes (exp(-2e4) underflows to 0, never to NaN).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "common/args.h"  // INSPO_HD, StatusCode

namespace inspo {

// ---- scalar helpers -------------------------------------------------------------------------------

template <typename T>
INSPO_HD inline T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// True for finite x; false for +-inf and NaN (inf - inf and NaN - NaN are NaN). No <cmath> call, so
// it vectorizes and compiles identically on host and device. (Never build with -ffinite-math-only.)
template <typename T>
INSPO_HD inline bool is_finite(T x) {
  return x - x == T(0);
}

// A log-probability: finite and <= 0.
template <typename T>
INSPO_HD inline bool is_log_prob(T x) {
  return is_finite(x) && x <= T(0);
}

INSPO_HD inline float exp_(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return std::exp(x);
#endif
}
INSPO_HD inline double exp_(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}
INSPO_HD inline float log_(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  return std::log(x);
#endif
}
INSPO_HD inline double log_(double x) {
#if defined(__CUDA_ARCH__)
  return ::log(x);
#else
  return std::log(x);
#endif
}

template <typename T>
INSPO_HD inline T max_(T a, T b) {
  return a > b ? a : b;
}
template <typename T>
INSPO_HD inline T min_(T a, T b) {
  return a < b ? a : b;
}

// ---- temperatures -----------------------------------------------------------------------------------

// tau = alpha + beta, kappa = alpha / tau (docs/ALGORITHM.md#closed-form-per-agent-update). Built once per call from
// the double scalars of the args struct, then cast to the compute type T (as PyTorch does for a Python scalar).
template <typename T>
struct Temperatures {
  T tau;            // alpha + beta  (> 0, checked in Python)
  T inv_tau;        // 1 / tau
  T kappa;          // alpha / tau
  T beta_over_tau;  // beta / tau
  T eta;            // lookahead step (0 <= eta <= 1)
  T one_minus_eta;  // 1 - eta
};

template <typename T>
INSPO_HD inline Temperatures<T> make_temperatures(double alpha, double beta, double eta) {
  const double tau = alpha + beta;
  return Temperatures<T>{T(tau), T(1.0 / tau), T(alpha / tau), T(beta / tau), T(eta), T(1.0 - eta)};
}

// ---- element-level formulas --------------------------------------------------------------------------

// Unnormalized closed-form target log pi*(a) = kappa log mu(a) + q(a) / tau (reference.closed_form_logits).
// V is T, or (CPU backend) a vector of T lanes.
// Never contracted into a fused multiply-add (the CPU backend builds with -ffp-contract=off; the device
// overloads below round each operation): pass 1 takes the row maximum of these values and the in-sample
// weight recomputes the taken action's value, and the two must be the same bits (see in_sample_log_weight).
template <typename V, typename T>
INSPO_HD inline V closed_form_logit(V log_mu, V q, const Temperatures<T>& t) {
  return t.kappa * log_mu + q * t.inv_tau;
}
#if defined(__CUDA_ARCH__)
__device__ inline float closed_form_logit(float log_mu, float q, const Temperatures<float>& t) {
  return __fadd_rn(__fmul_rn(t.kappa, log_mu), __fmul_rn(q, t.inv_tau));
}
__device__ inline double closed_form_logit(double log_mu, double q, const Temperatures<double>& t) {
  return __dadd_rn(__dmul_rn(t.kappa, log_mu), __dmul_rn(q, t.inv_tau));
}
#endif

// Unnormalized eta-lookahead z = (1 - eta) logits + eta (kappa log mu + q / tau)
// (reference.lookahead_log_probs before its log-softmax).
template <typename V, typename T>
INSPO_HD inline V lookahead_logit(V logit, V log_mu, V q, const Temperatures<T>& t) {
  return t.one_minus_eta * logit + t.eta * closed_form_logit(log_mu, q, t);
}

// ---- pass 1: validation flags and maxima over the available entries ----------------------------------

// What pass 1 learns about a row. Start from RowMax<T>::empty(); `logits` / `target` / `lookahead`
// are maxima over the available entries of the logits, the closed-form target logits and the lookahead
// logits (-inf when the row has no available entry, or when that quantity is not computed).
template <typename T>
struct RowMax {
  int64_t n_avail;  // number of available entries
  bool bad_logits;  // a non-finite logit at an available entry
  bool bad_log_mu;  // a non-finite log_mu at an available entry
  bool bad_q;       // a non-finite q at an available entry
  T logits;
  T target;
  T lookahead;

  INSPO_HD static RowMax empty() { return RowMax{0, false, false, false, neg_inf<T>(), neg_inf<T>(), neg_inf<T>()}; }

  // Merge another thread's pass-1 result over a disjoint part of the same row.
  INSPO_HD void merge(const RowMax& o) {
    n_avail += o.n_avail;
    bad_logits = bad_logits || o.bad_logits;
    bad_log_mu = bad_log_mu || o.bad_log_mu;
    bad_q = bad_q || o.bad_q;
    logits = max_(logits, o.logits);
    target = max_(target, o.target);
    lookahead = max_(lookahead, o.lookahead);
  }
};

// Which per-row quantities an op needs; a flag that is off skips the reads and the exps it costs.
struct RowNeeds {
  bool logits;     // log-softmax of the logits (log pi(a), entropy, KL, softmax for the gradient)
  bool kl;         // KL(pi || mu) (needs logits)
  bool target;     // closed-form target: V and the in-sample weight (needs q)
  bool lookahead;  // eta-lookahead log pi_hat(a) (needs logits and q)
  bool q;          // q is read (target or lookahead); log_mu is always read
};

// Pass 1 on one entry. `logits` / `q` may be ignored (pass any value) when `needs` says so.
template <typename T>
INSPO_HD inline void add_max(RowMax<T>& r, bool avail, T logit, T log_mu, T q, const RowNeeds& needs,
                             const Temperatures<T>& t) {
  if (!avail) return;
  r.n_avail += 1;
  if (needs.logits) {
    r.bad_logits = r.bad_logits || !is_finite(logit);
    r.logits = max_(r.logits, logit);
  }
  r.bad_log_mu = r.bad_log_mu || !is_finite(log_mu);
  if (needs.q) r.bad_q = r.bad_q || !is_finite(q);
  if (needs.target) r.target = max_(r.target, closed_form_logit(log_mu, q, t));
  if (needs.lookahead) r.lookahead = max_(r.lookahead, lookahead_logit(logit, log_mu, q, t));
}

// ---- pass 2: sums of exponentials shifted by the pass-1 maxima ---------------------------------------

template <typename T>
struct RowSums {
  T exp_logits;         // S   = sum exp(l - max_l)
  T exp_logits_shift;   // S_l = sum exp(l - max_l) * (l - max_l)
  T exp_logits_log_mu;  // S_m = sum exp(l - max_l) * log_mu
  T exp_target;         // sum exp(z* - max_z*)   (z* = closed_form_logit)
  T exp_lookahead;      // sum exp(zh - max_zh)   (zh = lookahead_logit)

  INSPO_HD static RowSums zero() { return RowSums{T(0), T(0), T(0), T(0), T(0)}; }

  INSPO_HD void merge(const RowSums& o) {
    exp_logits += o.exp_logits;
    exp_logits_shift += o.exp_logits_shift;
    exp_logits_log_mu += o.exp_logits_log_mu;
    exp_target += o.exp_target;
    exp_lookahead += o.exp_lookahead;
  }
};

// Pass 2 on one entry; returns exp(l - max_l) (0 at an unavailable entry, or when logits are not
// needed): the unnormalized softmax, which the policy-loss gradient stores.
template <typename T>
INSPO_HD inline T add_sums(RowSums<T>& s, const RowMax<T>& m, bool avail, T logit, T log_mu, T q, const RowNeeds& needs,
                           const Temperatures<T>& t) {
  if (!avail) return T(0);
  T e = T(0);
  if (needs.logits) {
    const T shifted = logit - m.logits;
    e = exp_(shifted);
    s.exp_logits += e;
    s.exp_logits_shift += e * shifted;
    if (needs.kl) s.exp_logits_log_mu += e * log_mu;
  }
  if (needs.target) s.exp_target += exp_(closed_form_logit(log_mu, q, t) - m.target);
  if (needs.lookahead) s.exp_lookahead += exp_(lookahead_logit(logit, log_mu, q, t) - m.lookahead);
  return e;
}

// ---- finalizers: from merged maxima and sums to the per-row results -----------------------------------
//
// Each formula is written once, on values (V: T, or on the CPU a vector of T lanes, one row per lane),
// taking the logs of the sums precomputed (a backend may take the logs of many rows at once, as vectors).
// The RowMax / RowSums forms below each formula only pick its arguments, and take the log here when asked.

// log pi(a) = (l_a - max_l) - log S: shifting first keeps float32 exact for logits of +-1e4
// (l_a - (max_l + log S) would round max_l + log S to float32's 1e-3 spacing at 1e4).
template <typename V>
INSPO_HD inline V taken_log_prob(V logit_taken, V max_logits, V log_exp_logits) {
  return (logit_taken - max_logits) - log_exp_logits;
}
template <typename T>
INSPO_HD inline T taken_log_prob(T logit_taken, const RowMax<T>& m, T log_exp_logits) {
  return taken_log_prob(logit_taken, m.logits, log_exp_logits);
}
template <typename T>
INSPO_HD inline T taken_log_prob(T logit_taken, const RowMax<T>& m, const RowSums<T>& s) {
  return taken_log_prob(logit_taken, m.logits, log_(s.exp_logits));
}

// H(pi) = -sum p log p = log S - S_l / S  (p = exp(l - max_l) / S; stable for logits of +-1e4).
template <typename V>
INSPO_HD inline V entropy_from_sums(V exp_logits, V exp_logits_shift, V log_exp_logits) {
  return log_exp_logits - exp_logits_shift / exp_logits;
}
template <typename T>
INSPO_HD inline T entropy_from_sums(const RowSums<T>& s, T log_exp_logits) {
  return entropy_from_sums(s.exp_logits, s.exp_logits_shift, log_exp_logits);
}
template <typename T>
INSPO_HD inline T entropy_from_sums(const RowSums<T>& s) {
  return entropy_from_sums(s, log_(s.exp_logits));
}

// KL(pi || mu) = sum p (log p - log mu) = S_l / S - log S - S_m / S.
template <typename V>
INSPO_HD inline V kl_from_sums(V exp_logits, V exp_logits_shift, V exp_logits_log_mu, V log_exp_logits) {
  return (exp_logits_shift - exp_logits_log_mu) / exp_logits - log_exp_logits;
}
template <typename T>
INSPO_HD inline T kl_from_sums(const RowSums<T>& s, T log_exp_logits) {
  return kl_from_sums(s.exp_logits, s.exp_logits_shift, s.exp_logits_log_mu, log_exp_logits);
}
template <typename T>
INSPO_HD inline T kl_from_sums(const RowSums<T>& s) {
  return kl_from_sums(s, log_(s.exp_logits));
}

// Soft value V = tau * logsumexp_avail(kappa log mu + q / tau) (reference.in_sample_weights).
template <typename V, typename T>
INSPO_HD inline V soft_value(V max_target, V log_exp_target, const Temperatures<T>& t) {
  return t.tau * (max_target + log_exp_target);
}
template <typename T>
INSPO_HD inline T soft_value(const RowMax<T>& m, T log_exp_target, const Temperatures<T>& t) {
  return soft_value(m.target, log_exp_target, t);
}
template <typename T>
INSPO_HD inline T soft_value(const RowMax<T>& m, const RowSums<T>& s, const Temperatures<T>& t) {
  return soft_value(m, log_(s.exp_target), t);
}

// log pi_hat(a) of the eta-lookahead, shifted the same way.
template <typename V, typename T>
INSPO_HD inline V taken_lookahead_log_prob(V logit_taken, V log_mu_taken, V q_taken, V max_lookahead,
                                           V log_exp_lookahead, const Temperatures<T>& t) {
  return (lookahead_logit(logit_taken, log_mu_taken, q_taken, t) - max_lookahead) - log_exp_lookahead;
}
template <typename T>
INSPO_HD inline T taken_lookahead_log_prob(T logit_taken, T log_mu_taken, T q_taken, const RowMax<T>& m,
                                           T log_exp_lookahead, const Temperatures<T>& t) {
  return taken_lookahead_log_prob(logit_taken, log_mu_taken, q_taken, m.lookahead, log_exp_lookahead, t);
}
template <typename T>
INSPO_HD inline T taken_lookahead_log_prob(T logit_taken, T log_mu_taken, T q_taken, const RowMax<T>& m,
                                           const RowSums<T>& s, const Temperatures<T>& t) {
  return taken_lookahead_log_prob(logit_taken, log_mu_taken, q_taken, m, log_(s.exp_lookahead), t);
}

// log w = -(beta / tau) log mu(a) + (q(a) - V) / tau (unclipped; docs/ALGORITHM.md#in-sample-weighted-policy-loss),
// computed as the equal log pi*(a) - log mu(a) = (z(a) - max z) - log sum exp(z - max z) - log mu(a) (z =
// closed_form_logit; beta / tau + kappa = 1): a difference of logits and their log-sum-exp, never of q(a) and V, which
// are both ~q / tau and cancel catastrophically once |q| / tau >~ 1e13 (float64). One available action gives
// z(a) = max z, sum = 1: log w = -log mu(a) exactly.
template <typename V, typename T>
INSPO_HD inline V in_sample_log_weight(V log_mu_taken, V q_taken, V max_target, V log_exp_target,
                                       const Temperatures<T>& t) {
  return ((closed_form_logit(log_mu_taken, q_taken, t) - max_target) - log_exp_target) - log_mu_taken;
}
template <typename T>
INSPO_HD inline T in_sample_log_weight(T log_mu_taken, T q_taken, const RowMax<T>& m, T log_exp_target,
                                       const Temperatures<T>& t) {
  return in_sample_log_weight(log_mu_taken, q_taken, m.target, log_exp_target, t);
}
template <typename T>
INSPO_HD inline T in_sample_log_weight(T log_mu_taken, T q_taken, const RowMax<T>& m, const RowSums<T>& s,
                                       const Temperatures<T>& t) {
  return in_sample_log_weight(log_mu_taken, q_taken, m, log_(s.exp_target), t);
}

// w = exp(min(log w, log w_max)).
template <typename T>
INSPO_HD inline T clipped_weight(T log_weight, T log_w_max) {
  return exp_(min_(log_weight, log_w_max));
}

// ---- validation --------------------------------------------------------------------------------------

// Validate one row from its merged pass-1 result and the taken action: 0 when valid, else the
// StatusCode of the first failing check (checks run in code order, so it is the smallest failing code).
// `avail_row` is read only at the action, and only when the action is in range.
template <typename T>
INSPO_HD inline int64_t row_error(const RowMax<T>& m, int64_t action, int64_t A, const bool* avail_row) {
  if (m.n_avail == 0) return kNoAvailableAction;
  if (action < 0 || action >= A) return kActionOutOfRange;
  if (!avail_row[action]) return kActionUnavailable;
  if (m.bad_logits) return kLogitsNonFinite;
  if (m.bad_log_mu) return kLogMuNonFinite;
  if (m.bad_q) return kQNonFinite;
  return 0;
}

// ---- teammate log-ratios of one sample --------------------------------------------------------------

// log_rho[i] = min(sum of d_upd over the agents before i in `order` + sum of d_cur over the agents after
// i, log_rho_max) for every agent i (reference._ordered_log_ratios), where d_cur[i] / d_upd[i] =
// log pi^i(a^i) / log pi_hat^i(a^i) minus log mu^i(a^i). Arrays are indexed by agent; `order` must be a
// permutation (validated before). Suffix sums then prefix sums: no subtraction, so one large d cannot
// cancel the others' precision.
template <typename T>
INSPO_HD inline void ordered_log_ratios(const T* d_cur, const T* d_upd, const int64_t* order, int64_t N, T log_rho_max,
                                        T* log_rho) {
  T after = T(0);
  for (int64_t m = N - 1; m >= 0; --m) {
    const int64_t i = order[m];
    log_rho[i] = after;
    after += d_cur[i];
  }
  T before = T(0);
  for (int64_t m = 0; m < N; ++m) {
    const int64_t i = order[m];
    log_rho[i] = min_(before + log_rho[i], log_rho_max);
    before += d_upd[i];
  }
}

// ---- online log-sum-exp for per-agent reductions over samples (ESS, self-normalized loss) -----------------

// Running (max, sum exp(x - max), sum exp(2 (x - max)), sum exp(x - max) v) of a stream of log-ratios x
// with values v; merges exactly (up to rounding) in any grouping. ESS = (sum rho)^2 / sum rho^2 =
// sum1^2 / sum2 and the self-normalized mean sum rho v / sum rho = weighted / sum1: the max cancels, so
// neither underflows to 0 / 0 when every rho does. -inf entries (rho = 0) contribute nothing.
struct EssAccumulator {
  double max = -std::numeric_limits<double>::infinity();
  double sum1 = 0.0;
  double sum2 = 0.0;
  double weighted = 0.0;

  INSPO_HD void add(double x, double v = 0.0) {
    if (!(x > -std::numeric_limits<double>::infinity())) return;
    raise_max(x);
    add_exp(exp_(x - max), v);
  }

  // add(x, v) of a finite x in two steps, so that a backend can take the exps of many accumulators at
  // once: raise_max(x), then add_exp(exp(x - max), v).
  INSPO_HD void raise_max(double x) {
    if (x > max) {
      const double scale = exp_(max - x);  // 0 when max was -inf
      sum1 *= scale;
      sum2 *= scale * scale;
      weighted *= scale;
      max = x;
    }
  }
  INSPO_HD void add_exp(double e, double v = 0.0) {
    sum1 += e;
    sum2 += e * e;
    weighted += e * v;
  }

  INSPO_HD void merge(const EssAccumulator& o) {
    if (!(o.max > -std::numeric_limits<double>::infinity())) return;
    if (!(max > -std::numeric_limits<double>::infinity())) {
      *this = o;
      return;
    }
    const double m = max_(max, o.max);
    const double a = exp_(max - m), b = exp_(o.max - m);
    sum1 = sum1 * a + o.sum1 * b;
    sum2 = sum2 * a * a + o.sum2 * b * b;
    weighted = weighted * a + o.weighted * b;
    max = m;
  }

  // NaN when every x was -inf (0 / 0), as the reference gives.
  INSPO_HD double ess() const { return sum1 * sum1 / sum2; }
};

// Per-agent sums of sequential_policy_loss over a chunk of samples, in double (both backends).
// One cache line each: on the CPU, chunks on different threads never share one.
struct alignas(64) AgentSums {
  double loss = 0.0;     // sum_b c w log pi(a)
  double weight = 0.0;   // sum_b w
  double rho = 0.0;      // sum_b rho
  double entropy = 0.0;  // sum_b H
  double kl = 0.0;       // sum_b KL
  EssAccumulator ess;    // of log rho, weighted by w log pi(a) (the self-normalized loss, shifted by max log rho)

  INSPO_HD void merge(const AgentSums& o) {
    loss += o.loss;
    weight += o.weight;
    rho += o.rho;
    entropy += o.entropy;
    kl += o.kl;
    ess.merge(o.ess);
  }
};

// The normalizer of an agent's loss (args.h): sum_b c (self-normalized, shifted by max_b log rho) or B. The loss and
// its gradient divide by it (both backends).
template <typename T>
INSPO_HD inline double loss_norm(const SequentialPolicyLossArgs<T>& a, const AgentSums& sums) {
  return a.ratio == kRatioSelfNormalized ? sums.ess.sum1 : double(a.B);
}

// The per-agent outputs of sequential_policy_loss (args.h) at `column` = s * N + i, from the column's sums
// over its B samples (both backends). Self-normalized: sums of exp(log rho - max), which cannot all
// underflow (the max term is 1).
template <typename T>
INSPO_HD inline void write_agent_outputs(const SequentialPolicyLossArgs<T>& a, int64_t column, const AgentSums& sums) {
  const bool self_normalized = a.ratio == kRatioSelfNormalized;
  const double norm = loss_norm(a, sums);
  const double inv_batch = 1.0 / double(a.B);
  a.loss[column] = T(-(self_normalized ? sums.ess.weighted : sums.loss) / norm);
  a.mean_weight[column] = T(sums.weight * inv_batch);
  a.entropy[column] = T(sums.entropy * inv_batch);
  a.kl[column] = T(sums.kl * inv_batch);
  a.ess[column] = T(sums.ess.ess());
}

// The status code of soft_bellman_target's sample (args.h): done not 0 / 1, reward not finite, or (a live
// sample) q_next not finite; 0 when valid. `q_next` points at the sample's entry, read only when done == 0.
template <typename T>
INSPO_HD inline int64_t bellman_sample_code(T done, T reward, const T* q_next) {
  if (!(done == T(0) || done == T(1))) return kDoneNotBinary;
  if (!is_finite(reward)) return kRewardNonFinite;
  if (done == T(0) && !is_finite(*q_next)) return kQNextNonFinite;
  return 0;
}

// soft_bellman_target's outputs of live sample b (args.h: target and log_ratio) from its rows' kl and entropy
// (written) and their log-ratio terms log pi(a') - log mu(a') (`log_ratio_terms`, the sample's N), summed in agent
// order (both backends).
template <typename T>
INSPO_HD inline void bellman_sample_outputs(const SoftBellmanTargetArgs<T>& a, int64_t b, const T* log_ratio_terms) {
  const int64_t N = a.N;
  T sum_kl = T(0), sum_entropy = T(0), log_ratio = T(0);
  for (int64_t i = 0; i < N; ++i) {
    sum_kl += a.kl[b * N + i];
    sum_entropy += a.entropy[b * N + i];
    log_ratio += log_ratio_terms[i];
  }
  const T soft_value = a.q_next[b] - T(a.alpha) * sum_kl + T(a.beta) * sum_entropy;
  a.target[b] = a.reward[b] + T(a.gamma) * (T(1) - a.done[b]) * soft_value;
  a.log_ratio[b] = min_(log_ratio, T(a.log_rho_max));
}

}  // namespace inspo
