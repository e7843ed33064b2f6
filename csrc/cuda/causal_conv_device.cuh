// Device code shared by op 2's packed CUDA kernels (prefill in
// causal_conv_prep_cuda.cu, decode in causal_conv_decode_cuda.cu): finding a
// token's sequence and cache line, the activation, cache-line packs, a
// column's weights in shared memory, the conv of one token, its store, and
// the token-by-token path for chunks at sequence starts. See
// causal_conv_prep_cuda.cu for how sequences and cache lines are shared out
// between threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../causal_conv_prep.h"
#include "device_common.cuh"

namespace gdn::gpu::conv {

// ---------------------------------------------------------------------------
// Sequences and cache lines.

__device__ __forceinline__ int64_t sequence_bound(const CausalConvPrepParams& p, int64_t j) {
  return p.query_start_loc[j * p.query_start_loc_stride];
}

// Sequence i's entry of cache_indices (i itself without them), unchecked.
__device__ __forceinline__ int64_t cache_index(const CausalConvPrepParams& p, int64_t i) {
  return p.cache_indices ? p.cache_indices[i * p.cache_indices_stride] : i;
}

__device__ __forceinline__ bool has_initial_state(const CausalConvPrepParams& p, int64_t i) {
  return p.has_initial_state != nullptr && p.has_initial_state[i * p.has_initial_state_stride];
}

struct Sequence {
  int64_t index, start, end;  // tokens [start, end)
  int64_t entry;              // cache_index(index)
  bool initial;               // has_initial_state(index)
};

// The sequence holding token t, the last i in [0, B) with qsl[i] <= t; t is
// the warp's (every lane calls with the same t). The warp searches together:
// a round probes 32 bounds, one a lane, and the last round's lanes load
// their sequence's end, cache entry and flag beside its start. Up to 32
// sequences that is one round trip, 1,024 two, where a binary search took
// log2(B) dependent round trips and the entry and flag one more, on the
// chain of a short prefill's first chunk (benchmarks/NOTES.md). `guess`
// (the next sequence, or the token's own index in a decode step) is checked
// first where B > 32, as it saves a round there when right. Bounds that are
// not what SPEC asks for are clamped so that start <= t < end <= T: wrong
// values then, never an access out of range.
__device__ inline Sequence sequence_of(const CausalConvPrepParams& p, int64_t t, int64_t guess) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  int64_t lo = 0, hi = p.B;  // i is in [lo, hi)
  if (hi > kWarpSize && guess >= 0 && guess < hi && sequence_bound(p, guess) <= t &&
      t < sequence_bound(p, guess + 1)) {
    lo = guess, hi = guess + 1;
  }
  while (hi - lo > kWarpSize) {
    const int64_t step = ceil_div(hi - lo, kWarpSize);
    const int64_t j = lo + lane * step;
    const unsigned below = __ballot_sync(kFullMask, j < hi && sequence_bound(p, j) <= t);
    lo += std::max(__popc(below) - 1, 0) * step;
    hi = std::min(lo + step, hi);
  }
  // All four are int32 in memory (bool for the flag).
  const int64_t j = lo + lane;
  int32_t start = 0, end = 0, entry = 0, initial = 0;
  if (j < hi) {
    start = static_cast<int32_t>(sequence_bound(p, j));
    end = static_cast<int32_t>(sequence_bound(p, j + 1));
    entry = static_cast<int32_t>(cache_index(p, j));
    initial = has_initial_state(p, j);
  }
  const int k = std::max(__popc(__ballot_sync(kFullMask, j < hi && start <= t)) - 1, 0);
  Sequence s;
  s.index = lo + k;
  s.start = std::min<int64_t>(std::max(__shfl_sync(kFullMask, start, k), 0), t);
  s.end = std::min<int64_t>(std::max<int64_t>(__shfl_sync(kFullMask, end, k), t + 1), p.prep.L);
  s.entry = __shfl_sync(kFullMask, entry, k);
  s.initial = __shfl_sync(kFullMask, initial, k) != 0;
  return s;
}

// The cache line an entry names, or -1 for none (pad slot, out of range).
__device__ __forceinline__ int64_t checked_line(const CausalConvPrepParams& p, int64_t index) {
  return index != p.pad_slot_id && index >= 0 && index < p.N ? index : -1;
}

__device__ __forceinline__ float load_float(const StridedInput& in, int64_t offset) {
  return bits_to_float(in.kind, load_bits(in, offset));
}

// __expf is ex2.approx of x * log2(e); the .ftz form drops the denormal
// fix-up around it (4 instructions an element). It changes nothing here: a
// denormal exp(-acc) (acc > 87) added to 1 gives 1 either way.
__device__ __forceinline__ float exp_approx_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.4426950408889634f));
  return y;
}

// SPEC's conv output before rounding: act(acc), acc = bias + sum_j w_j * tap_j
// from the first tap to the last. For a 16-bit output SiLU uses the hardware
// exp2 and divide approximations (relative error below 1e-5 where |acc| < 80,
// 2^-8 or less of a bf16 ulp, 1% of a fp16 ulp): the accurate expf and IEEE
// division cost more instructions than the rest of the element together and
// made the kernel instruction-bound (benchmarks/NOTES.md). The result differs
// from the accurate one only where the rounding to T flips, which SPEC's
// 1 ulp for v allows. float32 outputs keep the accurate functions.
template <typename T>
__device__ __forceinline__ float silu_for(float acc) {
  if constexpr (sizeof(T) == 2) {
    return __fdividef(acc, 1.f + exp_approx_ftz(-acc));
  } else {
    return silu<float>(acc);
  }
}

template <typename T>
__device__ __forceinline__ float activate(const CausalConvPrepParams& p, float acc) {
  return p.silu ? silu_for<T>(acc) : acc;
}

// ---------------------------------------------------------------------------
// Packed path.

// How a cache line is read and written, chosen on the host.
enum class StateAccess : int32_t {
  kTapPacks,      // unit feature stride ([N, W-1, D] memory): a 16-byte pack per column
  kFeatureBlock,  // [N, D, W-1] contiguous per line: a pack's W-1 columns are W-1 packs
  kScalar,        // anything else
};

struct PackedPlan {
  int64_t conv_work;      // work items: token groups * column_warps
  int64_t gate_blocks;
  int64_t column_warps;   // work items per group of tokens, 32 columns each
  int64_t chunks_per_group;  // chunks of kTok tokens a work item takes, one after another
  int columns;            // D / kVec
  int qk_columns;         // 2*H*K / kVec
  int log2_lanes;         // lanes (columns) per q/k head
  StateAccess state_access;
  bool weight_packed;     // a column's kVec x W weights are contiguous and 16-byte aligned
  bool bias_packed;
  int items_per_block;    // conv items a block takes: kWarps, fewer in a small call
  bool gates_last;        // the gate blocks follow the conv blocks (plan_work says when)
};

// The 16-byte loads of kN contiguous values of any float dtype (up to kN
// float32), kept raw: a caller issues every load of a round trip before it
// converts any, so that none waits behind another's use.
template <int kN>
struct RawFloats {
  uint4 raw[(kN * 4 + 15) / 16];
};

template <int kN>
__device__ __forceinline__ void load_raw(const StridedInput& in, int64_t first, RawFloats<kN>& r) {
  const int64_t size = element_bytes(in.kind);
  const char* src = static_cast<const char*>(in.data) + first * size;
#pragma unroll
  for (int i = 0; i < static_cast<int>(sizeof(r.raw) / 16); ++i) {
    if (i * 16 < kN * size) r.raw[i] = *reinterpret_cast<const uint4*>(src + i * 16);
  }
}

template <int kN>
__device__ __forceinline__ void raw_to_floats(ScalarKind kind, const RawFloats<kN>& r,
                                              float (&out)[kN]) {
  if (kind == ScalarKind::kFloat32) {
#pragma unroll
    for (int i = 0; i < kN; ++i) out[i] = reinterpret_cast<const float*>(r.raw)[i];
  } else {
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      out[i] = bits_to_float(kind, reinterpret_cast<const uint16_t*>(r.raw)[i]);
    }
  }
}

// The W-1 columns of one pack of features of a cache line: [column][element].
template <typename T, int kW>
struct StateBlock {
  Pack<T> col[kW - 1];
};

template <typename T, int kW>
__device__ __forceinline__ StateBlock<T, kW> load_state(const CausalConvPrepParams& p,
                                                        const PackedPlan& plan, const T* line,
                                                        int column) {
  constexpr int kVec = Pack<T>::kSize;
  StateBlock<T, kW> s;
  if (plan.state_access == StateAccess::kTapPacks) {
#pragma unroll
    for (int c = 0; c < kW - 1; ++c) {
      s.col[c] = load_pack(line + c * p.states_stride_tap + column * kVec);
    }
  } else if (plan.state_access == StateAccess::kFeatureBlock) {
    Pack<T> raw[kW - 1];  // element f of column c at f * (W-1) + c
#pragma unroll
    for (int i = 0; i < kW - 1; ++i) raw[i] = load_pack(line + (column * (kW - 1) + i) * kVec);
    const T* flat = raw[0].x;
#pragma unroll
    for (int c = 0; c < kW - 1; ++c) {
#pragma unroll
      for (int f = 0; f < kVec; ++f) s.col[c].x[f] = flat[f * (kW - 1) + c];
    }
  } else {
#pragma unroll
    for (int c = 0; c < kW - 1; ++c) {
#pragma unroll
      for (int f = 0; f < kVec; ++f) {
        s.col[c].x[f] = line[c * p.states_stride_tap + (column * kVec + f) * p.states_stride_feat];
      }
    }
  }
  return s;
}

// A sequence's taps before its start for one pack of features: its old
// line's columns, or zeros where it has none (line == nullptr).
template <typename T, int kW>
__device__ __forceinline__ StateBlock<T, kW> old_line_or_zeros(const CausalConvPrepParams& p,
                                                               const PackedPlan& plan, const T* line,
                                                               int column) {
  if (line != nullptr) return load_state<T, kW>(p, plan, line, column);
  StateBlock<T, kW> s;
#pragma unroll
  for (int c = 0; c < kW - 1; ++c) {
#pragma unroll
    for (int f = 0; f < Pack<T>::kSize; ++f) s.col[c].x[f] = T(0.f);
  }
  return s;
}

template <typename T, int kW>
__device__ __forceinline__ void store_state(const CausalConvPrepParams& p, const PackedPlan& plan,
                                            T* line, int column, const StateBlock<T, kW>& s) {
  constexpr int kVec = Pack<T>::kSize;
  if (plan.state_access == StateAccess::kTapPacks) {
#pragma unroll
    for (int c = 0; c < kW - 1; ++c) store_pack(line + c * p.states_stride_tap + column * kVec, s.col[c]);
  } else if (plan.state_access == StateAccess::kFeatureBlock) {
    Pack<T> raw[kW - 1];
    T* flat = raw[0].x;
#pragma unroll
    for (int c = 0; c < kW - 1; ++c) {
#pragma unroll
      for (int f = 0; f < kVec; ++f) flat[f * (kW - 1) + c] = s.col[c].x[f];
    }
#pragma unroll
    for (int i = 0; i < kW - 1; ++i) store_pack(line + (column * (kW - 1) + i) * kVec, raw[i]);
  } else {
#pragma unroll
    for (int c = 0; c < kW - 1; ++c) {
#pragma unroll
      for (int f = 0; f < kVec; ++f) {
        line[c * p.states_stride_tap + (column * kVec + f) * p.states_stride_feat] = s.col[c].x[f];
      }
    }
  }
}

// The tokens a chunk [t0, t0 + kTok) computes: its own, less a leading run
// that belongs to a sequence starting in the previous W-2 tokens (whose
// first W-1 tokens the chunk holding its start computes), plus the first W-1
// tokens of its last sequence where they spill past the chunk.
struct TokenRange {
  int64_t begin, end;
};

template <int kTok, int kW>
__device__ __forceinline__ TokenRange chunk_tokens(const CausalConvPrepParams& p, int64_t t0,
                                                   const Sequence& first) {
  const int64_t chunk_end = std::min<int64_t>(t0 + kTok, p.prep.L);
  int64_t begin = t0;
  if (first.start < t0) {
    begin = std::min(std::max(std::min(first.start + kW - 1, first.end), t0), chunk_end);
  }
  const Sequence last =
      kTok == 1 || chunk_end <= first.end
          ? first
          : sequence_of(p, chunk_end - 1, p.B == p.prep.L ? chunk_end - 1 : first.index);
  int64_t end = chunk_end;
  if (last.start >= t0) end = std::max(chunk_end, std::min(last.start + kW - 1, last.end));
  return {begin, end};
}

// One 16-byte column of features of the packed kernel: where it sits, and
// its weights and bias as float, in shared memory. Registers cannot hold them
// (40 for bf16 at W = 4) beside the rows and sums without spilling at two
// blocks an SM. Each thread writes and reads only its own slots, laid out
// [tap][4 features][thread] so that a warp's 16-byte reads hit every bank
// once; no barrier is needed.
template <typename T, int kW>
struct Column {
  static constexpr int kVec = Pack<T>::kSize;
  static constexpr int kQuads = kVec / 4;  // float4s per tap
  int index;    // in [0, D / kVec)
  bool stores;  // false for a lane past the last column
  float4* smem;  // this thread's first slot; slot (j, h) at smem[(j * kQuads + h) * kThreads]

  // Weights of tap j (j = kW: the bias), for the column's kVec features.
  __device__ __forceinline__ void taps(int j, float (&w)[kVec]) const {
#pragma unroll
    for (int h = 0; h < kQuads; ++h) {
      const float4 q = smem[(j * kQuads + h) * kThreads];
      w[4 * h] = q.x, w[4 * h + 1] = q.y, w[4 * h + 2] = q.z, w[4 * h + 3] = q.w;
    }
  }
};

template <typename T, int kW>
constexpr int64_t column_smem_bytes() {
  return int64_t{kW + 1} * Column<T, kW>::kQuads * kThreads * 16;
}

// The packed kernels' grid-stride loop over their work items:
// plan.gate_blocks blocks of gates (one gate a thread) before or after
// (plan.gates_last) the blocks of plan.items_per_block conv items (kWarps
// but in a small call; a block's other warps have none), an
// item a warp: a group of tokens of 32 columns, body(col, group) with this
// lane's column. An item is a warp's, not a block's, so that a call with few
// columns (a tensor-parallel shard: 160 at (2,6)) does not leave most of a
// block's lanes without a column of their own. A lane past the last column
// computes the last one again (every lane reaches the shuffles) and stores
// nothing. Every bound in body is uniform over the warp, whose lanes share
// the group; nothing in a packed kernel synchronises the block.
__host__ __device__ inline int64_t conv_blocks(const PackedPlan& plan) {
  return ceil_div(plan.conv_work, plan.items_per_block);
}

__host__ __device__ inline int64_t packed_blocks(const PackedPlan& plan) {
  return plan.gate_blocks + conv_blocks(plan);
}

template <typename T, int kW, typename Body>
__device__ __forceinline__ void for_each_work_item(const CausalConvPrepParams& p,
                                                   const PackedPlan& plan, float4* smem,
                                                   const Body& body) {
  let_next_grid_launch();
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int64_t first_gate_block = plan.gates_last ? conv_blocks(plan) : 0;
  const int64_t first_conv_block = plan.gates_last ? 0 : plan.gate_blocks;
  for (int64_t work = blockIdx.x; work < packed_blocks(plan); work += gridDim.x) {
    const int64_t gate = work - first_gate_block;
    if (gate >= 0 && gate < plan.gate_blocks) {
      gate_block(p.prep, gate * kThreads, kThreads);
      continue;
    }
    const int64_t item = (work - first_conv_block) * plan.items_per_block + warp;
    if (warp >= plan.items_per_block || item >= plan.conv_work) continue;
    const int64_t group = item / plan.column_warps;
    const int column = static_cast<int>(item - group * plan.column_warps) * kWarpSize + lane;
    Column<T, kW> col;
    col.smem = smem + threadIdx.x;
    col.stores = column < plan.columns;
    col.index = std::min(column, plan.columns - 1);
    body(col, group);
  }
}

// Where a column's weights and bias are read from, chosen on the host.
//   kAny: any dtype and strides; a runtime dtype picks each element's
//     conversion.
//   kPackedLikeX: weight [D, W] contiguous and bias contiguous (or absent),
//     16-byte aligned, both in x's dtype (as checkpoints hold them): kW packs
//     and one a column, converted in straight-line code. kAny's conversion
//     is a branch an element and holds float32-sized loads: in a decode
//     token it was a quarter of the instructions, and in the prefill kernel
//     its registers spilled 172 bytes where kPackedLikeX spills none (H200:
//     a prefill 1-20% slower; benchmarks/NOTES.md).
enum class ColumnSource { kAny, kPackedLikeX };

// A column's weights and bias, loaded and not yet converted (kAny: packed
// layouts only; the others are loaded element by element in load_column).
template <typename T, int kW, ColumnSource kSource>
struct ColumnLoads {
  static constexpr bool kLikeX = kSource == ColumnSource::kPackedLikeX;
  static constexpr int kVec = Pack<T>::kSize;
  // element f, tap j at f * W + j
  std::conditional_t<kLikeX, Pack<T>[kW], RawFloats<kW * kVec>> weight;
  std::conditional_t<kLikeX, Pack<T>, RawFloats<kVec>> bias;
};

template <typename T, int kW, ColumnSource kSource>
__device__ __forceinline__ ColumnLoads<T, kW, kSource> issue_column_loads(
    const CausalConvPrepParams& p, const PackedPlan& plan, const Column<T, kW>& col) {
  constexpr int kVec = Pack<T>::kSize;
  const int64_t first = static_cast<int64_t>(col.index) * kVec;
  ColumnLoads<T, kW, kSource> loads;
  if constexpr (ColumnLoads<T, kW, kSource>::kLikeX) {
    const T* weight = static_cast<const T*>(p.weight.data) + first * kW;
#pragma unroll
    for (int i = 0; i < kW; ++i) loads.weight[i] = load_pack(weight + i * kVec);
    if (p.bias.data != nullptr) loads.bias = load_pack(static_cast<const T*>(p.bias.data) + first);
  } else {
    if (plan.weight_packed) load_raw(p.weight, first * kW, loads.weight);
    if (plan.bias_packed) load_raw(p.bias, first, loads.bias);
  }
  return loads;
}

// The column's weights and bias as float into its shared-memory slots.
template <typename T, int kW, ColumnSource kSource>
__device__ __forceinline__ void load_column(const CausalConvPrepParams& p, const PackedPlan& plan,
                                            const Column<T, kW>& col,
                                            const ColumnLoads<T, kW, kSource>& loads) {
  constexpr int kVec = Pack<T>::kSize;
  const int64_t first = static_cast<int64_t>(col.index) * kVec;
  float weight[kW * kVec];  // element f, tap j at f * W + j
  float bias[kVec];
#pragma unroll
  for (int f = 0; f < kVec; ++f) bias[f] = 0.f;
  if constexpr (ColumnLoads<T, kW, kSource>::kLikeX) {
#pragma unroll
    for (int i = 0; i < kW; ++i) {
      float part[kVec];
      unpack_floats(loads.weight[i], part);
#pragma unroll
      for (int e = 0; e < kVec; ++e) weight[i * kVec + e] = part[e];
    }
    if (p.bias.data != nullptr) unpack_floats(loads.bias, bias);
  } else {
    if (plan.weight_packed) {
      raw_to_floats(p.weight.kind, loads.weight, weight);
    } else {
#pragma unroll
      for (int f = 0; f < kVec; ++f) {
#pragma unroll
        for (int j = 0; j < kW; ++j) {
          weight[f * kW + j] =
              load_float(p.weight, (first + f) * p.weight.stride0 + j * p.weight.stride1);
        }
      }
    }
    if (plan.bias_packed) {
      raw_to_floats(p.bias.kind, loads.bias, bias);
    } else if (p.bias.data != nullptr) {
#pragma unroll
      for (int f = 0; f < kVec; ++f) bias[f] = load_float(p.bias, (first + f) * p.bias.stride0);
    }
  }
#pragma unroll
  for (int h = 0; h < Column<T, kW>::kQuads; ++h) {
#pragma unroll
    for (int j = 0; j < kW; ++j) {
      col.smem[(j * Column<T, kW>::kQuads + h) * kThreads] =
          make_float4(weight[(4 * h) * kW + j], weight[(4 * h + 1) * kW + j],
                      weight[(4 * h + 2) * kW + j], weight[(4 * h + 3) * kW + j]);
    }
    col.smem[(kW * Column<T, kW>::kQuads + h) * kThreads] =
        make_float4(bias[4 * h], bias[4 * h + 1], bias[4 * h + 2], bias[4 * h + 3]);
  }
}

// y = act(bias + sum_j w_j * tap_j), rounded to T; tap(j) gives tap j's pack.
template <typename T, int kW, typename Tap>
__device__ __forceinline__ Pack<T> convolve(const CausalConvPrepParams& p,
                                            const Column<T, kW>& col, const Tap& tap) {
  constexpr int kVec = Pack<T>::kSize;
  float acc[kVec];
  col.taps(kW, acc);  // the bias
#pragma unroll
  for (int j = 0; j < kW; ++j) {
    const Pack<T> x = tap(j);
    float w[kVec];
    col.taps(j, w);
#pragma unroll
    for (int f = 0; f < kVec; ++f) acc[f] = acc[f] + w[f] * static_cast<float>(x.x[f]);
  }
#pragma unroll
  for (int f = 0; f < kVec; ++f) acc[f] = activate<T>(p, acc[f]);
  return round_to<T>(acc);
}

// Where a column's outputs go: token t's pack at base + t * row_stride, in
// q, k or v; q/k packs are L2-normalised.
template <typename T>
struct ColumnOut {
  T* base;
  int64_t row_stride;
  bool normalised;
};

// A q/k head is whole packs, one a lane (the packed path's condition), so
// the column's feature offset in [q | k | v] of a row is its offset there.
template <typename T>
__device__ __forceinline__ ColumnOut<T> column_out(const CausalConvPrepParams& p,
                                                   const PackedPlan& plan, int column) {
  const PostConvPrepParams& q = p.prep;
  const int64_t qk_row = q.H * q.K;
  const int64_t feature = static_cast<int64_t>(column) * Pack<T>::kSize;
  if (column < plan.qk_columns) {
    const bool in_q = feature < qk_row;
    return {static_cast<T*>(in_q ? q.q : q.k) + (in_q ? feature : feature - qk_row), qk_row,
            q.apply_l2norm};
  }
  return {static_cast<T*>(q.v) + (feature - 2 * qk_row), q.HV * q.V, false};
}

// Stores token t's conv output y of the column, scaled by `scale` (from the
// head's lanes) where it goes to q or k with the L2 norm.
template <typename T>
__device__ __forceinline__ void store_column(const ColumnOut<T>& out, int64_t t, const Pack<T>& y,
                                             float scale) {
  store_pack(out.base + t * out.row_stride, out.normalised ? scaled(y, scale) : y);
}

template <typename T>
__device__ __forceinline__ void store_column(const CausalConvPrepParams& p, const PackedPlan& plan,
                                             int column, int64_t t, const Pack<T>& y, float scale) {
  store_column(column_out<T>(p, plan, column), t, y, scale);
}

// kTok tokens t0.. of one sequence and one column, side by side: each tap
// row is converted once for every token it is a tap of, and the tokens'
// butterflies overlap. row(r): the tap at position t0 - (W-1) + r of the
// column, r < kTok + W - 1 (x's row, or before the sequence the old line's
// column or zeros). dst: token t0's pack of the column's output, token
// t0 + u's at dst + u * out.row_stride; the first `tokens` are stored.
// normalise: some lane of the warp holds a q/k column to L2-normalise (a
// warp of v columns skips the squares and the butterflies).
template <typename T, int kW, int kTok, typename Row>
__device__ __forceinline__ void convolve_chunk(const CausalConvPrepParams& p, const PackedPlan& plan,
                                               const Column<T, kW>& col, const ColumnOut<T>& out,
                                               bool normalise, T* dst, int tokens, const Row& row) {
  constexpr int kVec = Pack<T>::kSize;
  float w[kW][kVec];
#pragma unroll
  for (int j = 0; j < kW; ++j) col.taps(j, w[j]);
  float acc[kTok][kVec];
  col.taps(kW, acc[0]);  // the bias
#pragma unroll
  for (int u = 1; u < kTok; ++u) {
#pragma unroll
    for (int f = 0; f < kVec; ++f) acc[u][f] = acc[0][f];
  }
  // Row by row, each converted once and added to the tokens it is a tap of
  // (row r is tap r - u of token u), so that each token's taps go in order
  // with no more than one row converted at a time.
#pragma unroll
  for (int r = 0; r < kTok + kW - 1; ++r) {
    float xs[kVec];
    unpack_floats(row(r), xs);
#pragma unroll
    for (int u = 0; u < kTok; ++u) {
      const int j = r - u;
      if (j < 0 || j >= kW) continue;
#pragma unroll
      for (int f = 0; f < kVec; ++f) acc[u][f] = acc[u][f] + w[j][f] * xs[f];
    }
  }
  // One branch for the chunk, not one per element.
  if (p.silu) {
#pragma unroll
    for (int u = 0; u < kTok; ++u) {
#pragma unroll
      for (int f = 0; f < kVec; ++f) acc[u][f] = silu_for<T>(acc[u][f]);
    }
  }
  if (!normalise) {
    if (!col.stores) return;
#pragma unroll
    for (int u = 0; u < kTok; ++u, dst += out.row_stride) {
      if (u < tokens) store_pack(dst, round_to<T>(acc[u]));
    }
    return;
  }
  // All the tokens' butterflies side by side; every lane takes part.
  Pack<T> y[kTok];
  float scale[kTok];
#pragma unroll
  for (int u = 0; u < kTok; ++u) {
    y[u] = round_to<T>(acc[u]);
    scale[u] = add_squares(y[u], 0.f);
  }
  group_sums(scale, 1 << plan.log2_lanes);
  if (!col.stores) return;
#pragma unroll
  for (int u = 0; u < kTok; ++u, dst += out.row_stride) {
    // A v lane of a mixed warp stores y * 1: y again, bit for bit.
    if (u < tokens) store_pack(dst, scaled(y[u], out.normalised ? l2norm_scale(scale[u]) : 1.f));
  }
}

// Any other chunk: sequence starts (taps from the cache line or zeros), a
// sequence's first W-1 tokens spilling past the chunk, the decode kernel's
// tokens that are not one-token sequences. The chunk's tokens go in runs,
// one a sequence; compute_run(t, end) computes and stores tokens [t, end)
// of the column from `taps` (the prefill kernel two side by side, the decode
// kernel one at a time: each kernel's registers decide). The thread that
// computes a sequence's first W-1 tokens writes its new cache line after
// them. Where the taps come from is the kernel's: taps.tap(pos) is the
// column's tap at position pos; taps.begin_sequence(start, before): from
// now on the W-1 positions before `start` (a sequence's first token) hold
// `before` (old_line_or_zeros), not x. The prefill kernel writes them into
// its ring of x rows (RingTaps), the decode kernel holds them in registers
// (RegisterTaps).
//
// A sequence start is a short prefill's critical path (one warp a column
// strip holds it). Its lookups come with the sequence (sequence_of), and
// the old line is loaded once a run; token by token, each with its own
// lookups and loads, a run of four tokens was about ten dependent round
// trips and four dependent chains of arithmetic.
template <typename T, int kW, int kTok, typename Taps, typename ComputeRun>
__device__ __forceinline__ void boundary_chunk(const CausalConvPrepParams& p, const PackedPlan& plan,
                                               const Column<T, kW>& col, int64_t t0,
                                               const Sequence& first, Taps& taps,
                                               const ComputeRun& compute_run) {
  T* const states = static_cast<T*>(p.states);
  const TokenRange range = chunk_tokens<kTok, kW>(p, t0, first);
  Sequence seq = first;
  for (int64_t t = range.begin; t < range.end;) {  // bounds uniform over the warp
    // A one-token chunk's tokens are all its first sequence's (chunk_tokens).
    if (kTok > 1 && (t >= seq.end || t < seq.start)) seq = sequence_of(p, t, seq.index + 1);
    const int64_t run_end = std::min(range.end, seq.end);
    // A run holds its sequence's first W-1 tokens only where it starts the
    // sequence (chunk_tokens); then the line is this thread's to read and
    // write.
    const bool starts = t - seq.start < kW - 1;
    const int64_t line = starts ? checked_line(p, seq.entry) : -1;
    T* const line_ptr = states + line * p.states_stride_line;
    if (starts) {
      const T* const old_line = line >= 0 && seq.initial ? line_ptr : nullptr;
      taps.begin_sequence(seq.start, old_line_or_zeros<T, kW>(p, plan, old_line, col.index));
    }
    compute_run(t, run_end);
    t = run_end;
    // After the last reader of the old line (this thread, above), the new
    // one: the last W-1 columns of [old line | the sequence's x], bit for bit.
    if (line < 0 || !col.stores) continue;
    StateBlock<T, kW> next;
#pragma unroll
    for (int c = 0; c < kW - 1; ++c) next.col[c] = taps.tap(seq.end - (kW - 1) + c);
    store_state<T, kW>(p, plan, line_ptr, col.index, next);
  }
}

// Packed kernels' blocks an SM. Prefill: two, as its x ring and the
// column's weights take 104 KB of shared memory a block (bf16, W = 4); the
// ring keeps the loads in flight that the third block's warps used to.
// Decode: two (causal_conv_decode_cuda.cu says why).
constexpr int kPrefillBlocksPerSM = 2;
constexpr int kDecodeBlocksPerSM = 2;

// Launches the decode kernel (causal_conv_decode_cuda.cu) on `plan`, whose
// chunks are single tokens, reading the columns from `source`. T:
// c10::BFloat16, c10::Half or float.
template <typename T>
void launch_decode(const CausalConvPrepParams& p, const PackedPlan& plan, ColumnSource source,
                   const LaunchTarget& target);

}  // namespace gdn::gpu::conv
