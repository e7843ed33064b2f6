// How fast the memory structures that op 2's prefill kernel has or could
// have copy its bytes, with no arithmetic: x [T, 16 KB rows] (the
// (16,32,128,128) bf16 conv input) to an output of the same bytes, T = 32768
// by default (537 MB each way). Plain copies, warp strips, op 2's ring of
// cp.async rows (and deeper ones), op 2's own pattern (items of rows plus the
// halo, q/k/v rows of 4/4/8 KB) and bulk (TMA) copies through mbarriers; CUDA
// events, best of 20. benchmarks/NOTES.md ("Op 2, seventh pass") has the
// H200's numbers.
//   nvcc -O3 -std=c++17 -arch=sm_90 -o copy_patterns benchmarks/copy_patterns.cu
//   ./copy_patterns [T]
#include <cuda_runtime.h>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <cstring>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1);} } while (0)

constexpr int kRowU4 = 1024;  // 16 KB rows
constexpr int kThreads = 256;

__global__ void __launch_bounds__(256) k_copy(const uint4* __restrict__ x, uint4* __restrict__ y, int64_t n) {
  int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x);
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (; i + 3 * step < n; i += 4 * step) {
    uint4 a = x[i], b = x[i + step], c = x[i + 2 * step], d = x[i + 3 * step];
    y[i] = a; y[i + step] = b; y[i + 2 * step] = c; y[i + 3 * step] = d;
  }
  for (; i < n; i += step) y[i] = x[i];
}

// Op 2's warp items: rows [g*R, g*R+R) of a 512-byte column strip, grid-stride;
// body(src, dst) with this lane's first element in x and y.
template <typename Body>
__device__ __forceinline__ void for_each_strip(const uint4* x, uint4* y, int T, int R, const Body& body) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int items = (T / R) * (kRowU4 / 32);
  for (int item = blockIdx.x * 8 + warp; item < items; item += gridDim.x * 8) {
    const int64_t offset = int64_t(item / 32) * R * kRowU4 + (item % 32) * 32 + lane;
    body(x + offset, y + offset);
  }
}

// Warp strips through registers, 4 rows at a time.
__global__ void __launch_bounds__(256) k_strip(const uint4* __restrict__ x, uint4* __restrict__ y, int T, int R) {
  extern __shared__ uint4 pad[];
  for_each_strip(x, y, T, R, [&](const uint4* src, uint4* dst) {
    for (int r = 0; r < R; r += 4) {
      uint4 a = src[0], b = src[kRowU4], c = src[2 * kRowU4], d = src[3 * kRowU4];
      dst[0] = a; dst[kRowU4] = b; dst[2 * kRowU4] = c; dst[3 * kRowU4] = d;
      src += 4 * kRowU4; dst += 4 * kRowU4;
    }
  });
  if (threadIdx.x == 1000) pad[0] = uint4{};
}

__device__ __forceinline__ void cp16(void* smem, const void* g) {
  uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(g) : "memory");
}
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void waitg() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// Op 2's ring: per-thread ring of kSlots slots, chunks of kC rows, kA chunks ahead (after a
// pad of padU4 uint4 that stands for the weights).
template <int kSlots, int kC, int kA>
__global__ void __launch_bounds__(256) k_ring(const uint4* __restrict__ x, uint4* __restrict__ y, int T, int R, int padU4) {
  extern __shared__ uint4 smem[];
  uint4* ring = smem + padU4 + threadIdx.x;
  for_each_strip(x, y, T, R, [&](const uint4* src, uint4* dst) {
    int fr = 0;
    auto fetch = [&] {
      if (fr < R) {
#pragma unroll
        for (int u = 0; u < kC; ++u) cp16(ring + ((fr + u) % kSlots) * kThreads, src + int64_t(fr + u) * kRowU4);
      }
      fr += kC;
      commit();
    };
#pragma unroll
    for (int a = 0; a < kA; ++a) fetch();
    for (int r = 0; r < R; r += kC) {
      fetch();
      waitg<kA>();
#pragma unroll
      for (int u = 0; u < kC; ++u) dst[int64_t(r + u) * kRowU4] = ring[((r + u) % kSlots) * kThreads];
    }
    waitg<0>();
  });
}

// Op 2's own pattern: items of R rows (R % 4 == 0 not required: the last chunk is partial)
// of a 512-byte column strip, the W-1 = 3 rows before the item as a halo, outputs split into
// q (4 KB rows), k (4 KB rows), v (8 KB rows); one work index a block (grid = blocks needed).
__global__ void __launch_bounds__(256, 2) k_qkv(const uint4* __restrict__ x, uint4* __restrict__ q, uint4* __restrict__ k,
                                                uint4* __restrict__ v, int T, int R, int halo) {
  extern __shared__ uint4 smem[];
  uint4* ring = smem + 2560 + threadIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int groups = (T + R - 1) / R;
  const int items = groups * 32;
  const int item = blockIdx.x * 8 + warp;
  if (item >= items) return;
  const int g = item / 32, cw = item % 32;
  const int c = cw * 32 + lane;
  const int first = g * R;
  const int rows = min(R, T - first);
  const uint4* src = x + int64_t(first) * kRowU4 + c;
  uint4* dst;
  int64_t ostride;
  if (c < 256) { dst = q + int64_t(first) * 256 + c; ostride = 256; }
  else if (c < 512) { dst = k + int64_t(first) * 256 + (c - 256); ostride = 256; }
  else { dst = v + int64_t(first) * 512 + (c - 512); ostride = 512; }
  if (halo) {
    for (int r = 1; r <= 3; ++r)
      if (first - r >= 0) cp16(ring + (16 - r) * kThreads, src - int64_t(r) * kRowU4);
  }
  int fr = 0;
  auto fetch = [&] {
#pragma unroll
    for (int u = 0; u < 4; ++u)
      if (fr + u < rows) cp16(ring + ((fr + u) & 15) * kThreads, src + int64_t(fr + u) * kRowU4);
    fr += 4;
    commit();
  };
  fetch(); fetch();
  for (int r = 0; r < rows; r += 4) {
    fetch();
    waitg<2>();
#pragma unroll
    for (int u = 0; u < 4; ++u)
      if (r + u < rows) dst[int64_t(r + u) * ostride] = ring[((r + u) & 15) * kThreads];
  }
  waitg<0>();
}

// --- bulk (TMA 1-D) copies with mbarriers ---
__device__ __forceinline__ uint32_t sa(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ void mbar_init(uint64_t* b, int n) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(sa(b)), "r"(n) : "memory");
}
__device__ __forceinline__ void mbar_expect(uint64_t* b, uint32_t tx) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sa(b)), "r"(tx) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* b, uint32_t parity) {
  asm volatile(
      "{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra W;\n}\n" ::"r"(sa(b)),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* b) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(sa(dst)),
               "l"(src), "r"(bytes), "r"(sa(b))
               : "memory");
}
__device__ __forceinline__ void bulk_store(void* dst, const void* src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst), "r"(sa(src)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory"); }
template <int N> __device__ __forceinline__ void bulk_wait() { asm volatile("cp.async.bulk.wait_group %0;" ::"n"(N) : "memory"); }
__device__ __forceinline__ void fence_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// Block item: rows [g*R, g*R+R) x 4 KB strip (8 warps x 512 B). Stage: 4 rows of 4 KB loaded by
// bulk copies (one thread), kIn stages in a ring. kBulkStore: outputs go through an out stage (2 of
// them) and leave by bulk stores; else st.global from registers.
template <int kIn, bool kBulkStore>
__global__ void __launch_bounds__(256, 2) k_tma(const uint4* __restrict__ x, uint4* __restrict__ y, int T, int R) {
  extern __shared__ __align__(128) uint4 smem[];
  __shared__ __align__(8) uint64_t full[kIn];
  constexpr int kStageU4 = 4 * 256;  // 4 rows x 4 KB
  uint4* in = smem;
  uint4* out = smem + kIn * kStageU4;
  const int tid = threadIdx.x;
  const int items = (T / R) * (kRowU4 / 256);
  const int spi = R / 4;  // stages an item
  const int my_items = items > (int)blockIdx.x ? (items - 1 - blockIdx.x) / gridDim.x + 1 : 0;
  const int total = my_items * spi;
  if (tid == 0) {
    for (int s = 0; s < kIn; ++s) mbar_init(&full[s], 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  auto src_of = [&](int n) {
    const int item = blockIdx.x + (n / spi) * gridDim.x;
    const int g = item / 4, strip = item % 4;
    return x + (int64_t(g) * R + (n % spi) * 4) * kRowU4 + strip * 256;
  };
  auto dst_of = [&](int n) {
    const int item = blockIdx.x + (n / spi) * gridDim.x;
    const int g = item / 4, strip = item % 4;
    return y + (int64_t(g) * R + (n % spi) * 4) * kRowU4 + strip * 256;
  };
  auto issue = [&](int n) {
    uint64_t* b = &full[n % kIn];
    mbar_expect(b, 4 * 4096);
    const uint4* s = src_of(n);
    for (int u = 0; u < 4; ++u) bulk_load(in + (n % kIn) * kStageU4 + u * 256, s + u * kRowU4, 4096, b);
  };
  if (tid == 0) for (int n = 0; n < (kIn < total ? kIn : total); ++n) issue(n);
  for (int n = 0; n < total; ++n) {
    const int slot = n % kIn;
    mbar_wait(&full[slot], (n / kIn) & 1);
    const uint4* st = in + slot * kStageU4;
    if constexpr (kBulkStore) {
      if (tid == 0) bulk_wait_read<1>();
      __syncthreads();  // the bulk store that read out stage n % 2 is done
      uint4* o = out + (n & 1) * kStageU4;
#pragma unroll
      for (int u = 0; u < 4; ++u) o[u * 256 + tid] = st[u * 256 + tid];
      fence_async();
      __syncthreads();
      if (tid == 0) {
        uint4* d = dst_of(n);
        for (int u = 0; u < 4; ++u) bulk_store(d + u * kRowU4, o + u * 256, 4096);
        bulk_commit();
        if (n + kIn < total) issue(n + kIn);
      }
    } else {
      uint4* d = dst_of(n);
      uint4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = st[u * 256 + tid];
      __syncthreads();  // every thread has read the slot
      if (tid == 0 && n + kIn < total) issue(n + kIn);
#pragma unroll
      for (int u = 0; u < 4; ++u) d[u * kRowU4 + tid] = v[u];
    }
  }
  if constexpr (kBulkStore) {
    if (tid == 0) bulk_wait<0>();
  }
}

template <typename F>
float time_it(F f) {
  cudaEvent_t a, b;
  cudaEventCreate(&a); cudaEventCreate(&b);
  f(); f();
  CK(cudaDeviceSynchronize());
  float best = 1e30f;
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(a);
    f();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms; cudaEventElapsedTime(&ms, a, b);
    best = std::min(best, ms);
  }
  CK(cudaGetLastError());
  return best * 1000.f;
}

int main(int argc, char** argv) {
  const int T = argc > 1 ? atoi(argv[1]) : 32768;
  const int64_t n = int64_t(T) * kRowU4;
  const size_t bytes = n * 16;
  uint4 *x, *y;
  CK(cudaMalloc(&x, bytes)); CK(cudaMalloc(&y, bytes));
  CK(cudaMemset(x, 1, bytes));
  int sms; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  auto check = [&](const char* name, float us) {
    std::vector<uint4> a(4096), b(4096);
    // spot-check a few rows
    bool ok = true;
    for (int64_t off : {int64_t(0), n / 3 * 1, n - 4096}) {
      CK(cudaMemcpy(a.data(), x + off, 4096 * 16, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(b.data(), y + off, 4096 * 16, cudaMemcpyDeviceToHost));
      ok = ok && memcmp(a.data(), b.data(), 4096 * 16) == 0;
    }
    printf("%-34s %9.2f us  %6.3f TB/s  %s\n", name, us, 2.0 * bytes / us / 1e6, ok ? "" : "MISMATCH");
    CK(cudaMemset(y, 0, bytes));
  };
  // Fill x with a pattern.
  {
    std::vector<uint32_t> h(bytes / 4 > (1 << 24) ? (1 << 24) : bytes / 4);
    for (size_t i = 0; i < h.size(); ++i) h[i] = uint32_t(i * 2654435761u);
    for (size_t off = 0; off < bytes; off += h.size() * 4)
      CK(cudaMemcpy(reinterpret_cast<char*>(x) + off, h.data(), std::min(h.size() * 4, bytes - off), cudaMemcpyHostToDevice));
  }
  printf("T = %d, %.1f MB each way, %d SMs\n", T, bytes / 1e6, sms);
  check("cudaMemcpy D2D", time_it([&] { cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice); }));
  for (int g : {sms * 4, sms * 8, sms * 16})
    { char nm[64]; snprintf(nm, 64, "copy grid %d", g); check(nm, time_it([&] { k_copy<<<g, 256>>>(x, y, n); })); }
  const int R = 64;
  for (int bps : {2, 4, 8}) {
    const int sm = bps == 2 ? 100 * 1024 : bps == 4 ? 50 * 1024 : 0;
    CK(cudaFuncSetAttribute(k_strip, cudaFuncAttributeMaxDynamicSharedMemorySize, 110 * 1024));
    char nm[64]; snprintf(nm, 64, "strip regs %d blocks/SM", bps);
    check(nm, time_it([&] { k_strip<<<sms * bps, 256, sm>>>(x, y, T, R); }));
  }
#define RING(S, C, A, PAD, BPS)                                                              \
  {                                                                                           \
    const int sm = (PAD + S * 256) * 16;                                                      \
    CK(cudaFuncSetAttribute(k_ring<S, C, A>, cudaFuncAttributeMaxDynamicSharedMemorySize, sm)); \
    char nm[80]; snprintf(nm, 80, "ring S=%d C=%d A=%d pad=%dKB %d/SM", S, C, A, PAD / 64, BPS); \
    check(nm, time_it([&] { k_ring<S, C, A><<<sms * BPS, 256, sm>>>(x, y, T, R, PAD); }));    \
  }
  RING(16, 4, 2, 2560, 2) RING(20, 4, 3, 1280, 2) RING(24, 4, 4, 0, 2) RING(32, 4, 6, 0, 1)
  {
    const int sm = (2560 + 16 * 256) * 16;
    CK(cudaFuncSetAttribute(k_qkv, cudaFuncAttributeMaxDynamicSharedMemorySize, sm));
    uint4* q = y; uint4* k = y + int64_t(T) * 256; uint4* v = y + int64_t(T) * 512;
    for (int RR : {252, 64}) for (int halo : {0, 1}) {
      const int groups = (T + RR - 1) / RR;
      const int grid = (groups * 32 + 7) / 8;
      char nm[80]; snprintf(nm, 80, "qkv R=%d halo=%d grid=%d", RR, halo, grid);
      const float us = time_it([&] { k_qkv<<<grid, 256, sm>>>(x, q, k, v, T, RR, halo); });
      // Row r of x is q's row r, then k's, then v's.
      bool ok = true;
      for (int64_t r : {int64_t(0), int64_t(T / 3), int64_t(T - 1)}) {
        std::vector<uint4> a(kRowU4), b(kRowU4);
        CK(cudaMemcpy(a.data(), x + r * kRowU4, kRowU4 * 16, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(b.data(), q + r * 256, 256 * 16, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(b.data() + 256, k + r * 256, 256 * 16, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(b.data() + 512, v + r * 512, 512 * 16, cudaMemcpyDeviceToHost));
        ok = ok && memcmp(a.data(), b.data(), kRowU4 * 16) == 0;
      }
      printf("%-34s %9.2f us  %6.3f TB/s  %s\n", nm, us, 2.0 * bytes / us / 1e6, ok ? "" : "MISMATCH");
      CK(cudaMemset(y, 0, bytes));
    }
  }
#define TMA(KIN, BS, BPS)                                                                         \
  {                                                                                             \
    const int sm = (KIN + (BS ? 2 : 0)) * 16384;                                                \
    CK(cudaFuncSetAttribute(k_tma<KIN, BS>, cudaFuncAttributeMaxDynamicSharedMemorySize, sm));  \
    char nm[64]; snprintf(nm, 64, "tma in=%d bulkstore=%d %d/SM", KIN, BS, BPS);                \
    check(nm, time_it([&] { k_tma<KIN, BS><<<sms * BPS, 256, sm>>>(x, y, T, R); }));            \
  }
  TMA(2, false, 2) TMA(4, false, 2) TMA(4, false, 3) TMA(4, true, 2)
  return 0;
}
