// Argument structs of the InSPO ops and the error status they report; shared by both backends.
//
// Conventions for every struct:
//   * T is the floating type of every float tensor (float or double; all the same dtype).
//   * Every pointer is to C-contiguous (row-major) memory on the backend's device, checked by the
//     bindings; shapes are in the comments ([B, N, A] = samples, agents, actions).
//   * Inputs are `const`; outputs are fully written by the op (no need to zero them first), except
//     where a comment says otherwise.
//   * Scalars are double (cast to T inside the kernels, as PyTorch does for Python scalars).
//   * S independent problems (a leading dimension, e.g. seeds trained together) are laid out one after
//     the other: [S, B, N, A], sample b of problem s at flat sample s * B + b. Ops whose math is per
//     sample (soft_bellman_target, in_sample_weights) just see S * B samples; the others carry S and B
//     and keep every per-(problem, agent) reduction (sums over b, cdfs, the ordering) within its problem,
//     with the same chunks as a call on that problem alone (the results are bit-identical on the CPU).
//     `order` is [N] shared by every problem (order_stride = 0) or [S, N] (order_stride = N).
//   * `num_threads` is for the CPU backend (OpenMP threads); the CUDA backend ignores it.
//   * `workspace` / `workspace_bytes`: scratch memory for the CUDA backend, allocated by the Python
//     layer with torch (never cudaMalloc per call) with at least OP_cuda_workspace_bytes<T>(S, B, N, A)
//     bytes (declared in backends.h, defined by the CUDA backend next to its kernels), 256-byte
//     aligned (torch's allocator guarantees it). Its content on entry is undefined: a kernel that needs
//     zeros must clear it on the stream. The CPU backend ignores it (null / 0 there): it allocates its
//     own small per-call scratch outside its loops.
//
// Error status: each op reports the FIRST invalid input as one int64, `pack_status(index, code)`,
// where `index` is a flat index (below) and `code` a StatusCode. Packing puts the index in the high
// bits, so the smallest packed value is the smallest index (ties: the smallest code). The CPU backend
// returns the minimum over all errors; the CUDA backend atomicMin's each error into a device int64
// initialised to kStatusOk (= INT64_MAX, "no error") by the Python layer. Both therefore report the
// same error. A kernel must never read out of bounds because of an invalid input (an action out of
// range is not used as an index); the outputs of an invalid row are unspecified.
//
// Flat indices (b is the flat sample s * B + b when there are S problems):
//   * row errors (a [B, N, A] row or a [B, N] entry): index = b * N + i;
//   * per-sample errors of soft_bellman_target (done / reward / q_next of sample b): index = b * N,
//     so they are reported before the row errors of the same sample (smaller code);
//   * kOrderNotPermutation: index = 0 with the smallest code, so it is always the one reported (the Python
//     layer finds which problem's order it is);
//   * kNoPositiveWeight (resample, agent i of problem s): index = S * B * N + s * N + i (after every element
//     error);
//   * kUniformInvalid (resample): the index of the uniform's draw, (s * B + k) * N + i (multinomial) or
//     s * B * N + i (systematic).
#pragma once

#include <cstdint>
#include <limits>

namespace inspo {

// The error codes, one line each: X(Name, NAME, value), one comment per code. This table is their one
// source: it makes the enum (kName) and the dict that the module exports (_C.STATUS_CODES, NAME -> value),
// which python/inspo_ext/_validation.py checks its StatusCode against (tests/test_ops_status.py).
#define INSPO_STATUS_CODES(X)                                                                              \
  X(OrderNotPermutation, ORDER_NOT_PERMUTATION, 1)       /* order is not a permutation of 0..N-1 */        \
  X(DoneNotBinary, DONE_NOT_BINARY, 2)                   /* done[b] is not 0 or 1 */                       \
  X(RewardNonFinite, REWARD_NON_FINITE, 3)               /* reward[b] is not finite */                     \
  X(QNextNonFinite, Q_NEXT_NON_FINITE, 4)                /* q_next[b] not finite (checked if done == 0) */ \
  X(NoAvailableAction, NO_AVAILABLE_ACTION, 5)           /* avail[b, i] has no true entry */               \
  X(ActionOutOfRange, ACTION_OUT_OF_RANGE, 6)            /* actions[b, i] not in [0, A) */                 \
  X(ActionUnavailable, ACTION_UNAVAILABLE, 7)            /* avail[b, i, actions[b, i]] is false */         \
  X(LogitsNonFinite, LOGITS_NON_FINITE, 8)               /* logits[b, i, j] not finite, j available */     \
  X(LogMuNonFinite, LOG_MU_NON_FINITE, 9)                /* log_mu[b, i, j] not finite, j available */     \
  X(QNonFinite, Q_NON_FINITE, 10)                        /* q_local[b, i, j] not finite, j available */    \
  X(UpdatedLogProbInvalid, UPDATED_LOG_PROB_INVALID, 11) /* updated_log_probs[b, i] not finite or > 0 */   \
  X(LogRhoInvalid, LOG_RHO_INVALID, 12)                  /* log_rho[b, i] NaN or +inf (-inf: weight 0) */  \
  X(NoPositiveWeight, NO_POSITIVE_WEIGHT, 13)            /* every log_rho[:, i] is -inf */                 \
  X(UniformInvalid, UNIFORM_INVALID, 14)                 /* uniforms[k, i] not in [0, 1) */

enum StatusCode : int64_t {
#define INSPO_STATUS_ENUM(Name, NAME, value) k##Name = value,
  INSPO_STATUS_CODES(INSPO_STATUS_ENUM)
#undef INSPO_STATUS_ENUM
};

constexpr int kStatusCodeBits = 6;  // codes < 64
constexpr int64_t kStatusOk = std::numeric_limits<int64_t>::max();

// Host-and-device qualifier of the shared inline functions.
#if defined(__CUDACC__)
#define INSPO_HD __host__ __device__
#else
#define INSPO_HD
#endif

INSPO_HD inline int64_t pack_status(int64_t flat_index, int64_t code) { return (flat_index << kStatusCodeBits) | code; }
INSPO_HD inline int64_t status_code(int64_t status) { return status & ((int64_t(1) << kStatusCodeBits) - 1); }
INSPO_HD inline int64_t status_index(int64_t status) { return status >> kStatusCodeBits; }

// Predecessor modes of teammate_log_ratios / sequential_policy_loss (reference.PREDECESSOR_MODES).
enum Predecessors : int {
  kPredecessorsTarget = 0,  // eta-lookahead toward the closed-form target (reads q_local)
  kPredecessorsPolicy = 1,  // given updated_log_probs [B, N]
};

// Ratio modes of sequential_policy_loss (reference.RATIO_MODES).
enum RatioMode : int {
  kRatioImportance = 0,      // c = rho,  norm = B
  kRatioSelfNormalized = 1,  // c = rho,  norm = sum_b rho
  kRatioNone = 2,            // c = 1,    norm = B (rho is not computed; ess = B)
};

// Resampling methods (reference.RESAMPLE_METHODS).
enum ResampleMethod : int {
  kResampleMultinomial = 0,  // uniforms [B, N]: draw k of agent i at u[k, i] * total_i
  kResampleSystematic = 1,   // uniforms [1, N]: draw k of agent i at (k + u[0, i]) / B * total_i
};

// ---------------------------------------------------------------------------------------------------
// reference.soft_bellman_target. Per sample b (live = done[b] == 0):
//   kl[b, i], entropy[b, i] = KL(pi^i || mu^i), H(pi^i) of softmax(next_logits[b, i]) over next_avail
//   target[b] = reward[b] + gamma (1 - done[b]) [q_next[b] - alpha sum_i kl + beta sum_i entropy]
//   log_ratio[b] = min(sum_i log pi^i(a'^i) - log mu^i(a'^i), log_rho_max)
// Terminal samples (done[b] == 1) read none of the next-step inputs (q_next, next_*), write
// kl = entropy = 0, log_ratio = 0, target = reward. Validated: done in {0, 1}, reward finite; for live
// samples q_next finite and every row (kNoAvailableAction .. kLogMuNonFinite).
template <typename T>
struct SoftBellmanTargetArgs {
  // B: every sample of every problem (S * B); the math is per sample.
  const T* reward;              // [B]
  const T* done;                // [B], 0 or 1
  const T* q_next;              // [B]  Q_target(s', a')
  const T* next_logits;         // [B, N, A]
  const T* next_log_mu;         // [B, N, A]
  const bool* next_avail;       // [B, N, A]
  const int64_t* next_actions;  // [B, N]
  T* target;                    // out [B]
  T* kl;                        // out [B, N]
  T* entropy;                   // out [B, N]
  T* log_ratio;                 // out [B]
  int64_t B, N, A;
  double gamma, alpha, beta, log_rho_max;
  int num_threads;
  void* workspace;
  int64_t workspace_bytes;
};

// ---------------------------------------------------------------------------------------------------
// reference.in_sample_weights, per row (b, i):
//   value = tau logsumexp_avail(kappa log_mu + q / tau)
//   log_weight = -(beta / tau) log_mu[a] + (q[a] - value) / tau,  weight = exp(min(log_weight, log_w_max))
//   (log_weight computed as log pi*(a) - log mu(a), inspo_math.h in_sample_log_weight)
// Validated per row: kNoAvailableAction .. kActionUnavailable, kLogMuNonFinite, kQNonFinite.
template <typename T>
struct InSampleWeightsArgs {
  // B: every sample of every problem (S * B); the math is per row.
  const T* q_local;        // [B, N, A]
  const T* log_mu;         // [B, N, A]
  const bool* avail;       // [B, N, A]
  const int64_t* actions;  // [B, N]
  T* weight;               // out [B, N]
  T* log_weight;           // out [B, N]
  T* value;                // out [B, N]
  int64_t B, N, A;
  double alpha, beta, log_w_max;
  int num_threads;
  void* workspace;
  int64_t workspace_bytes;
};

// ---------------------------------------------------------------------------------------------------
// reference.teammate_log_ratios. Per sample b, with d_cur[i] = log pi^i(a^i) - log mu^i(a^i) and
// d_upd[i] = log pi_hat^i(a^i) - log mu^i(a^i) (target: eta-lookahead of logits toward the closed form;
// policy: updated_log_probs[b, i]):
//   log_rho[b, order[m]] = min(sum_{k < m} d_upd[order[k]] + sum_{k > m} d_cur[order[k]], log_rho_max)
// Validated: order (kOrderNotPermutation), every row (kNoAvailableAction .. kLogMuNonFinite, plus
// kQNonFinite in target mode, kUpdatedLogProbInvalid in policy mode).
template <typename T>
struct TeammateLogRatiosArgs {
  const T* logits;             // [B, N, A]
  const T* log_mu;             // [B, N, A]
  const bool* avail;           // [B, N, A]
  const int64_t* actions;      // [B, N]
  const int64_t* order;        // [N] or [S, N] (order_stride), order[m] = agent updated m-th
  const T* q_local;            // [B, N, A], read only when predecessors == kPredecessorsTarget (else may be null)
  const T* updated_log_probs;  // [B, N], read only when predecessors == kPredecessorsPolicy (else may be null)
  T* log_rho;                  // out [B, N]
  int64_t S, B, N, A;          // S problems of B samples each (every [B, ...] array is [S, B, ...])
  int64_t order_stride;        // 0 (one order) or N (one per problem)
  int predecessors;            // Predecessors
  double alpha, beta, eta, log_rho_max;
  int num_threads;
  void* workspace;
  int64_t workspace_bytes;
};

// ---------------------------------------------------------------------------------------------------
// reference.resample. Per problem s and agent i (the column log_rho[s, :, i]): w_b = (double) exp(log_rho[b, i] - max_b
// log_rho[:, i]) (the exp in T, then widened, as the reference does), cdf = inclusive cumulative sum in double
// (sequential order b = 0..B-1 on the CPU), total = cdf[B-1]; draw k at v = u[k, i] * total (multinomial) or v = (k +
// u[0, i]) / B * total (systematic); indices[k, i] = min(first b with cdf[b] > v, B - 1). ess[i] = (sum rho)^2 / sum
// rho^2 (computed in double from the shifted weights, stored as T). Validated: kLogRhoInvalid (NaN / +inf),
// kNoPositiveWeight (a column of -inf), kUniformInvalid.
template <typename T>
struct ResampleArgs {
  const T* log_rho;        // [S, B, N]
  const double* uniforms;  // [S, B, N] (multinomial) or [S, 1, N] (systematic), each in [0, 1)
  int64_t* indices;        // out [S, B, N]: agent i's resampled batch of problem s is rows indices[s, :, i]
  T* ess;                  // out [S, N]
  int64_t S, B, N;
  int method;  // ResampleMethod
  int num_threads;
  void* workspace;
  int64_t workspace_bytes;
};

// ---------------------------------------------------------------------------------------------------
// reference.sequential_policy_loss, forward and (optionally) the logits gradient in one pass.
// Per row (b, i): log pi(a) (log-softmax of logits), w = clipped in-sample weight (as in_sample_weights),
// H, KL; per sample the teammate log-ratios log_rho[b, i] as in teammate_log_ratios (not computed when
// ratio == kRatioNone: log_rho = 0), c = exp(log_rho) (1 for kRatioNone). Per agent i over b:
//   norm[i]        = sum_b rho (kRatioSelfNormalized) or B
//   loss[i]        = -sum_b c w log pi(a) / norm[i]
// kRatioSelfNormalized shifts by M[i] = max_b log_rho[b, i] (the normalization cancels it): c = exp(log_rho - M),
// norm[i] = sum_b c, so that a column whose every rho underflows still gives its weighted mean, not 0 / 0.
//   mean_weight[i] = sum_b w / B;  entropy[i] = sum_b H / B;  kl[i] = sum_b KL / B
//   ess[i]         = (sum_b rho)^2 / sum_b rho^2 (B for kRatioNone)
// grad (only when compute_grad): the UNNORMALIZED gradient of loss[i] * norm[i] w.r.t. logits:
//   grad[b, i, j] = c w (softmax_j - [j == a])  at available j,  0 at unavailable j.
// The backward is then d logits = grad * (d loss[i] / norm[i]) (one multiply, in Python).
// Validated: order; every row (kNoAvailableAction .. kQNonFinite); updated_log_probs when read.
// Per-agent sums over b are accumulated in double.
template <typename T>
struct SequentialPolicyLossArgs {
  const T* logits;             // [B, N, A]
  const T* log_mu;             // [B, N, A]
  const bool* avail;           // [B, N, A]
  const int64_t* actions;      // [B, N]
  const T* q_local;            // [B, N, A]
  const int64_t* order;        // [N] or [S, N] (order_stride)
  const T* updated_log_probs;  // [B, N], read only when predecessors == kPredecessorsPolicy and
                               //   ratio != kRatioNone (else may be null)
  T* loss;                     // out [S, N]
  T* mean_weight;              // out [S, N]
  T* ess;                      // out [S, N]
  T* entropy;                  // out [S, N]
  T* kl;                       // out [S, N]
  T* norm;                     // out [S, N]   (saved for the backward)
  T* grad;                     // out [S, B, N, A] when compute_grad, else may be null
  int64_t S, B, N, A;          // S problems of B samples each (every [B, ...] array is [S, B, ...])
  int64_t order_stride;        // 0 (one order) or N (one per problem)
  int predecessors;            // Predecessors
  int ratio;                   // RatioMode
  bool compute_grad;
  double alpha, beta, eta, log_rho_max, log_w_max;
  int num_threads;
  void* workspace;
  int64_t workspace_bytes;
};

}  // namespace inspo
