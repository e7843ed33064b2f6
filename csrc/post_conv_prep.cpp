// The op's schema (declared once, here) and the argument checks shared by
// every C++ backend. Backends register their implementations with
// TORCH_LIBRARY_IMPL in their own files.
#include "post_conv_prep.h"

#include <string>

#include <ATen/ATen.h>
#include <c10/util/safe_numerics.h>
#include <torch/library.h>

namespace gdn {
namespace {

constexpr const char* kOp = "gdn::fused_post_conv_prep: ";

// "[2, 3]": the same text gdn_ext/_checks.py prints for a shape.
std::string shape_of(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) {
    s += (i ? ", " : "") + std::to_string(t.size(i));
  }
  return s + "]";
}

ScalarKind scalar_kind(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kBFloat16: return ScalarKind::kBFloat16;
    case at::kHalf: return ScalarKind::kFloat16;
    default: return ScalarKind::kFloat32;
  }
}

void check_dim(const at::Tensor& t, const char* name, int64_t dim,
               const char* expected_shape) {
  TORCH_CHECK(t.dim() == dim, kOp, name, " must be a ", dim, "-D tensor ",
              expected_shape, ", but got a ", t.dim(), "-D tensor of shape ",
              shape_of(t));
}

void check_float_dtype(const at::Tensor& t, const char* name) {
  const auto dt = t.scalar_type();
  TORCH_CHECK(dt == at::kBFloat16 || dt == at::kHalf || dt == at::kFloat, kOp,
              name, " must have dtype bfloat16, float16 or float32, but got ",
              c10::toString(dt));
}

void check_device(const at::Tensor& t, const char* name,
                  const at::Tensor& conv_output) {
  TORCH_CHECK(t.device() == conv_output.device(), kOp,
              "all tensors must be on one device: conv_output is on ",
              conv_output.device().str(), " but ", name, " is on ", t.device().str());
}

void check_positive(int64_t value, const char* name) {
  TORCH_CHECK(value > 0, kOp, name, " must be >= 1, but got ", value);
}

StridedInput strided_input(const at::Tensor& t) {
  return {t.data_ptr(), t.stride(0), t.dim() > 1 ? t.stride(1) : 0,
          scalar_kind(t)};
}

}  // namespace

PostConvPrepOutputs prepare_post_conv_prep(
    const at::Tensor& conv_output, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& A_log, const at::Tensor& dt_bias, int64_t num_k_heads,
    int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
    bool output_g_exp, PostConvPrepParams* params) {
  check_positive(num_k_heads, "num_k_heads");
  check_positive(head_k_dim, "head_k_dim");
  check_positive(head_v_dim, "head_v_dim");

  check_dim(conv_output, "conv_output", 2, "[L, 2*H*K + HV*V]");
  check_dim(a, "a", 2, "[L, HV]");
  check_dim(b, "b", 2, "[L, HV]");
  check_dim(A_log, "A_log", 1, "[HV]");
  check_dim(dt_bias, "dt_bias", 1, "[HV]");

  check_float_dtype(conv_output, "conv_output");
  check_float_dtype(a, "a");
  check_float_dtype(b, "b");
  check_float_dtype(A_log, "A_log");
  check_float_dtype(dt_bias, "dt_bias");

  check_device(a, "a", conv_output);
  check_device(b, "b", conv_output);
  check_device(A_log, "A_log", conv_output);
  check_device(dt_bias, "dt_bias", conv_output);

  const int64_t L = conv_output.size(0);
  const int64_t H = num_k_heads, K = head_k_dim, V = head_v_dim;
  const int64_t HV = A_log.size(0);
  TORCH_CHECK(HV >= 1, kOp,
              "A_log must have HV >= 1 elements (one per value head), but got "
              "shape ", shape_of(A_log));

  int64_t qk_width = 0, v_width = 0, width = 0;
  const bool overflow = c10::mul_overflows(2 * H, K, &qk_width) ||
                        c10::mul_overflows(HV, V, &v_width) ||
                        c10::add_overflows(qk_width, v_width, &width);
  TORCH_CHECK(!overflow && conv_output.size(1) == width, kOp,
              "conv_output.size(1) must be 2*H*K + HV*V = 2*", H, "*", K, " + ",
              HV, "*", V, (overflow ? " (overflows int64)" : ""),
              " for num_k_heads=", H, ", head_k_dim=", K, ", head_v_dim=", V,
              " and HV=A_log.size(0)=", HV, ", but got ", conv_output.size(1));
  TORCH_CHECK(a.size(0) == L && a.size(1) == HV, kOp, "a must have shape [L, HV] = [",
              L, ", ", HV, "], but got ", shape_of(a));
  TORCH_CHECK(b.size(0) == L && b.size(1) == HV, kOp, "b must have shape [L, HV] = [",
              L, ", ", HV, "], but got ", shape_of(b));
  TORCH_CHECK(dt_bias.size(0) == HV, kOp, "dt_bias must have shape [HV] = [", HV,
              "], but got ", shape_of(dt_bias));

  const auto act = conv_output.options();
  const auto f32 = act.dtype(at::kFloat);
  PostConvPrepOutputs outputs{at::empty({L, H, K}, act), at::empty({L, H, K}, act),
                              at::empty({L, HV, V}, act), at::empty({L, HV}, f32),
                              at::empty({L, HV}, f32)};
  auto& [q, k, v, g, beta] = outputs;

  *params = PostConvPrepParams{
      L, H, HV, K, V,
      conv_output.data_ptr(), conv_output.stride(0), conv_output.stride(1),
      scalar_kind(conv_output),
      strided_input(a), strided_input(b), strided_input(A_log), strided_input(dt_bias),
      q.data_ptr(), k.data_ptr(), v.data_ptr(),
      g.data_ptr<float>(), beta.data_ptr<float>(),
      apply_l2norm, output_g_exp};
  return outputs;
}

}  // namespace gdn

TORCH_LIBRARY(gdn, m) {
  m.def(
      "fused_post_conv_prep(Tensor conv_output, Tensor a, Tensor b, "
      "Tensor A_log, Tensor dt_bias, int num_k_heads, int head_k_dim, "
      "int head_v_dim, bool apply_l2norm=True, bool output_g_exp=False) -> "
      "(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)");
}
