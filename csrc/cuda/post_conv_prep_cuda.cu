// CUDA backend. Three kernels, chosen on the host from the strides:
//
//  * rowmajor_kernel   unit feature stride and 16-byte alignment (the layout a
//                      row-major conv output has): 16-byte loads and stores.
//                      Blocks split by kind of work (q/k heads with a shuffle
//                      reduction per head, v packs, gates), so that each
//                      block's loads all leave before its first store.
//  * channel_first_kernel  unit token stride (`conv(x.T).T`): a tile of 64
//                      tokens x one head goes through shared memory so that
//                      the reads run along tokens (16-byte loads where the
//                      feature rows are 16-byte aligned) and the writes along
//                      features (16-byte stores where a head is a power-of-two
//                      number of packs), with no copy of conv_output first.
//  * strided_kernel    any other layout (misaligned, odd sizes, arbitrary
//                      strides): one warp per (row, head), scalar accesses.
//
// Every launch is a programmatic dependent launch on sm_90+ (see
// wait_for_previous_grid). All element offsets are int64_t; only indices
// within a row or a tile are 32-bit. No host synchronisation, so the op is
// safe in CUDA-graph capture.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

// c10's CUDA headers only: ATen/cuda/CUDAContext.h would pull in the cuBLAS
// and cuSPARSE headers, which a minimal toolkit (nvcc + cudart) lacks.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../post_conv_prep.h"
#include "../post_conv_prep_math.h"

namespace gdn {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
constexpr int kWarps = kThreads / kWarpSize;
constexpr unsigned kFullMask = 0xffffffffu;
// Grid-stride loops keep every launch within gridDim.x's limit for any L.
constexpr int64_t kMaxBlocks = int64_t{1} << 30;

// 16 bytes of T, the widest access one thread can issue.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T x[kSize];
};

template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* ptr) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(ptr));
  Pack<T> pack;
  *reinterpret_cast<uint4*>(&pack) = raw;
  return pack;
}

template <typename T>
__device__ __forceinline__ void store_pack(T* ptr, const Pack<T>& pack) {
  *reinterpret_cast<uint4*>(ptr) = *reinterpret_cast<const uint4*>(&pack);
}

// ss plus the squares of a pack's elements, added in element order. Every
// path that must give the row-major kernel's bits for a head sums through
// this (and group_sum), so the association cannot drift apart.
template <typename T>
__device__ __forceinline__ float add_squares(const Pack<T>& x, float ss) {
#pragma unroll
  for (int j = 0; j < Pack<T>::kSize; ++j) {
    const float f = static_cast<float>(x.x[j]);
    ss += f * f;
  }
  return ss;
}

template <typename T>
__device__ __forceinline__ Pack<T> scaled(Pack<T> x, float scale) {
#pragma unroll
  for (int j = 0; j < Pack<T>::kSize; ++j) x.x[j] = static_cast<T>(static_cast<float>(x.x[j]) * scale);
  return x;
}

// Programmatic dependent launch (sm_90+): the host lets this grid launch
// while the previous kernel on the stream still runs, so launch latency
// overlaps it. Nothing is read or written before the wait, which returns once
// the previous grid has finished and its writes are visible; this grid then
// lets its own successor launch. Without the launch attribute (or below
// sm_90) both are no-ops.
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__host__ __device__ inline bool aligned16(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

// Sum over aligned groups of `width` lanes (a power of two <= 32).
__device__ __forceinline__ float group_sum(float x, int width) {
  for (int offset = width / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(kFullMask, x, offset);
  }
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(kFullMask, x, offset);
  }
  return x;
}

// The row-major kernel gives a head of `packs` 16-byte packs to the largest
// power of two <= 32 lanes that divides `packs`; each lane then holds
// packs / lanes <= kMaxPacksPerLane of them.
constexpr int kMaxPacksPerLane = 4;

__host__ __device__ inline int log2_lanes_per_head(int64_t packs) {
  int log2 = 0;
  while (log2 < 5 && packs % (int64_t{2} << log2) == 0) ++log2;
  return log2;
}

// Sum of squares of one head of K elements read through load(f), over a whole
// warp. Wherever the row-major kernel can run for this K, the sum is
// associated exactly as that kernel associates it (each lane's packs in
// order, then a butterfly; lanes past the head's lanes add zeros, which is
// exact), so a head normalises to the same bits whatever the input layout.
template <typename T, typename Load>
__device__ __forceinline__ float head_sum_of_squares(const Load& load, int64_t K, int lane) {
  constexpr int kPack = Pack<T>::kSize;
  const int64_t packs = K / kPack;
  const int log2_lanes = log2_lanes_per_head(packs);
  const int64_t packs_per_lane = packs >> log2_lanes;
  float ss = 0.f;
  if (K % kPack == 0 && packs_per_lane <= kMaxPacksPerLane) {
    const int lanes = 1 << log2_lanes;
    if (lane < lanes) {
      for (int64_t i = 0; i < packs_per_lane; ++i) {
#pragma unroll
        for (int j = 0; j < kPack; ++j) {
          const float x = load((i * lanes + lane) * kPack + j);
          ss += x * x;
        }
      }
    }
  } else {
    for (int64_t f = lane; f < K; f += kWarpSize) {
      const float x = load(f);
      ss += x * x;
    }
  }
  return warp_sum(ss);
}

// Destination of q/k head `h` (0 <= h < 2H) of row `row`.
template <typename T>
__device__ __forceinline__ T* qk_head_out(const PostConvPrepParams& p,
                                          int64_t row, int64_t h) {
  return h < p.H ? static_cast<T*>(p.q) + (row * p.H + h) * p.K
                 : static_cast<T*>(p.k) + (row * p.H + h - p.H) * p.K;
}

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
  int64_t qk_heads_per_block;   // multiples of one iteration's worth
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
  // the shuffles; lanes without a head load nothing.
  for (int64_t base = first; base < end; base += groups * kHeads) {
    const int64_t row0 = base / plan.qk_heads;
    const int h0 = static_cast<int>(base - row0 * plan.qk_heads);
    Pack<T> x[kHeads][kPacksPerLane];
    int64_t row[kHeads];
    int head[kHeads];
    bool active[kHeads];
#pragma unroll
    for (int u = 0; u < kHeads; ++u) {
      const int local = h0 + u * groups + group;
      const int r = local / plan.qk_heads;
      row[u] = row0 + r;
      head[u] = local - r * plan.qk_heads;
      active[u] = base + u * groups + group < end;
      if (active[u]) {
        const T* src = conv + row[u] * p.conv_stride_row + head[u] * p.K + lane * kPack;
#pragma unroll
        for (int i = 0; i < kPacksPerLane; ++i) x[u][i] = load_pack(src + i * lanes * kPack);
      }
    }
#pragma unroll
    for (int u = 0; u < kHeads; ++u) {
      float scale = 1.f;
      if (p.apply_l2norm) {
        float ss = 0.f;
        if (active[u]) {
#pragma unroll
          for (int i = 0; i < kPacksPerLane; ++i) ss = add_squares(x[u][i], ss);
        }
        scale = l2norm_scale(group_sum(ss, lanes));
      }
      if (active[u]) {
        T* dst = qk_head_out<T>(p, row[u], head[u]) + lane * kPack;
#pragma unroll
        for (int i = 0; i < kPacksPerLane; ++i) {
          store_pack(dst + i * lanes * kPack, p.apply_l2norm ? scaled(x[u][i], scale) : x[u][i]);
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
    Pack<T> x[kVPacksPerThread];
#pragma unroll
    for (int u = 0; u < kVPacksPerThread; ++u) {
      const int local = c0 + u * kThreads + static_cast<int>(threadIdx.x);
      const int r = local / plan.v_packs_per_row;
      if (base + u * kThreads + threadIdx.x < end) {
        x[u] = load_pack(conv + (row0 + r) * p.conv_stride_row +
                         (local - r * plan.v_packs_per_row) * kPack);
      }
    }
#pragma unroll
    for (int u = 0; u < kVPacksPerThread; ++u) {
      const int64_t idx = base + u * kThreads + threadIdx.x;
      if (idx < end) store_pack(v_out + idx * kPack, x[u]);
    }
  }
}

__device__ __forceinline__ void rowmajor_gates(const PostConvPrepParams& p,
                                               const RowMajorPlan& plan, int64_t block) {
  const int64_t first = block * plan.gates_per_block;
  const int64_t end = std::min<int64_t>(p.L * p.HV, first + plan.gates_per_block);
  for (int64_t idx = first + threadIdx.x; idx < end; idx += kThreads) {
    const int64_t row = idx / p.HV;
    compute_gate(p, row, idx - row * p.HV);
  }
}

template <typename T, int kPacksPerLane>
__global__ void __launch_bounds__(kThreads)
    rowmajor_kernel(const PostConvPrepParams p, const RowMajorPlan plan) {
  wait_for_previous_grid();
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
  rowmajor_gates(p, plan, block - plan.v_blocks);
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

// kVectorLoads: conv_output's rows (features) of the transposed view all
// start on 16 bytes, and so does every tile's first token (t0 is a multiple
// of 64).
template <typename T, bool kVectorLoads>
__global__ void __launch_bounds__(kThreads)
    channel_first_kernel(const PostConvPrepParams p, int64_t num_token_tiles) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* tile = reinterpret_cast<T*>(smem);  // [features][tile_pitch<T>()]
  constexpr int kPitch = tile_pitch<T>();
  constexpr int kPack = Pack<T>::kSize;
  constexpr int kFeaturesInFlight = 8;
  wait_for_previous_grid();
  const T* __restrict__ conv = static_cast<const T*>(p.conv);
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t units = 2 * p.H + p.HV + 1;  // q/k heads, v heads, gates
  const int64_t total = num_token_tiles * units;

  for (int64_t work = blockIdx.x; work < total; work += gridDim.x) {
    const int64_t token_tile = work / units;
    const int64_t unit = work - token_tile * units;
    const int64_t t0 = token_tile * kTileTokens;
    const int tokens = static_cast<int>(std::min<int64_t>(kTileTokens, p.L - t0));

    if (unit == units - 1) {
      for (int idx = threadIdx.x; idx < tokens * p.HV; idx += kThreads) {
        const int hv = idx / tokens;
        compute_gate(p, t0 + (idx - hv * tokens), hv);
      }
      continue;
    }
    const bool is_qk = unit < 2 * p.H;
    const int features = static_cast<int>(is_qk ? p.K : p.V);
    const int64_t col0 = is_qk ? unit * p.K : 2 * p.H * p.K + (unit - 2 * p.H) * p.V;

    // Load: along tokens (the unit-stride axis). Where every feature row of
    // the tile starts on 16 bytes, each thread loads whole 16-byte packs of
    // tokens (a quarter of the load instructions of 4-byte ones, and four
    // packs in flight per thread); otherwise lanes load single tokens.
    __syncthreads();  // the previous work item's readers are done with tile
    if constexpr (kVectorLoads) {
      constexpr int kPacksPerRow = kTileTokens / kPack;
      constexpr int kInFlight = 4;
      const T* src = conv + t0 + col0 * p.conv_stride_feat;
      const int packs = features * kPacksPerRow;
      for (int base = 0; base < packs; base += kThreads * kInFlight) {
        Pack<T> x[kInFlight];
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) {
          const int idx = base + u * kThreads + threadIdx.x;
          const int f = idx / kPacksPerRow, c = idx - f * kPacksPerRow;
          if (idx < packs) {
            const T* ptr = src + f * p.conv_stride_feat + c * kPack;
            if ((c + 1) * kPack <= tokens) {
              x[u] = load_pack(ptr);
            } else {
#pragma unroll
              for (int j = 0; j < kPack; ++j) {
                if (c * kPack + j < tokens) x[u].x[j] = ptr[j];
              }
            }
          }
        }
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) {
          const int idx = base + u * kThreads + threadIdx.x;
          const int f = idx / kPacksPerRow, c = idx - f * kPacksPerRow;
          if (idx < packs) {
#pragma unroll
            for (int j = 0; j < kPack; ++j) tile[f * kPitch + c * kPack + j] = x[u].x[j];
          }
        }
      }
    } else {
      const T* src = conv + (t0 + lane) * p.conv_stride_row + col0 * p.conv_stride_feat;
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
    }
    __syncthreads();

    // Store. Where a head is at most 32 whole 16-byte packs, a group of
    // lanes takes one token as the row-major kernel takes one row (one pack
    // per lane, summed in the same order, so q and k get the same bits) and
    // stores 16 bytes a lane. Otherwise one warp per token, lanes along
    // features.
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
          for (int j = 0; j < kPack; ++j) x.x[j] = tile[(glane * kPack + j) * kPitch + t];
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
      continue;
    }
    for (int t = warp; t < tokens; t += kWarps) {
      const int64_t row = t0 + t;
      T* dst = is_qk ? qk_head_out<T>(p, row, unit) : out0 + row * p.HV * p.V;
      if (is_qk && p.apply_l2norm) {
        const float scale = l2norm_scale(head_sum_of_squares<T>(
            [&](int64_t f) { return static_cast<float>(tile[f * kPitch + t]); }, p.K, lane));
        for (int f = lane; f < features; f += kWarpSize) {
          dst[f] = static_cast<T>(static_cast<float>(tile[f * kPitch + t]) * scale);
        }
      } else {
        for (int f = lane; f < features; f += kWarpSize) dst[f] = tile[f * kPitch + t];
      }
    }
  }
}

// ---------------------------------------------------------------------------
// General path: any strides and sizes.

template <typename T>
__global__ void __launch_bounds__(kThreads) strided_kernel(const PostConvPrepParams p) {
  wait_for_previous_grid();
  const T* __restrict__ conv = static_cast<const T*>(p.conv);
  const int lane = threadIdx.x % kWarpSize;
  const int64_t fs = p.conv_stride_feat;
  const int64_t units = 2 * p.H + p.HV + 1;  // q/k heads, v heads, gates
  const int64_t total = p.L * units;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;

  for (int64_t work = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / kWarpSize;
       work < total; work += warps) {
    const int64_t row = work / units;
    const int64_t unit = work - row * units;
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
    } else if (unit < units - 1) {
      const int64_t hv = unit - 2 * p.H;
      const T* head = src + (2 * p.H * p.K + hv * p.V) * fs;
      T* dst = static_cast<T*>(p.v) + (row * p.HV + hv) * p.V;
      for (int64_t f = lane; f < p.V; f += kWarpSize) dst[f] = head[f * fs];
    } else {
      for (int64_t hv = lane; hv < p.HV; hv += kWarpSize) compute_gate(p, row, hv);
    }
  }
}

// ---------------------------------------------------------------------------
// Host side: pick a kernel from the strides and launch it.


int blocks_for(int64_t work) {
  return static_cast<int>(std::max<int64_t>(1, std::min(work, kMaxBlocks)));
}

// Whether kKernel may be launched as a programmatic dependent on the current
// device: only if the code the device runs was compiled for sm_90 or later
// (PTX JIT-compiled from an older target lacks the wait, and launching it
// early would race with the previous kernel). GDN_EXT_DISABLE_PDL=1 turns
// it off. Read once per kernel and device.
template <auto kKernel>
bool programmatic_launch_allowed() {
  constexpr int kMaxDevices = 64;
  static const bool disabled = [] {
    const char* env = std::getenv("GDN_EXT_DISABLE_PDL");
    return env != nullptr && std::string(env) == "1";
  }();
  static std::atomic<int8_t> allowed[kMaxDevices] = {};  // 0: not read yet, 1: yes, -1: no
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  if (disabled || device >= kMaxDevices) return false;
  int8_t state = allowed[device].load(std::memory_order_relaxed);
  if (state == 0) {
    cudaFuncAttributes attr;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kKernel));
    state = attr.ptxVersion >= 90 ? 1 : -1;
    allowed[device].store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

template <auto kKernel, typename... Args>
void launch(int blocks, int64_t smem_bytes, cudaStream_t stream, const Args&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(blocks));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = static_cast<size_t>(smem_bytes);
  config.stream = stream;
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = programmatic_launch_allowed<kKernel>() ? 1 : 0;
  C10_CUDA_CHECK(cudaLaunchKernelEx(&config, kKernel, args...));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Units of work per block: whole iterations, and few enough blocks per kind
// that the three kinds together stay inside gridDim.x.
int64_t units_per_block(int64_t units, int64_t per_iteration) {
  constexpr int64_t kMaxBlocksPerKind = int64_t{1} << 28;
  const int64_t iterations = (units + per_iteration - 1) / per_iteration;
  return per_iteration * std::max<int64_t>(1, (iterations + kMaxBlocksPerKind - 1) / kMaxBlocksPerKind);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Returns false when the row-major fast path does not apply.
template <typename T>
bool try_launch_rowmajor(const PostConvPrepParams& p, cudaStream_t stream) {
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
  plan.qk_heads_per_block = units_per_block(
      p.L * 2 * p.H,
      (kThreads >> log2_lanes) * heads_per_group_iter(static_cast<int>(packs_per_lane)));
  plan.v_packs_per_block = units_per_block(p.L * v_packs_per_row, kThreads * kVPacksPerThread);
  plan.gates_per_block = units_per_block(p.L * p.HV, kThreads);
  plan.qk_blocks = ceil_div(p.L * 2 * p.H, plan.qk_heads_per_block);
  plan.v_blocks = ceil_div(p.L * v_packs_per_row, plan.v_packs_per_block);
  const int blocks = static_cast<int>(plan.qk_blocks + plan.v_blocks +
                                      ceil_div(p.L * p.HV, plan.gates_per_block));
  switch (packs_per_lane) {
    case 1: launch<rowmajor_kernel<T, 1>>(blocks, 0, stream, p, plan); break;
    case 2: launch<rowmajor_kernel<T, 2>>(blocks, 0, stream, p, plan); break;
    case 3: launch<rowmajor_kernel<T, 3>>(blocks, 0, stream, p, plan); break;
    default: launch<rowmajor_kernel<T, 4>>(blocks, 0, stream, p, plan); break;
  }
  return true;
}

template <typename T>
bool try_launch_channel_first(const PostConvPrepParams& p, cudaStream_t stream) {
  constexpr int64_t kMaxStaticSmem = 48 * 1024;
  const int64_t smem = std::max(p.K, p.V) * tile_pitch<T>() * sizeof(T);
  if (p.conv_stride_row != 1 || p.L == 1 || smem > kMaxStaticSmem) return false;
  const int64_t token_tiles = ceil_div(p.L, kTileTokens);
  const int64_t work = token_tiles * (2 * p.H + p.HV + 1);
  if (aligned16(p.conv) && (p.conv_stride_feat * sizeof(T)) % 16 == 0) {
    launch<channel_first_kernel<T, true>>(blocks_for(work), smem, stream, p, token_tiles);
  } else {
    launch<channel_first_kernel<T, false>>(blocks_for(work), smem, stream, p, token_tiles);
  }
  return true;
}

template <typename T>
void launch_post_conv_prep(const PostConvPrepParams& p, cudaStream_t stream) {
  if (try_launch_rowmajor<T>(p, stream)) return;
  if (try_launch_channel_first<T>(p, stream)) return;
  const int64_t warp_work = p.L * (2 * p.H + p.HV + 1);
  launch<strided_kernel<T>>(blocks_for(ceil_div(warp_work, kWarps)), 0, stream, p);
}

PostConvPrepOutputs fused_post_conv_prep_cuda(
    const at::Tensor& conv_output, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& A_log, const at::Tensor& dt_bias, int64_t num_k_heads,
    int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
    bool output_g_exp) {
  PostConvPrepParams p;
  auto outputs = prepare_post_conv_prep(conv_output, a, b, A_log, dt_bias,
                                        num_k_heads, head_k_dim, head_v_dim,
                                        apply_l2norm, output_g_exp, &p);
  if (p.L == 0) return outputs;
  // Launch on the inputs' device, not the current one.
  const c10::cuda::CUDAGuard device_guard(conv_output.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  GDN_DISPATCH_ACTIVATION_TYPES(conv_output.scalar_type(), "fused_post_conv_prep_cuda",
                                [&] { launch_post_conv_prep<scalar_t>(p, stream); });
  return outputs;
}

}  // namespace
}  // namespace gdn

TORCH_LIBRARY_IMPL(gdn, CUDA, m) {
  m.impl("fused_post_conv_prep", &gdn::fused_post_conv_prep_cuda);
}
