// Entry points of the two backends; csrc/bindings.cpp calls them.
//
// CPU (csrc/cpu/OP.cpp): returns the packed status (args.h; kStatusOk when every input is valid).
//   Runs on the calling thread plus args.num_threads - 1 OpenMP threads; deterministic for a given
//   input whatever the thread count.
//
// CUDA (csrc/cuda/OP.cu, compiled only when INSPO_WITH_CUDA): launches on `stream` (a cudaStream_t
//   given as void*, from torch.cuda.current_stream().cuda_stream) and returns without synchronizing.
//   Errors in the inputs are atomicMin'ed (packed status, args.h) into *status_device, a device int64
//   that the Python layer initialises to kStatusOk; the Python layer reads it back after the call
//   (which synchronizes). A launch / runtime error is reported by throwing std::runtime_error (the
//   bindings turn it into a Python RuntimeError).
//   OP_cuda_workspace_bytes<T>(S, B, N, A) (0 if none) is the size of args.workspace the kernels need
//   for S problems of B samples;
//   the Python layer allocates it with torch on the tensors' device before each call (for resample,
//   A is passed as 1).
//   Each OP.cu defines the three functions below for its op, with explicit instantiations for
//   T = float and T = double.
#pragma once

#include <cstdint>

#include "common/args.h"

namespace inspo {

template <typename T> int64_t soft_bellman_target_cpu(const SoftBellmanTargetArgs<T>& args);
template <typename T> int64_t in_sample_weights_cpu(const InSampleWeightsArgs<T>& args);
template <typename T> int64_t teammate_log_ratios_cpu(const TeammateLogRatiosArgs<T>& args);
template <typename T> int64_t resample_cpu(const ResampleArgs<T>& args);
template <typename T> int64_t sequential_policy_loss_cpu(const SequentialPolicyLossArgs<T>& args);

#if defined(INSPO_WITH_CUDA) || defined(__CUDACC__)
template <typename T> void soft_bellman_target_cuda(const SoftBellmanTargetArgs<T>& args, void* stream,
                                                    int64_t* status_device);
template <typename T> void in_sample_weights_cuda(const InSampleWeightsArgs<T>& args, void* stream,
                                                  int64_t* status_device);
template <typename T> void teammate_log_ratios_cuda(const TeammateLogRatiosArgs<T>& args, void* stream,
                                                    int64_t* status_device);
template <typename T> void resample_cuda(const ResampleArgs<T>& args, void* stream, int64_t* status_device);
template <typename T> void sequential_policy_loss_cuda(const SequentialPolicyLossArgs<T>& args, void* stream,
                                                       int64_t* status_device);

template <typename T> int64_t soft_bellman_target_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t A);
template <typename T> int64_t in_sample_weights_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t A);
template <typename T> int64_t teammate_log_ratios_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t A);
template <typename T> int64_t resample_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t A);
template <typename T> int64_t sequential_policy_loss_cuda_workspace_bytes(int64_t S, int64_t B, int64_t N, int64_t A);
#endif

}  // namespace inspo
