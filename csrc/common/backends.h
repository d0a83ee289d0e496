// Entry points of the two backends; csrc/bindings.cpp calls them.
//
// CPU (csrc/cpu/OP.cpp): returns the packed status (args.h; kStatusOk when every input is valid).
//   Runs on the calling thread plus args.num_threads - 1 OpenMP threads; deterministic for a given
//   input whatever the thread count.
//
// CUDA (csrc/cuda/OP.cu, compiled only when INSPO_WITH_CUDA): launches on `stream` (a cudaStream_t
//   given as void*, from torch.cuda.current_stream().cuda_stream) and returns without synchronizing.
//   Errors in the inputs are atomicMin'ed (packed status, args.h) into *status_device, a device int64
//   holding kStatusOk or an earlier error: a fresh one the Python layer reads back after the call, or
//   the op's slot of a persistent per-device flag read later (deferred calls and CUDA graph captures,
//   python/inspo_ext/_status.py), so nothing here synchronizes. A launch / runtime error is reported by throwing
//   std::runtime_error (the bindings turn it into a Python RuntimeError). OP_cuda_workspace_bytes<T>(S, B, N, A) (0 if
//   none) is the size of args.workspace the kernels need for S problems of B samples; the Python layer allocates it
//   with torch on the tensors' device before each call (for resample, A is passed as 1).
//
// The table INSPO_OPS below is the one list of the ops: it declares both backends' entry points and the
// overloads run_cpu / run_cuda that the bindings dispatch on (by the argument struct); the bindings make one _C
// function per line (from its argument struct's field table, args.h) and walk it for the workspace query; it also gives
// the explicit instantiations each kernel file ends with (INSPO_INSTANTIATE_CPU(op) in csrc/cpu/OP.cpp,
// INSPO_INSTANTIATE_CUDA(op) in csrc/cuda/OP.cu; T = float and double).
#pragma once

#include <cstdint>

#include "common/args.h"

// X(op, Args): the op's name (its kernel files, its _C function) and its argument struct (args.h).
#define INSPO_OPS(X)                            \
  X(soft_bellman_target, SoftBellmanTargetArgs) \
  X(in_sample_weights, InSampleWeightsArgs)     \
  X(teammate_log_ratios, TeammateLogRatiosArgs) \
  X(resample, ResampleArgs)                     \
  X(sequential_policy_loss, SequentialPolicyLossArgs)

namespace inspo {

#define INSPO_DECLARE_CPU(op, Args)             \
  template <typename T>                         \
  using op##_args = Args<T>;                    \
  template <typename T>                         \
  int64_t op##_cpu(const Args<T>& args);        \
  template <typename T>                         \
  inline int64_t run_cpu(const Args<T>& args) { \
    return op##_cpu<T>(args);                   \
  }
INSPO_OPS(INSPO_DECLARE_CPU)
#undef INSPO_DECLARE_CPU

#define INSPO_INSTANTIATE_CPU(op)                            \
  template int64_t op##_cpu<float>(const op##_args<float>&); \
  template int64_t op##_cpu<double>(const op##_args<double>&);

// An environment variable that forces one of the CPU backend's run-time paths (csrc/cpu/cpu_features.cpp: the vector
// width, the row transposes), for testing each, and the values it accepts: any other value is ignored. The bindings
// export them (_C.CPU_PATH_VARIABLES), and inspo_ext warns about a value that would be ignored.
struct CpuPathVariable {
  const char* name;
  const char* values[3];
  int n_values;
};
extern const CpuPathVariable kCpuVectorBytesVariable;   // INSPO_CPU_VECTOR_BYTES: 16, 32, 64
extern const CpuPathVariable kCpuRowTransposeVariable;  // INSPO_CPU_ROW_TRANSPOSE: gathers, registers

#if defined(INSPO_WITH_CUDA) || defined(__CUDACC__)
#define INSPO_DECLARE_CUDA(op, Args)                                                \
  template <typename T>                                                             \
  void op##_cuda(const Args<T>& args, void* stream, int64_t* status_device);        \
  template <typename T>                                                             \
  int64_t op##_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t A);    \
  template <typename T>                                                             \
  inline void run_cuda(const Args<T>& args, void* stream, int64_t* status_device) { \
    op##_cuda<T>(args, stream, status_device);                                      \
  }
INSPO_OPS(INSPO_DECLARE_CUDA)
#undef INSPO_DECLARE_CUDA

#define INSPO_INSTANTIATE_CUDA(op)                                                       \
  template void op##_cuda<float>(const op##_args<float>&, void*, int64_t*);              \
  template void op##_cuda<double>(const op##_args<double>&, void*, int64_t*);            \
  template int64_t op##_cuda_workspace_bytes<float>(int64_t, int64_t, int64_t, int64_t); \
  template int64_t op##_cuda_workspace_bytes<double>(int64_t, int64_t, int64_t, int64_t);
#endif

}  // namespace inspo
