// CUDA-only plumbing shared by the op kernels (csrc/cuda/OP.cu): error reporting, workspace layout,
// and the row-group layout that runs the per-row math of common/inspo_math.h with several threads per row.
//
// Every formula lives in common/inspo_math.h (tested through the CPU backend); this file only decides
// which thread computes what and how partial results are combined.
//
// Row-group layout. A row is one (sample, agent) pair: A entries of logits / log_mu / q / avail. A group
// of G consecutive lanes of a warp handles one row: lane l reads entries l, l + G, l + 2G, ... (so a warp
// reads 32 / G consecutive rows, or 32 consecutive entries of one row: coalesced either way), runs
// pass 1 (add_max), merges the maxima across the group with xor shuffles, runs pass 2 (add_sums) and
// merges the sums the same way. A xor butterfly gives every lane the same bits (each level adds the same
// two operands, in either order, and + is commutative), and the grouping depends only on G, which
// depends only on A: the results are bit-identical run to run. G is picked from A (group_size_for) so
// that A = 5 wastes few lanes and A = 1024 still has a full warp per row.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "common/args.h"
#include "common/inspo_math.h"

namespace inspo {
namespace cuda {

constexpr int kBlock = 256;  // threads per block of every kernel (a multiple of 32 and of every G)
constexpr unsigned kFullMask = 0xffffffffu;

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Launch / runtime errors become std::runtime_error (backends.h); the bindings raise it as RuntimeError.
inline void check_launch(const char* op) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("inspo_ext.") + op + ": CUDA kernel launch failed: " + cudaGetErrorName(err) +
                             ": " + cudaGetErrorString(err));
  }
}

inline unsigned blocks_for(int64_t threads) { return static_cast<unsigned>((threads + kBlock - 1) / kBlock); }

// First error wins deterministically: the packed status orders errors by (flat index, code).
__device__ inline void report(int64_t* status, int64_t flat_index, int64_t code) {
  atomicMin(reinterpret_cast<long long*>(status), static_cast<long long>(pack_status(flat_index, code)));
}

template <typename T>
__device__ inline T quiet_nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

// ---- workspace ---------------------------------------------------------------------------------------

// Carves typed arrays out of the workspace, each 256-byte aligned. The same sequence of take() calls run
// on a null base gives the byte count (OP_cuda_workspace_bytes), so size and layout cannot disagree.
class WorkspaceCarver {
 public:
  explicit WorkspaceCarver(void* base) : base_(reinterpret_cast<uintptr_t>(base)) {}
  template <typename U>
  U* take(int64_t count) {
    U* p = reinterpret_cast<U*>(base_ + uintptr_t(bytes_));
    bytes_ += (count * int64_t(sizeof(U)) + 255) / 256 * 256;
    return p;
  }
  int64_t bytes() const { return bytes_; }

 private:
  uintptr_t base_;
  int64_t bytes_ = 0;
};

// The Python layer allocates OP_cuda_workspace_bytes; a smaller buffer is a bug there, not a user error.
inline void require_workspace(const char* op, const void* workspace, int64_t have, int64_t need) {
  if (need > 0 && (workspace == nullptr || have < need)) {
    throw std::runtime_error(std::string("inspo_ext.") + op + ": CUDA workspace of " + std::to_string(have) +
                             " bytes, needs " + std::to_string(need));
  }
}

// ---- row groups ----------------------------------------------------------------------------------------

// Lanes per row: about 1-2 entries per lane for small A, a full warp from A = 129 on.
inline int group_size_for(int64_t A) { return A <= 8 ? 4 : A <= 32 ? 8 : A <= 128 ? 16 : 32; }

// Calls f(std::integral_constant<int, G>) with the group size for A (one kernel instantiation per G).
template <typename F>
void dispatch_group_size(int64_t A, F&& f) {
  switch (group_size_for(A)) {
    case 4:
      f(std::integral_constant<int, 4>{});
      break;
    case 8:
      f(std::integral_constant<int, 8>{});
      break;
    case 16:
      f(std::integral_constant<int, 16>{});
      break;
    default:
      f(std::integral_constant<int, 32>{});
      break;
  }
}

// Row index and lane of this thread in a grid of kBlock-thread blocks, G lanes per row.
template <int G>
struct RowLane {
  int64_t row;
  int lane;
  __device__ RowLane() : row((int64_t(blockIdx.x) * kBlock + threadIdx.x) / G), lane(int(threadIdx.x % G)) {}
};

// Every lane of a group ends with the merged pass-1 result of the row. Must be reached by all 32 lanes
// of the warp (the shuffles use the full mask): callers never branch around it, they pass A = 0 for an
// inactive row instead. Fields a `needs` flag switches off are -inf in every lane and are not shuffled.
template <int G, typename T>
__device__ inline void group_merge(RowMax<T>& r, const RowNeeds& needs) {
#pragma unroll
  for (int offset = G / 2; offset > 0; offset /= 2) {
    RowMax<T> o = RowMax<T>::empty();
    o.n_avail = __shfl_xor_sync(kFullMask, (long long)r.n_avail, offset, G);
    const int flags = int(r.bad_logits) | (int(r.bad_log_mu) << 1) | (int(r.bad_q) << 2);
    const int other = __shfl_xor_sync(kFullMask, flags, offset, G);
    o.bad_logits = (other & 1) != 0;
    o.bad_log_mu = (other & 2) != 0;
    o.bad_q = (other & 4) != 0;
    if (needs.logits) o.logits = __shfl_xor_sync(kFullMask, r.logits, offset, G);
    if (needs.target) o.target = __shfl_xor_sync(kFullMask, r.target, offset, G);
    if (needs.lookahead) o.lookahead = __shfl_xor_sync(kFullMask, r.lookahead, offset, G);
    r.merge(o);
  }
}

template <int G, typename T>
__device__ inline void group_merge(RowSums<T>& s, const RowNeeds& needs) {
#pragma unroll
  for (int offset = G / 2; offset > 0; offset /= 2) {
    RowSums<T> o = RowSums<T>::zero();
    if (needs.logits) {
      o.exp_logits = __shfl_xor_sync(kFullMask, s.exp_logits, offset, G);
      o.exp_logits_shift = __shfl_xor_sync(kFullMask, s.exp_logits_shift, offset, G);
    }
    if (needs.kl) o.exp_logits_log_mu = __shfl_xor_sync(kFullMask, s.exp_logits_log_mu, offset, G);
    if (needs.target) o.exp_target = __shfl_xor_sync(kFullMask, s.exp_target, offset, G);
    if (needs.lookahead) o.exp_lookahead = __shfl_xor_sync(kFullMask, s.exp_lookahead, offset, G);
    s.merge(o);
  }
}

// Both passes over one row by a group of G lanes; every lane ends with the row's merged RowMax / RowSums.
// `A` is 0 for an inactive row (a padding group at the end of the grid, or a row the op skips), so no
// entry is read but the shuffles still run. Pointers that `needs` does not use may be null.
template <int G, typename T>
__device__ inline void group_row_stats(const T* logits, const T* log_mu, const T* q, const bool* avail, int64_t A,
                                       int lane, const RowNeeds& needs, const Temperatures<T>& t, RowMax<T>& m,
                                       RowSums<T>& s) {
  m = RowMax<T>::empty();
  for (int64_t j = lane; j < A; j += G) {
    add_max(m, avail[j], needs.logits ? logits[j] : T(0), log_mu[j], needs.q ? q[j] : T(0), needs, t);
  }
  group_merge<G>(m, needs);
  s = RowSums<T>::zero();
  for (int64_t j = lane; j < A; j += G) {
    add_sums(s, m, avail[j], needs.logits ? logits[j] : T(0), log_mu[j], needs.q ? q[j] : T(0), needs, t);
  }
  group_merge<G>(s, needs);
}

// ---- order -----------------------------------------------------------------------------------------------

// Block-wide check that order[0..N) is a permutation of 0..N-1 (run by one block of a row kernel, so it
// costs no launch of its own). Entry m is out of range or repeats an earlier entry: O(N^2 / kBlock)
// comparisons, nothing for the agent counts of MARL (N <= a few hundred).
// `n_orders` orders of N entries each (one per problem, or one shared).
__device__ inline void check_orders(const int64_t* order, int64_t n_orders, int64_t N, int64_t* status) {
  for (int64_t e = threadIdx.x; e < n_orders * N; e += blockDim.x) {
    const int64_t* row = order + (e / N) * N;
    const int64_t m = e % N, agent = order[e];
    bool bad = agent < 0 || agent >= N;
    for (int64_t k = 0; k < m && !bad; ++k) bad = row[k] == agent;
    if (bad) report(status, 0, kOrderNotPermutation);
  }
}

// True when every order entry is a valid agent index: the per-sample walks index with order[m], so they
// run only then (a repeated entry cannot index out of bounds; it is reported by check_order).
__device__ inline bool order_in_range(const int64_t* order, int64_t N) {
  for (int64_t m = 0; m < N; ++m) {
    if (order[m] < 0 || order[m] >= N) return false;
  }
  return true;
}

// Kernels defined in this header get internal linkage (one copy per .cu file), so no two translation
// units register the same host stub.
namespace {

// One thread per sample: the ordered teammate log-ratios of its N agents from the per-row d_cur / d_upd
// (common/inspo_math.h ordered_log_ratios, the CPU backend's walk). Rows are [S, B, N], sample b of
// problem s walks order + s * order_stride; N is small, so the strided reads (one sample's N values per
// thread) stay in L1 / L2.
template <typename T>
__global__ void __launch_bounds__(kBlock)
    ordered_log_ratios_kernel(const T* d_cur, const T* d_upd, const int64_t* problem_orders, int64_t order_stride,
                              int64_t S, int64_t B, int64_t N, double log_rho_max, T* log_rho) {
  const int64_t b = int64_t(blockIdx.x) * kBlock + threadIdx.x;  // flat sample s * B + b
  if (b >= S * B) return;
  const int64_t* order = problem_orders + (b / B) * order_stride;
  T* out = log_rho + b * N;
  if (!order_in_range(order, N)) {  // reported by check_order; outputs of an invalid call are unspecified
    for (int64_t i = 0; i < N; ++i) out[i] = quiet_nan<T>();
    return;
  }
  ordered_log_ratios(d_cur + b * N, d_upd + b * N, order, N, T(log_rho_max), out);
}

}  // namespace

}  // namespace cuda
}  // namespace inspo
