// The math of the ops, shared verbatim by the CPU and CUDA kernels so that
// both compute the same function: stable softplus, the decay gate, the
// sigmoid, op 2's SiLU, the L2-norm scale and the per-(row, head) gate/beta
// step.
//
// Built without fast-math on purpose: expf/log1pf must be the accurate
// library versions (<= 2 ulp) for g to stay within 1e-6 relative over
// x in [-80, 80] (SPEC.md).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "post_conv_prep.h"

#if defined(__CUDACC__)
#define GDN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GDN_HOST_DEVICE inline
#endif

namespace gdn {

// The gate math below is written once for a number type F: float (the CUDA
// kernel, one lane per thread) or the CPU kernel's float vector (cpu/vec.h,
// a vector of lanes). GateMath<F> supplies the few operations whose
// spelling differs; the CPU kernel specialises it for its vector.
template <typename F>
struct GateMath;

template <>
struct GateMath<float> {
  static GDN_HOST_DEVICE float exp(float x) { return ::expf(x); }
  static GDN_HOST_DEVICE float log1p(float x) { return ::log1pf(x); }
  static GDN_HOST_DEVICE float neg_abs(float x) { return -::fabsf(x); }
  static GDN_HOST_DEVICE float neg(float x) { return -x; }
  static GDN_HOST_DEVICE float max0(float x) { return ::fmaxf(x, 0.f); }
  // x > threshold ? x : otherwise
  static GDN_HOST_DEVICE float above_or(float x, float threshold, float otherwise) {
    return x > threshold ? x : otherwise;
  }
};

template <typename F>
GDN_HOST_DEVICE F softplus(const F& x) {
  using M = GateMath<F>;
  // log(1 + exp(x)) rounds 1 + exp(x) to 1 for x < -17 in float32 and is
  // already 17% off at x = -10. Splitting off max(x, 0) keeps exp's argument
  // <= 0, so log1p sees a value in (0, 1] and keeps full relative precision.
  // Past 20 the log1p term is below float32's resolution of x.
  return M::above_or(x, 20.f, M::max0(x) + M::log1p(M::exp(M::neg_abs(x))));
}

template <typename F>
GDN_HOST_DEVICE F decay_gate(const F& x, const F& A_log, bool output_g_exp) {
  using M = GateMath<F>;
  const F g = M::neg(M::exp(A_log)) * softplus(x);
  return output_g_exp ? M::exp(g) : g;
}

template <typename F>
GDN_HOST_DEVICE F sigmoid(const F& x) {
  using M = GateMath<F>;
  return F(1.f) / (F(1.f) + M::exp(M::neg(x)));
}

// SiLU after op 2's conv: y * sigmoid(y), as y / (1 + exp(-y)).
template <typename F>
GDN_HOST_DEVICE F silu(const F& y) {
  using M = GateMath<F>;
  return y / (F(1.f) + M::exp(M::neg(y)));
}

// rsqrt(sum(x^2) + 1e-6): SPEC's eps sits inside the root (not F.normalize).
// On the GPU rsqrt.approx without .ftz is the same instruction wrapped in a
// rescaling for denormal inputs; a sum of squares plus 1e-6 is never one (a
// NaN stays NaN), so the .ftz form gives the same bits with 3 instructions
// fewer per head.
GDN_HOST_DEVICE float l2norm_scale(float sum_of_squares) {
#if defined(__CUDA_ARCH__)
  float scale;
  asm("rsqrt.approx.ftz.f32 %0, %1;" : "=f"(scale) : "f"(sum_of_squares + 1e-6f));
  return scale;
#else
  return 1.f / std::sqrt(sum_of_squares + 1e-6f);
#endif
}

// One element's bits, loaded at the width of its dtype. The conversion to
// float is a separate step so that a kernel issues all of a gate's loads
// before it waits on any: a switch whose cases each load and convert makes
// the GPU wait for one load before it issues the next.
GDN_HOST_DEVICE uint32_t load_bits(const StridedInput& in, int64_t offset) {
  return in.kind == ScalarKind::kFloat32 ? static_cast<const uint32_t*>(in.data)[offset]
                                         : static_cast<const uint16_t*>(in.data)[offset];
}

GDN_HOST_DEVICE float bits_to_float(ScalarKind kind, uint32_t bits) {
  switch (kind) {
    case ScalarKind::kBFloat16:
      return static_cast<float>(c10::BFloat16(static_cast<uint16_t>(bits), c10::BFloat16::from_bits()));
    case ScalarKind::kFloat16:
      return static_cast<float>(c10::Half(static_cast<uint16_t>(bits), c10::Half::from_bits()));
    default: {
      float f;
      std::memcpy(&f, &bits, sizeof(f));
      return f;
    }
  }
}

// What the gate of one (row, value head) reads: x = a + dt_bias (the float32
// sum SPEC's reference is evaluated at), A_log and b. All four loads come
// before anything is stored: g and beta may alias the inputs as far as the
// compiler knows, so a load placed after a store would wait for it.
struct GateInputs {
  float x, A_log, b;
};

GDN_HOST_DEVICE GateInputs load_gate_inputs(const PostConvPrepParams& p, int64_t row,
                                            int64_t hv) {
  const uint32_t a = load_bits(p.a, row * p.a.stride0 + hv * p.a.stride1);
  const uint32_t b = load_bits(p.b, row * p.b.stride0 + hv * p.b.stride1);
  const uint32_t dt_bias = load_bits(p.dt_bias, hv * p.dt_bias.stride0);
  const uint32_t A_log = load_bits(p.A_log, hv * p.A_log.stride0);
  return {bits_to_float(p.a.kind, a) + bits_to_float(p.dt_bias.kind, dt_bias),
          bits_to_float(p.A_log.kind, A_log), bits_to_float(p.b.kind, b)};
}

// g and beta for one (row, value head); all arithmetic in float32.
GDN_HOST_DEVICE void compute_gate(const PostConvPrepParams& p, int64_t row,
                                  int64_t hv) {
  const GateInputs in = load_gate_inputs(p, row, hv);
  const int64_t out = row * p.HV + hv;
  p.g[out] = decay_gate<float>(in.x, in.A_log, p.output_g_exp);
  p.beta[out] = sigmoid<float>(in.b);
}

}  // namespace gdn
