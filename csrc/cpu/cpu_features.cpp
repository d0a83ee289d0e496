// Run-time choices of the CPU backend: its vector width (common/cpu_simd.h: with_vector_width) and how the
// rows-across-lanes blocks transpose (common/cpu_row_lanes.h).
#include <cstdlib>
#include <cstring>

#include "common/backends.h"
#include "common/cpu_simd.h"

namespace inspo {

const CpuPathVariable kCpuVectorBytesVariable{"INSPO_CPU_VECTOR_BYTES", {"16", "32", "64"}, 3};
const CpuPathVariable kCpuRowTransposeVariable{"INSPO_CPU_ROW_TRANSPOSE", {"gathers", "registers"}, 2};

namespace {

// The index in v.values of the variable's value, or -1 when it is unset or not one of them.
int chosen_value(const CpuPathVariable& v) {
  const char* value = std::getenv(v.name);
  if (value == nullptr) return -1;
  for (int k = 0; k < v.n_values; ++k) {
    if (std::strcmp(value, v.values[k]) == 0) return k;
  }
  return -1;
}

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
  const int cap = chosen_value(kCpuVectorBytesVariable);
  if (cap >= 0) {
    const int limit = std::atoi(kCpuVectorBytesVariable.values[cap]);
    bytes = bytes < limit ? bytes : limit;
  }
  return bytes;
}

bool detect_row_gathers() {
  bool gathers = false;
#if defined(INSPO_CPU_DISPATCH)
  // Intel with AMX: Sapphire Rapids and later, where the gathers were measured faster. Older Intel CPUs with AVX-512
  // (Skylake to Ice Lake) were not measured, and Intel's microcode mitigation of Gather Data Sampling slows their
  // gathers, so they take the registers, as AMD's do.
  __builtin_cpu_init();
  gathers = __builtin_cpu_is("intel") && __builtin_cpu_supports("amx-tile");
#endif
  // For testing and comparing the two: INSPO_CPU_ROW_TRANSPOSE=gathers|registers.
  const int how = chosen_value(kCpuRowTransposeVariable);
  if (how >= 0) gathers = std::strcmp(kCpuRowTransposeVariable.values[how], "gathers") == 0;
  return gathers;
}

}  // namespace

int cpu_vector_bytes() {
  static const int bytes = detect_vector_bytes();
  return bytes;
}

bool cpu_row_gathers() {
  static const bool gathers = detect_row_gathers();
  return gathers;
}

}  // namespace inspo
