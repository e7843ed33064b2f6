// CUDA backend. Three kernels, chosen on the host from the strides:
//
//  * rowmajor_kernel   unit feature stride and 16-byte alignment (the layout a
//                      row-major conv output has): 16-byte loads and stores,
//                      one group of lanes per q/k head, shuffle reduction.
//  * channel_first_kernel  unit token stride (`conv(x.T).T`): a tile of 32
//                      tokens x one head goes through shared memory so that
//                      the reads are coalesced along tokens and the writes
//                      along features, with no copy of conv_output first.
//  * strided_kernel    any other layout (misaligned, odd sizes, arbitrary
//                      strides): one warp per (row, head), scalar accesses.
//
// All element offsets are int64_t; only indices bounded by a block's tile are
// 32-bit. No host synchronisation, so the op is safe in CUDA-graph capture.
#include <algorithm>
#include <cstdint>
#include <limits>

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

struct RowMajorPlan {
  int64_t num_tiles;
  int rows_per_tile;
  int log2_lanes_per_head;  // lanes per q/k head: a power of two <= 32
  int qk_heads;             // 2H
  int v_packs_per_row;      // HV*V / Pack<T>::kSize
};

// kPacksPerLane: 16-byte packs each lane holds of one head, so a head is
// (lanes per head) x kPacksPerLane packs. kHeadsPerIter heads per lane group
// per iteration put several independent loads in flight before the first
// shuffle.
template <typename T, int kPacksPerLane>
__global__ void __launch_bounds__(kThreads)
    rowmajor_kernel(const PostConvPrepParams p, const RowMajorPlan plan) {
  constexpr int kPack = Pack<T>::kSize;
  constexpr int kHeadsPerIter = kPacksPerLane >= 2 ? 1 : 2;
  constexpr int kVPacksPerIter = 4;
  const T* __restrict__ conv = static_cast<const T*>(p.conv);
  T* __restrict__ v_out = static_cast<T*>(p.v);

  const int lanes = 1 << plan.log2_lanes_per_head;
  const int lane = threadIdx.x & (lanes - 1);
  const int group = threadIdx.x >> plan.log2_lanes_per_head;
  const int groups = kThreads >> plan.log2_lanes_per_head;
  const int64_t v_col0 = 2 * p.H * p.K;
  const int64_t v_row_len = p.HV * p.V;

  for (int64_t tile = blockIdx.x; tile < plan.num_tiles; tile += gridDim.x) {
    const int64_t row0 = tile * plan.rows_per_tile;
    const int rows = static_cast<int>(
        std::min<int64_t>(plan.rows_per_tile, p.L - row0));
    const T* tile_src = conv + row0 * p.conv_stride_row;

    // q and k heads. The loop bound is uniform over the block, so every lane
    // of a warp reaches the shuffles; inactive groups load nothing.
    const int heads = rows * plan.qk_heads;
    for (int base = 0; base < heads; base += groups * kHeadsPerIter) {
      Pack<T> x[kHeadsPerIter][kPacksPerLane];
      float ss[kHeadsPerIter];
      int unit[kHeadsPerIter];
#pragma unroll
      for (int u = 0; u < kHeadsPerIter; ++u) {
        unit[u] = base + u * groups + group;
        ss[u] = 0.f;
        if (unit[u] < heads) {
          const int r = unit[u] / plan.qk_heads;
          const int h = unit[u] - r * plan.qk_heads;
          const T* src = tile_src + r * p.conv_stride_row + h * p.K + lane * kPack;
#pragma unroll
          for (int i = 0; i < kPacksPerLane; ++i) x[u][i] = load_pack(src + i * lanes * kPack);
        }
      }
#pragma unroll
      for (int u = 0; u < kHeadsPerIter; ++u) {
        float scale = 1.f;
        if (p.apply_l2norm) {
          if (unit[u] < heads) {
#pragma unroll
            for (int i = 0; i < kPacksPerLane; ++i)
#pragma unroll
              for (int j = 0; j < kPack; ++j) {
                const float f = static_cast<float>(x[u][i].x[j]);
                ss[u] += f * f;
              }
          }
          scale = l2norm_scale(group_sum(ss[u], lanes));
        }
        if (unit[u] < heads) {
          const int r = unit[u] / plan.qk_heads;
          const int h = unit[u] - r * plan.qk_heads;
          T* dst = qk_head_out<T>(p, row0 + r, h) + lane * kPack;
#pragma unroll
          for (int i = 0; i < kPacksPerLane; ++i) {
            Pack<T> y = x[u][i];
            if (p.apply_l2norm) {
#pragma unroll
              for (int j = 0; j < kPack; ++j)
                y.x[j] = static_cast<T>(static_cast<float>(y.x[j]) * scale);
            }
            store_pack(dst + i * lanes * kPack, y);
          }
        }
      }
    }

    // v: a bit-exact copy of each row's last HV*V columns.
    const int v_packs = rows * plan.v_packs_per_row;
    for (int base = 0; base < v_packs; base += kThreads * kVPacksPerIter) {
      Pack<T> x[kVPacksPerIter];
#pragma unroll
      for (int u = 0; u < kVPacksPerIter; ++u) {
        const int idx = base + u * kThreads + threadIdx.x;
        if (idx < v_packs) {
          const int r = idx / plan.v_packs_per_row;
          const int c = idx - r * plan.v_packs_per_row;
          x[u] = load_pack(tile_src + r * p.conv_stride_row + v_col0 + c * kPack);
        }
      }
#pragma unroll
      for (int u = 0; u < kVPacksPerIter; ++u) {
        const int idx = base + u * kThreads + threadIdx.x;
        if (idx < v_packs) {
          const int r = idx / plan.v_packs_per_row;
          const int c = idx - r * plan.v_packs_per_row;
          store_pack(v_out + (row0 + r) * v_row_len + c * kPack, x[u]);
        }
      }
    }

    const int gates = rows * static_cast<int>(p.HV);
    for (int idx = threadIdx.x; idx < gates; idx += kThreads) {
      const int r = idx / static_cast<int>(p.HV);
      compute_gate(p, row0 + r, idx - r * p.HV);
    }
  }
}

// ---------------------------------------------------------------------------
// Channel-first path: unit token stride.

constexpr int kTileTokens = 32;

// An odd number of 4-byte words per feature row of the tile, so that a warp
// reading one token across 32 features touches 32 different banks.
template <typename T>
constexpr int tile_pitch() {
  return kTileTokens + static_cast<int>(4 / sizeof(T));
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    channel_first_kernel(const PostConvPrepParams p, int64_t num_token_tiles) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* tile = reinterpret_cast<T*>(smem);  // [features][tile_pitch<T>()]
  constexpr int kPitch = tile_pitch<T>();
  constexpr int kLoadsInFlight = 8;
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

    // Load: lanes along tokens (the unit-stride axis).
    __syncthreads();  // the previous work item's readers are done with tile
    const T* src = conv + (t0 + lane) * p.conv_stride_row + col0 * p.conv_stride_feat;
    for (int f0 = warp; f0 < features; f0 += kWarps * kLoadsInFlight) {
      T x[kLoadsInFlight];
#pragma unroll
      for (int i = 0; i < kLoadsInFlight; ++i) {
        const int f = f0 + i * kWarps;
        if (f < features && lane < tokens) x[i] = src[f * p.conv_stride_feat];
      }
#pragma unroll
      for (int i = 0; i < kLoadsInFlight; ++i) {
        const int f = f0 + i * kWarps;
        if (f < features && lane < tokens) tile[f * kPitch + lane] = x[i];
      }
    }
    __syncthreads();

    // Store: one warp per token, lanes along features (the output's unit
    // stride).
    for (int t = warp; t < tokens; t += kWarps) {
      const int64_t row = t0 + t;
      T* dst = is_qk ? qk_head_out<T>(p, row, unit)
                     : static_cast<T*>(p.v) + (row * p.HV + unit - 2 * p.H) * p.V;
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

bool aligned16(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

// Multiprocessor count of the current device, read once per device: the
// attribute query does not synchronise, but it is not free either.
int multiprocessor_count() {
  constexpr int kMaxDevices = 64;
  static int cached[kMaxDevices] = {};
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  if (device >= kMaxDevices) device = kMaxDevices - 1;  // only a tiling hint
  if (cached[device] == 0) {
    int count = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    cached[device] = count;
  }
  return cached[device];
}

int blocks_for(int64_t work) {
  return static_cast<int>(std::max<int64_t>(1, std::min(work, kMaxBlocks)));
}

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

  // About eight packs per thread per tile, and enough tiles to give every
  // multiprocessor several blocks when L allows.
  const int64_t v_packs_per_row = p.HV * p.V / kPack;
  const int64_t packs_per_row = 2 * p.H * packs_per_head + v_packs_per_row;
  const int num_sms = multiprocessor_count();
  int64_t rows = std::max<int64_t>(1, (8 * kThreads) / packs_per_row);
  rows = std::min(rows, std::max<int64_t>(1, p.L / (4 * num_sms)));
  // Tile-local indices are 32-bit.
  const int64_t int_max = std::numeric_limits<int32_t>::max() / 2;
  if (rows * std::max({2 * p.H, v_packs_per_row, p.HV}) > int_max) return false;

  RowMajorPlan plan;
  plan.rows_per_tile = static_cast<int>(rows);
  plan.num_tiles = (p.L + rows - 1) / rows;
  plan.log2_lanes_per_head = log2_lanes;
  plan.qk_heads = static_cast<int>(2 * p.H);
  plan.v_packs_per_row = static_cast<int>(v_packs_per_row);
  const int blocks = blocks_for(plan.num_tiles);
  switch (packs_per_lane) {
    case 1: rowmajor_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(p, plan); break;
    case 2: rowmajor_kernel<T, 2><<<blocks, kThreads, 0, stream>>>(p, plan); break;
    case 3: rowmajor_kernel<T, 3><<<blocks, kThreads, 0, stream>>>(p, plan); break;
    default: rowmajor_kernel<T, 4><<<blocks, kThreads, 0, stream>>>(p, plan); break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
}

template <typename T>
bool try_launch_channel_first(const PostConvPrepParams& p, cudaStream_t stream) {
  constexpr int64_t kMaxStaticSmem = 48 * 1024;
  const int64_t smem = std::max(p.K, p.V) * tile_pitch<T>() * sizeof(T);
  if (p.conv_stride_row != 1 || p.L == 1 || smem > kMaxStaticSmem) return false;
  const int64_t token_tiles = (p.L + kTileTokens - 1) / kTileTokens;
  const int64_t work = token_tiles * (2 * p.H + p.HV + 1);
  channel_first_kernel<T><<<blocks_for(work), kThreads, smem, stream>>>(p, token_tiles);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
}

template <typename T>
void launch_post_conv_prep(const PostConvPrepParams& p, cudaStream_t stream) {
  if (try_launch_rowmajor<T>(p, stream)) return;
  if (try_launch_channel_first<T>(p, stream)) return;
  const int64_t warp_work = p.L * (2 * p.H + p.HV + 1);
  strided_kernel<T><<<blocks_for((warp_work + kWarps - 1) / kWarps), kThreads, 0, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
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
