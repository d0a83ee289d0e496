// CUDA backend of teammate_log_ratios (reference.teammate_log_ratios; contract in common/args.h).
//
// Two kernels on the stream:
//   1. rows: a group of G lanes per (b, i) row (common.cuh) computes d_cur = log pi(a) - log mu(a) and
//      d_upd = log pi_hat(a) - log mu(a) (eta-lookahead, or the given updated log-prob) into the
//      workspace; block 0 also checks that `order` is a permutation.
//   2. samples: one thread per sample walks its agents in `order` (suffix sums of d_cur, then prefix sums
//      of d_upd: ordered_log_ratios, the CPU backend's walk) and writes log_rho.
// The walk is sequential in N by definition (a prefix sum per sample over a handful of agents); with one
// thread per sample it is a few hundred cycles, while kernel 1 carries the [B, N, A] traffic.
#include "common/backends.h"
#include "cuda/common.cuh"

namespace inspo {
namespace cuda {
namespace {

// Workspace layout; built on a null base it gives the byte count.
template <typename T>
struct TeammateWorkspace {
  T* d_cur;  // [B, N]
  T* d_upd;  // [B, N]
  int64_t bytes;

  TeammateWorkspace(void* base, int64_t B, int64_t N) {
    WorkspaceCarver carver(base);
    d_cur = carver.take<T>(B * N);
    d_upd = carver.take<T>(B * N);
    bytes = carver.bytes();
  }
};

template <int G, typename T>
__global__ void __launch_bounds__(kBlock)
    teammate_rows_kernel(const TeammateLogRatiosArgs<T> a, T* d_cur, T* d_upd, int64_t* status) {
  if (blockIdx.x == 0) check_orders(a.order, a.order_stride == 0 ? 1 : a.S, a.N, status);  // block-uniform
  const RowLane<G> rl;
  const bool active = rl.row < a.S * a.B * a.N;
  const int64_t row = active ? rl.row : 0;
  const bool target_mode = a.predecessors == kPredecessorsTarget;
  const T* logits = a.logits + row * a.A;
  const T* log_mu = a.log_mu + row * a.A;
  const T* q = target_mode ? a.q_local + row * a.A : nullptr;
  const bool* avail = a.avail + row * a.A;
  const Temperatures<T> t = make_temperatures<T>(a.alpha, a.beta, a.eta);
  const RowNeeds needs{/*logits=*/true, /*kl=*/false, /*target=*/false, /*lookahead=*/target_mode, /*q=*/target_mode};
  RowMax<T> m;
  RowSums<T> s;
  group_row_stats<G>(logits, log_mu, q, avail, active ? a.A : 0, rl.lane, needs, t, m, s);
  if (!active || rl.lane != 0) return;

  const int64_t action = a.actions[row];
  int64_t code = row_error(m, action, a.A, avail);
  if (code == 0 && !target_mode && !is_log_prob(a.updated_log_probs[row])) code = kUpdatedLogProbInvalid;
  if (code != 0) {
    report(status, row, code);
    d_cur[row] = d_upd[row] = quiet_nan<T>();
    return;
  }
  const T log_mu_taken = log_mu[action];
  d_cur[row] = taken_log_prob(logits[action], m, s) - log_mu_taken;
  const T log_hat = target_mode ? taken_lookahead_log_prob(logits[action], log_mu_taken, q[action], m, s, t)
                                : a.updated_log_probs[row];
  d_upd[row] = log_hat - log_mu_taken;
}

}  // namespace
}  // namespace cuda

template <typename T>
int64_t teammate_log_ratios_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t) {
  return cuda::TeammateWorkspace<T>(nullptr, S * B, N).bytes;
}

template <typename T>
void teammate_log_ratios_cuda(const TeammateLogRatiosArgs<T>& args, void* stream, int64_t* status_device) {
  using namespace cuda;
  const int64_t rows = args.S * args.B * args.N;
  if (rows == 0) return;
  const TeammateWorkspace<T> ws(args.workspace, args.S * args.B, args.N);
  require_workspace("teammate_log_ratios", args.workspace, args.workspace_bytes, ws.bytes);
  dispatch_group_size(args.A, [&](auto group) {
    constexpr int G = decltype(group)::value;
    teammate_rows_kernel<G, T>
        <<<blocks_for(rows * G), kBlock, 0, as_stream(stream)>>>(args, ws.d_cur, ws.d_upd, status_device);
  });
  check_launch("teammate_log_ratios");
  ordered_log_ratios_kernel<T><<<blocks_for(args.S * args.B), kBlock, 0, as_stream(stream)>>>(
      ws.d_cur, ws.d_upd, args.order, args.order_stride, args.S, args.B, args.N, args.log_rho_max, args.log_rho);
  check_launch("teammate_log_ratios");
}

INSPO_INSTANTIATE_CUDA(teammate_log_ratios)

}  // namespace inspo
