// CUDA backend of sequential_policy_loss (reference.sequential_policy_loss; contract in common/args.h).
//
// Up to five kernels on the stream, all deterministic (no float atomics; every sum has a fixed order):
//   1. rows: a group of G lanes per (b, i) row (common.cuh) computes log pi(a), the clipped in-sample
//      weight w, H, KL, d_cur / d_upd (teammate ratios) and the row's max logit and 1 / sum exp into
//      per-row scratch [B, N]; block 0 also checks that `order` is a permutation.
//   2. samples (ratio != none): one thread per sample walks its agents in `order` (ordered_log_ratios,
//      as the CPU backend) into log_rho [B, N].
//   3. partial sums: one thread per (chunk of samples, agent) adds its chunk's samples in order, in
//      double, into a partial AgentSums (workspace). Chunks are
//      kMinChunk samples or more, at most kMaxChunks of them (a function of B only, never of the GPU).
//   4. final sums: one warp per agent merges its partials (lane l takes partials l, l + 32, ... in order,
//      then a fixed xor butterfly) and writes loss, norm, mean weight, entropy, KL, ESS and the agent's
//      shift of c (self-normalized: max_b log rho; else 0).
//   5. gradient (compute_grad): a group of G lanes per row writes grad = c w (softmax - onehot(a)) / norm, the
//      softmax recomputed from the row's max and 1 / sum exp (coalesced [B, N, A] writes).
#include "common/backends.h"
#include "cuda/common.cuh"

namespace inspo {
namespace cuda {
namespace {

constexpr int64_t kMinChunk = 32;     // samples per partial sum, at least
constexpr int64_t kMaxChunks = 1024;  // partials per agent, at most (kernel 4 merges 32 per lane at most)

__host__ __device__ inline int64_t chunk_length(int64_t B) {
  return max_(kMinChunk, (B + kMaxChunks - 1) / kMaxChunks);
}

// Per-row scratch and partial sums; built on a null base it gives the byte count.
template <typename T>
struct PolicyLossWorkspace {
  // Rows [S, B, N]; partials [S, n_chunks, N] (n_chunks per problem); shift [S, N].
  T* log_pi_taken;      // [B, N] log pi(a)
  T* weight;            // [B, N] clipped in-sample weight w
  T* entropy;           // [B, N]
  T* kl;                // [B, N]
  T* d_cur;             // [B, N] log pi(a) - log mu(a)
  T* d_upd;             // [B, N] log pi_hat(a) - log mu(a)
  T* log_rho;           // [B, N] teammate log-ratios (ratio != none)
  T* max_logit;         // [B, N] max over the available logits
  T* inv_sum_exp;       // [B, N] 1 / sum exp(l - max)
  double* shift;        // [S, N] c = exp(log rho - shift): max_b log rho (self-normalized) or 0
  double* inv_norm;     // [S, N] 1 / norm (kernel 5 divides the gradient by it)
  AgentSums* partials;  // [n_chunks, N]
  int64_t n_chunks;
  int64_t bytes;

  PolicyLossWorkspace(void* base, int64_t S, int64_t B, int64_t N) {
    WorkspaceCarver carver(base);
    T** rows[] = {&log_pi_taken, &weight, &entropy, &kl, &d_cur, &d_upd, &log_rho, &max_logit, &inv_sum_exp};
    for (T** p : rows) *p = carver.take<T>(S * B * N);
    shift = carver.take<double>(S * N);
    inv_norm = carver.take<double>(S * N);
    n_chunks = (B + chunk_length(B) - 1) / chunk_length(B);
    partials = carver.take<AgentSums>(S * n_chunks * N);
    bytes = carver.bytes();
  }
};

template <int G, typename T>
__global__ void __launch_bounds__(kBlock)
    policy_rows_kernel(const SequentialPolicyLossArgs<T> a, const PolicyLossWorkspace<T> ws, int64_t* status) {
  if (blockIdx.x == 0) check_orders(a.order, a.order_stride == 0 ? 1 : a.S, a.N, status);  // block-uniform
  const RowLane<G> rl;
  const bool active = rl.row < a.S * a.B * a.N;
  const int64_t row = active ? rl.row : 0;
  const bool use_ratio = a.ratio != kRatioNone;
  const bool target_mode = a.predecessors == kPredecessorsTarget;
  const T* logits = a.logits + row * a.A;
  const T* log_mu = a.log_mu + row * a.A;
  const T* q = a.q_local + row * a.A;
  const bool* avail = a.avail + row * a.A;
  const Temperatures<T> t = make_temperatures<T>(a.alpha, a.beta, a.eta);
  const RowNeeds needs{/*logits=*/true, /*kl=*/true, /*target=*/true, /*lookahead=*/use_ratio && target_mode,
                       /*q=*/true};
  RowMax<T> m;
  RowSums<T> s;
  group_row_stats<G>(logits, log_mu, q, avail, active ? a.A : 0, rl.lane, needs, t, m, s);
  if (!active || rl.lane != 0) return;

  const int64_t action = a.actions[row];
  int64_t code = row_error(m, action, a.A, avail);
  if (code == 0 && use_ratio && !target_mode && !is_log_prob(a.updated_log_probs[row])) code = kUpdatedLogProbInvalid;
  if (code != 0) {
    report(status, row, code);
    const T nan = quiet_nan<T>();
    ws.log_pi_taken[row] = ws.weight[row] = ws.entropy[row] = ws.kl[row] = nan;
    ws.d_cur[row] = ws.d_upd[row] = ws.max_logit[row] = ws.inv_sum_exp[row] = nan;
    return;
  }
  const T log_mu_taken = log_mu[action], q_taken = q[action];
  const T log_pi_taken = taken_log_prob(logits[action], m, s);
  ws.log_pi_taken[row] = log_pi_taken;
  ws.weight[row] = clipped_weight(in_sample_log_weight(log_mu_taken, q_taken, m, s, t), T(a.log_w_max));
  ws.entropy[row] = entropy_from_sums(s);
  ws.kl[row] = kl_from_sums(s);
  ws.max_logit[row] = m.logits;
  ws.inv_sum_exp[row] = T(1) / s.exp_logits;
  if (use_ratio) {
    ws.d_cur[row] = log_pi_taken - log_mu_taken;
    const T log_hat = target_mode ? taken_lookahead_log_prob(logits[action], log_mu_taken, q_taken, m, s, t)
                                  : a.updated_log_probs[row];
    ws.d_upd[row] = log_hat - log_mu_taken;
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    policy_partial_sums_kernel(const SequentialPolicyLossArgs<T> a, const PolicyLossWorkspace<T> ws) {
  // tid = (s * n_chunks + chunk) * N + agent; the chunks of problem s cover its samples only
  const int64_t N = a.N, tid = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (tid >= a.S * ws.n_chunks * N) return;
  const int64_t s = tid / N / ws.n_chunks, chunk = tid / N % ws.n_chunks, i = tid % N, length = chunk_length(a.B);
  const int64_t begin = s * a.B + chunk * length, end = min_((s + 1) * a.B, begin + length);
  const bool use_ratio = a.ratio != kRatioNone;
  AgentSums sums;
  for (int64_t b = begin; b < end; ++b) {
    const int64_t row = b * N + i;
    const T log_rho = use_ratio ? ws.log_rho[row] : T(0);
    const T rho = use_ratio ? exp_(log_rho) : T(1);
    const T weight = ws.weight[row];
    const T cw = rho * weight;  // c w (c = rho, or 1 without ratios)
    sums.loss += double(cw * ws.log_pi_taken[row]);
    sums.weight += double(weight);
    sums.rho += double(rho);
    sums.entropy += double(ws.entropy[row]);
    sums.kl += double(ws.kl[row]);
    sums.ess.add(double(log_rho), double(weight) * double(ws.log_pi_taken[row]));
  }
  ws.partials[tid] = sums;
}

__device__ inline void shuffle_merge(AgentSums& s, int offset) {
  AgentSums o;
  o.loss = __shfl_xor_sync(kFullMask, s.loss, offset);
  o.weight = __shfl_xor_sync(kFullMask, s.weight, offset);
  o.rho = __shfl_xor_sync(kFullMask, s.rho, offset);
  o.entropy = __shfl_xor_sync(kFullMask, s.entropy, offset);
  o.kl = __shfl_xor_sync(kFullMask, s.kl, offset);
  o.ess.max = __shfl_xor_sync(kFullMask, s.ess.max, offset);
  o.ess.sum1 = __shfl_xor_sync(kFullMask, s.ess.sum1, offset);
  o.ess.sum2 = __shfl_xor_sync(kFullMask, s.ess.sum2, offset);
  o.ess.weighted = __shfl_xor_sync(kFullMask, s.ess.weighted, offset);
  s.merge(o);
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    policy_final_sums_kernel(const SequentialPolicyLossArgs<T> a, const PolicyLossWorkspace<T> ws) {
  // one warp per (problem, agent): column = s * N + i
  const int64_t column = (int64_t(blockIdx.x) * kBlock + threadIdx.x) / 32;
  const int lane = int(threadIdx.x % 32);
  const bool active = column < a.S * a.N;  // whole warps are active or not: the shuffles below see all 32 lanes
  if (!active) return;
  const int64_t s = column / a.N, i = column % a.N;
  AgentSums sums;
  for (int64_t c = lane; c < ws.n_chunks; c += 32) sums.merge(ws.partials[(s * ws.n_chunks + c) * a.N + i]);
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) shuffle_merge(sums, offset);
  if (lane != 0) return;
  ws.shift[column] = a.ratio == kRatioSelfNormalized ? sums.ess.max : 0.0;
  ws.inv_norm[column] = 1.0 / loss_norm(a, sums);
  write_agent_outputs(a, column, sums);
}

// grad[b, i, j] = c w (softmax_j - [j == a]) / norm at available j, 0 elsewhere; softmax_j = exp(l_j - max) / S
// computed as exp(l_j - max) * (c w / S), as the CPU backend.
template <int G, typename T>
__global__ void __launch_bounds__(kBlock)
    policy_grad_kernel(const SequentialPolicyLossArgs<T> a, const PolicyLossWorkspace<T> ws) {
  const RowLane<G> rl;
  if (rl.row >= a.S * a.B * a.N) return;  // no shuffles in this kernel
  const int64_t row = rl.row, A = a.A, action = a.actions[row];
  const int64_t column = row / (a.B * a.N) * a.N + row % a.N;  // (problem, agent)
  // c / norm (self-normalized: in double, as the CPU backend); else c as the partial sums used it, then w / B
  const T cw = a.ratio == kRatioSelfNormalized
                   ? T(exp_(double(ws.log_rho[row]) - ws.shift[column]) * ws.inv_norm[column]) * ws.weight[row]
                   : (a.ratio == kRatioNone ? T(1) : exp_(ws.log_rho[row])) * ws.weight[row] * T(ws.inv_norm[column]);
  const T max_logit = ws.max_logit[row], scale = cw * ws.inv_sum_exp[row];
  const T* logits = a.logits + row * A;
  const bool* avail = a.avail + row * A;
  T* grad = a.grad + row * A;
  for (int64_t j = rl.lane; j < A; j += G) {
    const T g = exp_(logits[j] - max_logit) * scale - (j == action ? cw : T(0));
    grad[j] = avail[j] ? g : T(0);
  }
}

}  // namespace
}  // namespace cuda

template <typename T>
int64_t sequential_policy_loss_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t) {
  return cuda::PolicyLossWorkspace<T>(nullptr, S, B, N).bytes;
}

template <typename T>
void sequential_policy_loss_cuda(const SequentialPolicyLossArgs<T>& args, void* stream, int64_t* status_device) {
  using namespace cuda;
  const int64_t rows = args.S * args.B * args.N;
  if (rows == 0) return;
  const PolicyLossWorkspace<T> ws(args.workspace, args.S, args.B, args.N);
  require_workspace("sequential_policy_loss", args.workspace, args.workspace_bytes, ws.bytes);
  const cudaStream_t s = as_stream(stream);

  dispatch_group_size(args.A, [&](auto group) {
    constexpr int G = decltype(group)::value;
    policy_rows_kernel<G, T><<<blocks_for(rows * G), kBlock, 0, s>>>(args, ws, status_device);
  });
  check_launch("sequential_policy_loss");
  if (args.ratio != kRatioNone) {
    ordered_log_ratios_kernel<T><<<blocks_for(args.S * args.B), kBlock, 0, s>>>(
        ws.d_cur, ws.d_upd, args.order, args.order_stride, args.S, args.B, args.N, args.log_rho_max, ws.log_rho);
    check_launch("sequential_policy_loss");
  }
  policy_partial_sums_kernel<T><<<blocks_for(args.S * ws.n_chunks * args.N), kBlock, 0, s>>>(args, ws);
  check_launch("sequential_policy_loss");
  policy_final_sums_kernel<T><<<blocks_for(args.S * args.N * 32), kBlock, 0, s>>>(args, ws);
  check_launch("sequential_policy_loss");
  if (args.compute_grad) {
    dispatch_group_size(args.A, [&](auto group) {
      constexpr int G = decltype(group)::value;
      policy_grad_kernel<G, T><<<blocks_for(rows * G), kBlock, 0, s>>>(args, ws);
    });
    check_launch("sequential_policy_loss");
  }
}

INSPO_INSTANTIATE_CUDA(sequential_policy_loss)

}  // namespace inspo
