// Op 1's CUDA backend. Four kernels, chosen on the host from the strides:
//
//  * rowmajor_kernel   unit feature stride and 16-byte alignment (the layout a
//                      row-major conv output has): 16-byte loads and stores.
//                      Blocks split by kind of work (q/k heads with a shuffle
//                      reduction per head, v packs, gates), so that each
//                      block's loads all leave before its first store.
//  * channel_first_async_kernel  unit token stride (`conv(x.T).T`) with
//                      16-byte aligned feature rows: a tile of 64 tokens x
//                      one head is copied to shared memory along tokens
//                      (cp.async, 16 bytes at a time) and written out along
//                      features (16-byte stores where a head is a power-of-two
//                      number of packs), with no copy of conv_output first.
//  * channel_first_kernel  the same for feature rows that are not 16-byte
//                      aligned: scalar loads along tokens through registers.
//  * strided_kernel    any other layout (misaligned, odd sizes, arbitrary
//                      strides): one warp per (row, head), scalar accesses.
//
// Every launch is a programmatic dependent launch on sm_90+ (see
// wait_for_previous_grid). All element offsets are int64_t; only indices
// within a row or a tile are 32-bit. No host synchronisation, so the op is
// safe in CUDA-graph capture.
#include <algorithm>
#include <cstdint>
#include <limits>

#include <torch/csrc/stable/library.h>

#include "device_common.cuh"

namespace gdn::gpu {
namespace {

// ---------------------------------------------------------------------------
// Row-major fast path.
//
// The grid is split by kind of work: the first qk_blocks blocks normalise q/k
// heads, the next v_blocks copy v, the rest compute gates. Each block does one
// kind only, so a block's loads all go out before its first store and a short
// call costs one memory round trip, not three in a row.

// Heads a lane group takes per iteration: about four 16-byte loads per lane
// in flight before the first shuffle.
__host__ __device__ constexpr int heads_per_group_iter(int packs_per_lane) {
  return packs_per_lane == 1 ? 4 : packs_per_lane == 2 ? 2 : 1;
}
constexpr int kVPacksPerThread = 4;

struct RowMajorPlan {
  int64_t qk_blocks, v_blocks;  // see above; the remaining blocks do gates
  // Multiples of one iteration's worth, or in a short call a half or a
  // quarter of one.
  int64_t qk_heads_per_block;
  int64_t v_packs_per_block;
  int64_t gates_per_block;
  int log2_lanes_per_head;      // lanes per q/k head: a power of two <= 32
  int qk_heads;                 // 2H
  int v_packs_per_row;          // HV*V / Pack<T>::kSize
};

template <typename T, int kPacksPerLane>
__device__ __forceinline__ void rowmajor_qk(const PostConvPrepParams& p, const RowMajorPlan& plan,
                                            int64_t block) {
  constexpr int kPack = Pack<T>::kSize;
  constexpr int kHeads = heads_per_group_iter(kPacksPerLane);
  const T* __restrict__ conv = static_cast<const T*>(p.conv);
  const int lanes = 1 << plan.log2_lanes_per_head;
  const int lane = threadIdx.x & (lanes - 1);
  const int group = threadIdx.x >> plan.log2_lanes_per_head;
  const int groups = kThreads >> plan.log2_lanes_per_head;
  const int64_t first = block * plan.qk_heads_per_block;
  const int64_t end = std::min<int64_t>(p.L * plan.qk_heads, first + plan.qk_heads_per_block);

  // The loop bound is uniform over the block, so every lane of a warp reaches
  // the shuffles. A lane past the block's last head loads that head again
  // (so that no load hides behind a branch) and stores nothing.
  for (int64_t base = first; base < end; base += groups * kHeads) {
    const int64_t row0 = base / plan.qk_heads;
    const int h0 = static_cast<int>(base - row0 * plan.qk_heads);
    const T* src[kHeads];
    int64_t row[kHeads];
    int head[kHeads];
    bool active[kHeads];
#pragma unroll
    for (int u = 0; u < kHeads; ++u) {
      const int offset = u * groups + group;
      active[u] = base + offset < end;
      const int local = h0 + static_cast<int>(std::min<int64_t>(offset, end - 1 - base));
      const int r = local / plan.qk_heads;
      row[u] = row0 + r;
      head[u] = local - r * plan.qk_heads;
      src[u] = conv + row[u] * p.conv_stride_row + head[u] * p.K + lane * kPack;
    }
    wait_for_previous_grid_after(src);
    Pack<T> x[kHeads][kPacksPerLane];
#pragma unroll
    for (int u = 0; u < kHeads; ++u) {
#pragma unroll
      for (int i = 0; i < kPacksPerLane; ++i) x[u][i] = load_pack(src[u] + i * lanes * kPack);
    }
    // All kHeads reductions at once: one after another, their dependent
    // shuffles made most of a short call's time after the loads.
    float scale[kHeads];
    if (p.apply_l2norm) {
#pragma unroll
      for (int u = 0; u < kHeads; ++u) {
        scale[u] = 0.f;
#pragma unroll
        for (int i = 0; i < kPacksPerLane; ++i) scale[u] = add_squares(x[u][i], scale[u]);
      }
      group_sums(scale, lanes);
#pragma unroll
      for (int u = 0; u < kHeads; ++u) scale[u] = l2norm_scale(scale[u]);
    }
#pragma unroll
    for (int u = 0; u < kHeads; ++u) {
      if (active[u]) {
        T* dst = qk_head_out<T>(p, row[u], head[u]) + lane * kPack;
#pragma unroll
        for (int i = 0; i < kPacksPerLane; ++i) {
          store_pack(dst + i * lanes * kPack, p.apply_l2norm ? scaled(x[u][i], scale[u]) : x[u][i]);
        }
      }
    }
  }
}

// v is contiguous, so a pack's flat index is also its offset in v.
template <typename T>
__device__ __forceinline__ void rowmajor_v(const PostConvPrepParams& p, const RowMajorPlan& plan,
                                           int64_t block) {
  constexpr int kPack = Pack<T>::kSize;
  const T* __restrict__ conv = static_cast<const T*>(p.conv) + 2 * p.H * p.K;
  T* __restrict__ v_out = static_cast<T*>(p.v);
  const int64_t first = block * plan.v_packs_per_block;
  const int64_t end = std::min<int64_t>(p.L * plan.v_packs_per_row, first + plan.v_packs_per_block);
  for (int64_t base = first; base < end; base += kThreads * kVPacksPerThread) {
    const int64_t row0 = base / plan.v_packs_per_row;
    const int c0 = static_cast<int>(base - row0 * plan.v_packs_per_row);
    // As for q/k: a thread past the last pack loads the last pack again.
    const T* src[kVPacksPerThread];
#pragma unroll
    for (int u = 0; u < kVPacksPerThread; ++u) {
      const int offset = u * kThreads + static_cast<int>(threadIdx.x);
      const int local = c0 + static_cast<int>(std::min<int64_t>(offset, end - 1 - base));
      const int r = local / plan.v_packs_per_row;
      src[u] = conv + (row0 + r) * p.conv_stride_row + (local - r * plan.v_packs_per_row) * kPack;
    }
    wait_for_previous_grid_after(src);
    Pack<T> x[kVPacksPerThread];
#pragma unroll
    for (int u = 0; u < kVPacksPerThread; ++u) x[u] = load_pack(src[u]);
#pragma unroll
    for (int u = 0; u < kVPacksPerThread; ++u) {
      const int64_t idx = base + u * kThreads + threadIdx.x;
      if (idx < end) store_pack(v_out + idx * kPack, x[u]);
    }
  }
}


template <typename T, int kPacksPerLane>
__global__ void __launch_bounds__(kThreads)
    rowmajor_kernel(const PostConvPrepParams p, const RowMajorPlan plan) {
  let_next_grid_launch();
  // Each kind of work waits for the previous grid itself, once its first
  // addresses are computed: under a programmatic launch that index
  // arithmetic overlaps the previous kernel instead of preceding the loads.
  int64_t block = blockIdx.x;
  if (block < plan.qk_blocks) {
    rowmajor_qk<T, kPacksPerLane>(p, plan, block);
    return;
  }
  block -= plan.qk_blocks;
  if (block < plan.v_blocks) {
    rowmajor_v<T>(p, plan, block);
    return;
  }
  gate_block(p, (block - plan.v_blocks) * plan.gates_per_block, plan.gates_per_block);
}

// ---------------------------------------------------------------------------
// Channel-first path: unit token stride.

// 64 tokens: a warp's loads of one feature cover 128 contiguous bytes (a
// whole line for 16-bit types), each lane loading tokens lane and lane + 32.
constexpr int kTileTokens = 64;
constexpr int kTokensPerLane = kTileTokens / kWarpSize;

// An odd number of 4-byte words per feature row of the tile, so that a warp
// reading one token across 32 features touches 32 different banks.
template <typename T>
constexpr int tile_pitch() {
  return kTileTokens + static_cast<int>(4 / sizeof(T));
}

// The channel-first kernels' work: first the gate blocks (kThreads gates
// each), then tiles of up to 64 tokens of one unit, a q/k head or a v head.
struct ChannelFirstItem {
  int64_t unit, t0;
  int tokens;
  bool is_qk;
  int features;  // of the head
  int64_t col0;  // the head's first feature in conv_output
};

__host__ __device__ inline int64_t channel_first_units(const PostConvPrepParams& p) {
  return 2 * p.H + p.HV;
}

__host__ __device__ inline int64_t channel_first_gate_blocks(const PostConvPrepParams& p) {
  return ceil_div(p.L * p.HV, kThreads);
}

// Runs work item `work` if it is a gate block; false for a tile.
__device__ __forceinline__ bool channel_first_gate_block(const PostConvPrepParams& p,
                                                         int64_t work) {
  if (work >= channel_first_gate_blocks(p)) return false;
  gate_block(p, work * kThreads, kThreads);
  return true;
}

// Tile `tile` (counted after the gate blocks).
__device__ __forceinline__ ChannelFirstItem channel_first_item(const PostConvPrepParams& p,
                                                               int64_t tile) {
  const int64_t units = channel_first_units(p);
  const int64_t token_tile = tile / units;
  ChannelFirstItem item;
  item.unit = tile - token_tile * units;
  item.t0 = token_tile * kTileTokens;
  item.tokens = static_cast<int>(std::min<int64_t>(kTileTokens, p.L - item.t0));
  item.is_qk = item.unit < 2 * p.H;
  item.features = static_cast<int>(item.is_qk ? p.K : p.V);
  item.col0 = item.is_qk ? item.unit * p.K : 2 * p.H * p.K + (item.unit - 2 * p.H) * p.V;
  return item;
}

// Writes one work item's tile, element (f, t) read through at(f, t), to its
// q/k head (normalised) or v head. The whole block calls it.
template <typename T, typename At>
__device__ __forceinline__ void channel_first_store(const PostConvPrepParams& p,
                                                    const ChannelFirstItem& item, const At& at) {
  constexpr int kPack = Pack<T>::kSize;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t unit = item.unit, t0 = item.t0;
  const int tokens = item.tokens, features = item.features;
  const bool is_qk = item.is_qk;
  // Where a head is at most 32 whole 16-byte packs, a group of lanes takes
  // one token as the row-major kernel takes one row (one pack per lane,
  // summed in the same order, so q and k get the same bits) and stores 16
  // bytes a lane. Otherwise one warp per token, lanes along features.
  T* const out0 = is_qk ? nullptr : static_cast<T*>(p.v) + (unit - 2 * p.H) * p.V;
  const int64_t packs = features / kPack;
  const int log2_lanes = log2_lanes_per_head(packs);
  if (features % kPack == 0 && packs == (int64_t{1} << log2_lanes)) {
    const int lanes = 1 << log2_lanes;
    const int glane = threadIdx.x & (lanes - 1);
    const int groups = kThreads >> log2_lanes;
    // A bound uniform over the block: every lane reaches the shuffles.
    for (int tg = 0; tg < tokens; tg += groups) {
      const int t = tg + (threadIdx.x >> log2_lanes);
      const bool active = t < tokens;
      Pack<T> x;
      if (active) {
#pragma unroll
        for (int j = 0; j < kPack; ++j) x.x[j] = at(glane * kPack + j, t);
      }
      if (is_qk && p.apply_l2norm) {
        x = scaled(x, l2norm_scale(group_sum(active ? add_squares(x, 0.f) : 0.f, lanes)));
      }
      if (active) {
        const int64_t row = t0 + t;
        T* dst = is_qk ? qk_head_out<T>(p, row, unit) : out0 + row * p.HV * p.V;
        store_pack(dst + glane * kPack, x);
      }
    }
    return;
  }
  for (int t = warp; t < tokens; t += kWarps) {
    const int64_t row = t0 + t;
    T* dst = is_qk ? qk_head_out<T>(p, row, unit) : out0 + row * p.HV * p.V;
    if (is_qk && p.apply_l2norm) {
      const float scale = l2norm_scale(head_sum_of_squares<T>(
          [&](int64_t f) { return static_cast<float>(at(f, t)); }, p.K, lane));
      for (int f = lane; f < features; f += kWarpSize) {
        dst[f] = static_cast<T>(static_cast<float>(at(f, t)) * scale);
      }
    } else {
      for (int f = lane; f < features; f += kWarpSize) dst[f] = at(f, t);
    }
  }
}

// Tokens of a tile go through registers one element a lane: for feature
// rows that do not all start on 16 bytes (channel_first_async_kernel takes
// the others).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    channel_first_kernel(const PostConvPrepParams p, int64_t num_token_tiles) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* tile = reinterpret_cast<T*>(smem);  // [features][tile_pitch<T>()]
  constexpr int kPitch = tile_pitch<T>();
  constexpr int kFeaturesInFlight = 8;
  let_next_grid_launch();
  wait_for_previous_grid();
  const T* __restrict__ conv = static_cast<const T*>(p.conv);
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t gate_blocks = channel_first_gate_blocks(p);
  const int64_t total = gate_blocks + num_token_tiles * channel_first_units(p);

  for (int64_t work = blockIdx.x; work < total; work += gridDim.x) {
    if (channel_first_gate_block(p, work)) continue;
    const ChannelFirstItem item = channel_first_item(p, work - gate_blocks);
    const int features = item.features, tokens = item.tokens;
    __syncthreads();  // the previous work item's readers are done with tile
    const T* src = conv + (item.t0 + lane) * p.conv_stride_row + item.col0 * p.conv_stride_feat;
    for (int f0 = warp; f0 < features; f0 += kWarps * kFeaturesInFlight) {
      T x[kFeaturesInFlight][kTokensPerLane];
#pragma unroll
      for (int i = 0; i < kFeaturesInFlight; ++i) {
        const int f = f0 + i * kWarps;
#pragma unroll
        for (int j = 0; j < kTokensPerLane; ++j) {
          const int t = lane + j * kWarpSize;
          if (f < features && t < tokens) x[i][j] = src[f * p.conv_stride_feat + j * kWarpSize];
        }
      }
#pragma unroll
      for (int i = 0; i < kFeaturesInFlight; ++i) {
        const int f = f0 + i * kWarps;
#pragma unroll
        for (int j = 0; j < kTokensPerLane; ++j) {
          const int t = lane + j * kWarpSize;
          if (f < features && t < tokens) tile[f * kPitch + t] = x[i][j];
        }
      }
    }
    __syncthreads();

    channel_first_store<T>(p, item, [&](int f, int t) { return tile[f * kPitch + t]; });
  }
}

// 16 bytes from global to shared memory without passing through registers
// (sm_80+); only the first src_bytes are read, the rest is zero-filled.
// Older targets copy synchronously.
__device__ __forceinline__ void copy_async_16(void* smem_dst, const void* src, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
               "r"(src_bytes) : "memory");
#else
  unsigned char* d = static_cast<unsigned char*>(smem_dst);
  for (int i = 0; i < 16; ++i) d[i] = i < src_bytes ? static_cast<const unsigned char*>(src)[i] : 0;
#endif
}

// Waits for all of this thread's copy_async_16 copies.
__device__ __forceinline__ void copy_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

// Where every feature row starts on 16 bytes (and so does every tile, t0
// being a multiple of 64): the tile arrives by copy_async_16, 16 bytes of
// tokens at a time, and never passes through registers, which leaves the
// kernel few enough of them for five blocks on an SM. A tile row
// (one feature, 64 tokens) is kRowChunks chunks of 16 bytes; chunk c of
// feature f sits at position c ^ (f / kPack) (mod kRowChunks), so that the
// store phase's lanes (one token; features kPack apart) spread over the banks
// instead of all reading one.
template <typename T>
__device__ __forceinline__ int async_tile_index(int f, int t) {
  constexpr int kPack = Pack<T>::kSize;
  constexpr int kRowChunks = kTileTokens / kPack;
  return f * kTileTokens + (((t / kPack) ^ (f / kPack)) & (kRowChunks - 1)) * kPack + t % kPack;
}

// Five blocks an SM (48 registers). Without the bound (64 registers, four
// blocks) it ran 4-18% slower at L >= 2048 on an H100; with six (40
// registers, spilling) 5-12% slower.
constexpr int kChannelFirstBlocksPerSM = 5;

template <typename T>
__global__ void __launch_bounds__(kThreads, kChannelFirstBlocksPerSM)
    channel_first_async_kernel(const PostConvPrepParams p, int64_t num_token_tiles) {
  constexpr int kPack = Pack<T>::kSize;
  constexpr int kRowChunks = kTileTokens / kPack;
  extern __shared__ __align__(16) unsigned char smem[];
  T* const tile = reinterpret_cast<T*>(smem);
  let_next_grid_launch();
  const T* __restrict__ conv = static_cast<const T*>(p.conv);
  const int64_t gate_blocks = channel_first_gate_blocks(p);
  const int64_t total = gate_blocks + num_token_tiles * channel_first_units(p);

  for (int64_t work = blockIdx.x; work < total; work += gridDim.x) {
    if (channel_first_gate_block(p, work)) continue;
    const ChannelFirstItem item = channel_first_item(p, work - gate_blocks);
    const T* const src = conv + item.t0 + item.col0 * p.conv_stride_feat;
    wait_for_previous_grid();
    __syncthreads();  // the previous work item's readers are done with tile
    for (int idx = threadIdx.x; idx < item.features * kRowChunks; idx += kThreads) {
      const int f = idx / kRowChunks, c = idx % kRowChunks;
      // The last tile's chunks past the last token read nothing (and point
      // at its first chunk, which exists).
      const int valid = std::min(kPack, std::max(0, item.tokens - c * kPack));
      const T* from = src + f * p.conv_stride_feat + (valid > 0 ? c * kPack : 0);
      copy_async_16(tile + async_tile_index<T>(f, c * kPack), from,
                    valid * static_cast<int>(sizeof(T)));
    }
    copy_async_wait_all();
    __syncthreads();
    channel_first_store<T>(p, item, [&](int f, int t) { return tile[async_tile_index<T>(f, t)]; });
  }
}

// ---------------------------------------------------------------------------
// General path: any strides and sizes.

template <typename T>
__global__ void __launch_bounds__(kThreads) strided_kernel(const PostConvPrepParams p) {
  let_next_grid_launch();
  wait_for_previous_grid();
  const T* __restrict__ conv = static_cast<const T*>(p.conv);
  const int lane = threadIdx.x % kWarpSize;
  const int64_t fs = p.conv_stride_feat;
  for_each_row_unit(p, [&](int64_t row, int64_t unit) {
    const T* src = conv + row * p.conv_stride_row;
    if (unit < 2 * p.H) {
      const T* head = src + unit * p.K * fs;
      T* dst = qk_head_out<T>(p, row, unit);
      if (p.apply_l2norm) {
        const float scale = l2norm_scale(head_sum_of_squares<T>(
            [&](int64_t f) { return static_cast<float>(head[f * fs]); }, p.K, lane));
        for (int64_t f = lane; f < p.K; f += kWarpSize) {
          dst[f] = static_cast<T>(static_cast<float>(head[f * fs]) * scale);
        }
      } else {
        for (int64_t f = lane; f < p.K; f += kWarpSize) dst[f] = head[f * fs];
      }
    } else if (unit < strided_units(p) - 1) {
      const int64_t hv = unit - 2 * p.H;
      const T* head = src + (2 * p.H * p.K + hv * p.V) * fs;
      T* dst = static_cast<T*>(p.v) + (row * p.HV + hv) * p.V;
      for (int64_t f = lane; f < p.V; f += kWarpSize) dst[f] = head[f * fs];
    } else {
      for (int64_t hv = lane; hv < p.HV; hv += kWarpSize) compute_gate(p, row, hv);
    }
  });
}

// ---------------------------------------------------------------------------
// Host side: pick a kernel from the strides and launch it.

// Returns false when the row-major fast path does not apply.
template <typename T>
bool try_launch_rowmajor(const PostConvPrepParams& p, const LaunchTarget& target) {
  constexpr int64_t kBytes = sizeof(T);
  constexpr int64_t kPack = Pack<T>::kSize;
  if (p.conv_stride_feat != 1 || !aligned16(p.conv) ||
      (p.L > 1 && (p.conv_stride_row * kBytes) % 16 != 0) ||
      (p.K * kBytes) % 16 != 0 || (p.HV * p.V * kBytes) % 16 != 0) {
    return false;
  }
  const int64_t packs_per_head = p.K / kPack;
  const int log2_lanes = log2_lanes_per_head(packs_per_head);
  const int64_t packs_per_lane = packs_per_head >> log2_lanes;
  if (packs_per_lane > kMaxPacksPerLane) return false;
  const int64_t v_packs_per_row = p.HV * p.V / kPack;
  // Indices within a row (plus one iteration's reach) are 32-bit.
  const int64_t int_max = std::numeric_limits<int32_t>::max() / 2;
  if (2 * p.H > int_max || v_packs_per_row > int_max) return false;

  RowMajorPlan plan;
  plan.log2_lanes_per_head = log2_lanes;
  plan.qk_heads = static_cast<int>(2 * p.H);
  plan.v_packs_per_row = static_cast<int>(v_packs_per_row);
  // A short call spreads over more blocks. With fewer blocks than SMs, a
  // call lasts as long as one SM takes to move its block's bytes (16 KB in
  // and out at K = 128 in bf16), so a block takes a quarter of an
  // iteration (one head a lane group, one pack of v a thread): H200, L = 16
  // at (16,32), 1.61 -> 1.37 us against a same-bytes copy of 1.36. With one
  // to two blocks an SM it takes half (2-3%); from two, a whole iteration,
  // which smaller blocks only slow down (benchmarks/NOTES.md).
  const int64_t qk_per_iteration =
      (kThreads >> log2_lanes) * heads_per_group_iter(static_cast<int>(packs_per_lane));
  const int64_t v_per_iteration = kThreads * kVPacksPerThread;
  const int64_t whole_blocks = ceil_div(p.L * 2 * p.H, qk_per_iteration) +
                               ceil_div(p.L * v_packs_per_row, v_per_iteration);
  const int64_t sms = multiprocessor_count(target.device);
  const int64_t parts = whole_blocks < sms ? 4 : whole_blocks < 2 * sms ? 2 : 1;
  plan.qk_heads_per_block = units_per_block(
      p.L * 2 * p.H, std::max<int64_t>(kThreads >> log2_lanes, qk_per_iteration / parts));
  plan.v_packs_per_block = units_per_block(p.L * v_packs_per_row, v_per_iteration / parts);
  plan.gates_per_block = units_per_block(p.L * p.HV, kThreads);
  plan.qk_blocks = ceil_div(p.L * 2 * p.H, plan.qk_heads_per_block);
  plan.v_blocks = ceil_div(p.L * v_packs_per_row, plan.v_packs_per_block);
  const int blocks = static_cast<int>(plan.qk_blocks + plan.v_blocks +
                                      ceil_div(p.L * p.HV, plan.gates_per_block));
  switch (packs_per_lane) {
    case 1: launch<rowmajor_kernel<T, 1>>(blocks, 0, target, p, plan); break;
    case 2: launch<rowmajor_kernel<T, 2>>(blocks, 0, target, p, plan); break;
    case 3: launch<rowmajor_kernel<T, 3>>(blocks, 0, target, p, plan); break;
    default: launch<rowmajor_kernel<T, 4>>(blocks, 0, target, p, plan); break;
  }
  return true;
}

template <typename T>
bool try_launch_channel_first(const PostConvPrepParams& p, const LaunchTarget& target) {
  constexpr int64_t kMaxStaticSmem = 48 * 1024;
  if (p.conv_stride_row != 1 || p.L == 1) return false;
  const int64_t token_tiles = ceil_div(p.L, kTileTokens);
  const int blocks = blocks_for(channel_first_gate_blocks(p) + token_tiles * channel_first_units(p));
  const int64_t features = std::max(p.K, p.V);
  const int64_t async_smem = features * kTileTokens * static_cast<int64_t>(sizeof(T));
  if (aligned16(p.conv) && (p.conv_stride_feat * sizeof(T)) % 16 == 0 &&
      async_smem <= kMaxStaticSmem) {
    launch<channel_first_async_kernel<T>>(blocks, async_smem, target, p, token_tiles);
    return true;
  }
  const int64_t smem = features * tile_pitch<T>() * static_cast<int64_t>(sizeof(T));
  if (smem > kMaxStaticSmem) return false;
  launch<channel_first_kernel<T>>(blocks, smem, target, p, token_tiles);
  return true;
}

template <typename T>
void launch_post_conv_prep(const PostConvPrepParams& p, const LaunchTarget& target) {
  if (try_launch_rowmajor<T>(p, target)) return;
  if (try_launch_channel_first<T>(p, target)) return;
  const int64_t warp_work = p.L * strided_units(p);
  launch<strided_kernel<T>>(blocks_for(ceil_div(warp_work, kWarps)), 0, target, p);
}

void run_cuda(const PostConvPrepParams& p, int32_t device) {
  on_device(device, [&](const LaunchTarget& target) {
    dispatch_activation(p.conv_kind,
                        [&](auto zero) { launch_post_conv_prep<decltype(zero)>(p, target); });
  });
}

}  // namespace
}  // namespace gdn::gpu

STABLE_TORCH_LIBRARY_IMPL(gdn, CUDA, m) {
  m.impl("fused_post_conv_prep", TORCH_BOX(&gdn::post_conv_prep_with<&gdn::gpu::run_cuda>));
  m.impl("fused_post_conv_prep.out", TORCH_BOX(&gdn::post_conv_prep_out_with<&gdn::gpu::run_cuda>));
}
