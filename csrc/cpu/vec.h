// The CPU kernel's own small vector layer: a float vector of kLanes lanes on
// GCC/Clang vector extensions, with loads and stores that convert bfloat16
// and float16, streaming stores, and exp / log1p accurate to about an ulp.
// (The stable ABI has no at::vec.)
//
// Included once per instruction set, inside that file's `#pragma GCC
// target`, after it defines CPU_CAPABILITY (DEFAULT, AVX2, AVX512) and
// GDN_VEC_BYTES (16, 32, 64): each copy lives in gdn::cpu::<ISA>, so the
// copies' inline functions never meet at link time.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

#include "../post_conv_prep_math.h"

namespace gdn::cpu::CPU_CAPABILITY {

constexpr int kVecBytes = GDN_VEC_BYTES;
constexpr int kLanes = kVecBytes / 4;

using RawFloat = float __attribute__((vector_size(kVecBytes)));
using RawInt = int32_t __attribute__((vector_size(kVecBytes)));
using RawUInt = uint32_t __attribute__((vector_size(kVecBytes)));
using RawU16 = uint16_t __attribute__((vector_size(kVecBytes / 2)));

// Bytes to a vector and back, at any alignment.
template <typename Raw>
inline Raw load_raw(const void* p) {
  Raw r;
  std::memcpy(&r, p, sizeof(r));
  return r;
}

template <typename Raw>
inline void store_raw(void* p, const Raw& r) {
  std::memcpy(p, &r, sizeof(r));
}

template <typename To, typename From>
inline To bitcast(const From& x) {
  static_assert(sizeof(To) == sizeof(From));
  return load_raw<To>(&x);
}

// A store that bypasses the caches (no read for ownership first) where the
// address is aligned to the store's size and the instruction set has one;
// a plain store otherwise.
template <typename Raw>
inline void stream_raw(void* p, const Raw& r) {
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  if (reinterpret_cast<uintptr_t>(p) % sizeof(Raw) == 0) {
    if constexpr (sizeof(Raw) == 16) {
      _mm_stream_si128(static_cast<__m128i*>(p), bitcast<__m128i>(r));
      return;
    } else if constexpr (sizeof(Raw) == 32) {
      _mm256_stream_si256(static_cast<__m256i*>(p), bitcast<__m256i>(r));
      return;
#if defined(CPU_CAPABILITY_AVX512)
    } else if constexpr (sizeof(Raw) == 64) {
      _mm512_stream_si512(static_cast<__m512i*>(p), bitcast<__m512i>(r));
      return;
#endif
    }
  }
#endif
  store_raw(p, r);
}

// Streaming stores are weakly ordered: a task fences its own before it
// reports done, so that the caller sees every output.
inline void fence_streaming_stores() {
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  _mm_sfence();
#endif
}

template <bool kStream, typename Raw>
inline void put_raw(void* p, const Raw& r) {
  if constexpr (kStream) {
    stream_raw(p, r);
  } else {
    store_raw(p, r);
  }
}

struct FloatVec {
  RawFloat v;

  FloatVec() = default;
  explicit FloatVec(const RawFloat& r) : v(r) {}
  FloatVec(float x) : v(RawFloat{} + x) {}  // NOLINT: a scalar broadcasts, as in at::vec

  static FloatVec from_bits(const RawUInt& bits) { return FloatVec(bitcast<RawFloat>(bits)); }
  RawUInt bits() const { return bitcast<RawUInt>(v); }

  friend FloatVec operator+(const FloatVec& x, const FloatVec& y) { return FloatVec(x.v + y.v); }
  friend FloatVec operator-(const FloatVec& x, const FloatVec& y) { return FloatVec(x.v - y.v); }
  friend FloatVec operator*(const FloatVec& x, const FloatVec& y) { return FloatVec(x.v * y.v); }
  friend FloatVec operator/(const FloatVec& x, const FloatVec& y) { return FloatVec(x.v / y.v); }
  FloatVec operator-() const { return FloatVec(-v); }

  // The lanes' sum as a tree (lane i + lane i + width, width halving): a
  // chain of log2(kLanes) additions instead of kLanes, which a head's
  // normalisation waits on.
  float sum() const {
    float lanes[kLanes];
    store_raw(lanes, v);
    for (int width = kLanes / 2; width > 0; width /= 2) {
      for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
    }
    return lanes[0];
  }
};

// where(mask, x, y) lane by lane; the masks come from vector comparisons.
inline FloatVec where(const RawInt& mask, const FloatVec& x, const FloatVec& y) {
  return FloatVec(mask ? x.v : y.v);
}

// ---------------------------------------------------------------------------
// Loads of kLanes elements of T as float, and stores of a float vector as T
// (rounded to nearest even). Partial ones (n < kLanes) read or write only
// elements [0, n) and read zeros past n.

// The widening and narrowing between 16- and 32-bit lanes: one instruction
// each where the ISA has it (GCC's generic lowering of __builtin_convertvector
// splits them into halves and shuffles).
inline RawUInt widen(const RawU16& h) {
#if defined(CPU_CAPABILITY_AVX512)
  return bitcast<RawUInt>(_mm512_cvtepu16_epi32(bitcast<__m256i>(h)));
#elif defined(CPU_CAPABILITY_AVX2)
  return bitcast<RawUInt>(_mm256_cvtepu16_epi32(bitcast<__m128i>(h)));
#else
  return __builtin_convertvector(h, RawUInt);
#endif
}

// Each lane must hold a value below 2^16.
inline RawU16 narrow(const RawUInt& x) {
#if defined(CPU_CAPABILITY_AVX512)
  return bitcast<RawU16>(_mm512_cvtepi32_epi16(bitcast<__m512i>(x)));
#elif defined(CPU_CAPABILITY_AVX2)
  const __m256i v = bitcast<__m256i>(x);
  return bitcast<RawU16>(_mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
#else
  return __builtin_convertvector(x, RawU16);
#endif
}

inline FloatVec bf16_bits_to_float(const RawU16& h) {
  return FloatVec::from_bits(widen(h) << 16);
}

inline RawU16 float_to_bf16_bits(const FloatVec& x) {
  const RawUInt bits = x.bits();
  const RawUInt rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  // c10::BFloat16's NaN, so that both give the same bits.
  return narrow((x.v != x.v) ? RawUInt{} + 0x7fc0u : rounded);
}

inline FloatVec half_bits_to_float(const RawU16& h) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m512 f = _mm512_cvtph_ps(bitcast<__m256i>(h));
  return FloatVec(bitcast<RawFloat>(f));
#elif defined(CPU_CAPABILITY_AVX2)
  const __m256 f = _mm256_cvtph_ps(bitcast<__m128i>(h));
  return FloatVec(bitcast<RawFloat>(f));
#else
  float lanes[kLanes];
  for (int i = 0; i < kLanes; ++i) lanes[i] = static_cast<float>(c10::Half(h[i], c10::Half::from_bits()));
  return FloatVec(load_raw<RawFloat>(lanes));
#endif
}

inline RawU16 float_to_half_bits(const FloatVec& x) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m256i h = _mm512_cvtps_ph(bitcast<__m512>(x.v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return bitcast<RawU16>(h);
#elif defined(CPU_CAPABILITY_AVX2)
  const __m128i h = _mm256_cvtps_ph(bitcast<__m256>(x.v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return bitcast<RawU16>(h);
#else
  float lanes[kLanes];
  store_raw(lanes, x.v);
  RawU16 h;
  for (int i = 0; i < kLanes; ++i) h[i] = c10::Half(lanes[i]).x;
  return h;
#endif
}

template <typename T>
inline FloatVec load(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return FloatVec(load_raw<RawFloat>(p));
  } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return bf16_bits_to_float(load_raw<RawU16>(p));
  } else {
    return half_bits_to_float(load_raw<RawU16>(p));
  }
}

template <typename T>
inline FloatVec load(const T* p, int64_t n) {
  T lanes[kLanes];
  std::memset(static_cast<void*>(lanes), 0, sizeof(lanes));
  std::memcpy(static_cast<void*>(lanes), p, n * sizeof(T));
  return load(static_cast<const T*>(lanes));
}

// kLanes elements of T: the bits a store of x as T writes.
template <typename T>
inline auto to_raw(const FloatVec& x) {
  if constexpr (std::is_same_v<T, float>) {
    return x.v;
  } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return float_to_bf16_bits(x);
  } else {
    return float_to_half_bits(x);
  }
}

template <bool kStream, typename T>
inline void store(T* p, const FloatVec& x) {
  put_raw<kStream>(p, to_raw<T>(x));
}

template <typename T>
inline void store(T* p, const FloatVec& x, int64_t n) {
  const auto raw = to_raw<T>(x);
  std::memcpy(static_cast<void*>(p), &raw, n * sizeof(T));
}

// ---------------------------------------------------------------------------
// exp and log1p. The gate's bound (g within 1e-6 relative over x in
// [-80, 80], SPEC.md) leaves about 8 ulp for softplus, exp(A_log) and the
// product; each function here is within about 1 ulp.

// exp(x) for every float x: 2^n * e^r with n = round(x / ln 2) and
// |r| <= ln(2)/2 (ln 2 in two parts, so that n * kLn2Hi is exact), e^r from
// its Taylor polynomial to r^7 (remainder below 1e-8 relative). 2^n is
// applied as two factors, so that results near overflow and in the
// subnormal range are rounded once. NaN stays NaN.
inline FloatVec exp(FloatVec x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;     // 9 significant bits
  constexpr float kLn2Lo = -2.12194440e-4f;  // ln 2 - kLn2Hi
  constexpr float kRoundMagic = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  // e^89 overflows and e^-104 underflows to zero; comparisons are false for
  // NaN, which therefore passes through.
  x = where(x.v > 89.f, FloatVec(89.f), x);
  x = where(x.v < -104.f, FloatVec(-104.f), x);
  const FloatVec n = (x * kLog2e + kRoundMagic) - kRoundMagic;
  const FloatVec r = (x - n * kLn2Hi) - n * kLn2Lo;
  FloatVec p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const RawInt ni = __builtin_convertvector(n.v, RawInt);
  const RawInt half = ni >> 1;
  const auto pow2 = [](const RawInt& e) {
    return FloatVec::from_bits(bitcast<RawUInt>(e + 127) << 23);
  };
  return p * pow2(half) * pow2(ni - half);
}

// log1p(y) for y >= 0 (softplus calls it on exp(-|x|), in (0, 1]), +inf
// and NaN. u = 1 + y is split as 2^k * m with m in [sqrt(1/2), sqrt(2));
// log(m) = f - f^2/2 + s * (f^2/2 + R) with f = m - 1, s = f / (2 + f) and
// R the series of 2*atanh(s) - 2s to s^11 (fdlibm's arrangement, which keeps
// f exact); c = (y - (u - 1)) / u restores what rounding 1 + y dropped.
inline FloatVec log1p(const FloatVec& y) {
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  const FloatVec u = y + 1.f;
  const RawInt k = (bitcast<RawInt>(u.v) - 0x3f3504f3) >> 23;
  const FloatVec m = FloatVec::from_bits(u.bits() - (bitcast<RawUInt>(k) << 23));
  const FloatVec f = m - 1.f;
  const FloatVec c = (y - (u - 1.f)) / u;
  const FloatVec s = f / (f + 2.f);
  const FloatVec z = s * s;
  FloatVec R = 2.f / 11.f;
  R = R * z + 2.f / 9.f;
  R = R * z + 2.f / 7.f;
  R = R * z + 2.f / 5.f;
  R = R * z + 2.f / 3.f;
  R = R * z;
  const FloatVec hfsq = f * f * 0.5f;
  const FloatVec dk(__builtin_convertvector(k, RawFloat));
  const FloatVec result = dk * kLn2Hi - ((hfsq - (s * (hfsq + R) + (dk * kLn2Lo + c))) - f);
  return where(u.v == __builtin_inff(), u, result);
}

}  // namespace gdn::cpu::CPU_CAPABILITY

namespace gdn {

// The gate math (post_conv_prep_math.h) on the vector.
template <>
struct GateMath<cpu::CPU_CAPABILITY::FloatVec> {
  using Vec = cpu::CPU_CAPABILITY::FloatVec;
  static Vec exp(const Vec& x) { return cpu::CPU_CAPABILITY::exp(x); }
  static Vec log1p(const Vec& x) { return cpu::CPU_CAPABILITY::log1p(x); }
  static Vec neg_abs(const Vec& x) { return Vec::from_bits(x.bits() | 0x80000000u); }
  static Vec neg(const Vec& x) { return -x; }
  // fmaxf's: NaN gives 0 (softplus then adds the NaN back).
  static Vec max0(const Vec& x) { return cpu::CPU_CAPABILITY::where(x.v > 0.f, x, Vec(0.f)); }
  static Vec above_or(const Vec& x, float threshold, const Vec& otherwise) {
    return cpu::CPU_CAPABILITY::where(x.v > threshold, x, otherwise);
  }
};

}  // namespace gdn
