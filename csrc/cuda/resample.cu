// CUDA backend of resample (reference.resample; contract in common/args.h).
//
// Two kernels on the stream:
//   1. cdf: one block per column (problem s, agent i). Pass 1 validates the column log_rho[s, :, i] and
//      its uniforms and finds its maximum (CUB
//      BlockReduce); pass 2 scans w_b = (double) exp(log_rho[b, i] - max) in tiles of
//      kScanThreads * kScanItems samples (CUB BlockScan, inclusive, in double, the running total carried
//      from tile to tile by the prefix callback) into the workspace cdf [N, B] (agent i contiguous), and
//      the ESS (cdf[B - 1]^2 / sum w^2, the squares reduced with BlockReduce).
//   2. draws: one thread per draw (k, i): the draw's point v (multinomial or systematic), then a binary
//      search of the first b with cdf[b] > v (upper bound, as searchsorted(right=True)), clamped to B - 1.
// A block scan rather than DeviceScan: the columns are short (B <= a few 10^4) and there are N of them;
// one block per column needs no global decoupled look-back and no temporary storage query. The scan's
// association is fixed by (kScanThreads, kScanItems), so the cdf is bit-identical run to run; it may
// differ from the sequential CPU / reference cumsum in the last bits, which moves a draw only when its
// point falls within a few ulps of a cdf value (probability ~1e-15 per draw for random uniforms).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "common/backends.h"
#include "cuda/common.cuh"

namespace inspo {
namespace cuda {
namespace {

constexpr int kScanThreads = 256;
constexpr int kScanItems = 4;  // samples per thread per tile: 1024 samples a tile

// Workspace layout; built on a null base it gives the byte count.
struct ResampleWorkspace {
  double* cdf;  // [S, N, B]
  int64_t bytes;

  ResampleWorkspace(void* base, int64_t S, int64_t B, int64_t N) {
    WorkspaceCarver carver(base);
    cdf = carver.take<double>(S * N * B);
    bytes = carver.bytes();
  }
};

template <typename T>
struct MaxOp {
  __device__ T operator()(T x, T y) const { return max_(x, y); }
};

// Carries the cdf across tiles: called by the first warp with the tile's sum, returns the tile's prefix.
struct RunningTotal {
  double total;
  __device__ double operator()(double tile_sum) {
    const double prefix = total;
    total += tile_sum;
    return prefix;
  }
};

template <typename T>
__global__ void __launch_bounds__(kScanThreads)
    resample_cdf_kernel(const ResampleArgs<T> a, double* cdf_all, int64_t* status) {
  using MaxReduce = cub::BlockReduce<T, kScanThreads>;
  using SumReduce = cub::BlockReduce<double, kScanThreads>;
  using Scan = cub::BlockScan<double, kScanThreads>;
  __shared__ union {
    typename MaxReduce::TempStorage max;
    typename SumReduce::TempStorage sum;
    typename Scan::TempStorage scan;
  } temp;
  __shared__ T column_max;

  const int64_t S = a.S, B = a.B, N = a.N, column = blockIdx.x, s = column / N, i = column % N;
  const int64_t first = s * B * N + i;   // flat index of (s, 0, i)
  const T* log_rho = a.log_rho + first;  // column (s, i), stride N
  double* cdf = cdf_all + column * B;
  const bool systematic = a.method == kResampleSystematic;

  // Pass 1: validate (NaN / +inf are invalid; -inf is a zero weight; uniforms in [0, 1)) and take the
  // maximum of the rest.
  T thread_max = neg_inf<T>();
  for (int64_t b = threadIdx.x; b < B; b += kScanThreads) {
    const T x = log_rho[b * N];
    if (x != x || x == -neg_inf<T>())
      report(status, first + b * N, kLogRhoInvalid);
    else
      thread_max = max_(thread_max, x);
    if (!systematic || b == 0) {
      const double u = a.uniforms[(systematic ? s * N + i : first) + b * N];
      if (!(u >= 0.0 && u < 1.0)) report(status, first + b * N, kUniformInvalid);
    }
  }
  const T block_max = MaxReduce(temp.max).Reduce(thread_max, MaxOp<T>());
  if (threadIdx.x == 0) column_max = block_max;
  __syncthreads();
  const T max = column_max;
  if (max == neg_inf<T>()) {  // every weight is zero: nothing to draw from (block-uniform exit)
    if (threadIdx.x == 0) {
      report(status, S * B * N + column, kNoPositiveWeight);
      a.ess[column] = quiet_nan<T>();
    }
    return;
  }

  // Pass 2: inclusive scan of the weights, tile by tile, and the sum of their squares.
  RunningTotal running{0.0};
  double sum_squares = 0.0;
  for (int64_t tile = 0; tile < B; tile += int64_t(kScanThreads) * kScanItems) {
    const int64_t first = tile + int64_t(threadIdx.x) * kScanItems;  // blocked: consecutive b per thread
    double w[kScanItems];
#pragma unroll
    for (int k = 0; k < kScanItems; ++k) {
      const int64_t b = first + k;
      w[k] = b < B ? double(exp_(T(log_rho[b * N] - max))) : 0.0;  // exp in T, then widened (as the reference)
      sum_squares += w[k] * w[k];
    }
    Scan(temp.scan).InclusiveSum(w, w, running);
    __syncthreads();  // temp.scan is reused by the next tile
#pragma unroll
    for (int k = 0; k < kScanItems; ++k) {
      if (first + k < B) cdf[first + k] = w[k];
    }
  }
  const double block_sum_squares = SumReduce(temp.sum).Sum(sum_squares);
  __syncthreads();  // makes every thread's cdf stores visible to thread 0
  if (threadIdx.x == 0) {
    const double total = cdf[B - 1];  // the draws' total too: the last cdf entry, as in the reference
    a.ess[column] = T(total * total / block_sum_squares);
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock) resample_draw_kernel(const ResampleArgs<T> a, const double* cdf_all) {
  // draw k of agent i of problem s at e = (s * B + k) * N + i
  const int64_t e = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (e >= a.S * a.B * a.N) return;
  const int64_t B = a.B, r = e / a.N, s = r / B, k = r % B, i = e % a.N;
  const double* cdf = cdf_all + (s * a.N + i) * B;
  const double total = cdf[B - 1];
  const double point = a.method == kResampleSystematic ? (double(k) + a.uniforms[s * a.N + i]) / double(B) * total
                                                       : a.uniforms[e] * total;
  int64_t lo = 0, hi = B;  // first b in [lo, hi) with cdf[b] > point; B when there is none
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (cdf[mid] > point)
      hi = mid;
    else
      lo = mid + 1;
  }
  a.indices[e] = min_(lo, B - 1);
}

}  // namespace
}  // namespace cuda

template <typename T>
int64_t resample_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t) {
  return cuda::ResampleWorkspace(nullptr, S, B, N).bytes;
}

template <typename T>
void resample_cuda(const ResampleArgs<T>& args, void* stream, int64_t* status_device) {
  using namespace cuda;
  if (args.S == 0 || args.B == 0 || args.N == 0) return;
  const ResampleWorkspace ws(args.workspace, args.S, args.B, args.N);
  require_workspace("resample", args.workspace, args.workspace_bytes, ws.bytes);
  resample_cdf_kernel<T>
      <<<unsigned(args.S * args.N), kScanThreads, 0, as_stream(stream)>>>(args, ws.cdf, status_device);
  check_launch("resample");
  resample_draw_kernel<T><<<blocks_for(args.S * args.B * args.N), kBlock, 0, as_stream(stream)>>>(args, ws.cdf);
  check_launch("resample");
}

INSPO_INSTANTIATE_CUDA(resample)

}  // namespace inspo
