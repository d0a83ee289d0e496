// OpenMP helper of the CPU backend: fixed-size chunks, so results never depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/args.h"

namespace inspo {

// Items per chunk for a loop whose items each touch `elements_per_item` elements: about `target`
// elements per chunk (large enough that OpenMP scheduling costs nothing, small enough to balance).
inline int64_t chunk_items(int64_t elements_per_item, int64_t target = 16384) {
  return std::max<int64_t>(1, target / std::max<int64_t>(1, elements_per_item));
}

// Splits [0, n) into consecutive chunks of `chunk` items and runs body(chunk_index, begin, end) on
// each, on up to `num_threads` threads (one thread when there is a single chunk). The chunks depend
// only on n and chunk, so anything reduced per chunk and then combined in chunk order is independent
// of the thread count. body returns a packed status (args.h); the minimum is returned.
template <typename Body>
int64_t parallel_chunks(int64_t n, int64_t chunk, int num_threads, const Body& body) {
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(num_threads, n_chunks)));
  int64_t status = kStatusOk;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) reduction(min : status) if (threads > 1)
#endif
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t begin = c * chunk;
    status = std::min(status, body(c, begin, std::min(n, begin + chunk)));
  }
  (void)threads;
  return status;
}

// Per-agent scratch values of one chunk: inline (no heap allocation) for up to 64 agents, on the heap
// beyond that (once per chunk, never per sample).
template <typename T, int64_t kInline = 64>
class AgentScratch {
 public:
  explicit AgentScratch(int64_t n) : heap_(n > kInline ? size_t(n) : 0) {}
  T* data() { return heap_.empty() ? inline_ : heap_.data(); }
  T& operator[](int64_t i) { return data()[i]; }

 private:
  T inline_[kInline];
  std::vector<T> heap_;
};

// True when order[0..N) is a permutation of 0..N-1. `seen` has room for N flags.
inline bool is_permutation(const int64_t* order, int64_t N, bool* seen) {
  std::fill(seen, seen + N, false);
  for (int64_t m = 0; m < N; ++m) {
    const int64_t i = order[m];
    if (i < 0 || i >= N || seen[i]) return false;
    seen[i] = true;
  }
  return true;
}

// True when every order of the call is a permutation: one [N] order (order_stride 0) or S of them.
inline bool orders_are_permutations(const int64_t* order, int64_t S, int64_t N, int64_t order_stride) {
  std::unique_ptr<bool[]> seen(new bool[N]);
  for (int64_t s = 0; s < (order_stride == 0 ? 1 : S); ++s) {
    if (!is_permutation(order + s * order_stride, N, seen.get())) return false;
  }
  return true;
}

}  // namespace inspo
