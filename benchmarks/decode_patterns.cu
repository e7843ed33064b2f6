// How fast the memory pattern of op 2's decode kernel moves its bytes with no
// arithmetic, as copy_patterns.cu does for the prefill: (16,32,128,128) bf16,
// D = 8192 features = 1024 packs of 16 bytes; a step of B one-token
// sequences; cache lines [N = B, D, 3] (48 bytes a pack-column, the
// benchmark's layout), the line of token t at perm[t] (a lookup, as
// cache_indices). A warp owns 32 pack-columns of a group of G tokens, one
// after another, as the kernel's work items do (B = 512: G = 8, one wave at
// two blocks an SM). Variants: loads only, stores only (and their parts), two
// tokens' loads first, the line packs through shared memory so that each
// access instruction covers 512 contiguous bytes; against a grid-stride copy
// and cudaMemcpy of the same bytes. CUDA events, best of 20.
// benchmarks/NOTES.md ("Op 2, eleventh pass") has the H200's numbers.
//   nvcc -O3 -std=c++17 -arch=sm_90 -o decode_patterns benchmarks/decode_patterns.cu
//   ./decode_patterns [B] [G]
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1);} } while (0)

constexpr int kPacks = 1024;  // packs a row of x
constexpr int kThreads = 256;

struct Args {
  const uint4* x; uint4* out; uint4* lines; const int* perm; int B, G;
};

__device__ __forceinline__ uint4 mix(uint4 a, uint4 b) { return {a.x ^ b.x, a.y ^ b.y, a.z ^ b.z, a.w ^ b.w}; }

enum Mode {
  kOp,              // the op's: lookup, line and x loads, q/k/v and new line stores, token by token
  kLoadsOnly,       // its loads
  kStoresOnly,      // its stores (line t, nothing loaded)
  kTwoTokensAhead,  // two tokens' loads before either's stores
  kQkvStoresOnly,   // the q/k/v stores alone
  kStoresStaged,    // kStoresOnly with the line packs through shared memory
  kLineStoresOnly,  // the line stores alone, 48 bytes a lane
  kOpStaged,        // kOp with the line loads and stores through shared memory
  kOpStoresStaged,  // kOp with the line stores through shared memory
};

template <Mode kMode>
__global__ void __launch_bounds__(kThreads) k_decode(Args a) {
  extern __shared__ uint4 hold[];  // holds the op's shared memory (two blocks an SM)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int strips = kPacks / 32;
  const int item = blockIdx.x * 8 + warp;
  const int groups = (a.B + a.G - 1) / a.G;
  if (item >= groups * strips) return;
  const int c = (item % strips) * 32 + lane;
  const int first = (item / strips) * a.G, last = min(first + a.G, a.B);
  uint4* const x_out = a.out;
  const auto line_of = [&](int t) { return a.lines + (int64_t(a.perm[t]) * kPacks + c) * 3; };
  const auto x_at = [&](int t) { return a.x[int64_t(t) * kPacks + c]; };
  if constexpr (kMode == kTwoTokensAhead) {
    for (int t = first; t < last; t += 2) {
      const int u = min(t + 1, last - 1);
      uint4* l0 = line_of(t); uint4* l1 = line_of(u);
      const uint4 p0 = l0[0], p1 = l0[1], p2 = l0[2], x0 = x_at(t);
      const uint4 q0 = l1[0], q1 = l1[1], q2 = l1[2], x1 = x_at(u);
      x_out[int64_t(t) * kPacks + c] = mix(x0, p0); l0[0] = p1; l0[1] = p2; l0[2] = x0;
      if (u != t) { x_out[int64_t(u) * kPacks + c] = mix(x1, q0); l1[0] = q1; l1[1] = q2; l1[2] = x1; }
    }
  } else if constexpr (kMode >= kQkvStoresOnly) {
    // The warp's 96 line packs (32 lanes x 3, lane-major in memory) through
    // shared memory: each 16-byte access instruction covers 512 contiguous bytes.
    uint4* stage = hold + warp * 96;
    constexpr bool kLoads = kMode == kOpStaged || kMode == kOpStoresStaged;
    for (int t = first; t < last; ++t) {
      const uint4 xv = kLoads ? x_at(t) : uint4{uint32_t(t), 1u, 2u, 3u};
      uint4* lb = kLoads ? a.lines + (int64_t(a.perm[t]) * kPacks + (c - lane)) * 3
                         : a.lines + (int64_t(t) * kPacks + (c - lane)) * 3;
      uint4 p0 = xv, p1 = xv, p2 = xv;
      if constexpr (kMode == kOpStaged) {
        const uint4 r0 = lb[lane], r1 = lb[32 + lane], r2 = lb[64 + lane];
        stage[lane] = r0; stage[32 + lane] = r1; stage[64 + lane] = r2; __syncwarp();
        p0 = stage[3 * lane]; p1 = stage[3 * lane + 1]; p2 = stage[3 * lane + 2]; __syncwarp();
      } else if constexpr (kMode == kOpStoresStaged) {
        uint4* l = lb + 3 * lane; p0 = l[0]; p1 = l[1]; p2 = l[2];
      }
      if constexpr (kMode != kLineStoresOnly) x_out[int64_t(t) * kPacks + c] = mix(xv, p0);
      if constexpr (kMode == kLineStoresOnly) {
        uint4* l = lb + 3 * lane; l[0] = p1; l[1] = p2; l[2] = xv;
      } else if constexpr (kMode != kQkvStoresOnly) {
        stage[3 * lane] = p1; stage[3 * lane + 1] = p2; stage[3 * lane + 2] = xv; __syncwarp();
        lb[lane] = stage[lane]; lb[32 + lane] = stage[32 + lane]; lb[64 + lane] = stage[64 + lane];
        __syncwarp();
      }
    }
  } else {
    uint4 acc{};
    for (int t = first; t < last; ++t) {
      if constexpr (kMode == kStoresOnly) {
        uint4* l = a.lines + (int64_t(t) * kPacks + c) * 3;
        const uint4 v{uint32_t(t), uint32_t(c), 1u, 2u};
        x_out[int64_t(t) * kPacks + c] = v; l[0] = v; l[1] = v; l[2] = v;
      } else {
        uint4* l = line_of(t);
        const uint4 p0 = l[0], p1 = l[1], p2 = l[2], xv = x_at(t);
        if constexpr (kMode == kLoadsOnly) {
          acc = mix(acc, mix(mix(p0, p1), mix(p2, xv)));
        } else {
          x_out[int64_t(t) * kPacks + c] = mix(xv, p0); l[0] = p1; l[1] = p2; l[2] = xv;
        }
      }
    }
    // Keeps the loads without storing their bytes.
    if (kMode == kLoadsOnly && acc.x == 0x12345678u && acc.y == 0x9abcdef0u) x_out[c] = acc;
  }
}

__global__ void k_copy(const uint4* __restrict__ x, uint4* __restrict__ y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) y[i] = x[i];
}

int main(int argc, char** argv) {
  const int B = argc > 1 ? atoi(argv[1]) : 512;
  int sms = 0; CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int strips = kPacks / 32, slots = sms * 16;
  const int G = argc > 2 ? atoi(argv[2]) : std::max(1, (B * strips + slots - 1) / slots);
  const int64_t row = int64_t(kPacks), line = 3 * row;
  uint4 *x, *out, *lines, *flush, *src, *dst; int* perm;
  CK(cudaMalloc(&x, B * row * 16)); CK(cudaMalloc(&out, B * row * 16));
  CK(cudaMalloc(&lines, B * line * 16)); CK(cudaMalloc(&perm, B * 4));
  const int64_t bytes = B * (row + line) * 16;  // each way: x + lines read, out + lines written
  CK(cudaMalloc(&src, bytes)); CK(cudaMalloc(&dst, bytes));
  const size_t flush_bytes = size_t(256) << 20; CK(cudaMalloc(&flush, flush_bytes));
  std::vector<int> h(B); std::iota(h.begin(), h.end(), 0); std::shuffle(h.begin(), h.end(), std::mt19937(1));
  CK(cudaMemcpy(perm, h.data(), B * 4, cudaMemcpyHostToDevice));
  CK(cudaMemset(x, 1, B * row * 16)); CK(cudaMemset(lines, 2, B * line * 16)); CK(cudaMemset(src, 3, bytes));
  const int smem = 100 * 1024;
  Args a{x, out, lines, perm, B, G};
  const int blocks = ((B + G - 1) / G * strips + 7) / 8;
  cudaEvent_t e0, e1; CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  const auto time = [&](const char* name, auto launch) {
    std::vector<float> ms;
    for (int r = 0; r < 21; ++r) {
      CK(cudaMemsetAsync(flush, r, flush_bytes));  // L2 holds none of the inputs
      CK(cudaEventRecord(e0)); launch(); CK(cudaEventRecord(e1)); CK(cudaEventSynchronize(e1));
      float m; CK(cudaEventElapsedTime(&m, e0, e1)); if (r) ms.push_back(m * 1000);
    }
    CK(cudaGetLastError());
    std::sort(ms.begin(), ms.end());
    printf("%-44s best %8.2f us  median %8.2f us\n", name, ms[0], ms[ms.size() / 2]);
  };
  for (auto* k : {k_decode<kOp>, k_decode<kLoadsOnly>, k_decode<kStoresOnly>, k_decode<kTwoTokensAhead>,
                  k_decode<kQkvStoresOnly>, k_decode<kStoresStaged>, k_decode<kLineStoresOnly>,
                  k_decode<kOpStaged>, k_decode<kOpStoresStaged>}) {
    CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  }
  printf("B = %d, G = %d tokens a warp, %d blocks, %.1f MB each way\n", B, G, blocks, bytes / 1e6);
  time("op pattern (token by token)", [&] { k_decode<kOp><<<blocks, kThreads, smem>>>(a); });
  time("op pattern, loads only", [&] { k_decode<kLoadsOnly><<<blocks, kThreads, smem>>>(a); });
  time("op pattern, stores only", [&] { k_decode<kStoresOnly><<<blocks, kThreads, smem>>>(a); });
  time("op pattern, two tokens' loads first", [&] { k_decode<kTwoTokensAhead><<<blocks, kThreads, smem>>>(a); });
  time("stores only: q/k/v alone", [&] { k_decode<kQkvStoresOnly><<<blocks, kThreads, smem>>>(a); });
  time("stores only: q/k/v + lines staged (512 B a store)", [&] { k_decode<kStoresStaged><<<blocks, kThreads, smem>>>(a); });
  time("stores only: lines direct (48 B a lane)", [&] { k_decode<kLineStoresOnly><<<blocks, kThreads, smem>>>(a); });
  time("op pattern, line loads and stores staged", [&] { k_decode<kOpStaged><<<blocks, kThreads, smem>>>(a); });
  time("op pattern, line stores staged", [&] { k_decode<kOpStoresStaged><<<blocks, kThreads, smem>>>(a); });
  time("op pattern, no shared memory held", [&] { k_decode<kOp><<<blocks, kThreads, 0>>>(a); });
  time("copy of the same bytes (grid-stride)", [&] { k_copy<<<sms * 8, 256>>>(src, dst, bytes / 16); });
  time("cudaMemcpy of the same bytes", [&] { CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); });
  return 0;
}
