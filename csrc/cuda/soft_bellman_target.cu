// CUDA backend of soft_bellman_target (reference.soft_bellman_target; contract in common/args.h).
//
// Two kernels on the stream:
//   1. rows: a group of G lanes per (b, i) row (common.cuh) computes KL and H of pi^i at the next step
//      and d[b, i] = log pi^i(a'^i) - log mu^i(a'^i) (workspace [B, N]); terminal samples read nothing.
//   2. samples: one thread per sample validates done / reward / q_next and adds its N agents' KL, H and
//      d in agent order (as the CPU backend), then writes target and log_ratio.
// Splitting at the row / sample boundary keeps B * N rows in flight in kernel 1 (a group per sample
// walking its agents would leave most of the GPU idle for small B), and kernel 2's sums over N have a
// fixed order, so the result is bit-identical run to run.
#include "common/backends.h"
#include "cuda/common.cuh"

namespace inspo {
namespace cuda {
namespace {

// Workspace layout; built on a null base it gives the byte count.
template <typename T>
struct SoftBellmanWorkspace {
  T* log_ratio_rows;  // [B, N] d = log pi(a') - log mu(a')
  int64_t bytes;

  SoftBellmanWorkspace(void* base, int64_t B, int64_t N) {
    WorkspaceCarver carver(base);
    log_ratio_rows = carver.take<T>(B * N);
    bytes = carver.bytes();
  }
};

template <int G, typename T>
__global__ void __launch_bounds__(kBlock)
    soft_bellman_rows_kernel(const SoftBellmanTargetArgs<T> a, T* log_ratio_rows, int64_t* status) {
  const RowLane<G> rl;
  const bool active = rl.row < a.B * a.N;
  const int64_t row = active ? rl.row : 0;
  // Only live samples (done == 0) read their next-step rows; an invalid done is reported by kernel 2.
  const bool live = active && a.done[row / a.N] == T(0);
  const T* logits = a.next_logits + row * a.A;
  const T* log_mu = a.next_log_mu + row * a.A;
  const bool* avail = a.next_avail + row * a.A;
  const Temperatures<T> t = make_temperatures<T>(a.alpha, a.beta, 0.0);
  const RowNeeds needs{/*logits=*/true, /*kl=*/true, /*target=*/false, /*lookahead=*/false, /*q=*/false};
  RowMax<T> m;
  RowSums<T> s;
  group_row_stats<G>(logits, log_mu, static_cast<const T*>(nullptr), avail, live ? a.A : 0, rl.lane, needs, t, m, s);
  if (!active || rl.lane != 0) return;

  if (!live) {  // terminal (or invalid done): kl = entropy = 0, nothing read
    a.kl[row] = a.entropy[row] = log_ratio_rows[row] = T(0);
    return;
  }
  const int64_t action = a.next_actions[row];
  const int64_t code = row_error(m, action, a.A, avail);
  if (code != 0) {
    report(status, row, code);
    a.kl[row] = a.entropy[row] = log_ratio_rows[row] = quiet_nan<T>();
    return;
  }
  a.kl[row] = kl_from_sums(s);
  a.entropy[row] = entropy_from_sums(s);
  log_ratio_rows[row] = taken_log_prob(logits[action], m, s) - log_mu[action];
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    soft_bellman_samples_kernel(const SoftBellmanTargetArgs<T> a, const T* log_ratio_rows, int64_t* status) {
  const int64_t b = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (b >= a.B) return;
  const int64_t N = a.N;
  const T done = a.done[b], reward = a.reward[b];
  const int64_t code = bellman_sample_code(done, reward, a.q_next + b);
  if (code != 0 || done == T(1)) {  // terminal (or invalid): none of the next-step inputs is read
    if (code != 0) report(status, b * N, code);
    a.target[b] = reward;
    a.log_ratio[b] = T(0);
    return;
  }
  bellman_sample_outputs(a, b, log_ratio_rows + b * N);
}

}  // namespace
}  // namespace cuda

template <typename T>
int64_t soft_bellman_target_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t) {
  return cuda::SoftBellmanWorkspace<T>(nullptr, S * B, N).bytes;  // per-sample math: args.B is S * B
}

template <typename T>
void soft_bellman_target_cuda(const SoftBellmanTargetArgs<T>& args, void* stream, int64_t* status_device) {
  using namespace cuda;
  const int64_t rows = args.B * args.N;
  if (args.B == 0) return;
  const SoftBellmanWorkspace<T> ws(args.workspace, args.B, args.N);
  require_workspace("soft_bellman_target", args.workspace, args.workspace_bytes, ws.bytes);
  if (rows > 0) {
    dispatch_group_size(args.A, [&](auto group) {
      constexpr int G = decltype(group)::value;
      soft_bellman_rows_kernel<G, T>
          <<<blocks_for(rows * G), kBlock, 0, as_stream(stream)>>>(args, ws.log_ratio_rows, status_device);
    });
    check_launch("soft_bellman_target");
  }
  soft_bellman_samples_kernel<T>
      <<<blocks_for(args.B), kBlock, 0, as_stream(stream)>>>(args, ws.log_ratio_rows, status_device);
  check_launch("soft_bellman_target");
}

INSPO_INSTANTIATE_CUDA(soft_bellman_target)

}  // namespace inspo
