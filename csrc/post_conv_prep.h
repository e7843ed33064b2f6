// The op's parameters as every C++ backend sees them, and the host-side entry
// points that validate the arguments, provide the outputs and run a backend's
// kernel (one place, shared by the CPU and CUDA backends). Kernels take
// PostConvPrepParams and never see a tensor; all strides are in elements.
//
// The library uses only PyTorch's stable ABI (torch/csrc/stable,
// torch/headeronly), so one binary loads on every torch from
// TORCH_TARGET_VERSION on.
#pragma once

#include <cstdint>
#include <tuple>
#include <type_traits>

#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

namespace gdn {

using torch::stable::Tensor;

// dtype of conv_output (hence q, k and v), a, b, A_log and dt_bias. Each
// input may differ from the others; the kernels switch on this per load
// instead of instantiating every combination.
enum class ScalarKind : int32_t { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

// Bytes of one element of the kind.
constexpr int64_t element_bytes(ScalarKind kind) { return kind == ScalarKind::kFloat32 ? 4 : 2; }

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

using PostConvPrepOutputs = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;

// A backend's kernel: writes the outputs params points to, for L >= 1, on
// the inputs' device (and, on a GPU, that device's current stream).
using PostConvPrepKernel = void (*)(const PostConvPrepParams& params, int32_t device_index);

// The op: checks every argument against SPEC.md ("Bad input"), allocates
// the five outputs on conv_output's device and runs `kernel` on them.
// Throws std::runtime_error (a RuntimeError in Python) naming the argument.
PostConvPrepOutputs post_conv_prep(const Tensor& conv_output, const Tensor& a, const Tensor& b,
                                   const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads,
                                   int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
                                   bool output_g_exp, PostConvPrepKernel kernel);

// The .out variant: the same checks, plus each output's shape, dtype and
// device. Outputs laid out as the functional op's are written in place; any
// other strides get a contiguous buffer that is copied into them afterwards.
// It returns nothing (schema `-> ()`): torch.compile functionalizes a custom
// op's mutations, but not outputs that alias its inputs.
void post_conv_prep_out(const Tensor& conv_output, const Tensor& a, const Tensor& b,
                                       const Tensor& A_log, const Tensor& dt_bias,
                                       int64_t num_k_heads, int64_t head_k_dim,
                                       int64_t head_v_dim, bool apply_l2norm, bool output_g_exp,
                                       Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta,
                                       PostConvPrepKernel kernel);

// The boxed entry points a backend registers for its dispatch key: the op and
// its .out variant with that backend's kernel.
template <PostConvPrepKernel kKernel>
PostConvPrepOutputs post_conv_prep_with(Tensor conv_output, Tensor a, Tensor b, Tensor A_log,
                                        Tensor dt_bias, int64_t num_k_heads, int64_t head_k_dim,
                                        int64_t head_v_dim, bool apply_l2norm,
                                        bool output_g_exp) {
  return post_conv_prep(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim,
                        apply_l2norm, output_g_exp, kKernel);
}

template <PostConvPrepKernel kKernel>
void post_conv_prep_out_with(Tensor conv_output, Tensor a, Tensor b, Tensor A_log,
                                            Tensor dt_bias, int64_t num_k_heads,
                                            int64_t head_k_dim, int64_t head_v_dim,
                                            bool apply_l2norm, bool output_g_exp, Tensor q,
                                            Tensor k, Tensor v, Tensor g, Tensor beta) {
  post_conv_prep_out(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim,
                     apply_l2norm, output_g_exp, q, k, v, g, beta, kKernel);
}

// Calls f(T{}) with T the C++ type of kind: float, c10::BFloat16 or c10::Half
// (torch/headeronly's, usable in host and device code).
template <typename F>
decltype(auto) dispatch_activation(ScalarKind kind, const F& f) {
  switch (kind) {
    case ScalarKind::kBFloat16: return f(c10::BFloat16{});
    case ScalarKind::kFloat16: return f(c10::Half{});
    default: return f(float{});
  }
}

// The kind of the C++ type T (dispatch_activation's inverse).
template <typename T>
constexpr ScalarKind kind_of() {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return ScalarKind::kBFloat16;
  } else if constexpr (std::is_same_v<T, c10::Half>) {
    return ScalarKind::kFloat16;
  } else {
    static_assert(std::is_same_v<T, float>, "float, c10::BFloat16 or c10::Half");
    return ScalarKind::kFloat32;
  }
}

}  // namespace gdn
