// CPU backend: one pass over the rows, parallel over tokens.
#include <cstring>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "post_conv_prep.h"
#include "post_conv_prep_math.h"

namespace gdn {
namespace {

// Several partial sums, as SIMD lanes would keep them: the rounding error of
// a sum of K squares then grows with K/8 rather than K, which keeps float32
// outputs inside SPEC's 2e-6 bound for K in the hundreds.
template <typename T>
float sum_of_squares(const T* x, int64_t n, int64_t stride) {
  constexpr int kLanes = 8;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float f = static_cast<float>(x[(i + j) * stride]);
      acc[j] += f * f;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const float f = static_cast<float>(x[i * stride]);
    acc[j] += f * f;
  }
  float total = 0.f;
  for (int j = 0; j < kLanes; ++j) total += acc[j];
  return total;
}

template <typename T>
void copy_head(const T* src, int64_t stride, T* dst, int64_t n) {
  if (stride == 1) {
    std::memcpy(dst, src, n * sizeof(T));
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i * stride];
  }
}

template <typename T>
void normalize_head(const T* src, int64_t stride, T* dst, int64_t n) {
  const float scale = l2norm_scale(sum_of_squares(src, n, stride));
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = static_cast<T>(static_cast<float>(src[i * stride]) * scale);
  }
}

template <typename T>
void post_conv_prep_rows(const PostConvPrepParams& p, int64_t begin, int64_t end) {
  const T* conv = static_cast<const T*>(p.conv);
  T* q = static_cast<T*>(p.q);
  T* k = static_cast<T*>(p.k);
  T* v = static_cast<T*>(p.v);
  const int64_t fs = p.conv_stride_feat;
  const int64_t qk_heads = 2 * p.H;
  for (int64_t row = begin; row < end; ++row) {
    const T* src = conv + row * p.conv_stride_row;
    for (int64_t h = 0; h < qk_heads; ++h) {
      T* dst = (h < p.H ? q + (row * p.H + h) * p.K
                        : k + (row * p.H + h - p.H) * p.K);
      const T* head = src + h * p.K * fs;
      if (p.apply_l2norm) {
        normalize_head(head, fs, dst, p.K);
      } else {
        copy_head(head, fs, dst, p.K);
      }
    }
    copy_head(src + qk_heads * p.K * fs, fs, v + row * p.HV * p.V, p.HV * p.V);
    for (int64_t hv = 0; hv < p.HV; ++hv) compute_gate(p, row, hv);
  }
}

PostConvPrepOutputs fused_post_conv_prep_cpu(
    const at::Tensor& conv_output, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& A_log, const at::Tensor& dt_bias, int64_t num_k_heads,
    int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
    bool output_g_exp) {
  PostConvPrepParams p;
  auto outputs = prepare_post_conv_prep(conv_output, a, b, A_log, dt_bias,
                                        num_k_heads, head_k_dim, head_v_dim,
                                        apply_l2norm, output_g_exp, &p);
  if (p.L == 0) return outputs;
  const int64_t row_bytes =
      conv_output.size(1) * conv_output.element_size() + 8 * p.HV;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / row_bytes);
  GDN_DISPATCH_ACTIVATION_TYPES(
      conv_output.scalar_type(), "fused_post_conv_prep_cpu", [&] {
        at::parallel_for(0, p.L, grain, [&](int64_t begin, int64_t end) {
          post_conv_prep_rows<scalar_t>(p, begin, end);
        });
      });
  return outputs;
}

}  // namespace
}  // namespace gdn

TORCH_LIBRARY_IMPL(gdn, CPU, m) {
  m.impl("fused_post_conv_prep", &gdn::fused_post_conv_prep_cpu);
}
