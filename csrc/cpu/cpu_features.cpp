// Run-time choices of the CPU backend: its vector width (common/cpu_simd.h: with_vector_width) and how the
// rows-across-lanes blocks transpose (common/cpu_row_lanes.h).
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
  // A cap for testing and comparing the code paths: INSPO_CPU_VECTOR_BYTES=16|32|64 (any other value is ignored;
  // inspo_ext/_backend.py warns about it).
  if (const char* cap = std::getenv("INSPO_CPU_VECTOR_BYTES")) {
    const int limit = std::strcmp(cap, "16") == 0   ? 16
                      : std::strcmp(cap, "32") == 0 ? 32
                      : std::strcmp(cap, "64") == 0 ? 64
                                                    : 0;
    if (limit != 0) bytes = bytes < limit ? bytes : limit;
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
  // For testing and comparing the two: INSPO_CPU_ROW_TRANSPOSE=gathers|registers (any other value is ignored;
  // inspo_ext/_backend.py warns about it).
  if (const char* how = std::getenv("INSPO_CPU_ROW_TRANSPOSE")) {
    if (std::strcmp(how, "gathers") == 0) gathers = true;
    if (std::strcmp(how, "registers") == 0) gathers = false;
  }
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
