// The CPU kernel of sequential_policy_loss alone (csrc/cpu/sequential_policy_loss.cpp: forward with the gradient,
// importance ratios, target predecessors, one thread), without Python, torch or the output allocation: the median
// time of repeated calls on the same inputs, per row, at each A given, for inputs streamed from memory (B = 64k)
// and held in L2 (B = 1k). docs/PERFORMANCE.md (Kernel work 10) quotes it. Build and run (x86-64; seconds):
//   g++ -std=c++17 -O3 -fno-math-errno -ffp-contract=off -fopenmp -Icsrc benchmarks/kernel_policy_loss.cpp \
//       csrc/cpu/sequential_policy_loss.cpp csrc/cpu/cpu_features.cpp -o /tmp/kernel_policy_loss
//   /tmp/kernel_policy_loss [--ratio importance|self_normalized|none] [A ...]   (default: importance; 5 10 16 24 32)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "common/backends.h"

namespace {

using inspo::SequentialPolicyLossArgs;

// Milliseconds of one call, median of `reps`, on random inputs of B samples, N = 8 agents, A actions (every action
// available; log mu a log-softmax; the taken action uniform).
double median_ms(int64_t B, int64_t A, int reps, int64_t ratio) {
  const int64_t N = 8, rows = B * N;
  std::mt19937 generator(0);
  std::normal_distribution<float> normal;
  std::vector<float> logits(rows * A), log_mu(rows * A), q(rows * A), grad(rows * A);
  std::vector<uint8_t> avail(rows * A, 1);
  std::vector<int64_t> actions(rows), order(N);
  for (auto& x : logits) x = normal(generator);
  for (auto& x : q) x = normal(generator);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = log_mu.data() + r * A;
    for (int64_t j = 0; j < A; ++j) row[j] = normal(generator);
    const float max = *std::max_element(row, row + A);
    float sum = 0.0f;
    for (int64_t j = 0; j < A; ++j) sum += std::exp(row[j] - max);
    for (int64_t j = 0; j < A; ++j) row[j] -= max + std::log(sum);
    actions[r] = int64_t(generator() % uint32_t(A));
  }
  for (int64_t i = 0; i < N; ++i) order[i] = i;
  std::vector<float> loss(N), mean_weight(N), ess(N), entropy(N), kl(N);
  SequentialPolicyLossArgs<float> a{};
  a.logits = logits.data();
  a.log_mu = log_mu.data();
  a.avail = reinterpret_cast<const bool*>(avail.data());
  a.actions = actions.data();
  a.q_local = q.data();
  a.order = order.data();
  a.loss = loss.data();
  a.mean_weight = mean_weight.data();
  a.ess = ess.data();
  a.entropy = entropy.data();
  a.kl = kl.data();
  a.grad = grad.data();
  a.S = 1;
  a.B = B;
  a.N = N;
  a.A = A;
  a.predecessors = inspo::kPredecessorsTarget;
  a.ratio = ratio;
  a.compute_grad = true;
  a.alpha = 0.1;
  a.beta = 0.05;
  a.eta = 0.3;
  a.log_rho_max = std::log(100.0);
  a.log_w_max = 10.0;
  a.num_threads = 1;
  std::vector<double> times;
  for (int i = 0; i < reps + 2; ++i) {  // the first two warm the caches and the pages
    const auto start = std::chrono::steady_clock::now();
    const int64_t status = inspo::sequential_policy_loss_cpu<float>(a);
    const auto end = std::chrono::steady_clock::now();
    if (status != inspo::kStatusOk) {
      std::fprintf(stderr, "kernel_policy_loss: the kernel reported status %lld\n", static_cast<long long>(status));
      std::exit(1);
    }
    if (i >= 2) times.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> actions;
  int64_t ratio = inspo::kRatioImportance;
  const char* ratio_name = "importance";
  for (int k = 1; k < argc; ++k) {
    if (std::strcmp(argv[k], "--ratio") == 0 && k + 1 < argc) {
      ratio_name = argv[++k];
      const char* names[] = {"importance", "self_normalized", "none"};  // kRatioImportance, ...SelfNormalized, None
      const auto* found = std::find_if(std::begin(names), std::end(names),
                                       [&](const char* name) { return std::strcmp(name, ratio_name) == 0; });
      if (found == std::end(names)) {
        std::fprintf(stderr, "kernel_policy_loss: --ratio must be importance, self_normalized or none, got %s\n",
                     ratio_name);
        return 2;
      }
      ratio = found - std::begin(names);
      continue;
    }
    actions.push_back(std::atoll(argv[k]));
  }
  if (actions.empty()) actions = {5, 10, 16, 24, 32};
  std::printf(
      "sequential_policy_loss CPU kernel, fwd with gradient, N = 8, float32, ratio %s, 1 thread, median of "
      "repeats\n",
      ratio_name);
  std::printf("| A | B = 64k ms | ns / row | B = 1k (in L2) ms | ns / row |\n|---|---|---|---|---|\n");
  for (const int64_t A : actions) {
    if (A < 1) {
      std::fprintf(stderr, "kernel_policy_loss: A must be >= 1, got %lld\n", static_cast<long long>(A));
      return 2;
    }
    const double streamed = median_ms(65536, A, 20, ratio), cached = median_ms(1024, A, 2000, ratio);
    std::printf("| %lld | %.2f | %.1f | %.3f | %.1f |\n", static_cast<long long>(A), streamed,
                streamed * 1e6 / (65536.0 * 8), cached, cached * 1e6 / (1024.0 * 8));
  }
  return 0;
}
