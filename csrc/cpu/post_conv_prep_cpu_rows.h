// The CPU row kernel, written once against at::vec::Vectorized. Each of
// post_conv_prep_cpu_{default,avx2,avx512}.cpp defines CPU_CAPABILITY (and
// sets the target) and includes this file once, which puts one copy per ISA
// in gdn::cpu::<ISA>.
//
// Every path, row-major or not, normalises a head through the same
// function on K contiguous elements, so q and k are bit-identical whatever
// the input layout (SPEC.md: a view gives the same result as its contiguous
// copy).
// at::vec's inline functions return vector types by value, which -Wpsabi
// reports; the warning says nothing about this file.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#pragma GCC diagnostic pop

namespace gdn {

// The gate math (post_conv_prep_math.h) on a vector of lanes. exp and log1p
// are Sleef's 1-ulp versions on AVX2/AVX512 and the C library's otherwise.
template <>
struct GateMath<at::vec::Vectorized<float>> {
  using Vec = at::vec::Vectorized<float>;
  static Vec exp(const Vec& x) { return x.exp(); }
  static Vec log1p(const Vec& x) { return x.log1p(); }
  static Vec neg_abs(const Vec& x) { return x.abs().neg(); }
  static Vec neg(const Vec& x) { return x.neg(); }
  static Vec max0(const Vec& x) { return at::vec::maximum(x, Vec(0.f)); }
  static Vec above_or(const Vec& x, float threshold, const Vec& otherwise) {
    return Vec::blendv(otherwise, x, x > Vec(threshold));
  }
};

}  // namespace gdn

namespace gdn::cpu {
namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;
using FloatVec = Vectorized<float>;

// One step handles two float vectors' worth of elements: one Vectorized<T>
// of a 16-bit type converts to exactly two float vectors.
constexpr int64_t kFloatLanes = FloatVec::size();
constexpr int64_t kChunk = 2 * kFloatLanes;

// One full vector to out. A streaming store (kStream) writes the line
// without first reading it for ownership, as a plain store does: on the
// build machine a copy moves 38 GB/s with streaming stores and 27 GB/s
// without (NOTES.md), and the op's outputs are half its bytes. at::vec has
// no streaming store, so this is the one ISA intrinsic in the kernel.
// Streaming stores need an address aligned to the vector; others store
// plainly.
template <bool kStream, typename V>
inline void store_vec(typename V::value_type* out, const V& x) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  if constexpr (kStream) {
    if (reinterpret_cast<uintptr_t>(out) % sizeof(V) == 0) {
#if defined(CPU_CAPABILITY_AVX512)
      static_assert(sizeof(V) == sizeof(__m512i));
      __m512i bits;
      std::memcpy(&bits, &x, sizeof(bits));
      _mm512_stream_si512(reinterpret_cast<__m512i*>(out), bits);
#else
      static_assert(sizeof(V) == sizeof(__m256i));
      __m256i bits;
      std::memcpy(&bits, &x, sizeof(bits));
      _mm256_stream_si256(reinterpret_cast<__m256i*>(out), bits);
#endif
      return;
    }
  }
#endif
  x.store(out);
}

// Streaming stores are weakly ordered: each task fences its own before
// at::parallel_for reports it done, so the caller sees every output.
inline void fence_streaming_stores() {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  _mm_sfence();
#endif
}

// out[0, n) = x[0, n), with streaming stores where kStream.
template <bool kStream, typename T>
inline void copy_elements(const T* x, T* out, int64_t n) {
  if constexpr (!kStream) {
    std::memcpy(out, x, n * sizeof(T));
  } else {
    using V = Vectorized<T>;
    int64_t i = 0;
    for (; i + V::size() <= n; i += V::size()) store_vec<true>(out + i, V::loadu(x + i));
    if (i < n) V::loadu(x + i, n - i).store(out + i, n - i);
  }
}

// Elements [0, n) of x, n <= kChunk, as two float vectors; zeros past n.
template <typename T>
inline std::tuple<FloatVec, FloatVec> load_chunk(const T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (n == kChunk) return {FloatVec::loadu(x), FloatVec::loadu(x + kFloatLanes)};
    return {FloatVec::loadu(x, std::min(n, kFloatLanes)),
            n > kFloatLanes ? FloatVec::loadu(x + kFloatLanes, n - kFloatLanes)
                            : FloatVec(0.f)};
  } else {
    static_assert(Vectorized<T>::size() == kChunk);
    return at::vec::convert_to_float<T>(n == kChunk ? Vectorized<T>::loadu(x)
                                                    : Vectorized<T>::loadu(x, n));
  }
}

// Rounds (lo, hi) to T and stores elements [0, n) of them, n <= kChunk.
template <bool kStream, typename T>
inline void store_chunk(T* out, const FloatVec& lo, const FloatVec& hi, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (n == kChunk) {
      store_vec<kStream>(out, lo);
      store_vec<kStream>(out + kFloatLanes, hi);
      return;
    }
    lo.store(out, std::min(n, kFloatLanes));
    if (n > kFloatLanes) hi.store(out + kFloatLanes, n - kFloatLanes);
  } else {
    const Vectorized<T> packed = at::vec::convert_from_float<T>(lo, hi);
    if (n == kChunk) {
      store_vec<kStream>(out, packed);
    } else {
      packed.store(out, n);
    }
  }
}

// Sum of squares in kChunk float lanes, then one fixed reduction: the
// rounding error grows with n / kChunk rather than n, which keeps float32
// q/k inside SPEC's bound for K in the hundreds.
template <typename T>
inline float sum_of_squares(const T* x, int64_t n) {
  FloatVec acc_lo(0.f), acc_hi(0.f);
  for (int64_t i = 0; i < n; i += kChunk) {
    auto [lo, hi] = load_chunk(x + i, std::min(kChunk, n - i));
    acc_lo = at::vec::fmadd(lo, lo, acc_lo);
    acc_hi = at::vec::fmadd(hi, hi, acc_hi);
  }
  return at::vec::vec_reduce_all<float>(
      [](const FloatVec& x, const FloatVec& y) { return x + y; }, acc_lo + acc_hi);
}

// out[0, n) = x[0, n) * scale, rounded to T.
template <bool kStream, typename T>
inline void scale_head(const T* x, const FloatVec& scale, T* out, int64_t n) {
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t m = std::min(kChunk, n - i);
    auto [lo, hi] = load_chunk(x + i, m);
    store_chunk<kStream>(out + i, lo * scale, hi * scale, m);
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
template <bool kStream>
void gates_of_rows(const PostConvPrepParams& p, int64_t begin, int64_t end) {
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
    for (int64_t i = 0; i < m; i += kFloatLanes) {
      const int64_t n = std::min(kFloatLanes, m - i);
      const FloatVec g =
          decay_gate(FloatVec::loadu(x + i, n), FloatVec::loadu(A_log + i, n), p.output_g_exp);
      const FloatVec beta = sigmoid(FloatVec::loadu(b + i, n));
      if (n == kFloatLanes) {
        store_vec<kStream>(p.g + e0 + i, g);
        store_vec<kStream>(p.beta + e0 + i, beta);
      } else {
        g.store(p.g + e0 + i, n);
        beta.store(p.beta + e0 + i, n);
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
  switch (p.conv_kind) {
    case ScalarKind::kBFloat16:
      return rows<c10::BFloat16>(p, begin, end, stream_stores);
    case ScalarKind::kFloat16:
      return rows<c10::Half>(p, begin, end, stream_stores);
    default:
      return rows<float>(p, begin, end, stream_stores);
  }
}

}  // namespace CPU_CAPABILITY
}  // namespace gdn::cpu
