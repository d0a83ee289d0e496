// CUDA backend of resample (reference.resample; contract in common/args.h).
//
// A column is (problem s, agent i): log_rho[s, :, i], B samples at stride N. Its samples are cut into
// tiles of kTile = kScanThreads * kScanItems, and every kernel but the column ones runs one block per
// (column, tile), so that a few long columns (N = 8 agents, B = 10^5..10^6) still fill the GPU:
//   1. tile_max:  validate the tile's log_rho and uniforms; the tile's maximum (CUB BlockReduce).
//   2. column:    one block per column: the column maximum M from its tiles' maxima; a column of -inf only
//                 is reported (kNoPositiveWeight) and marked for the kernels after it.
//   3. tile_scan: w_b = (double) exp(log_rho[b] - M) (exp in T, then widened, as the reference), their
//                 inclusive scan within the tile (CUB BlockScan, double) into the workspace, the tile's sum
//                 (its last scanned value) and its sum of squares.
//   4. totals:    one block per column: the tiles' exclusive prefix (a block scan, the running total
//                 carried from chunk to chunk), the total (the last tile's prefix + its last scanned value:
//                 the cdf's last entry, as in the reference) and the ESS total^2 / sum w^2.
//   5. draws:     one thread per draw (k, i): its point v (multinomial or systematic) and a binary search
//                 of the first b with cdf[b] = prefix[tile(b)] + scanned[b] > v (searchsorted right=True),
//                 clamped to B - 1.
// A column without a positive weight (or with an invalid entry, whose total is NaN) is never searched:
// its draws are 0 (the outputs of an invalid call are unspecified) and nothing reads its unwritten scan.
// The association of every sum is fixed by kTile and the block shapes, so the cdf is bit-identical run to
// run; it may differ from the sequential CPU / reference cumsum in the last bits, which moves a draw only
// when its point falls within a few ulps of a cdf value (probability ~1e-15 per draw for random uniforms).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "common/backends.h"
#include "cuda/common.cuh"

namespace inspo {
namespace cuda {
namespace {

constexpr int kScanThreads = 256;
constexpr int kScanItems = 4;                         // samples per thread of a tile
constexpr int64_t kTile = kScanThreads * kScanItems;  // samples per tile

inline int64_t tiles_for(int64_t B) { return (B + kTile - 1) / kTile; }

using SumReduce = cub::BlockReduce<double, kScanThreads>;
using Scan = cub::BlockScan<double, kScanThreads>;
// The shared memory of a kernel that scans doubles and sums them over its block, one after the other (a
// __syncthreads between the two uses).
union ScanSumStorage {
  typename SumReduce::TempStorage sum;
  typename Scan::TempStorage scan;
};

// Workspace layout; built on a null base it gives the byte count. C = S * N columns of T tiles each.
template <typename T>
struct ResampleWorkspace {
  double* scanned;       // [C, B]: the inclusive scan of w within each tile (agent i contiguous)
  T* tile_max;           // [C, T]
  T* column_max;         // [C]: -inf for a column without a positive weight
  double* tile_sum;      // [C, T]: the tile's last scanned value
  double* tile_squares;  // [C, T]: the tile's sum of w^2
  double* tile_prefix;   // [C, T]: the sum of the tiles before it
  double* total;         // [C]: the cdf's last entry; NaN for a column the draws must not search
  int64_t bytes;

  ResampleWorkspace(void* base, int64_t S, int64_t B, int64_t N) {
    const int64_t columns = S * N, tiles = columns * tiles_for(B);
    WorkspaceCarver carver(base);
    scanned = carver.take<double>(columns * B);
    tile_max = carver.take<T>(tiles);
    column_max = carver.take<T>(columns);
    tile_sum = carver.take<double>(tiles);
    tile_squares = carver.take<double>(tiles);
    tile_prefix = carver.take<double>(tiles);
    total = carver.take<double>(columns);
    bytes = carver.bytes();
  }
};

template <typename T>
struct MaxOp {
  __device__ T operator()(T x, T y) const { return max_(x, y); }
};

// Carries a scan across chunks: called by the first warp with the chunk's sum, returns the chunk's prefix.
struct RunningTotal {
  double total;
  __device__ double operator()(double chunk_sum) {
    const double prefix = total;
    total += chunk_sum;
    return prefix;
  }
};

// The (column, tile) of this block in a grid of columns * tiles blocks, and the column's first entry.
struct TileBlock {
  int64_t column, tile, s, i, first;
  __device__ TileBlock(int64_t B, int64_t N, int64_t tiles)
      : column(int64_t(blockIdx.x) / tiles),
        tile(int64_t(blockIdx.x) % tiles),
        s(column / N),
        i(column % N),
        first(s * B * N + i) {}
};

template <typename T>
__global__ void __launch_bounds__(kScanThreads)
    resample_tile_max_kernel(const ResampleArgs<T> a, int64_t tiles, T* tile_max, int64_t* status) {
  using MaxReduce = cub::BlockReduce<T, kScanThreads>;
  __shared__ typename MaxReduce::TempStorage temp;
  const int64_t B = a.B, N = a.N;
  const TileBlock t(B, N, tiles);
  const T* log_rho = a.log_rho + t.first;  // column (s, i), stride N
  const bool systematic = a.method == kResampleSystematic;
  // NaN / +inf are invalid; -inf is a zero weight; uniforms in [0, 1).
  T thread_max = neg_inf<T>();
  const int64_t end = min_(B, (t.tile + 1) * kTile);
  for (int64_t b = t.tile * kTile + threadIdx.x; b < end; b += kScanThreads) {
    const T x = log_rho[b * N];
    if (x != x || x == -neg_inf<T>())
      report(status, t.first + b * N, kLogRhoInvalid);
    else
      thread_max = max_(thread_max, x);
    if (!systematic || b == 0) {
      const double u = a.uniforms[(systematic ? t.s * N + t.i : t.first) + b * N];
      if (!(u >= 0.0 && u < 1.0)) report(status, t.first + b * N, kUniformInvalid);
    }
  }
  const T block_max = MaxReduce(temp).Reduce(thread_max, MaxOp<T>());
  if (threadIdx.x == 0) tile_max[blockIdx.x] = block_max;
}

template <typename T>
__global__ void __launch_bounds__(kScanThreads)
    resample_column_kernel(const ResampleArgs<T> a, int64_t tiles, const T* tile_max, T* column_max, int64_t* status) {
  using MaxReduce = cub::BlockReduce<T, kScanThreads>;
  __shared__ typename MaxReduce::TempStorage temp;
  const int64_t column = blockIdx.x;
  T thread_max = neg_inf<T>();
  for (int64_t tile = threadIdx.x; tile < tiles; tile += kScanThreads)
    thread_max = max_(thread_max, tile_max[column * tiles + tile]);
  const T max = MaxReduce(temp).Reduce(thread_max, MaxOp<T>());
  if (threadIdx.x == 0) {
    column_max[column] = max;
    if (max == neg_inf<T>()) report(status, a.S * a.B * a.N + column, kNoPositiveWeight);
  }
}

template <typename T>
__global__ void __launch_bounds__(kScanThreads)
    resample_tile_scan_kernel(const ResampleArgs<T> a, int64_t tiles, const T* column_max, double* scanned_all,
                              double* tile_sum, double* tile_squares) {
  __shared__ ScanSumStorage temp;
  const int64_t B = a.B, N = a.N;
  const TileBlock t(B, N, tiles);
  const T max = column_max[t.column];
  if (max == neg_inf<T>()) return;  // nothing to draw from: the totals kernel marks the column (block-uniform)
  const T* log_rho = a.log_rho + t.first;
  double* scanned = scanned_all + t.column * B;
  const int64_t first = t.tile * kTile + int64_t(threadIdx.x) * kScanItems;  // blocked: consecutive b per thread
  double w[kScanItems], squares = 0.0;
#pragma unroll
  for (int k = 0; k < kScanItems; ++k) {
    const int64_t b = first + k;
    w[k] = b < B ? double(exp_(T(log_rho[b * N] - max))) : 0.0;  // exp in T, then widened (as the reference)
    squares += w[k] * w[k];
  }
  Scan(temp.scan).InclusiveSum(w, w);
#pragma unroll
  for (int k = 0; k < kScanItems; ++k) {
    if (first + k < B) scanned[first + k] = w[k];
  }
  // The tile's sum is its last scanned value (not a separate reduction), so that prefix + scanned at the
  // tile's last sample and the next tile's prefix are the same double.
  const int64_t last = min_(B, (t.tile + 1) * kTile) - 1;
  if (last >= first && last < first + kScanItems) tile_sum[blockIdx.x] = w[last - first];
  __syncthreads();  // temp.scan is reused by the reduction
  const double block_squares = SumReduce(temp.sum).Sum(squares);
  if (threadIdx.x == 0) tile_squares[blockIdx.x] = block_squares;
}

template <typename T>
__global__ void __launch_bounds__(kScanThreads)
    resample_totals_kernel(const ResampleArgs<T> a, int64_t tiles, const T* column_max, const double* tile_sum,
                           const double* tile_squares, double* tile_prefix, double* total) {
  __shared__ ScanSumStorage temp;
  const int64_t column = blockIdx.x;
  if (column_max[column] == neg_inf<T>()) {  // block-uniform exit
    if (threadIdx.x == 0) {
      total[column] = quiet_nan<double>();
      a.ess[column] = quiet_nan<T>();
    }
    return;
  }
  const double* sums = tile_sum + column * tiles;
  double* prefix = tile_prefix + column * tiles;
  RunningTotal running{0.0};
  double squares = 0.0;
  for (int64_t chunk = 0; chunk < tiles; chunk += kScanThreads) {
    const int64_t tile = chunk + threadIdx.x;
    double sum = tile < tiles ? sums[tile] : 0.0;
    if (tile < tiles) squares += tile_squares[column * tiles + tile];
    Scan(temp.scan).ExclusiveSum(sum, sum, running);
    __syncthreads();  // temp.scan is reused by the next chunk
    if (tile < tiles) prefix[tile] = sum;
  }
  __syncthreads();  // makes the last chunk's prefix stores visible to thread 0
  const double sum_squares = SumReduce(temp.sum).Sum(squares);
  if (threadIdx.x == 0) {
    const double column_total = prefix[tiles - 1] + sums[tiles - 1];  // the draws' cdf[B - 1], bit for bit
    total[column] = column_total;
    a.ess[column] = T(column_total * column_total / sum_squares);
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    resample_draw_kernel(const ResampleArgs<T> a, int64_t tiles, const double* scanned_all, const double* tile_prefix,
                         const double* total_all) {
  // draw k of agent i of problem s at e = (s * B + k) * N + i
  const int64_t e = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (e >= a.S * a.B * a.N) return;
  const int64_t B = a.B, r = e / a.N, s = r / B, k = r % B, i = e % a.N, column = s * a.N + i;
  const double total = total_all[column];
  if (!(total > 0.0)) {  // no positive weight, or an invalid entry (reported): nothing to search
    a.indices[e] = 0;
    return;
  }
  const double* scanned = scanned_all + column * B;
  const double* prefix = tile_prefix + column * tiles;
  const double point = a.method == kResampleSystematic ? (double(k) + a.uniforms[s * a.N + i]) / double(B) * total
                                                       : a.uniforms[e] * total;
  int64_t lo = 0, hi = B;  // first b in [lo, hi) with cdf[b] > point; B when there is none
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (prefix[mid / kTile] + scanned[mid] > point)
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
  return cuda::ResampleWorkspace<T>(nullptr, S, B, N).bytes;
}

template <typename T>
void resample_cuda(const ResampleArgs<T>& args, void* stream, int64_t* status_device) {
  using namespace cuda;
  if (args.S == 0 || args.B == 0 || args.N == 0) return;
  const ResampleWorkspace<T> ws(args.workspace, args.S, args.B, args.N);
  require_workspace("resample", args.workspace, args.workspace_bytes, ws.bytes);
  const int64_t columns = args.S * args.N, tiles = tiles_for(args.B);
  const cudaStream_t s = as_stream(stream);
  resample_tile_max_kernel<T>
      <<<unsigned(columns * tiles), kScanThreads, 0, s>>>(args, tiles, ws.tile_max, status_device);
  check_launch("resample");
  resample_column_kernel<T>
      <<<unsigned(columns), kScanThreads, 0, s>>>(args, tiles, ws.tile_max, ws.column_max, status_device);
  check_launch("resample");
  resample_tile_scan_kernel<T><<<unsigned(columns * tiles), kScanThreads, 0, s>>>(
      args, tiles, ws.column_max, ws.scanned, ws.tile_sum, ws.tile_squares);
  check_launch("resample");
  resample_totals_kernel<T><<<unsigned(columns), kScanThreads, 0, s>>>(args, tiles, ws.column_max, ws.tile_sum,
                                                                       ws.tile_squares, ws.tile_prefix, ws.total);
  check_launch("resample");
  resample_draw_kernel<T>
      <<<blocks_for(args.S * args.B * args.N), kBlock, 0, s>>>(args, tiles, ws.scanned, ws.tile_prefix, ws.total);
  check_launch("resample");
}

INSPO_INSTANTIATE_CUDA(resample)

}  // namespace inspo
