// The scalar math of the op, shared verbatim by the CPU and CUDA kernels so
// that both compute the same function: stable softplus, the decay gate, the
// sigmoid, the L2-norm scale and the per-(row, head) gate/beta step.
//
// Built without fast-math on purpose: expf/log1pf must be the accurate
// library versions (<= 2 ulp) for g to stay within 1e-6 relative over
// x in [-80, 80] (SPEC.md).
#pragma once

#include <cmath>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "post_conv_prep.h"

#if defined(__CUDACC__)
#define GDN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GDN_HOST_DEVICE inline
#endif

namespace gdn {

GDN_HOST_DEVICE float softplus(float x) {
  // log(1 + exp(x)) rounds 1 + exp(x) to 1 for x < -17 in float32 and is
  // already 17% off at x = -10. Splitting off max(x, 0) keeps exp's argument
  // <= 0, so log1p sees a value in (0, 1] and keeps full relative precision.
  // Past 20 the log1p term is below float32's resolution of x.
  return x > 20.f ? x : ::fmaxf(x, 0.f) + ::log1pf(::expf(-::fabsf(x)));
}

GDN_HOST_DEVICE float decay_gate(float x, float A_log, bool output_g_exp) {
  const float g = -::expf(A_log) * softplus(x);
  return output_g_exp ? ::expf(g) : g;
}

GDN_HOST_DEVICE float sigmoid(float x) { return 1.f / (1.f + ::expf(-x)); }

// rsqrt(sum(x^2) + 1e-6): SPEC's eps sits inside the root (not F.normalize).
GDN_HOST_DEVICE float l2norm_scale(float sum_of_squares) {
#if defined(__CUDA_ARCH__)
  return ::rsqrtf(sum_of_squares + 1e-6f);
#else
  return 1.f / std::sqrt(sum_of_squares + 1e-6f);
#endif
}

GDN_HOST_DEVICE float load_as_float(const StridedInput& in, int64_t offset) {
  switch (in.kind) {
    case ScalarKind::kBFloat16:
      return static_cast<float>(static_cast<const c10::BFloat16*>(in.data)[offset]);
    case ScalarKind::kFloat16:
      return static_cast<float>(static_cast<const c10::Half*>(in.data)[offset]);
    default:
      return static_cast<const float*>(in.data)[offset];
  }
}

// g and beta for one (row, value head); all arithmetic in float32. The four
// loads come before both stores: g and beta may alias the inputs as far as
// the compiler knows, so a load placed after a store would wait for it.
GDN_HOST_DEVICE void compute_gate(const PostConvPrepParams& p, int64_t row,
                                  int64_t hv) {
  const float a = load_as_float(p.a, row * p.a.stride0 + hv * p.a.stride1);
  const float b = load_as_float(p.b, row * p.b.stride0 + hv * p.b.stride1);
  const float dt_bias = load_as_float(p.dt_bias, hv * p.dt_bias.stride0);
  const float A_log = load_as_float(p.A_log, hv * p.A_log.stride0);
  const int64_t out = row * p.HV + hv;
  p.g[out] = decay_gate(a + dt_bias, A_log, p.output_g_exp);
  p.beta[out] = sigmoid(b);
}

}  // namespace gdn
