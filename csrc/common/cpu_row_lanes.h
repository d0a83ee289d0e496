// Rows across lanes: the two passes of inspo_math.h over W rows at once, one row per lane, for short rows
// (small A). The row drivers of cpu_simd.h put a row's entries across the lanes; at A <= 16 that leaves
// lanes idle and costs every row about ten horizontal reductions (maxima and sums), which dominated the
// policy loss at small A (docs/PERFORMANCE.md). Here W consecutive rows (of the contiguous [B, N, A]
// inputs) are transposed into a [A][W] block in L1, so that entry j of every row is one vector: no
// horizontal reduction, every exp and log on full vectors, and each row's per-row results (log pi(a),
// the weight, entropy, KL) come out as lanes of one vector.
// Determinism: each lane sums its row's entries in entry order, whatever the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

#include "common/cpu_simd.h"
#include "common/inspo_math.h"

namespace inspo {

// Rows of up to this many entries run across lanes; longer rows use the row drivers (lanes across entries), whose
// horizontal reductions are paid once per row and amortized over its entries (measured, docs/PERFORMANCE.md: faster
// across lanes up to A = 24, slower at A = 32, where the entry-by-entry transposes cost more than the reductions).
constexpr int64_t kMaxRowLanesA = 24;

namespace simd {

// The two passes' results for the W rows of a block: lane k is the block's row k (lanes past its rows:
// no available entry).
template <typename T, int Bytes>
struct RowLanes {
  using L = Lanes<T, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
  I n_avail{};                                 // available entries
  I bad_logits{}, bad_log_mu{}, bad_q{};       // a non-finite input at an available entry (masks)
  I taken_available{};                         // the taken action is in range and available (mask)
  V logit_taken{}, log_mu_taken{}, q_taken{};  // the inputs at the taken action
  V max_logits, max_target, max_lookahead;     // pass 1 (RowMax)
  V exp_logits{}, exp_logits_shift{}, exp_logits_log_mu{}, exp_target{}, exp_lookahead{};  // pass 2 (RowSums)

  // All checks of row_error passed (mask).
  I valid() const { return (n_avail > 0) & taken_available & ~(bad_logits | bad_log_mu | bad_q); }

  // Lane k's pass-1 result, for row_error on the rare invalid row.
  RowMax<T> row_max(int k) const {
    return RowMax<T>{int64_t(n_avail[k]), bad_logits[k] != 0, bad_log_mu[k] != 0, bad_q[k] != 0,
                     max_logits[k],       max_target[k],      max_lookahead[k]};
  }
};

// The packed status (args.h) of a block of n_rows rows from `first_row` whose lanes `ok` marks valid: kStatusOk,
// or the smallest among the invalid rows, each by row_error's checks in order; a row that passes them all failed
// the op's own check, `own_code` (0: the op has none). Rare, so row by row.
template <typename T, int Bytes>
inline int64_t block_status(const RowLanes<T, Bytes>& r, typename Lanes<T, Bytes>::I ok, int64_t first_row,
                            int64_t n_rows, const int64_t* actions, const bool* avail, int64_t A, int64_t own_code) {
  int64_t status = kStatusOk;
  if (!any_lanes(~ok & first_lanes<T, Bytes>(n_rows))) return status;
  for (int64_t k = 0; k < n_rows; ++k) {
    if (ok[k] != 0) continue;
    const int64_t row = first_row + k;
    const int64_t code = row_error(r.row_max(int(k)), actions[row], A, avail + row * A);
    if (code != 0 || own_code != 0) status = std::min(status, pack_status(row, code != 0 ? code : own_code));
  }
  return status;
}

// out[0, n) = the first n lanes of v (n <= W): one vector store when n = W.
template <typename T, typename V>
inline void store_lanes(T* out, const V& v, int64_t n) {
  if (n == int64_t(sizeof(V) / sizeof(T))) {
    std::memcpy(out, &v, sizeof v);
  } else {
    for (int64_t k = 0; k < n; ++k) out[k] = v[k];
  }
}

#if defined(INSPO_CPU_DISPATCH)
// AVX-512 float blocks are transposed by one of two means, whichever was measured faster on the CPU
// (cpu_row_gathers(), docs/PERFORMANCE.md: Kernel work 11 and 13). Entry by entry, the scalar loads and stores of the
// copy took about a third of the policy loss's time at A = 16 (perf, Intel Sapphire Rapids). The target attribute
// lets the intrinsics inline into the AVX-512 body.

// Gathers: entry j of the n_rows rows is one masked gather (lanes past n_rows: 0). Only reads the rows' own entries.
// Lane k: k * A, the offset of row k's first entry.
INSPO_TARGET_AVX512 inline __m512i row_starts_avx512(int64_t A) {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(int(A)));
}

INSPO_TARGET_AVX512 inline void gather_rows_avx512(const float* rows, int64_t n_rows, int64_t A, float* out) {
  const __m512i first = row_starts_avx512(A);
  const __mmask16 lanes = __mmask16((1u << n_rows) - 1u);
  for (int64_t j = 0; j < A; ++j) {
    const __m512i at = _mm512_add_epi32(first, _mm512_set1_epi32(int(j)));
    _mm512_store_ps(out + j * 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, at, rows, 4));
  }
}

// The same for the rows' availability: -1 / 0 lanes. The bytes go to a padded block first, so that each lane's
// 4-byte gather stays inside memory we own.
INSPO_TARGET_AVX512 inline void gather_avail_avx512(const bool* avail, int64_t n_rows, int64_t A, int32_t* out) {
  alignas(64) uint8_t bytes[kMaxRowLanesA * 16 + 4] = {};
  std::memcpy(bytes, avail, size_t(n_rows * A));
  const __m512i first = row_starts_avx512(A);
  const __mmask16 lanes = __mmask16((1u << n_rows) - 1u);
  for (int64_t j = 0; j < A; ++j) {
    const __m512i at = _mm512_add_epi32(first, _mm512_set1_epi32(int(j)));
    const __m512i word = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), lanes, at, bytes, 1);
    _mm512_store_si512(out + j * 16, _mm512_movm_epi32(_mm512_test_epi32_mask(word, _mm512_set1_epi32(0xFF))));
  }
}

// Registers: 16 x 16 tiles transposed in registers, each costing 16 row loads, 64 shuffles and one store per entry.

// The 16 x 16 floats whose row k is load(k), transposed: store(j, v) receives v, whose lane k is lane j of row k.
// Registers only: every index is a constant once the loops unroll (an array indexed at run time, or copied whole,
// went through the stack).
template <typename Load, typename Store>
INSPO_TARGET_AVX512 inline void transpose_16x16_avx512(const Load& load, const Store& store) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit lane L: rows i, i + 1 interleaved at entries 4L .. 4L + 3
    const __m512 a = load(i), b = load(i + 1);
    t[i] = _mm512_unpacklo_ps(a, b);
    t[i + 1] = _mm512_unpackhi_ps(a, b);
  }
  for (int i = 0; i < 16; i += 4) {  // u[i + e], lane L: rows i .. i + 3 at entry 4L + e
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int e = 0; e < 4; ++e) {  // entry 4L + e: 128-bit lane L of u[e], u[4 + e], u[8 + e], u[12 + e]
    const __m512 v0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88), v1 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xDD);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88);
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xDD);
    store(e, _mm512_shuffle_f32x4(v0, v2, 0x88));
    store(4 + e, _mm512_shuffle_f32x4(v1, v3, 0x88));
    store(8 + e, _mm512_shuffle_f32x4(v0, v2, 0xDD));
    store(12 + e, _mm512_shuffle_f32x4(v1, v3, 0xDD));
  }
}

// The first n_rows rows of A floats at `rows` into out[j * 16 + k] = rows[k * A + j] (lanes past n_rows: 0). Only
// reads the rows' own entries (masked loads).
INSPO_TARGET_AVX512 inline void transpose_rows_avx512(const float* rows, int64_t n_rows, int64_t A, float* out) {
  for (int64_t c = 0; c < A; c += 16) {  // the columns [c, c + 16)
    const int64_t cols = std::min<int64_t>(16, A - c);
    const __mmask16 in_row = __mmask16((1u << cols) - 1u);
    transpose_16x16_avx512(
        [&](int k) INSPO_TARGET_AVX512 {
          return k < n_rows ? _mm512_maskz_loadu_ps(in_row, rows + k * A + c) : _mm512_setzero_ps();
        },
        [&](int j, __m512 v) INSPO_TARGET_AVX512 {
          if (j < cols) _mm512_store_ps(out + (c + j) * 16, v);
        });
  }
}

// The same for the rows' availability: -1 / 0 lanes.
INSPO_TARGET_AVX512 inline void transpose_avail_avx512(const bool* avail, int64_t n_rows, int64_t A, int32_t* out) {
  for (int64_t c = 0; c < A; c += 16) {
    const int64_t cols = std::min<int64_t>(16, A - c);
    const __mmask16 in_row = __mmask16((1u << cols) - 1u);
    transpose_16x16_avx512(
        [&](int k) INSPO_TARGET_AVX512 {
          return k < n_rows ? _mm512_castsi512_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(in_row, avail + k * A + c)))
                            : _mm512_setzero_ps();
        },
        [&](int j, __m512 v) INSPO_TARGET_AVX512 {
          const __m512i word = _mm512_castps_si512(v);
          if (j < cols) _mm512_store_si512(out + (c + j) * 16, _mm512_movm_epi32(_mm512_test_epi32_mask(word, word)));
        });
  }
}

// The inverse: block[j * 16 + k] (j < A) into rows[k * A + j] for the first n_rows rows. Only writes the rows' own
// entries (masked stores).
INSPO_TARGET_AVX512 inline void untranspose_rows_avx512(const float* block, int64_t n_rows, int64_t A, float* rows) {
  for (int64_t c = 0; c < A; c += 16) {
    const int64_t cols = std::min<int64_t>(16, A - c);
    const __mmask16 in_row = __mmask16((1u << cols) - 1u);
    transpose_16x16_avx512(
        [&](int j)
            INSPO_TARGET_AVX512 { return j < cols ? _mm512_load_ps(block + (c + j) * 16) : _mm512_setzero_ps(); },
        [&](int k, __m512 v) INSPO_TARGET_AVX512 {
          if (k < n_rows) _mm512_mask_storeu_ps(rows + k * A + c, in_row, v);
        });
  }
}
#endif

// While a block runs, the block kPrefetchRows rows ahead is fetched into L1, for the block's copy, which touches a
// cache line per row (measured with the gathers, docs/PERFORMANCE.md, Kernel work 12: the policy loss 1.01-1.14x
// faster with its inputs streamed at A = 5 to 24, unchanged in L2; with the registers, 16 or 64 rows ahead instead
// of 32 changed nothing on AMD Zen 4).
constexpr int64_t kPrefetchRows = 32;

// Prefetches the n bytes at `offset` bytes past p. Addresses are computed as integers: past the end of an array they
// are no out-of-range pointer arithmetic, and a prefetch never faults.
inline void prefetch_bytes(const void* p, int64_t offset, int64_t n) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) + uintptr_t(offset);
  for (int64_t k = 0; k < n; k += 64) __builtin_prefetch(reinterpret_cast<const void*>(first + uintptr_t(k)));
}

// The transposed block of row_lanes, entry by entry (AVX-512 float: gathers or registers, above, as `gathers` says).
template <typename T, int Bytes, typename Needs>
inline void transpose_rows(const T* logits, const T* log_mu, const T* q, const bool* avail, int64_t n_rows, int64_t A,
                           bool gathers, T* tr_logits, T* tr_log_mu, T* tr_q,
                           typename Lanes<T, Bytes>::IntT* tr_avail) {
  using IntT = typename Lanes<T, Bytes>::IntT;
  constexpr int W = Lanes<T, Bytes>::W;
#if defined(INSPO_CPU_DISPATCH)
  if constexpr (Bytes == 64 && std::is_same<T, float>::value) {
    if (gathers) {
      if (Needs::logits) gather_rows_avx512(logits, n_rows, A, tr_logits);
      gather_rows_avx512(log_mu, n_rows, A, tr_log_mu);
      if (Needs::q) gather_rows_avx512(q, n_rows, A, tr_q);
      gather_avail_avx512(avail, n_rows, A, tr_avail);
    } else {
      if (Needs::logits) transpose_rows_avx512(logits, n_rows, A, tr_logits);
      transpose_rows_avx512(log_mu, n_rows, A, tr_log_mu);
      if (Needs::q) transpose_rows_avx512(q, n_rows, A, tr_q);
      transpose_avail_avx512(avail, n_rows, A, tr_avail);
    }
    return;
  }
#endif
  if (n_rows < W) {
    for (int64_t j = 0; j < A; ++j) {
      for (int64_t k = n_rows; k < W; ++k) {
        tr_logits[j * W + k] = tr_log_mu[j * W + k] = tr_q[j * W + k] = T(0);
        tr_avail[j * W + k] = IntT(0);
      }
    }
  }
  for (int64_t k = 0; k < n_rows; ++k) {
    for (int64_t j = 0; j < A; ++j) {
      if (Needs::logits) tr_logits[j * W + k] = logits[k * A + j];
      tr_log_mu[j * W + k] = log_mu[k * A + j];
      if (Needs::q) tr_q[j * W + k] = q[k * A + j];
      tr_avail[j * W + k] = avail[k * A + j] ? IntT(-1) : IntT(0);
    }
  }
}

// Both passes over the n_rows <= W consecutive rows that start at `logits` / `log_mu` / `q` / `avail` (row k
// at offset k * A, A <= kMaxRowLanesA) with taken actions `actions`. When `log_prob_grad_out` is not null, its
// n_rows rows receive softmax - onehot(a), the gradient of -log pi(a) in the logits (0 at the unavailable entries;
// the softmax part 0 in rows that fail a check).
template <typename T, int Bytes, typename Needs>
inline RowLanes<T, Bytes> row_lanes(const T* logits, const T* log_mu, const T* q, const bool* avail,
                                    const int64_t* actions, int64_t n_rows, int64_t A, const Temperatures<T>& t,
                                    T* log_prob_grad_out) {
  using L = Lanes<T, Bytes>;
  using V = typename L::V;
  using I = typename L::I;
  using IntT = typename L::IntT;
  constexpr int W = L::W;
  // The transposed block: entry j of row k at [j * W + k]; lanes past n_rows hold unavailable zeros.
  alignas(64) T tr_logits[kMaxRowLanesA * W], tr_log_mu[kMaxRowLanesA * W], tr_q[kMaxRowLanesA * W];
  alignas(64) IntT tr_avail[kMaxRowLanesA * W];
  // Pass 1's closed-form target and lookahead logits, for pass 2 (kept, not recomputed)
  alignas(64) T tr_target[kMaxRowLanesA * W], tr_lookahead[kMaxRowLanesA * W];
  const int64_t ahead = kPrefetchRows * A, block = W * A;  // entries
  if (Needs::logits) prefetch_bytes(logits, ahead * int64_t(sizeof(T)), block * int64_t(sizeof(T)));
  prefetch_bytes(log_mu, ahead * int64_t(sizeof(T)), block * int64_t(sizeof(T)));
  if (Needs::q) prefetch_bytes(q, ahead * int64_t(sizeof(T)), block * int64_t(sizeof(T)));
  prefetch_bytes(avail, ahead, block);
  const bool gathers = cpu_row_gathers();
  transpose_rows<T, Bytes, Needs>(logits, log_mu, q, avail, n_rows, A, gathers, tr_logits, tr_log_mu, tr_q, tr_avail);
  alignas(64) IntT action_lanes[W];
  for (int64_t k = 0; k < W; ++k) {  // out of range: -1, which matches no entry
    const int64_t x = k < n_rows ? actions[k] : -1;
    action_lanes[k] = IntT(x >= 0 && x < A ? x : -1);
  }
  const I action = load<I>(action_lanes);

  // The accumulators are locals, copied into the result after each pass: as members of the returned struct they were
  // stored to memory at every entry.
  const V ninf = splat<V>(neg_inf<T>()), zero{};
  I n_avail{}, bad_logits{}, bad_log_mu{}, bad_q{}, taken_available{};
  V logit_taken{}, log_mu_taken{}, q_taken{}, max_logits = ninf, max_target = ninf, max_lookahead = ninf;
  // j in every lane, counted up as a vector: a splat of the loop counter is built lane by lane by GCC
  I j_lanes{};
  const I one = j_lanes + 1;
  for (int64_t j = 0; j < A; ++j, j_lanes += one) {  // pass 1: maxima, checks, the taken entries
    const V l = Needs::logits ? load<V>(tr_logits + j * W) : zero;
    const V m = load<V>(tr_log_mu + j * W);
    const V qq = Needs::q ? load<V>(tr_q + j * W) : zero;
    const I av = load<I>(tr_avail + j * W);
    n_avail -= av;  // mask lanes are -1
    bad_log_mu |= av & ~finite_mask(m);
    const I taken = action == j_lanes;
    taken_available |= taken & av;
    log_mu_taken = select(taken, m, log_mu_taken);
    if (Needs::logits) {
      bad_logits |= av & ~finite_mask(l);
      max_logits = select(av & (l > max_logits), l, max_logits);
      logit_taken = select(taken, l, logit_taken);
    }
    if (Needs::q) {
      bad_q |= av & ~finite_mask(qq);
      q_taken = select(taken, qq, q_taken);
    }
    if (Needs::target) {
      const V z = closed_form_logit(m, qq, t);
      std::memcpy(tr_target + j * W, &z, sizeof z);
      max_target = select(av & (z > max_target), z, max_target);
    }
    if (Needs::lookahead) {
      const V h = lookahead_logit(l, m, qq, t);
      std::memcpy(tr_lookahead + j * W, &h, sizeof h);
      max_lookahead = select(av & (h > max_lookahead), h, max_lookahead);
    }
  }
  RowLanes<T, Bytes> r;
  r.n_avail = n_avail;
  r.bad_logits = bad_logits;
  r.bad_log_mu = bad_log_mu;
  r.bad_q = bad_q;
  r.taken_available = taken_available;
  r.logit_taken = logit_taken;
  r.log_mu_taken = log_mu_taken;
  r.q_taken = q_taken;
  r.max_logits = max_logits;
  r.max_target = max_target;
  r.max_lookahead = max_lookahead;
  alignas(64) T tr_softmax[kMaxRowLanesA * W];
  V exp_logits{}, exp_logits_shift{}, exp_logits_log_mu{}, exp_target{}, exp_lookahead{};
  for (int64_t j = 0; j < A; ++j) {  // pass 2: sums of exp shifted by the maxima
    const V m = load<V>(tr_log_mu + j * W);
    const I av = load<I>(tr_avail + j * W);
    if (Needs::logits) {
      const V l = load<V>(tr_logits + j * W);
      const V shifted = l - max_logits;              // anything at unavailable entries
      const V e = exp_where<T, Bytes>(av, shifted);  // exactly 0 at unavailable entries
      std::memcpy(tr_softmax + j * W, &e, sizeof e);
      exp_logits += e;
      exp_logits_shift += select(av, e * shifted, zero);
      if (Needs::kl) exp_logits_log_mu += select(av, e * m, zero);
    }
    if (Needs::target) exp_target += exp_where<T, Bytes>(av, load<V>(tr_target + j * W) - max_target);
    if (Needs::lookahead) exp_lookahead += exp_where<T, Bytes>(av, load<V>(tr_lookahead + j * W) - max_lookahead);
  }
  r.exp_logits = exp_logits;
  r.exp_logits_shift = exp_logits_shift;
  r.exp_logits_log_mu = exp_logits_log_mu;
  r.exp_target = exp_target;
  r.exp_lookahead = exp_lookahead;
  if (Needs::logits && log_prob_grad_out != nullptr) {
    const V inv_sum = select(r.valid(), splat<V>(T(1)) / exp_logits, zero);
    j_lanes = I{};
    for (int64_t j = 0; j < A; ++j, j_lanes += one) {  // the block's softmax - onehot(a), in place
      const V p = load<V>(tr_softmax + j * W) * inv_sum;
      const V g = action == j_lanes ? p - T(1) : p;
      std::memcpy(tr_softmax + j * W, &g, sizeof g);
    }
#if defined(INSPO_CPU_DISPATCH)
    if constexpr (Bytes == 64 && std::is_same<T, float>::value) {
      if (!gathers) {  // (gathers' counterpart, scatters, was slower than the scalar stores: Kernel work 11)
        untranspose_rows_avx512(tr_softmax, n_rows, A, log_prob_grad_out);
        return r;
      }
    }
#endif
    for (int64_t k = 0; k < n_rows; ++k) {
      for (int64_t j = 0; j < A; ++j) log_prob_grad_out[k * A + j] = tr_softmax[j * W + k];
    }
  }
  return r;
}

}  // namespace simd

// body(std::integral_constant<int, Bytes>) compiled for the widest instruction set of this CPU, with its
// widest vectors (rows across lanes fill every lane whatever A is).
template <typename Body>
inline int64_t with_widest_vector(const Body& body) {
#if defined(INSPO_CPU_DISPATCH)
  switch (cpu_vector_bytes()) {
    case 64:
      return simd::run_avx512<64>(body);
    case 32:
      return simd::run_avx2<32>(body);
    default:
      break;
  }
#endif
  return body(std::integral_constant<int, 16>{});
}

}  // namespace inspo
