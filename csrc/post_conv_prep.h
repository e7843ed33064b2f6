// The op's parameters as every C++ backend sees them, and the host-side entry
// that validates the arguments and allocates the outputs (one place, shared by
// the CPU and CUDA backends). Kernels take PostConvPrepParams and never see
// at::Tensor; all strides are in elements.
#pragma once

#include <cstdint>
#include <tuple>

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

// The activation dtypes the op accepts (conv_output, hence q, k and v).
#define GDN_DISPATCH_ACTIVATION_TYPES(TYPE, NAME, ...)          \
  AT_DISPATCH_SWITCH(TYPE, NAME,                                \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__))

namespace gdn {

// dtype of a, b, A_log and dt_bias. Each may differ from the others; the
// kernels switch on this per load instead of instantiating every combination.
enum class ScalarKind : int32_t { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

struct StridedInput {
  const void* data;
  int64_t stride0;  // row stride (a, b) or element stride (A_log, dt_bias)
  int64_t stride1;  // head stride (a, b); unused for 1-D inputs
  ScalarKind kind;
};

struct PostConvPrepParams {
  int64_t L, H, HV, K, V;

  const void* conv;        // [L, 2*H*K + HV*V], dtype of q/k/v
  int64_t conv_stride_row;
  int64_t conv_stride_feat;
  ScalarKind conv_kind;

  StridedInput a, b, A_log, dt_bias;

  void* q;      // [L, H, K] contiguous
  void* k;      // [L, H, K] contiguous
  void* v;      // [L, HV, V] contiguous
  float* g;     // [L, HV] contiguous
  float* beta;  // [L, HV] contiguous

  bool apply_l2norm;
  bool output_g_exp;
};

using PostConvPrepOutputs =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Checks every argument against SPEC.md ("Bad input"), allocates the five
// outputs on conv_output's device and fills *params. Throws c10::Error (a
// RuntimeError in Python) whose message names the argument.
PostConvPrepOutputs prepare_post_conv_prep(
    const at::Tensor& conv_output, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& A_log, const at::Tensor& dt_bias, int64_t num_k_heads,
    int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
    bool output_g_exp, PostConvPrepParams* params);

}  // namespace gdn
