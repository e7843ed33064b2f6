// Op 2's CUDA backend: the causal conv (+ SiLU), rounded to x's dtype, and
// op 1 on it, in one kernel; the conv output never goes to memory. Two
// kernels, chosen on the host from the strides and sizes:
//
//  * packed_kernel   x with unit feature stride and 16-byte rows, q/k heads
//                    of a power-of-two number <= 32 of 16-byte packs. A
//                    thread owns one 16-byte column of features (its weights
//                    in shared memory) for a run of chunks of kTok tokens:
//                    it loads a chunk's rows plus the W-1 before it (16 bytes
//                    each), convolves in registers, and a group of lanes (one
//                    q/k head) sums the squares with shuffles, as op 1's
//                    row-major kernel does. Gates take blocks of their own
//                    (op 1's gate_block).
//  * strided_kernel  any other layout or size: one warp per (token, head),
//                    scalar accesses.
//
// Sequences and the cache. Each token finds its sequence by a search over
// query_start_loc (tried first at the token's own index, which is right for
// decode). A token t whose taps reach before its sequence's start reads
// them from the sequence's cache line, which the call also overwrites. So
// that no line is written before every read of it is done, without a second
// launch: a sequence's first W-1 tokens are computed by the thread (or warp)
// whose chunk holds the sequence's first token, even where they spill into
// the next chunk; that thread writes the sequence's new line (for its
// features) after it. No workspace, no host synchronisation: the op is safe
// in CUDA-graph capture.
#include <algorithm>
#include <cstdint>

#include <torch/csrc/stable/library.h>

#include "../causal_conv_prep.h"
#include "device_common.cuh"

namespace gdn::gpu {
namespace {

// ---------------------------------------------------------------------------
// Sequences and cache lines.

__device__ __forceinline__ int64_t sequence_bound(const CausalConvPrepParams& p, int64_t j) {
  return p.query_start_loc[j * p.query_start_loc_stride];
}

// The sequence holding token t: the last i in [0, B) with qsl[i] <= t.
// `guess` is tried first (decode: the token's own index).
__device__ int64_t find_sequence(const CausalConvPrepParams& p, int64_t t, int64_t guess) {
  if (guess >= 0 && guess < p.B && sequence_bound(p, guess) <= t &&
      t < sequence_bound(p, guess + 1)) {
    return guess;
  }
  int64_t lo = 0, hi = p.B;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (sequence_bound(p, mid) <= t) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

struct Sequence {
  int64_t index, start, end;  // tokens [start, end)
};

// Bounds that are not what SPEC asks for are clamped so that start <= t <
// end <= T: wrong values then, never an access out of range.
__device__ __forceinline__ Sequence sequence_of(const CausalConvPrepParams& p, int64_t t,
                                                int64_t guess) {
  const int64_t i = find_sequence(p, t, guess);
  const int64_t start = std::min<int64_t>(std::max<int64_t>(sequence_bound(p, i), 0), t);
  const int64_t end = std::min<int64_t>(std::max<int64_t>(sequence_bound(p, i + 1), t + 1), p.prep.L);
  return {i, start, end};
}

// Sequence i's cache line, or -1 where it has none (pad slot, out of range).
__device__ __forceinline__ int64_t cache_line(const CausalConvPrepParams& p, int64_t i) {
  const int64_t line = p.cache_indices ? p.cache_indices[i * p.cache_indices_stride] : i;
  return line != p.pad_slot_id && line >= 0 && line < p.N ? line : -1;
}

__device__ __forceinline__ bool has_initial_state(const CausalConvPrepParams& p, int64_t i) {
  return p.has_initial_state != nullptr && p.has_initial_state[i * p.has_initial_state_stride];
}

__device__ __forceinline__ float load_float(const StridedInput& in, int64_t offset) {
  return bits_to_float(in.kind, load_bits(in, offset));
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
__device__ __forceinline__ float activate(const CausalConvPrepParams& p, float acc) {
  if (!p.silu) return acc;
  if constexpr (sizeof(T) == 2) {
    return __fdividef(acc, 1.f + __expf(-acc));
  } else {
    return silu<float>(acc);
  }
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
  int64_t conv_work;      // token groups * column_blocks
  int64_t gate_blocks;
  int64_t column_blocks;  // work items per group of tokens
  int64_t chunks_per_group;  // chunks of kTok tokens a work item takes, one after another
  int columns;            // D / kVec
  int qk_columns;         // 2*H*K / kVec
  int log2_lanes;         // lanes (columns) per q/k head
  StateAccess state_access;
  bool weight_packed;     // a column's kVec x W weights are contiguous and 16-byte aligned
  bool bias_packed;
};

// n floats from `in` at offset first (unit stride) in 16-byte loads, or
// elements first + i * stride one at a time.
template <int kN>
__device__ __forceinline__ void load_floats(const StridedInput& in, int64_t first, int64_t stride,
                                            bool packed, float (&out)[kN]) {
  if (packed) {
    constexpr int kMaxBytes = kN * 4;
    uint4 raw[(kMaxBytes + 15) / 16];
    const int bytes = kN * static_cast<int>(element_bytes(in.kind));
    const char* src = static_cast<const char*>(in.data) + first * (bytes / kN);
#pragma unroll
    for (int i = 0; i < (kMaxBytes + 15) / 16; ++i) {
      if (i * 16 < bytes) raw[i] = *reinterpret_cast<const uint4*>(src + i * 16);
    }
    if (in.kind == ScalarKind::kFloat32) {
#pragma unroll
      for (int i = 0; i < kN; ++i) out[i] = reinterpret_cast<const float*>(raw)[i];
    } else {
#pragma unroll
      for (int i = 0; i < kN; ++i) {
        out[i] = bits_to_float(in.kind, reinterpret_cast<const uint16_t*>(raw)[i]);
      }
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < kN; ++i) out[i] = load_float(in, first + i * stride);
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
      kTok == 1 ? first
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

template <typename T, int kW>
__device__ __forceinline__ void load_column(const CausalConvPrepParams& p, const PackedPlan& plan,
                                            Column<T, kW>& col) {
  constexpr int kVec = Pack<T>::kSize;
  const int64_t first = static_cast<int64_t>(col.index) * kVec;
  float weight[kW * kVec];  // element f, tap j at f * W + j
  if (plan.weight_packed) {
    load_floats(p.weight, first * kW, 1, true, weight);
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
  float bias[kVec];
  if (p.bias.data != nullptr) {
    load_floats(p.bias, first * p.bias.stride0, p.bias.stride0, plan.bias_packed, bias);
  } else {
#pragma unroll
    for (int f = 0; f < kVec; ++f) bias[f] = 0.f;
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
  Pack<T> y;
#pragma unroll
  for (int f = 0; f < kVec; ++f) y.x[f] = static_cast<T>(activate<T>(p, acc[f]));
  return y;
}

// Stores token t's conv output of the column: L2-normalised into q or k
// (scale from the head's lanes), or into v.
template <typename T>
__device__ __forceinline__ void store_column(const CausalConvPrepParams& p, const PackedPlan& plan,
                                             int column, int64_t t, const Pack<T>& y, float scale) {
  constexpr int kVec = Pack<T>::kSize;
  if (column < plan.qk_columns) {
    const int lanes = 1 << plan.log2_lanes;
    T* dst = qk_head_out<T>(p.prep, t, column >> plan.log2_lanes) + (column & (lanes - 1)) * kVec;
    store_pack(dst, p.prep.apply_l2norm ? scaled(y, scale) : y);
  } else {
    T* dst = static_cast<T*>(p.prep.v) + t * p.prep.HV * p.prep.V +
             static_cast<int64_t>(column - plan.qk_columns) * kVec;
    store_pack(dst, y);
  }
}

// A chunk whose kTok tokens all lie in one sequence, W-1 or more tokens past
// its start (nearly every chunk of a prefill): every tap comes from x, and
// each 16-byte pack of x is loaded once for the whole chunk.
// rows: x's rows t0 - (W-1) .. t0 + kTok - 1 of the column.
template <typename T, int kW, int kTok>
__device__ __forceinline__ void interior_chunk(const CausalConvPrepParams& p, const PackedPlan& plan,
                                               const Column<T, kW>& col, int64_t t0,
                                               const Pack<T> (&rows)[kTok + kW - 1]) {
  constexpr int kVec = Pack<T>::kSize;
  constexpr int kRows = kTok + kW - 1;
  // Tap by tap (its weights read once for all the chunk's tokens), each
  // token's taps in order.
  float acc[kTok][kVec];
#pragma unroll
  for (int u = 0; u < kTok; ++u) col.taps(kW, acc[u]);  // the bias
#pragma unroll
  for (int j = 0; j < kW; ++j) {
    float w[kVec];
    col.taps(j, w);
#pragma unroll
    for (int u = 0; u < kTok; ++u) {
#pragma unroll
      for (int f = 0; f < kVec; ++f) {
        acc[u][f] = acc[u][f] + w[f] * static_cast<float>(rows[u + j].x[f]);
      }
    }
  }
  Pack<T> y[kTok];
  float scale[kTok];
#pragma unroll
  for (int u = 0; u < kTok; ++u) {
#pragma unroll
    for (int f = 0; f < kVec; ++f) y[u].x[f] = static_cast<T>(activate<T>(p, acc[u][f]));
    scale[u] = add_squares(y[u], 0.f);
  }
  // All the tokens' butterflies side by side.
  if (p.prep.apply_l2norm) {
    group_sums(scale, 1 << plan.log2_lanes);
#pragma unroll
    for (int u = 0; u < kTok; ++u) scale[u] = l2norm_scale(scale[u]);
  }
  if (col.stores) {
#pragma unroll
    for (int u = 0; u < kTok; ++u) store_column(p, plan, col.index, t0 + u, y[u], scale[u]);
  }
}

// Any other chunk: sequence starts (taps from the cache line or zeros), a
// sequence's first W-1 tokens spilling past the chunk, decode. One token at
// a time; the thread that computes a sequence's first W-1 tokens writes its
// new cache line after them.
template <typename T, int kW, int kTok>
__device__ __forceinline__ void boundary_chunk(const CausalConvPrepParams& p, const PackedPlan& plan,
                                               const Column<T, kW>& col, int64_t t0,
                                               const Sequence& first) {
  constexpr int kVec = Pack<T>::kSize;
  const T* x = static_cast<const T*>(p.x) + col.index * kVec;
  T* const states = static_cast<T*>(p.states);
  const TokenRange range = chunk_tokens<kTok, kW>(p, t0, first);
  const bool decode_shaped = p.B == p.prep.L;
  Sequence seq = first;
  for (int64_t t = range.begin; t < range.end; ++t) {  // a bound uniform over the block
    // Decode: token t is sequence t. Its cache line and flag are loaded
    // alongside the bounds that confirm it, not after them: one memory
    // round trip less before the line itself.
    const bool guess = decode_shaped && t < p.B;
    const int64_t guessed_line = guess ? cache_line(p, t) : -1;
    const bool guessed_initial = guess && has_initial_state(p, t);
    if (t >= seq.end || t < seq.start) seq = sequence_of(p, t, decode_shaped ? t : seq.index + 1);
    const bool near_start = t - seq.start < kW - 1;
    const bool guessed = guess && seq.index == t;
    const int64_t line = !near_start ? -1 : guessed ? guessed_line : cache_line(p, seq.index);
    const bool prior =
        line >= 0 && (guessed ? guessed_initial : has_initial_state(p, seq.index));
    T* const line_ptr = states + line * p.states_stride_line;
    StateBlock<T, kW> old{};
    if (prior) old = load_state<T, kW>(p, plan, line_ptr, col.index);
    const Pack<T> y = convolve<T, kW>(p, col, [&](int j) {
      const int64_t pos = t - (kW - 1) + j;
      if (pos >= seq.start) return load_pack(x + pos * p.x_stride_row);
      Pack<T> tap;
#pragma unroll
      for (int f = 0; f < kVec; ++f) tap.x[f] = T(0.f);
#pragma unroll
      for (int c = 0; c < kW - 1; ++c) {
        if (prior && c == pos - seq.start + kW - 1) tap = old.col[c];
      }
      return tap;
    });
    float scale = 1.f;
    if (p.prep.apply_l2norm) {
      scale = l2norm_scale(group_sum(add_squares(y, 0.f), 1 << plan.log2_lanes));
    }
    if (!col.stores) continue;
    store_column(p, plan, col.index, t, y, scale);
    // After the last of the sequence's first W-1 tokens (the last reader of
    // the old line, and this thread's, as are all the others), the new line:
    // the last W-1 columns of [old line | its x], bit for bit.
    if (line < 0 || t != std::min(seq.end, seq.start + kW - 1) - 1) continue;
    const int64_t n = seq.end - seq.start;
    // The old columns are read again rather than kept from above: fewer
    // registers live across the conv (W = 4 spilled), and only this thread
    // writes them, below.
    if (prior && n < kW - 1) old = load_state<T, kW>(p, plan, line_ptr, col.index);
    StateBlock<T, kW> next;
#pragma unroll
    for (int c = 0; c < kW - 1; ++c) {
      const int64_t pos = seq.end - (kW - 1) + c;
      if (pos >= seq.start) {
        next.col[c] = load_pack(x + pos * p.x_stride_row);
      } else {
#pragma unroll
        for (int f = 0; f < kVec; ++f) next.col[c].x[f] = T(0.f);
#pragma unroll
        for (int cc = 0; cc < kW - 1; ++cc) {
          if (prior && cc == c + n) next.col[c] = old.col[cc];
        }
      }
    }
    store_state<T, kW>(p, plan, line_ptr, col.index, next);
  }
}

// Prefill kernels: three blocks an SM (80 registers). With two (124
// registers) the kernel issued at half rate, waiting on memory with 16 warps
// an SM; three ran 7-12% faster at T >= 8192 (bf16, (16,32)). Decode kernels
// (one token a chunk): two, as three spilled their cache-line path and ran
// 5-30% slower.
template <int kTok>
constexpr int packed_blocks_per_sm() {
  return kTok == 1 ? 2 : 3;
}

template <typename T, int kW, int kTok>
__global__ void __launch_bounds__(kThreads, packed_blocks_per_sm<kTok>())
    packed_kernel(const CausalConvPrepParams p, const PackedPlan plan) {
  extern __shared__ float4 column_smem[];
  let_next_grid_launch();
  for (int64_t work = blockIdx.x; work < plan.conv_work + plan.gate_blocks; work += gridDim.x) {
    if (work >= plan.conv_work) {
      gate_block(p.prep, (work - plan.conv_work) * kThreads, kThreads);
      continue;
    }
    const int64_t group = work / plan.column_blocks;
    const int column =
        static_cast<int>(work - group * plan.column_blocks) * kThreads + threadIdx.x;
    // A lane past the last column computes the last one again (every lane
    // reaches the shuffles) and stores nothing.
    Column<T, kW> col;
    col.smem = column_smem + threadIdx.x;
    col.stores = column < plan.columns;
    col.index = std::min(column, plan.columns - 1);
    constexpr int kVec = Pack<T>::kSize;
    wait_for_previous_grid();
    load_column(p, plan, col);  // once for all the work item's chunks
    const bool decode_shaped = p.B == p.prep.L;
    const T* x = static_cast<const T*>(p.x) + col.index * kVec;
    // Each interior chunk loads its kTok + W-1 rows: keeping the W-1 rows of
    // the halo from the chunk before spilled at 80 registers (bf16, W = 4);
    // the halo's reloads hit L1.
    Pack<T> rows[kTok + kW - 1];
    Sequence seq{-1, 0, 0};
    for (int64_t i = 0; i < plan.chunks_per_group; ++i) {  // a bound uniform over the block
      const int64_t t0 = (group * plan.chunks_per_group + i) * kTok;
      if (t0 >= p.prep.L) break;
      if (t0 < seq.start || t0 >= seq.end) {
        seq = sequence_of(p, t0, decode_shaped ? t0 : seq.index + 1);
      }
      if (t0 + kTok > seq.end || seq.start > t0 - (kW - 1)) {
        boundary_chunk<T, kW, kTok>(p, plan, col, t0, seq);
        continue;
      }
#pragma unroll
      for (int r = 0; r < kTok + kW - 1; ++r) {
        rows[r] = load_pack(x + (t0 - (kW - 1) + r) * p.x_stride_row);
      }
      interior_chunk<T, kW, kTok>(p, plan, col, t0, rows);
    }
  }
}

// ---------------------------------------------------------------------------
// General path: any strides and sizes. One warp per (token, unit): a q/k
// head, a v head, or the token's gates.

template <typename T, int kW>
__global__ void __launch_bounds__(kThreads) strided_kernel(const CausalConvPrepParams p) {
  let_next_grid_launch();
  wait_for_previous_grid();
  const PostConvPrepParams& q = p.prep;
  const T* __restrict__ x = static_cast<const T*>(p.x);
  T* const states = static_cast<T*>(p.states);
  const int lane = threadIdx.x % kWarpSize;
  const int64_t units = 2 * q.H + q.HV + 1;
  const int64_t total = q.L * units;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;

  for (int64_t work = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / kWarpSize;
       work < total; work += warps) {
    const int64_t t = work / units;
    const int64_t unit = work - t * units;
    if (unit == units - 1) {
      for (int64_t hv = lane; hv < q.HV; hv += kWarpSize) compute_gate(q, t, hv);
      continue;
    }
    const Sequence seq = sequence_of(p, t, p.B == q.L ? t : -1);
    // A sequence's first W-1 tokens are its first token's warp's work.
    if (seq.start < t && t - seq.start < kW - 1) continue;
    const bool first = t == seq.start;
    const int64_t last = first ? std::min(seq.end, t + kW - 1) : t + 1;
    const int64_t line = first ? cache_line(p, seq.index) : -1;
    const T* prior = line >= 0 && has_initial_state(p, seq.index)
                         ? states + line * p.states_stride_line
                         : nullptr;
    const bool is_qk = unit < 2 * q.H;
    const int64_t features = is_qk ? q.K : q.V;
    const int64_t col0 = is_qk ? unit * q.K : 2 * q.H * q.K + (unit - 2 * q.H) * q.V;

    for (int64_t tt = t; tt < last; ++tt) {
      // y at (tt, col0 + f), rounded to T.
      const auto y_at = [&](int64_t f) {
        const int64_t d = col0 + f;
        float acc = p.bias.data != nullptr ? load_float(p.bias, d * p.bias.stride0) : 0.f;
#pragma unroll
        for (int j = 0; j < kW; ++j) {
          const int64_t pos = tt - (kW - 1) + j;
          float tap = 0.f;
          if (pos >= seq.start) {
            tap = static_cast<float>(x[pos * p.x_stride_row + d * p.x_stride_feat]);
          } else if (prior != nullptr) {
            tap = static_cast<float>(prior[(pos - seq.start + kW - 1) * p.states_stride_tap +
                                           d * p.states_stride_feat]);
          }
          acc = acc + load_float(p.weight, d * p.weight.stride0 + j * p.weight.stride1) * tap;
        }
        return static_cast<T>(activate<T>(p, acc));
      };
      if (is_qk) {
        T* dst = qk_head_out<T>(q, tt, unit);
        float scale = 1.f;
        if (q.apply_l2norm) {
          scale = l2norm_scale(head_sum_of_squares<T>(
              [&](int64_t f) { return static_cast<float>(y_at(f)); }, q.K, lane));
        }
        for (int64_t f = lane; f < features; f += kWarpSize) {
          dst[f] = q.apply_l2norm ? static_cast<T>(static_cast<float>(y_at(f)) * scale) : y_at(f);
        }
      } else {
        T* dst = static_cast<T*>(q.v) + (tt * q.HV + unit - 2 * q.H) * q.V;
        for (int64_t f = lane; f < features; f += kWarpSize) dst[f] = y_at(f);
      }
    }
    // The sequence's new cache line for this unit's features, after every
    // read of the old one (all of them this warp's, each feature one lane's).
    if (first && line >= 0) {
      const int64_t n = seq.end - seq.start;
      T* state = states + line * p.states_stride_line;
      for (int64_t f = lane; f < features; f += kWarpSize) {
        const int64_t d = col0 + f;
        // Column c takes old column c + n (a column to its right, written
        // later) where it does not come from x.
        for (int c = 0; c < kW - 1; ++c) {
          const int64_t pos = seq.end - (kW - 1) + c;
          T value = T(0.f);
          if (pos >= seq.start) {
            value = x[pos * p.x_stride_row + d * p.x_stride_feat];
          } else if (prior != nullptr) {
            value = state[(c + n) * p.states_stride_tap + d * p.states_stride_feat];
          }
          state[c * p.states_stride_tap + d * p.states_stride_feat] = value;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Host side.

bool aligned_to(int64_t elements, int64_t element_bytes, int64_t bytes) {
  return (elements * element_bytes) % bytes == 0;
}

// Returns false when the packed path does not apply.
template <typename T>
bool try_launch_packed(const CausalConvPrepParams& p, const LaunchTarget& target) {
  constexpr int64_t kVec = Pack<T>::kSize;
  constexpr int64_t kBytes = sizeof(T);
  const PostConvPrepParams& q = p.prep;
  const int64_t head_columns = q.K / kVec;
  if (p.x_stride_feat != 1 || !aligned16(p.x) ||
      (q.L > 1 && !aligned_to(p.x_stride_row, kBytes, 16)) || q.K % kVec != 0 ||
      (q.HV * q.V) % kVec != 0 || head_columns > kWarpSize ||
      (head_columns & (head_columns - 1)) != 0 || !aligned16(q.q) || !aligned16(q.k) ||
      !aligned16(q.v) || p.D / kVec > (int64_t{1} << 30)) {
    return false;
  }
  PackedPlan plan{};
  plan.columns = static_cast<int>(p.D / kVec);
  plan.qk_columns = static_cast<int>(2 * q.H * head_columns);
  plan.log2_lanes = log2_lanes_per_head(head_columns);
  plan.column_blocks = ceil_div(plan.columns, kThreads);
  plan.gate_blocks = ceil_div(q.L * q.HV, kThreads);

  const bool states_aligned = aligned16(p.states) && aligned_to(p.states_stride_line, kBytes, 16);
  if (p.states_stride_feat == 1 && states_aligned &&
      aligned_to(p.states_stride_tap, kBytes, 16)) {
    plan.state_access = StateAccess::kTapPacks;
  } else if (p.states_stride_tap == 1 && p.states_stride_feat == p.W - 1 && states_aligned) {
    plan.state_access = StateAccess::kFeatureBlock;
  } else {
    plan.state_access = StateAccess::kScalar;
  }
  const int64_t weight_bytes = element_bytes(p.weight.kind);
  plan.weight_packed = p.weight.stride1 == 1 && p.weight.stride0 == p.W && aligned16(p.weight.data) &&
                       aligned_to(kVec * p.W, weight_bytes, 16);
  plan.bias_packed = p.bias.data != nullptr && p.bias.stride0 == 1 && aligned16(p.bias.data) &&
                     aligned_to(kVec, element_bytes(p.bias.kind), 16);

  // Decode-shaped calls (about one token per sequence) take one token a
  // thread: more threads, and a cache line's loads are each thread's own.
  const bool decode_shaped = q.L <= 2 * p.B;
  // Prefill: 4 tokens a chunk (each row of x loaded once per 4 tokens plus
  // the W-1 halo); 2 for 16-bit x, whose 8-feature columns hold twice the
  // registers (4 spilled at W = 4).
  const int64_t tokens_per_chunk = decode_shaped ? 1 : sizeof(T) == 2 ? 2 : 4;
  // Each work item takes several chunks one after another with the same
  // weights in registers: about four waves of work items, fewer chunks each
  // where that leaves SMs idle.
  const int64_t chunks = ceil_div(q.L, tokens_per_chunk);
  const int64_t waves = int64_t{4} * multiprocessor_count(target.device) *
                        (decode_shaped ? packed_blocks_per_sm<1>() : packed_blocks_per_sm<2>());
  plan.chunks_per_group =
      std::clamp<int64_t>(ceil_div(chunks * plan.column_blocks, waves), 1, 64);
  plan.conv_work = ceil_div(chunks, plan.chunks_per_group) * plan.column_blocks;
  const int blocks = blocks_for(plan.conv_work + plan.gate_blocks);
#define GDN_LAUNCH_PACKED(W, TOK) \
  launch<packed_kernel<T, W, TOK>>(blocks, column_smem_bytes<T, W>(), target, p, plan)
  constexpr int kPrefillTokens = sizeof(T) == 2 ? 2 : 4;
  switch (p.W * 8 + tokens_per_chunk) {
    case 2 * 8 + 1: GDN_LAUNCH_PACKED(2, 1); break;
    case 3 * 8 + 1: GDN_LAUNCH_PACKED(3, 1); break;
    case 4 * 8 + 1: GDN_LAUNCH_PACKED(4, 1); break;
    case 2 * 8 + kPrefillTokens: GDN_LAUNCH_PACKED(2, kPrefillTokens); break;
    case 3 * 8 + kPrefillTokens: GDN_LAUNCH_PACKED(3, kPrefillTokens); break;
    default: GDN_LAUNCH_PACKED(4, kPrefillTokens); break;
  }
#undef GDN_LAUNCH_PACKED
  return true;
}

template <typename T>
void launch_causal_conv_prep(const CausalConvPrepParams& p, const LaunchTarget& target) {
  if (try_launch_packed<T>(p, target)) return;
  const int64_t warp_work = p.prep.L * (2 * p.prep.H + p.prep.HV + 1);
  const int blocks = blocks_for(ceil_div(warp_work, kWarps));
  switch (p.W) {
    case 2: launch<strided_kernel<T, 2>>(blocks, 0, target, p); break;
    case 3: launch<strided_kernel<T, 3>>(blocks, 0, target, p); break;
    default: launch<strided_kernel<T, 4>>(blocks, 0, target, p); break;
  }
}

void run_cuda(const CausalConvPrepParams& p, int32_t device) {
  on_device(device, [&](const LaunchTarget& target) {
    dispatch_activation(p.prep.conv_kind,
                        [&](auto zero) { launch_causal_conv_prep<decltype(zero)>(p, target); });
  });
}

}  // namespace
}  // namespace gdn::gpu

STABLE_TORCH_LIBRARY_IMPL(gdn, CUDA, m) {
  m.impl("causal_conv1d_post_conv_prep",
         TORCH_BOX(&gdn::causal_conv_prep_with<&gdn::gpu::run_cuda>));
  m.impl("causal_conv1d_post_conv_prep.out",
         TORCH_BOX(&gdn::causal_conv_prep_out_with<&gdn::gpu::run_cuda>));
}
