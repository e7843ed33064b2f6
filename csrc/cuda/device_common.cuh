// Device and launch helpers both ops' CUDA kernels share: 16-byte packs,
// the lane-group reductions whose association fixes a head's bits, the
// programmatic dependent launch (sm_90+), op 1's gate step, and the launch
// on the inputs' device and current stream.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <type_traits>

#include <cuda_runtime.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>
#include <torch/headeronly/util/shim_utils.h>

#include "../post_conv_prep.h"
#include "../post_conv_prep_math.h"

namespace gdn::gpu {


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

// A plain load, not __ldg: the read-only-data path lets the compiler treat
// the data as invariant for the whole kernel and hoist the load above the
// programmatic-launch wait, before the previous kernel's writes are visible.
template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* ptr) {
  const uint4 raw = *reinterpret_cast<const uint4*>(ptr);
  Pack<T> pack;
  *reinterpret_cast<uint4*>(&pack) = raw;
  return pack;
}

template <typename T>
__device__ __forceinline__ void store_pack(T* ptr, const Pack<T>& pack) {
  *reinterpret_cast<uint4*>(ptr) = *reinterpret_cast<const uint4*>(&pack);
}

// A pack's elements as float. bf16 is the upper half of a float: one
// shift or mask per element, where a conversion one element at a time also
// moves each upper half down first.
template <typename T>
__device__ __forceinline__ void unpack_floats(const Pack<T>& pack, float (&out)[Pack<T>::kSize]) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    const auto* pairs = reinterpret_cast<const uint32_t*>(pack.x);
#pragma unroll
    for (int j = 0; j < Pack<T>::kSize / 2; ++j) {
      out[2 * j] = __uint_as_float(pairs[j] << 16);
      out[2 * j + 1] = __uint_as_float(pairs[j] & 0xffff0000u);
    }
  } else {
#pragma unroll
    for (int j = 0; j < Pack<T>::kSize; ++j) out[j] = static_cast<float>(pack.x[j]);
  }
}

// ss plus the squares of a pack's elements, added in element order. Every
// path that must give the row-major kernel's bits for a head sums through
// this (and group_sums), so the association cannot drift apart.
template <typename T>
__device__ __forceinline__ float add_squares(const Pack<T>& x, float ss) {
  float f[Pack<T>::kSize];
  unpack_floats(x, f);
#pragma unroll
  for (int j = 0; j < Pack<T>::kSize; ++j) ss += f[j] * f[j];
  return ss;
}

// kSize floats rounded to nearest-even T, a pair per instruction for
// 16-bit T (sm_80+): the same bits as rounding one at a time.
template <typename T>
__device__ __forceinline__ Pack<T> round_to(const float (&v)[Pack<T>::kSize]) {
  Pack<T> pack;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (sizeof(T) == 2) {
    auto* pairs = reinterpret_cast<uint32_t*>(pack.x);
#pragma unroll
    for (int j = 0; j < Pack<T>::kSize / 2; ++j) {
      // cvt's first source goes to the upper half: element 2j+1.
      if constexpr (std::is_same_v<T, c10::BFloat16>) {
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(pairs[j]) : "f"(v[2 * j + 1]), "f"(v[2 * j]));
      } else {
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(pairs[j]) : "f"(v[2 * j + 1]), "f"(v[2 * j]));
      }
    }
    return pack;
  }
#endif
#pragma unroll
  for (int j = 0; j < Pack<T>::kSize; ++j) pack.x[j] = static_cast<T>(v[j]);
  return pack;
}

// x times scale, rounded to T once per element.
template <typename T>
__device__ __forceinline__ Pack<T> scaled(const Pack<T>& x, float scale) {
  float v[Pack<T>::kSize];
  unpack_floats(x, v);
#pragma unroll
  for (int j = 0; j < Pack<T>::kSize; ++j) v[j] *= scale;
  return round_to<T>(v);
}

// Programmatic dependent launch (sm_90+): the host lets this grid launch
// while the previous kernel on the stream still runs, so launch latency (and
// whatever index arithmetic comes before the wait) overlaps it. Nothing is
// read or written before wait_for_previous_grid, which returns once the
// previous grid has finished and its writes are visible. Every kernel lets
// its own successor launch as it starts (the successor still waits for this
// grid to finish). Without the launch attribute (or below sm_90) both are
// no-ops.
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// The wait, with the given addresses computed before it, so that their
// arithmetic overlaps the previous grid. The compiler would otherwise sink it
// below the wait, next to the loads; a branch on the addresses keeps it above.
// They point into a tensor with elements, so they are never all null and the
// wait always runs.
template <typename T, int N>
__device__ __forceinline__ void wait_for_previous_grid_after(const T* const (&addresses)[N]) {
  uintptr_t any = 0;
#pragma unroll
  for (int i = 0; i < N; ++i) any |= reinterpret_cast<uintptr_t>(addresses[i]);
  if (any != 0) wait_for_previous_grid();
}

__device__ __forceinline__ void let_next_grid_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asynchronous 16-byte copies from global to shared memory (sm_80+): a copy
// in flight holds no register, so a thread can keep many loads ahead of its
// use. Each thread waits only for its own copies (wait_async_copies: all but
// the kPending newest commit groups done) and reads only what it copied.
__device__ __forceinline__ void copy16_async(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const auto dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(gmem) : "memory");
#else
  *static_cast<uint4*>(smem) = *static_cast<const uint4*>(gmem);
#endif
}

__device__ __forceinline__ void commit_async_copies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

template <int kPending>
__device__ __forceinline__ void wait_async_copies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
#endif
}

__host__ __device__ inline bool aligned16(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Sums of N values, each over aligned groups of `width` lanes (a power of
// two <= 32). The N butterflies run side by side, so their shuffle latencies
// overlap instead of adding up.
template <int N>
__device__ __forceinline__ void group_sums(float (&x)[N], int width) {
  for (int offset = width / 2; offset > 0; offset /= 2) {
#pragma unroll
    for (int u = 0; u < N; ++u) x[u] += __shfl_xor_sync(kFullMask, x[u], offset);
  }
}

__device__ __forceinline__ float group_sum(float x, int width) {
  float sums[1] = {x};
  group_sums(sums, width);
  return sums[0];
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

// Gates [first, first + count) (those below L * HV) in row-major (row, value
// head) order, a thread each.
// The row-major and channel-first kernels give the gates blocks of their own,
// one gate a thread: a gate's loads wait for the previous gate's stores (g and
// beta may alias the inputs, as far as the compiler knows), so a block with
// several gates a thread would take several memory round trips.
__device__ __forceinline__ void gate_block(const PostConvPrepParams& p, int64_t first,
                                           int64_t count) {
  const int64_t end = std::min<int64_t>(p.L * p.HV, first + count);
  for (int64_t idx = first + threadIdx.x; idx < end; idx += kThreads) {
    const int64_t row = idx / p.HV;
    wait_for_previous_grid();
    compute_gate(p, row, idx - row * p.HV);
  }
}

// ---------------------------------------------------------------------------
// Host side.

// Where a launch goes: the inputs' device (current while launching) and its
// current stream.
struct LaunchTarget {
  cudaStream_t stream;
  int device;
};

inline int blocks_for(int64_t work) {
  return static_cast<int>(std::max<int64_t>(1, std::min(work, kMaxBlocks)));
}

// compute() (an int, never 0 once known) for `device`: once per device in
// [0, kMaxCachedDevices), at every call for any other. Each caller passes a
// lambda of its own, a type of its own in each instantiation of the caller's
// template, so each caller (per kernel, for the kernel templates below) has
// a cache of its own.
constexpr int kMaxCachedDevices = 64;

template <typename Compute>
int once_per_device(int device, const Compute& compute) {
  static std::atomic<int> values[kMaxCachedDevices] = {};
  const bool cached = device >= 0 && device < kMaxCachedDevices;
  int value = cached ? values[device].load(std::memory_order_relaxed) : 0;
  if (value == 0) {
    value = compute();
    if (cached) values[device].store(value, std::memory_order_relaxed);
  }
  return value;
}

// Whether kKernel may be launched as a programmatic dependent on the current
// device: only if the code the device runs was compiled for sm_90 or later
// (PTX JIT-compiled from an older target lacks the wait, and launching it
// early would race with the previous kernel). GDN_EXT_DISABLE_PDL=1 turns
// it off. Read once per kernel and device.
template <auto kKernel>
bool programmatic_launch_allowed(int device) {
  static const bool disabled = [] {
    const char* env = std::getenv("GDN_EXT_DISABLE_PDL");
    return env != nullptr && std::string(env) == "1";
  }();
  if (disabled || device >= kMaxCachedDevices) return false;
  return once_per_device(device, [] {
           cudaFuncAttributes attr;
           STD_CUDA_CHECK(cudaFuncGetAttributes(&attr, kKernel));
           return attr.ptxVersion >= 90 ? 1 : -1;
         }) == 1;
}

// A device attribute, read once per device.
template <cudaDeviceAttr kAttribute>
int device_attribute(int device) {
  return once_per_device(device, [device] {
    int value = 0;
    STD_CUDA_CHECK(cudaDeviceGetAttribute(&value, kAttribute, device));
    return value;
  });
}

inline int multiprocessor_count(int device) {
  return device_attribute<cudaDevAttrMultiProcessorCount>(device);
}

// The most dynamic shared memory a block can opt into (227 KB on sm_90,
// 163 KB on sm_80, 99 KB on sm_86/sm_89).
inline int64_t max_dynamic_smem_per_block(int device) {
  return device_attribute<cudaDevAttrMaxSharedMemoryPerBlockOptin>(device);
}

// Lets kKernel take smem_bytes of dynamic shared memory past the default
// 48 KB on the current device. Set once per kernel and device: smem_bytes
// is the same at every launch of a kernel.
template <auto kKernel>
void allow_dynamic_smem(int device, int64_t smem_bytes) {
  constexpr int64_t kDefaultLimit = 48 * 1024;
  if (smem_bytes <= kDefaultLimit) return;
  once_per_device(device, [smem_bytes] {
    STD_CUDA_CHECK(cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem_bytes)));
    return 1;
  });
}

template <auto kKernel, typename... Args>
void launch(int blocks, int64_t smem_bytes, const LaunchTarget& target, const Args&... args) {
  allow_dynamic_smem<kKernel>(target.device, smem_bytes);
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(blocks));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = static_cast<size_t>(smem_bytes);
  config.stream = target.stream;
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = programmatic_launch_allowed<kKernel>(target.device) ? 1 : 0;
  STD_CUDA_CHECK(cudaLaunchKernelEx(&config, kKernel, args...));
  STD_CUDA_KERNEL_LAUNCH_CHECK();
}

// The strided kernels' work: one warp per (row, unit), a unit being a q/k
// head (0 .. 2H-1), a v head (2H .. 2H+HV-1) or the row's gates (the last).
__host__ __device__ inline int64_t strided_units(const PostConvPrepParams& p) {
  return 2 * p.H + p.HV + 1;
}

// Runs body(row, unit) for each of this warp's (row, unit) pairs, grid-stride.
template <typename Body>
__device__ __forceinline__ void for_each_row_unit(const PostConvPrepParams& p, const Body& body) {
  const int64_t units = strided_units(p);
  const int64_t total = p.L * units;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t work = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / kWarpSize;
       work < total; work += warps) {
    const int64_t row = work / units;
    body(row, work - row * units);
  }
}

// Units of work per block: whole iterations, and few enough blocks per kind
// that the three kinds together stay inside gridDim.x.
inline int64_t units_per_block(int64_t units, int64_t per_iteration) {
  constexpr int64_t kMaxBlocksPerKind = int64_t{1} << 28;
  const int64_t iterations = (units + per_iteration - 1) / per_iteration;
  return per_iteration * std::max<int64_t>(1, (iterations + kMaxBlocksPerKind - 1) / kMaxBlocksPerKind);
}

// Runs launch(target) with the inputs' device current and its current
// stream: not the current device's. The stream comes from the C shim: a
// stable Stream's id() is an encoded id, not a cudaStream_t. The guard (a
// heap object behind the shim) is made only where the device must change.
template <typename Launch>
void on_device(int32_t device, const Launch& launch) {
  std::optional<torch::stable::accelerator::DeviceGuard> device_guard;
  if (torch::stable::accelerator::getCurrentDeviceIndex() != device) device_guard.emplace(device);
  void* stream = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(device, &stream));
  launch(LaunchTarget{static_cast<cudaStream_t>(stream), device});
}

}  // namespace gdn::gpu
