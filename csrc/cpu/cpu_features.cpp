// Run-time choice of the CPU backend's vector width (common/cpu_simd.h: with_vector_width).
#include <cstdlib>
#include <cstring>

#include "common/cpu_simd.h"

namespace inspo {
namespace {

int detect_vector_bytes() {
  int bytes = 16;  // SSE2: every x86-64 CPU (and the width of the portable code elsewhere)
#if defined(INSPO_CPU_DISPATCH)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) bytes = 32;
  if (bytes == 32 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    bytes = 64;
#endif
  // A cap for testing and comparing the code paths: INSPO_CPU_VECTOR_BYTES=16|32|64.
  if (const char* cap = std::getenv("INSPO_CPU_VECTOR_BYTES")) {
    const int limit = std::atoi(cap);
    if (limit == 16 || limit == 32 || limit == 64) bytes = bytes < limit ? bytes : limit;
  }
  return bytes;
}

}  // namespace

int cpu_vector_bytes() {
  static const int bytes = detect_vector_bytes();
  return bytes;
}

}  // namespace inspo
