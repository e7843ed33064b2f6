// Op 2's CUDA backend: the causal conv (+ SiLU), rounded to x's dtype, and
// op 1 on it, in one kernel; the conv output never goes to memory. Three
// kernels, chosen on the host from the strides and sizes:
//
//  * packed_kernel   prefill, x with unit feature stride and 16-byte rows,
//                    q/k heads of a power-of-two number <= 32 of 16-byte
//                    packs. A thread owns one 16-byte column of features (its
//                    weights in shared memory) for a run of chunks of kTok
//                    tokens: it streams the column's rows of x into a ring
//                    in shared memory by asynchronous copies, several chunks
//                    ahead, takes a chunk's rows plus the W-1 before it
//                    from there, convolves in registers, and a group of
//                    lanes (one q/k head) sums the squares with shuffles, as
//                    op 1's row-major kernel does. Gates take blocks of their
//                    own (op 1's gate_block).
//  * decode_kernel   the same layouts, decode-shaped calls (T <= 2B): one
//                    token a thread, two memory round trips for a one-token
//                    sequence (causal_conv_decode_cuda.cu).
//  * strided_kernel  any other layout or size: one warp per (token, head),
//                    scalar accesses.
//
// Sequences and the cache. Each token finds its sequence by a search over
// query_start_loc that a warp runs together, 32 bounds a round (the decode
// kernel first checks whether token t is sequence t). A token t whose taps
// reach before its sequence's start reads them from the sequence's cache
// line, which the call also overwrites. So that no line is
// written before every read of it is done, without a second launch: a
// sequence's first W-1 tokens are computed by the thread (or warp) whose
// chunk holds the sequence's first token, even where they spill into the
// next chunk; that thread writes the sequence's new line (for its features)
// after it. No workspace, no host synchronisation: the op is safe in
// CUDA-graph capture.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <torch/csrc/stable/library.h>

#include "causal_conv_device.cuh"

namespace gdn::gpu {
namespace {

using namespace conv;


// x's rows of one thread's column in a ring of kSlots shared-memory slots,
// filled by asynchronous copies kAhead chunks ahead of the chunk being
// computed. Rows are counted from the work item's first row (the halo rows
// before it are -1, -2, ...), and row g + o sits in slot (g + o) mod kSlots;
// slot s of this thread at base[s * kThreads] (a warp's 16-byte accesses hit
// every bank once). Chunks start at multiples of kTok, so a chunk's own rows
// are kTok slots in a row and its halo lies in the groups of kTok slots just
// before: a row's slot is one group's base (two a chunk) plus a constant,
// not an index computed a row. The halo's groups, the chunk's and the kAhead
// in flight never share a slot: halo_slots + (kAhead + 1) * kTok <= kSlots.
template <int kW, int kTok>
constexpr int halo_slots() {
  return (kW - 1 + kTok - 1) / kTok * kTok;
}

constexpr int ring_chunks_ahead(int slots, int halo, int tokens) {
  return (slots - halo) / tokens - 1;
}

template <typename T, int kW, int kTok, int kSlots>
struct RowRing {
  static constexpr int kAhead = ring_chunks_ahead(kSlots, halo_slots<kW, kTok>(), kTok);
  static_assert(kAhead >= 1, "the ring holds no chunk ahead");
  static_assert((kSlots & (kSlots - 1)) == 0, "slots are taken modulo kSlots");
  uint4* base;

  // Row g + o: g a multiple of kTok, -(W-1) <= o < kTok (a constant once
  // unrolled).
  __device__ __forceinline__ uint4* slot(int g, int o) const {
    const int back = o < 0 ? (-o + kTok - 1) / kTok * kTok : 0;
    return base + (((g - back) & (kSlots - 1)) + (o + back)) * kThreads;
  }
  __device__ __forceinline__ Pack<T> row(int g, int o) const {
    return load_pack(reinterpret_cast<const T*>(slot(g, o)));
  }
  // Row r, any r >= -(W-1), as an address.
  __device__ __forceinline__ T* row_at(int r) const {
    return reinterpret_cast<T*>(base + (r & (kSlots - 1)) * kThreads);
  }
};

// A boundary chunk's taps (boundary_chunk): the ring's rows from W-1 before
// the chunk (row g of the work item) up to the end of the next chunk, both
// complete (the caller waits for them), and x's rows past them, where a
// sequence's first W-1 tokens spill out of the work item. The positions
// before a sequence's start take its old line's columns in their slots:
// every later reader of those slots as x rows is done (earlier runs), or
// never reads them (a token whose taps reach before its sequence's start
// is one of that sequence's first W-1, all computed in this run).
template <typename T, int kW, typename Ring>
struct RingTaps {
  const Ring& ring;
  const T* item_x;  // the work item's first row of the column
  int64_t first;    // its token
  int64_t stride;
  int g, ring_end;  // ring rows [g - (W-1), ring_end) are there

  __device__ __forceinline__ void begin_sequence(int64_t start, const StateBlock<T, kW>& before) {
#pragma unroll
    for (int c = 0; c < kW - 1; ++c) {
      store_pack(ring.row_at(static_cast<int>(start - (kW - 1) + c - first)), before.col[c]);
    }
  }
  __device__ __forceinline__ Pack<T> tap(int64_t pos) const {
    const int64_t r = pos - first;
    return r >= g - (kW - 1) && r < ring_end ? load_pack(ring.row_at(static_cast<int>(r)))
                                             : load_pack(item_x + r * stride);
  }
};

template <typename T, int kW, int kSlots>
constexpr int64_t packed_smem_bytes() {
  return column_smem_bytes<T, kW>() + int64_t{kSlots} * kThreads * 16;
}

// A boundary chunk's runs go two tokens side by side. Four (the interior
// chunk's kTok) put a second copy of the chunk's sums beside the loop's
// state: in bf16 at W = 4 the kernel for weights like x spills 76 bytes,
// against none with two (the kAny kernel: 352 against 172; 92 with one
// token at a time and each token's own loads, which made a short prefill's
// critical path).
constexpr int kBoundarySide = 2;

// x's rows stream through a RowRing: a thread keeps kAhead chunks of rows
// in flight while it computes, not one chunk's round trip at a time. Within
// a work item (at most kMaxChunksPerItem chunks) rows are ints and the
// addresses of x and of the outputs step by a stride a row, so that a chunk
// spends its instructions on the conv, not on 64-bit index arithmetic.
template <typename T, int kW, int kTok, int kSlots, ColumnSource kSource>
__global__ void __launch_bounds__(kThreads, kPrefillBlocksPerSM)
    packed_kernel(const CausalConvPrepParams p, const PackedPlan plan) {
  extern __shared__ float4 column_smem[];
  using Ring = RowRing<T, kW, kTok, kSlots>;
  const Ring ring{reinterpret_cast<uint4*>(reinterpret_cast<char*>(column_smem) +
                                           column_smem_bytes<T, kW>()) + threadIdx.x};
  for_each_work_item<T, kW>(p, plan, column_smem, [&](const Column<T, kW>& col, int64_t group) {
    constexpr int kVec = Pack<T>::kSize;
    const int64_t first = group * plan.chunks_per_group * kTok;
    const int rows = static_cast<int>(std::min(plan.chunks_per_group * kTok, p.prep.L - first));
    const int64_t stride = p.x_stride_row;
    const T* const item_x = static_cast<const T*>(p.x) + col.index * kVec + first * stride;
    // One commit group per chunk (empty past the item's end, so that the
    // count of groups in flight stays kAhead).
    const T* fetch_x = item_x;
    int fetch_row = 0;
    const auto fetch_chunk = [&] {
      uint4* const slots = ring.slot(fetch_row, 0);
      if (fetch_row + kTok <= rows) {  // all but an item's last kAhead chunks
#pragma unroll
        for (int u = 0; u < kTok; ++u, fetch_x += stride) copy16_async(slots + u * kThreads, fetch_x);
      } else {
#pragma unroll
        for (int u = 0; u < kTok; ++u, fetch_x += stride) {
          if (fetch_row + u < rows) copy16_async(slots + u * kThreads, fetch_x);
        }
      }
      fetch_row += kTok;
      commit_async_copies();
    };
    wait_for_previous_grid();
#pragma unroll
    for (int r = 1; r < kW; ++r) {  // the halo, in chunk 0's group
      if (first - r >= 0) copy16_async(ring.slot(0, -r), item_x - r * stride);
    }
#pragma unroll
    for (int c = 0; c < Ring::kAhead; ++c) fetch_chunk();
    // Chunks whose first row g is in [interior_from, interior_to] lie inside
    // seq, W-1 or more tokens past its start.
    Sequence seq{-1, 0, 0, 0, false};  // none yet: the first lookup's guess is sequence 0
    int interior_from, interior_to;
    const auto look_up = [&](int64_t t0) {
      seq = sequence_of(p, t0, seq.index + 1);
      interior_from = static_cast<int>(std::clamp<int64_t>(seq.start + (kW - 1) - first, 0, rows));
      interior_to = static_cast<int>(std::clamp<int64_t>(seq.end - kTok - first, -1, rows));
    };
    // Once for all its chunks. The first lookup's round trip runs beside
    // the weights' (a short prefill's chain; benchmarks/NOTES.md).
    const auto column_loads = issue_column_loads<T, kW, kSource>(p, plan, col);
    look_up(first);
    load_column(p, plan, col, column_loads);
    const ColumnOut<T> out = column_out<T>(p, plan, col.index);
    const bool normalise = __any_sync(kFullMask, out.normalised);
    T* dst = out.base + first * out.row_stride;
    for (int g = 0; g < rows; g += kTok, dst += kTok * out.row_stride) {  // uniform over the warp
      fetch_chunk();
      if (g < interior_from || g > interior_to) {
        const int64_t t0 = first + g;
        if (t0 < seq.start || t0 >= seq.end) look_up(t0);
        if (g < interior_from || g > interior_to) {
          // Its rows and the next chunk's (where a sequence's first W-1
          // tokens spill) from the ring; past the item, from x.
          wait_async_copies<Ring::kAhead - 1>();
          RingTaps<T, kW, Ring> taps{ring, item_x, first, stride, g, std::min(rows, g + 2 * kTok)};
          boundary_chunk<T, kW, kTok>(p, plan, col, t0, seq, taps, [&](int64_t t, int64_t end) {
            for (; t < end; t += kBoundarySide) {
              // The rows of tokens past the run (not stored) are its last
              // row again: past the last token there is no row to read.
              convolve_chunk<T, kW, kBoundarySide>(
                  p, plan, col, out, normalise, out.base + t * out.row_stride,
                  static_cast<int>(std::min<int64_t>(kBoundarySide, end - t)),
                  [&](int r) { return taps.tap(std::min(t - (kW - 1) + r, end - 1)); });
            }
          });
          continue;
        }
      }
      wait_async_copies<Ring::kAhead>();  // this chunk's group and all before it
      convolve_chunk<T, kW, kTok>(p, plan, col, out, normalise, dst, kTok,
                                  [&](int r) { return ring.row(g, r - (kW - 1)); });
    }
    // No copy of this item may land in a slot the next item fills.
    wait_async_copies<0>();
  });
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
  for_each_row_unit(q, [&](int64_t t, int64_t unit) {
    if (unit == strided_units(q) - 1) {
      for (int64_t hv = lane; hv < q.HV; hv += kWarpSize) compute_gate(q, t, hv);
      return;
    }
    const Sequence seq = sequence_of(p, t, p.B == q.L ? t : -1);
    // A sequence's first W-1 tokens are its first token's warp's work.
    if (seq.start < t && t - seq.start < kW - 1) return;
    const bool first = t == seq.start;
    const int64_t last = first ? std::min(seq.end, t + kW - 1) : t + 1;
    const int64_t line = first ? checked_line(p, seq.entry) : -1;
    const T* prior = line >= 0 && seq.initial
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
  });
}

// ---------------------------------------------------------------------------
// Host side.

// The shared memory a block may have on sm_86 and sm_89.
constexpr int64_t kSmallSmemPerBlock = 99 * 1024;

// GDN_EXT_CONV_RING_SLOTS=8 takes the 8-slot kernel wherever it is compiled,
// even where 16 slots fit, so that a GPU with room for both tests it
// (tests/test_conv_prep.py). Read once.
inline bool small_ring_forced() {
  static const bool forced = [] {
    const char* env = std::getenv("GDN_EXT_CONV_RING_SLOTS");
    return env != nullptr && std::string(env) == "8";
  }();
  return forced;
}

// Shares a call's chunks of tokens_per_chunk tokens out into work items.
// Each work item takes several chunks one after another with the same
// weights, and every warp slot of the GPU gets the same share: whole waves
// of work items (no tail wave of a few blocks), as few as keep a work item
// to 64 chunks or fewer. Against four waves (of up to 64 chunks), one wave
// ran 14-22% faster at T = 2048-8192 and 7-11% at decode batch 128-512, 2%
// slower at T = 32768 (three waves) (bf16, (16,32); benchmarks/NOTES.md).
void plan_work(PackedPlan& plan, int64_t L, int64_t tokens_per_chunk, int blocks_per_sm,
               int device) {
  constexpr int64_t kMaxChunksPerItem = 64;
  const int64_t chunks = ceil_div(L, tokens_per_chunk);
  const int64_t slots = int64_t{multiprocessor_count(device)} * kWarps * blocks_per_sm;
  const int64_t chunk_columns = chunks * plan.column_warps;
  const int64_t waves = ceil_div(chunk_columns, slots * kMaxChunksPerItem);
  plan.chunks_per_group = std::max<int64_t>(1, ceil_div(chunk_columns, waves * slots));
  plan.conv_work = ceil_div(chunks, plan.chunks_per_group) * plan.column_warps;
  // With fewer than kWarps items an SM (a decode step of a few sequences),
  // a block takes items / SMs of them, rounded up, so that they spread over
  // the SMs: with kWarps in a block (each a column strip of x, the cache
  // lines and the weights), batch 1 waited on the few SMs that held them
  // (H200: 2.47 -> 2.09 us at (16,32), 2.43 -> 2.03 at (8,24);
  // benchmarks/NOTES.md).
  plan.items_per_block = static_cast<int>(std::clamp<int64_t>(
      ceil_div(plan.conv_work, multiprocessor_count(device)), 1, kWarps));
  // Blocks start in index order, and a gate block holds a conv block's
  // shared memory. Where the gate blocks outnumber the conv blocks (a long
  // prefill: 4,096 against 524 at T = 32768, (16,32)), in front they are
  // waves of short blocks that every conv block waits behind; behind, they
  // take the SMs that conv blocks leave as they finish. Where they are
  // fewer, in front they run beside the first conv blocks, behind they would
  // be a tail of their own (H200: (16,32) T = 32768 332 -> 309 us, T = 8192
  // 93 -> 88; (8,24) T = 2048 23.7 -> 25.3 had they gone last;
  // benchmarks/NOTES.md).
  plan.gates_last = plan.gate_blocks > conv_blocks(plan);
}

// Launches the prefill kernel: 4 tokens a chunk with a ring of 16 slots (two
// chunks ahead), or 2 tokens a chunk with 8 slots (one ahead) on a device
// whose blocks cannot have the 104 KB the larger ring takes in bf16 at W = 4
// (the 8-slot kernel is compiled only where 16 slots pass
// kSmallSmemPerBlock). Returns false where neither fits: the strided kernel
// runs.
template <typename T, int kW, ColumnSource kSource>
bool launch_prefill_from(const LaunchTarget& target, const CausalConvPrepParams& p,
                         PackedPlan plan) {
  constexpr int kTok = 4, kSmallTok = 2;
  constexpr bool kHasSmallRing = packed_smem_bytes<T, kW, 16>() > kSmallSmemPerBlock;
  const int64_t limit = max_dynamic_smem_per_block(target.device);
  if (packed_smem_bytes<T, kW, 16>() <= limit && !(kHasSmallRing && small_ring_forced())) {
    plan_work(plan, p.prep.L, kTok, kPrefillBlocksPerSM, target.device);
    launch<packed_kernel<T, kW, kTok, 16, kSource>>(
        blocks_for(packed_blocks(plan)), packed_smem_bytes<T, kW, 16>(), target, p, plan);
    return true;
  }
  if constexpr (kHasSmallRing) {
    if (packed_smem_bytes<T, kW, 8>() <= limit) {
      plan_work(plan, p.prep.L, kSmallTok, kPrefillBlocksPerSM, target.device);
      launch<packed_kernel<T, kW, kSmallTok, 8, kSource>>(
          blocks_for(packed_blocks(plan)), packed_smem_bytes<T, kW, 8>(), target, p, plan);
      return true;
    }
  }
  return false;
}

template <typename T, int kW>
bool launch_prefill(const LaunchTarget& target, const CausalConvPrepParams& p,
                    const PackedPlan& plan, ColumnSource source) {
  return source == ColumnSource::kPackedLikeX
             ? launch_prefill_from<T, kW, ColumnSource::kPackedLikeX>(target, p, plan)
             : launch_prefill_from<T, kW, ColumnSource::kAny>(target, p, plan);
}

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
  // The packed kernels' offsets within a row of x and within a cache line
  // ([N, D, W-1]: a column's packs at column * (W-1) * kVec) are 32-bit.
  if (p.x_stride_feat != 1 || !aligned16(p.x) ||
      (q.L > 1 && !aligned_to(p.x_stride_row, kBytes, 16)) || q.K % kVec != 0 ||
      (q.HV * q.V) % kVec != 0 || head_columns > kWarpSize ||
      (head_columns & (head_columns - 1)) != 0 || !aligned16(q.q) || !aligned16(q.k) ||
      !aligned16(q.v) || p.D * (p.W - 1) >= (int64_t{1} << 31)) {
    return false;
  }
  PackedPlan plan{};
  plan.columns = static_cast<int>(p.D / kVec);
  plan.qk_columns = static_cast<int>(2 * q.H * head_columns);
  plan.log2_lanes = log2_lanes_per_head(head_columns);
  plan.column_warps = ceil_div(plan.columns, kWarpSize);
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

  const bool like_x = plan.weight_packed && p.weight.kind == kind_of<T>() &&
                      (p.bias.data == nullptr || (plan.bias_packed && p.bias.kind == kind_of<T>()));
  const ColumnSource source = like_x ? ColumnSource::kPackedLikeX : ColumnSource::kAny;

  // Decode-shaped calls (about one token per sequence) take the decode
  // kernel, one token a thread; the others the prefill kernel.
  if (q.L <= 2 * p.B) {
    plan_work(plan, q.L, 1, kDecodeBlocksPerSM, target.device);
    launch_decode<T>(p, plan, source, target);
    return true;
  }
  switch (p.W) {
    case 2: return launch_prefill<T, 2>(target, p, plan, source);
    case 3: return launch_prefill<T, 3>(target, p, plan, source);
    default: return launch_prefill<T, 4>(target, p, plan, source);
  }
}

template <typename T>
void launch_causal_conv_prep(const CausalConvPrepParams& p, const LaunchTarget& target) {
  if (try_launch_packed<T>(p, target)) return;
  const int64_t warp_work = p.prep.L * strided_units(p.prep);
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
