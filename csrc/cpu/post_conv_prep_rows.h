// The CPU row kernel, written once against the vector layer (vec.h). Each of
// kernels_{default,avx2,avx512}.cpp defines CPU_CAPABILITY and
// GDN_VEC_BYTES (and sets the target) and includes this file once, which
// puts one copy per ISA in gdn::cpu::<ISA>.
//
// Every path, row-major or not, normalises a head through the same
// function on K contiguous elements, so q and k are bit-identical whatever
// the input layout (SPEC.md: a view gives the same result as its contiguous
// copy).
#include <algorithm>
#include <cstdlib>
#include <memory>

#include "kernels.h"
#include "vec.h"

namespace gdn::cpu {
namespace CPU_CAPABILITY {
namespace {

// One step handles 16 elements, in 16 / kLanes vectors, whatever the
// instruction set: the sum of squares then runs in 16 float lanes, so its
// rounding error grows with n / 16 rather than n, which keeps float32 q/k
// inside SPEC's bound for K in the hundreds.
constexpr int64_t kChunk = 16;
constexpr int kVecsPerChunk = kChunk / kLanes;

struct Chunk {
  FloatVec x[kVecsPerChunk];
};

// Elements [0, n) of x, n <= kChunk, as float; zeros past n.
template <typename T>
inline Chunk load_chunk(const T* x, int64_t n) {
  Chunk c;
  for (int i = 0; i < kVecsPerChunk; ++i) {
    const int64_t m = n - i * kLanes;
    c.x[i] = m >= kLanes ? load(x + i * kLanes) : m > 0 ? load(x + i * kLanes, m) : FloatVec(0.f);
  }
  return c;
}

// Rounds c * scale to T and stores elements [0, n) of it, n <= kChunk.
template <bool kStream, typename T>
inline void store_scaled_chunk(T* out, const Chunk& c, const FloatVec& scale, int64_t n) {
  for (int i = 0; i < kVecsPerChunk; ++i) {
    const int64_t m = n - i * kLanes;
    if (m >= kLanes) {
      store<kStream>(out + i * kLanes, c.x[i] * scale);
    } else if (m > 0) {
      store(out + i * kLanes, c.x[i] * scale, m);
    }
  }
}

// out[0, n) = x[0, n), with streaming stores where kStream: the unaligned
// head and the tail are copied plainly, the aligned middle streamed.
template <bool kStream, typename T>
inline void copy_elements(const T* x, T* out, int64_t n) {
  size_t bytes = n * sizeof(T);
  if constexpr (kStream) {
    const char* src = reinterpret_cast<const char*>(x);
    char* dst = reinterpret_cast<char*>(out);
    const size_t head = std::min<size_t>(bytes, (kVecBytes - reinterpret_cast<uintptr_t>(dst) % kVecBytes) % kVecBytes);
    std::memcpy(dst, src, head);
    size_t i = head;
    for (; i + kVecBytes <= bytes; i += kVecBytes) stream_raw(dst + i, load_raw<RawFloat>(src + i));
    std::memcpy(dst + i, src + i, bytes - i);
  } else {
    std::memcpy(out, x, bytes);
  }
}

// Sum of squares in kChunk float lanes, then one fixed reduction.
template <typename T>
inline float sum_of_squares(const T* x, int64_t n) {
  Chunk acc;
  for (int i = 0; i < kVecsPerChunk; ++i) acc.x[i] = FloatVec(0.f);
  for (int64_t i = 0; i < n; i += kChunk) {
    const Chunk c = load_chunk(x + i, std::min(kChunk, n - i));
    for (int j = 0; j < kVecsPerChunk; ++j) acc.x[j] = acc.x[j] + c.x[j] * c.x[j];
  }
  FloatVec total = acc.x[0];
  for (int j = 1; j < kVecsPerChunk; ++j) total = total + acc.x[j];
  return total.sum();
}

// out[0, n) = x[0, n) * scale, rounded to T.
template <bool kStream, typename T>
inline void scale_head(const T* x, const FloatVec& scale, T* out, int64_t n) {
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t m = std::min(kChunk, n - i);
    store_scaled_chunk<kStream>(out + i, load_chunk(x + i, m), scale, m);
  }
}

// `count` q or k heads of K contiguous elements: head i is read at
// x + i * x_step and written at out + i * out_step, L2-normalised or copied.
// The sums of a group of heads come first and their scales after: one
// head's reduce -> sqrt -> divide -> scale chain is long, and grouping lets
// the core overlap the chains of different heads.
template <bool kStream, typename T>
void qk_heads(const T* x, int64_t x_step, T* out, int64_t out_step, int64_t count,
              int64_t K, bool apply_l2norm) {
  if (!apply_l2norm) {
    for (int64_t i = 0; i < count; ++i) {
      copy_elements<kStream>(x + i * x_step, out + i * out_step, K);
    }
    return;
  }
  constexpr int64_t kGroup = 16;
  float scale[kGroup];
  for (int64_t g0 = 0; g0 < count; g0 += kGroup) {
    const int64_t m = std::min(kGroup, count - g0);
    for (int64_t i = 0; i < m; ++i) {
      scale[i] = l2norm_scale(sum_of_squares(x + (g0 + i) * x_step, K));
    }
    for (int64_t i = 0; i < m; ++i) {
      scale_head<kStream>(x + (g0 + i) * x_step, FloatVec(scale[i]), out + (g0 + i) * out_step,
                          K);
    }
  }
}

// g and beta for rows [begin, end). Those are one contiguous span of the
// [L, HV] outputs, so the gate math runs on full vectors whatever HV is; a
// and b (any strides and dtypes) are first gathered as float.
//
// flatten: the gate templates (post_conv_prep_math.h) are defined before
// this file's `#pragma GCC target`, so on their own they are compiled for
// the baseline ISA, cannot inline this ISA's vector functions and would call
// them across an ABI boundary. Inlined here, all of it is this ISA's code.
template <bool kStream>
__attribute__((flatten)) void gates_of_rows(const PostConvPrepParams& p, int64_t begin, int64_t end) {
  constexpr int64_t kSpan = 256;
  alignas(64) float x[kSpan], A_log[kSpan], b[kSpan];
  int64_t row = begin, hv = 0;
  for (int64_t e0 = begin * p.HV, e_end = end * p.HV; e0 < e_end; e0 += kSpan) {
    const int64_t m = std::min(kSpan, e_end - e0);
    for (int64_t i = 0; i < m; ++i) {
      const GateInputs in = load_gate_inputs(p, row, hv);
      x[i] = in.x;
      A_log[i] = in.A_log;
      b[i] = in.b;
      if (++hv == p.HV) {
        hv = 0;
        ++row;
      }
    }
    for (int64_t i = 0; i < m; i += kLanes) {
      const int64_t n = std::min<int64_t>(kLanes, m - i);
      const FloatVec g = decay_gate(load(x + i, n), load(A_log + i, n), p.output_g_exp);
      const FloatVec beta = sigmoid(load(b + i, n));
      if (n == kLanes) {
        store<kStream>(p.g + e0 + i, g);
        store<kStream>(p.beta + e0 + i, beta);
      } else {
        store(p.g + e0 + i, g, n);
        store(p.beta + e0 + i, beta, n);
      }
    }
  }
}

// Features are contiguous within a row: work on the input in place.
template <bool kStream, typename T>
void rows_unit_feature_stride(const PostConvPrepParams& p, int64_t begin, int64_t end) {
  const T* conv = static_cast<const T*>(p.conv);
  T* q = static_cast<T*>(p.q);
  T* k = static_cast<T*>(p.k);
  const int64_t qk_width = 2 * p.H * p.K, v_width = p.HV * p.V;
  for (int64_t row = begin; row < end; ++row) {
    const T* src = conv + row * p.conv_stride_row;
    qk_heads<kStream>(src, p.K, q + row * p.H * p.K, p.K, p.H, p.K, p.apply_l2norm);
    qk_heads<kStream>(src + p.H * p.K, p.K, k + row * p.H * p.K, p.K, p.H, p.K,
                      p.apply_l2norm);
    copy_elements<kStream>(src + qk_width, static_cast<T*>(p.v) + row * v_width, v_width);
  }
  gates_of_rows<kStream>(p, begin, end);
}

// Copies features [f0, f0 + width) of rows [0, n) of src into the row-major
// tile. A channel-first input (short row stride) is read along tokens, eight
// feature rows at a time so each write to the tile is 8 elements long.
template <typename T>
void gather_tile(const T* src, int64_t stride_row, int64_t stride_feat, int64_t f0,
                 int64_t width, int64_t n, T* tile) {
  src += f0 * stride_feat;
  if (std::abs(stride_row) < std::abs(stride_feat)) {
    constexpr int64_t kFeatures = 8;
    for (int64_t fb = 0; fb < width; fb += kFeatures) {
      const int64_t m = std::min(kFeatures, width - fb);
      const T* column = src + fb * stride_feat;
      for (int64_t j = 0; j < n; ++j) {
        T* out = tile + j * width + fb;
        for (int64_t f = 0; f < m; ++f) out[f] = column[f * stride_feat + j * stride_row];
      }
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const T* row = src + j * stride_row;
      for (int64_t f = 0; f < width; ++f) tile[j * width + f] = row[f * stride_feat];
    }
  }
}

// Any other layout (channel-first above all): gather a tile of rows x one
// head (or one slice of v) into a row-major buffer, then run the row-major
// code on it. A channel-first input is read in runs of 512 bytes along
// tokens: shorter runs touch a new page per cache line and thrash the TLB.
template <bool kStream, typename T>
void rows_strided(const PostConvPrepParams& p, int64_t begin, int64_t end) {
  constexpr int64_t kTileRows = 512 / sizeof(T);
  constexpr int64_t kVSlice = 256;
  const T* conv = static_cast<const T*>(p.conv);
  const int64_t qk_width = 2 * p.H * p.K, v_width = p.HV * p.V;
  const int64_t v_slice = std::min(kVSlice, v_width);
  auto tile = std::make_unique<T[]>(kTileRows * std::max(p.K, v_slice));
  for (int64_t r0 = begin; r0 < end; r0 += kTileRows) {
    const int64_t n = std::min(kTileRows, end - r0);
    const T* src = conv + r0 * p.conv_stride_row;
    for (int64_t h = 0; h < 2 * p.H; ++h) {
      gather_tile(src, p.conv_stride_row, p.conv_stride_feat, h * p.K, p.K, n, tile.get());
      T* out = h < p.H ? static_cast<T*>(p.q) + (r0 * p.H + h) * p.K
                       : static_cast<T*>(p.k) + (r0 * p.H + h - p.H) * p.K;
      qk_heads<kStream>(tile.get(), p.K, out, p.H * p.K, n, p.K, p.apply_l2norm);
    }
    for (int64_t c0 = 0; c0 < v_width; c0 += v_slice) {
      const int64_t width = std::min(v_slice, v_width - c0);
      gather_tile(src, p.conv_stride_row, p.conv_stride_feat, qk_width + c0, width, n,
                  tile.get());
      for (int64_t j = 0; j < n; ++j) {
        copy_elements<kStream>(tile.get() + j * width,
                               static_cast<T*>(p.v) + (r0 + j) * v_width + c0, width);
      }
    }
  }
  gates_of_rows<kStream>(p, begin, end);
}

template <bool kStream, typename T>
void rows(const PostConvPrepParams& p, int64_t begin, int64_t end) {
  if (p.conv_stride_feat == 1) {
    rows_unit_feature_stride<kStream, T>(p, begin, end);
  } else {
    rows_strided<kStream, T>(p, begin, end);
  }
}

template <typename T>
void rows(const PostConvPrepParams& p, int64_t begin, int64_t end, bool stream_stores) {
  if (stream_stores) {
    rows<true, T>(p, begin, end);
    fence_streaming_stores();
  } else {
    rows<false, T>(p, begin, end);
  }
}

}  // namespace

void post_conv_prep_rows(const PostConvPrepParams& p, int64_t begin, int64_t end,
                         bool stream_stores) {
  dispatch_activation(p.conv_kind, [&](auto zero) {
    rows<decltype(zero)>(p, begin, end, stream_stores);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace gdn::cpu
