// Op 2's decode kernel: calls of about one token per sequence (T <= 2B), in
// the packed kernel's layouts. A decode step is a chain of dependent memory
// round trips, not a stream of bytes; this kernel keeps it to two for a
// token that is a sequence of its own:
//
//   1. query_start_loc[t] and [t+1] (is sequence t [t, t+1)?), sequence t's
//      cache index and flag, the token's row of x (its last tap, whatever
//      its sequence), and the column's weights and bias: all issued before
//      any of them is used, so that no load waits behind another's use;
//   2. the old cache line, issued before the weights are converted, and
//      the next token's round trip 1 before this token's conv;
//
// then the conv, the head's shuffles, and the stores of q/k/v and of the
// new line [old columns 1.. | x row], from registers. A token whose
// sequence is not [t, t+1) (a longer one, or bounds shifted by an empty
// sequence) goes through boundary_chunk, which gives the same bits by the
// same ownership rule (causal_conv_prep_cuda.cu).
#include <algorithm>
#include <cstdint>

#include "causal_conv_device.cuh"

namespace gdn::gpu::conv {
namespace {

// Step 1's loads for token t (< T), raw, and the old line step 2 adds. The
// sequence index is clamped into [0, B) so that the loads need no branch;
// one_token_sequence checks t itself.
template <typename T, int kW>
struct DecodeToken {
  int64_t t;
  int64_t start, end;  // query_start_loc[t], [t+1]
  int64_t index;       // cache_indices[t]
  bool initial;
  Pack<T> x;           // row t of the column
  StateBlock<T, kW> old;
};

template <typename T, int kW>
__device__ __forceinline__ DecodeToken<T, kW> load_token(const CausalConvPrepParams& p, const T* x,
                                                         int64_t t) {
  DecodeToken<T, kW> tok;
  tok.t = t;
  const int64_t i = std::min(t, p.B - 1);
  tok.start = sequence_bound(p, i);
  tok.end = sequence_bound(p, i + 1);
  tok.index = cache_index(p, i);
  tok.initial = has_initial_state(p, i);
  tok.x = load_pack(x + t * p.x_stride_row);
  return tok;
}

template <typename T, int kW>
__device__ __forceinline__ bool one_token_sequence(const CausalConvPrepParams& p,
                                                   const DecodeToken<T, kW>& tok) {
  return tok.t < p.B && tok.start == tok.t && tok.end == tok.t + 1;
}

// A boundary run's taps (boundary_chunk) for a kernel without a ring of
// rows: x's rows from memory, and the W-1 positions before a sequence's
// start from its old line's columns, held in registers.
template <typename T, int kW, typename XRow>
struct RegisterTaps {
  const XRow& x_row;  // x_row(pos): x's row pos of the column
  int64_t start;
  StateBlock<T, kW> before;

  __device__ __forceinline__ void begin_sequence(int64_t s, const StateBlock<T, kW>& taps) {
    start = s;
    before = taps;
  }
  __device__ __forceinline__ Pack<T> tap(int64_t pos) const {
    if (pos >= start) return x_row(pos);
    Pack<T> value = before.col[0];
#pragma unroll
    for (int c = 1; c < kW - 1; ++c) {
      if (c == pos - start + kW - 1) value = before.col[c];
    }
    return value;
  }
};

// Token t's conv output y of the column, L2-normalised over the head's lanes
// where it goes to q or k (every lane takes part in the sums).
template <typename T, int kW>
__device__ __forceinline__ void store_token(const CausalConvPrepParams& p, const PackedPlan& plan,
                                            const Column<T, kW>& col, int64_t t, const Pack<T>& y) {
  float scale = 1.f;
  if (p.prep.apply_l2norm) {
    scale = l2norm_scale(group_sum(add_squares(y, 0.f), 1 << plan.log2_lanes));
  }
  if (col.stores) store_column(p, plan, col.index, t, y, scale);
}

// Token t, a one-token sequence: taps 0..W-2 are the old line's columns (or
// zeros without a prior state), tap W-1 is x; then the line moves one column
// left and takes x. The same sums in the same order as boundary_chunk.
template <typename T, int kW>
__device__ __forceinline__ void one_token(const CausalConvPrepParams& p, const PackedPlan& plan,
                                          const Column<T, kW>& col, const DecodeToken<T, kW>& tok,
                                          int64_t line, bool prior) {
  constexpr int kVec = Pack<T>::kSize;
  Pack<T> zero;
#pragma unroll
  for (int f = 0; f < kVec; ++f) zero.x[f] = T(0.f);
  const Pack<T> y = convolve<T, kW>(p, col, [&](int j) {
    return j == kW - 1 ? tok.x : prior ? tok.old.col[j] : zero;
  });
  store_token(p, plan, col, tok.t, y);
  if (line < 0 || !col.stores) return;
  StateBlock<T, kW> next;
#pragma unroll
  for (int c = 0; c < kW - 1; ++c) {
    next.col[c] = c == kW - 2 ? tok.x : prior ? tok.old.col[c + 1] : zero;
  }
  store_state<T, kW>(p, plan, static_cast<T*>(p.states) + line * p.states_stride_line, col.index,
                     next);
}

// A token's cache line (-1 for none) and whether it holds a prior state,
// with the old line loaded: round trip 2, issued as soon as round trip 1's
// cache index is in.
struct TokenLine {
  bool single;
  int64_t line;
  bool prior;
};

template <typename T, int kW>
__device__ __forceinline__ TokenLine issue_line_load(const CausalConvPrepParams& p,
                                                     const PackedPlan& plan, int column,
                                                     DecodeToken<T, kW>& tok) {
  TokenLine l;
  l.single = one_token_sequence(p, tok);
  l.line = l.single ? checked_line(p, tok.index) : -1;
  l.prior = l.line >= 0 && tok.initial;
  if (l.prior) {
    tok.old = load_state<T, kW>(
        p, plan, static_cast<const T*>(p.states) + l.line * p.states_stride_line, column);
  }
  return l;
}

// Two blocks an SM, so at most 128 registers: in bf16 at W = 4 kPackedLikeX
// takes 128 with no spill, kAny spills 128 bytes. Three blocks (80 registers)
// spilled 400 bytes and ran 1.3-1.4x slower at batch 128-512; one block with
// two tokens a thread computed side by side (no spills) 1.4-1.5x slower
// (benchmarks/NOTES.md).
template <typename T, int kW, ColumnSource kSource>
__global__ void __launch_bounds__(kThreads, kDecodeBlocksPerSM)
    decode_kernel(const CausalConvPrepParams p, const PackedPlan plan) {
  extern __shared__ float4 column_smem[];
  for_each_work_item<T, kW>(p, plan, column_smem, [&](const Column<T, kW>& col, int64_t group) {
    const int64_t first = group * plan.chunks_per_group;
    const int64_t last = std::min(first + plan.chunks_per_group, p.prep.L);
    const T* x = static_cast<const T*>(p.x) + col.index * Pack<T>::kSize;
    wait_for_previous_grid();
    DecodeToken<T, kW> tok = load_token<T, kW>(p, x, first);
    const auto loads = issue_column_loads<T, kW, kSource>(p, plan, col);
    // The first token's old line is on its way while the weights convert.
    TokenLine l = issue_line_load(p, plan, col.index, tok);
    load_column(p, plan, col, loads);
    for (int64_t t = first;;) {  // bounds uniform over the warp
      // Token t + 1's first round trip is in flight while t computes.
      DecodeToken<T, kW> next;
      if (t + 1 < last) next = load_token<T, kW>(p, x, t + 1);
      if (l.single) {
        one_token(p, plan, col, tok, l.line, l.prior);
      } else {  // l.single is the warp's
        const auto x_row = [&](int64_t pos) { return load_pack(x + pos * p.x_stride_row); };
        RegisterTaps<T, kW, decltype(x_row)> taps{x_row, 0, {}};
        // One token at a time: convolve's taps one after another hold fewer
        // registers than convolve_chunk's.
        const auto one_by_one = [&](int64_t u, int64_t end) {
          for (; u < end; ++u) {
            const auto tap = [&](int j) { return taps.tap(u - (kW - 1) + j); };
            store_token(p, plan, col, u, convolve<T, kW>(p, col, tap));
          }
        };
        // Not sequence t (one_token_sequence): no guess.
        boundary_chunk<T, kW, 1>(p, plan, col, t, sequence_of(p, t, -1), taps, one_by_one);
      }
      if (++t >= last) break;
      tok = next;
      l = issue_line_load(p, plan, col.index, tok);
    }
  });
}

template <typename T, ColumnSource kSource>
void launch_decode_from(const CausalConvPrepParams& p, const PackedPlan& plan,
                        const LaunchTarget& target) {
  const int blocks = blocks_for(packed_blocks(plan));
  switch (p.W) {
    case 2:
      launch<decode_kernel<T, 2, kSource>>(blocks, column_smem_bytes<T, 2>(), target, p, plan);
      break;
    case 3:
      launch<decode_kernel<T, 3, kSource>>(blocks, column_smem_bytes<T, 3>(), target, p, plan);
      break;
    default:
      launch<decode_kernel<T, 4, kSource>>(blocks, column_smem_bytes<T, 4>(), target, p, plan);
      break;
  }
}

}  // namespace

template <typename T>
void launch_decode(const CausalConvPrepParams& p, const PackedPlan& plan, ColumnSource source,
                   const LaunchTarget& target) {
  if (source == ColumnSource::kPackedLikeX) {
    launch_decode_from<T, ColumnSource::kPackedLikeX>(p, plan, target);
  } else {
    launch_decode_from<T, ColumnSource::kAny>(p, plan, target);
  }
}

template void launch_decode<c10::BFloat16>(const CausalConvPrepParams&, const PackedPlan&,
                                           ColumnSource, const LaunchTarget&);
template void launch_decode<c10::Half>(const CausalConvPrepParams&, const PackedPlan&,
                                       ColumnSource, const LaunchTarget&);
template void launch_decode<float>(const CausalConvPrepParams&, const PackedPlan&,
                                   ColumnSource, const LaunchTarget&);

}  // namespace gdn::gpu::conv
