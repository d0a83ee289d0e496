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
// The fields of each struct are a table, OPArgs_FIELDS(X), one X(kind, type, name, what) per field, in the
// struct's order; INSPO_DEFINE_ARGS makes the struct from it (plus num_threads, workspace, workspace_bytes) and
// csrc/bindings.cpp makes the op's _C function from it (its keywords are the array and scalar fields, in order;
// its shape checks are the arrays' dims). Kinds:
//   first / in / in_opt (type, name, (dims))  input array `const type* name` ([S,] dims); `first` is the
//                                              array whose shape fixes S, B, N, A; in_opt may be None (null)
//   out / out_opt (type, name, (dims))        output array `type* name`; out_opt may be None (null)
//   order (int64_t, name, (N))                `order`: [N] shared by every problem, or [S, N]
//   stride (int64_t, name, order)             0 when the order array is shared, N when it is [S, N]
//   count (int64_t, name, expr)               a size, `expr` of the call's S, B, N, A (e.g. S * B)
//   present (bool, name, array)               whether the optional array was given
//   scalar (type, name, )                     a scalar keyword of the _C function
// dims are C++ expressions of B, N, A and the scalars. invalid_args(args) (below the struct, where an op has
// one) returns the message of an argument combination the kernels cannot run, or null.
#define INSPO_ARGS_MEMBER(kind, type, name, what) INSPO_ARGS_MEMBER_##kind(type, name)
#define INSPO_ARGS_MEMBER_first(type, name) const type* name;
#define INSPO_ARGS_MEMBER_in(type, name) const type* name;
#define INSPO_ARGS_MEMBER_in_opt(type, name) const type* name;
#define INSPO_ARGS_MEMBER_order(type, name) const type* name;
#define INSPO_ARGS_MEMBER_out(type, name) type* name;
#define INSPO_ARGS_MEMBER_out_opt(type, name) type* name;
#define INSPO_ARGS_MEMBER_stride(type, name) type name;
#define INSPO_ARGS_MEMBER_count(type, name) type name;
#define INSPO_ARGS_MEMBER_present(type, name) type name;
#define INSPO_ARGS_MEMBER_scalar(type, name) type name;
// clang-format off
#define INSPO_DEFINE_ARGS(Args)        \
  template <typename T>                \
  struct Args {                        \
    Args##_FIELDS(INSPO_ARGS_MEMBER)   \
    int num_threads;                   \
    void* workspace;                   \
    int64_t workspace_bytes;           \
  };
// clang-format on

// Every argument combination of an op without an invalid_args overload of its own is valid.
template <typename Args>
const char* invalid_args(const Args&) {
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------
// reference.soft_bellman_target. Per sample b (live = done[b] == 0):
//   kl[b, i], entropy[b, i] = KL(pi^i || mu^i), H(pi^i) of softmax(next_logits[b, i]) over next_avail
//   target[b] = reward[b] + gamma (1 - done[b]) [q_next[b] - alpha sum_i kl + beta sum_i entropy]
//   log_ratio[b] = min(sum_i log pi^i(a'^i) - log mu^i(a'^i), log_rho_max)
// Terminal samples (done[b] == 1) use none of the next-step inputs (q_next, next_*: any values, NaN included), write
// kl = entropy = 0, log_ratio = 0, target = reward. Validated: done in {0, 1}, reward finite; for live
// samples q_next finite and every row (kNoAvailableAction .. kLogMuNonFinite).
// B: every sample of every problem (S * B); the math is per sample.
#define SoftBellmanTargetArgs_FIELDS(X)             \
  X(in, T, reward, (B))                             \
  X(in, T, done, (B))   /* [B], 0 or 1 */           \
  X(in, T, q_next, (B)) /* [B]  Q_target(s', a') */ \
  X(first, T, next_logits, (B, N, A))               \
  X(in, T, next_log_mu, (B, N, A))                  \
  X(in, bool, next_avail, (B, N, A))                \
  X(in, int64_t, next_actions, (B, N))              \
  X(out, T, target, (B))                            \
  X(out, T, kl, (B, N))                             \
  X(out, T, entropy, (B, N))                        \
  X(out, T, log_ratio, (B))                         \
  X(count, int64_t, B, (S * B))                     \
  X(count, int64_t, N, N)                           \
  X(count, int64_t, A, A)                           \
  X(scalar, double, gamma, )                        \
  X(scalar, double, alpha, )                        \
  X(scalar, double, beta, )                         \
  X(scalar, double, log_rho_max, )
INSPO_DEFINE_ARGS(SoftBellmanTargetArgs)

// ---------------------------------------------------------------------------------------------------
// reference.in_sample_weights, per row (b, i):
//   value = tau logsumexp_avail(kappa log_mu + q / tau)
//   log_weight = -(beta / tau) log_mu[a] + (q[a] - value) / tau,  weight = exp(min(log_weight, log_w_max))
//   (log_weight computed as log pi*(a) - log mu(a), inspo_math.h in_sample_log_weight)
// Validated per row: kNoAvailableAction .. kActionUnavailable, kLogMuNonFinite, kQNonFinite.
// B: every sample of every problem (S * B); the math is per row.
#define InSampleWeightsArgs_FIELDS(X) \
  X(first, T, q_local, (B, N, A))     \
  X(in, T, log_mu, (B, N, A))         \
  X(in, bool, avail, (B, N, A))       \
  X(in, int64_t, actions, (B, N))     \
  X(out, T, weight, (B, N))           \
  X(out, T, log_weight, (B, N))       \
  X(out, T, value, (B, N))            \
  X(count, int64_t, B, (S * B))       \
  X(count, int64_t, N, N)             \
  X(count, int64_t, A, A)             \
  X(scalar, double, alpha, )          \
  X(scalar, double, beta, )           \
  X(scalar, double, log_w_max, )
INSPO_DEFINE_ARGS(InSampleWeightsArgs)

// ---------------------------------------------------------------------------------------------------
// reference.teammate_log_ratios. Per sample b, with d_cur[i] = log pi^i(a^i) - log mu^i(a^i) and
// d_upd[i] = log pi_hat^i(a^i) - log mu^i(a^i) (target: eta-lookahead of logits toward the closed form;
// policy: updated_log_probs[b, i]):
//   log_rho[b, order[m]] = min(sum_{k < m} d_upd[order[k]] + sum_{k > m} d_cur[order[k]], log_rho_max)
// Validated: order (kOrderNotPermutation), every row (kNoAvailableAction .. kLogMuNonFinite, plus
// kQNonFinite in target mode, kUpdatedLogProbInvalid in policy mode).
// S problems of B samples each (every [B, ...] array is [S, B, ...]).
#define TeammateLogRatiosArgs_FIELDS(X)                                                                               \
  X(first, T, logits, (B, N, A))                                                                                      \
  X(in, T, log_mu, (B, N, A))                                                                                         \
  X(in, bool, avail, (B, N, A))                                                                                       \
  X(in, int64_t, actions, (B, N))                                                                                     \
  X(order, int64_t, order, (N))           /* [N] or [S, N] (order_stride), order[m] = agent updated m-th */           \
  X(in_opt, T, q_local, (B, N, A))        /* read only when predecessors == kPredecessorsTarget (else may be null) */ \
  X(in_opt, T, updated_log_probs, (B, N)) /* read only when predecessors == kPredecessorsPolicy (else may be null) */ \
  X(out, T, log_rho, (B, N))                                                                                          \
  X(count, int64_t, S, S)                                                                                             \
  X(count, int64_t, B, B)                                                                                             \
  X(count, int64_t, N, N)                                                                                             \
  X(count, int64_t, A, A)                                                                                             \
  X(stride, int64_t, order_stride, order) /* 0 (one order) or N (one per problem) */                                  \
  X(scalar, int, predecessors, )          /* Predecessors */                                                          \
  X(scalar, double, alpha, )                                                                                          \
  X(scalar, double, beta, )                                                                                           \
  X(scalar, double, eta, )                                                                                            \
  X(scalar, double, log_rho_max, )
INSPO_DEFINE_ARGS(TeammateLogRatiosArgs)

template <typename T>
const char* invalid_args(const TeammateLogRatiosArgs<T>& a) {
  if (a.predecessors == kPredecessorsTarget && !a.q_local) return "predecessors='target' needs q_local";
  if (a.predecessors == kPredecessorsPolicy && !a.updated_log_probs)
    return "predecessors='policy' needs updated_log_probs";
  if (a.predecessors != kPredecessorsTarget && a.predecessors != kPredecessorsPolicy)
    return "unknown predecessors mode";
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------
// reference.resample. Per problem s and agent i (the column log_rho[s, :, i]): w_b = (double) exp(log_rho[b, i] - max_b
// log_rho[:, i]) (the exp in T, then widened, as the reference does), cdf = inclusive cumulative sum in double
// (sequential order b = 0..B-1 on the CPU), total = cdf[B-1]; draw k at v = u[k, i] * total (multinomial) or v = (k +
// u[0, i]) / B * total (systematic); indices[k, i] = min(first b with cdf[b] > v, B - 1). ess[i] = (sum rho)^2 / sum
// rho^2 (computed in double from the shifted weights, stored as T). Validated: kLogRhoInvalid (NaN / +inf),
// kNoPositiveWeight (a column of -inf), kUniformInvalid.
// uniforms: [S, B, N] (multinomial) or [S, 1, N] (systematic), each in [0, 1); agent i's resampled batch of
// problem s is rows indices[s, :, i].
#define ResampleArgs_FIELDS(X)                                                \
  X(first, T, log_rho, (B, N))                                                \
  X(in, double, uniforms, (method == inspo::kResampleMultinomial ? B : 1, N)) \
  X(out, int64_t, indices, (B, N))                                            \
  X(out, T, ess, (N))                                                         \
  X(count, int64_t, S, S)                                                     \
  X(count, int64_t, B, B)                                                     \
  X(count, int64_t, N, N)                                                     \
  X(scalar, int, method, ) /* ResampleMethod */
INSPO_DEFINE_ARGS(ResampleArgs)

template <typename T>
const char* invalid_args(const ResampleArgs<T>& a) {
  if (a.method != kResampleMultinomial && a.method != kResampleSystematic) return "unknown resampling method";
  if (a.B < 1) return "log_rho needs at least one sample";
  return nullptr;
}

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
// grad (only when compute_grad): the gradient of loss[i] w.r.t. logits:
//   grad[b, i, j] = c w (softmax_j - [j == a]) / norm[i]  at available j,  0 at unavailable j.
// The backward is then d logits = grad * d loss[i] (grad itself when every d loss[i] is 1; in Python).
// Validated: order; every row (kNoAvailableAction .. kQNonFinite); updated_log_probs when read.
// Per-agent sums over b are accumulated in double.
// S problems of B samples each (every [B, ...] array is [S, B, ...]).
#define SequentialPolicyLossArgs_FIELDS(X)                                                          \
  X(first, T, logits, (B, N, A))                                                                    \
  X(in, T, log_mu, (B, N, A))                                                                       \
  X(in, bool, avail, (B, N, A))                                                                     \
  X(in, int64_t, actions, (B, N))                                                                   \
  X(in, T, q_local, (B, N, A))                                                                      \
  X(order, int64_t, order, (N))           /* [N] or [S, N] (order_stride) */                        \
  X(in_opt, T, updated_log_probs, (B, N)) /* read only when predecessors == kPredecessorsPolicy and \
                                             ratio != kRatioNone (else may be null) */              \
  X(out, T, loss, (N))                                                                              \
  X(out, T, mean_weight, (N))                                                                       \
  X(out, T, ess, (N))                                                                               \
  X(out, T, entropy, (N))                                                                           \
  X(out, T, kl, (N))                                                                                \
  X(out_opt, T, grad, (B, N, A)) /* when compute_grad, else null */                                 \
  X(count, int64_t, S, S)                                                                           \
  X(count, int64_t, B, B)                                                                           \
  X(count, int64_t, N, N)                                                                           \
  X(count, int64_t, A, A)                                                                           \
  X(stride, int64_t, order_stride, order) /* 0 (one order) or N (one per problem) */                \
  X(scalar, int, predecessors, )          /* Predecessors */                                        \
  X(scalar, int, ratio, )                 /* RatioMode */                                           \
  X(present, bool, compute_grad, grad)    /* grad is given */                                       \
  X(scalar, double, alpha, )                                                                        \
  X(scalar, double, beta, )                                                                         \
  X(scalar, double, eta, )                                                                          \
  X(scalar, double, log_rho_max, )                                                                  \
  X(scalar, double, log_w_max, )
INSPO_DEFINE_ARGS(SequentialPolicyLossArgs)

template <typename T>
const char* invalid_args(const SequentialPolicyLossArgs<T>& a) {
  if (a.B < 1) return "logits needs at least one sample";
  if (a.ratio != kRatioImportance && a.ratio != kRatioSelfNormalized && a.ratio != kRatioNone)
    return "unknown ratio mode";
  if (a.predecessors != kPredecessorsTarget && a.predecessors != kPredecessorsPolicy)
    return "unknown predecessors mode";
  if (a.ratio != kRatioNone && a.predecessors == kPredecessorsPolicy && !a.updated_log_probs)
    return "predecessors='policy' needs updated_log_probs";
  return nullptr;
}

}  // namespace inspo
