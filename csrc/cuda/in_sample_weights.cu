// CUDA backend of in_sample_weights (reference.in_sample_weights; contract in common/args.h).
//
// One kernel: a group of G lanes per (b, i) row (common.cuh) computes the row's maxima and sums of the
// closed-form target logits, lane 0 validates the row and writes V, log w and w. No reduction across
// rows, so no workspace.
#include "common/backends.h"
#include "cuda/common.cuh"

namespace inspo {
namespace cuda {
namespace {

template <int G, typename T>
__global__ void __launch_bounds__(kBlock) in_sample_weights_kernel(const InSampleWeightsArgs<T> a, int64_t* status) {
  const RowLane<G> rl;
  const bool active = rl.row < a.B * a.N;
  const int64_t row = active ? rl.row : 0;  // padding groups point at row 0 but read nothing (A = 0)
  const T* q = a.q_local + row * a.A;
  const T* log_mu = a.log_mu + row * a.A;
  const bool* avail = a.avail + row * a.A;
  const Temperatures<T> t = make_temperatures<T>(a.alpha, a.beta, 0.0);
  const RowNeeds needs{/*logits=*/false, /*kl=*/false, /*target=*/true, /*lookahead=*/false, /*q=*/true};
  RowMax<T> m;
  RowSums<T> s;
  group_row_stats<G>(static_cast<const T*>(nullptr), log_mu, q, avail, active ? a.A : 0, rl.lane, needs, t, m, s);
  if (!active || rl.lane != 0) return;

  const int64_t action = a.actions[row];
  const int64_t code = row_error(m, action, a.A, avail);
  if (code != 0) {
    report(status, row, code);
    a.value[row] = a.log_weight[row] = a.weight[row] = quiet_nan<T>();
    return;
  }
  const T value = soft_value(m, s, t);
  const T log_weight = in_sample_log_weight(log_mu[action], q[action], m, s, t);
  a.value[row] = value;
  a.log_weight[row] = log_weight;
  a.weight[row] = clipped_weight(log_weight, T(a.log_w_max));
}

}  // namespace
}  // namespace cuda

template <typename T>
int64_t in_sample_weights_cuda_workspace_bytes(int64_t, int64_t, int64_t, int64_t) {
  return 0;
}

template <typename T>
void in_sample_weights_cuda(const InSampleWeightsArgs<T>& args, void* stream, int64_t* status_device) {
  using namespace cuda;
  const int64_t rows = args.B * args.N;
  if (rows == 0) return;
  dispatch_group_size(args.A, [&](auto group) {
    constexpr int G = decltype(group)::value;
    in_sample_weights_kernel<G, T><<<blocks_for(rows * G), kBlock, 0, as_stream(stream)>>>(args, status_device);
  });
  check_launch("in_sample_weights");
}

INSPO_INSTANTIATE_CUDA(in_sample_weights)

}  // namespace inspo
