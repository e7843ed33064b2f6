// Op 1's argument checks and host entry points, shared by every C++ backend
// (the schema is in schemas.cpp). Backends register their kernels with
// STABLE_TORCH_LIBRARY_IMPL in their own files.
#include "post_conv_prep.h"

#include <torch/headeronly/util/Exception.h>

#include "host_common.h"

namespace gdn {
namespace {

// The message prefix; STD_TORCH_CHECK puts the function, file and line first.
constexpr const char* kOp = "gdn::fused_post_conv_prep: ";

// The checked inputs: the params with the outputs still null, and what the
// outputs are made from.
struct CheckedCall {
  PostConvPrepParams params;
  ArgChecks checks;
  OutputLayout layout() const { return {&params, activation, device}; }
  DeviceOf device;        // conv_output's
  ScalarType activation;  // conv_output's dtype
};

// Everything SPEC.md's "Bad input" lists.
CheckedCall checked_call(const Tensor& conv_output, const Tensor& a, const Tensor& b,
                         const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads,
                         int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
                         bool output_g_exp) {
  const DeviceOf device = device_of(conv_output);
  const ArgChecks check(kOp, "conv_output", device);
  check.positive(num_k_heads, "num_k_heads");
  check.positive(head_k_dim, "head_k_dim");
  check.positive(head_v_dim, "head_v_dim");

  check.dim(conv_output, "conv_output", 2, "[L, 2*H*K + HV*V]");
  check.dim(a, "a", 2, "[L, HV]");
  check.dim(b, "b", 2, "[L, HV]");
  check.dim(A_log, "A_log", 1, "[HV]");
  check.dim(dt_bias, "dt_bias", 1, "[HV]");

  const ScalarType activation = check.float_dtype(conv_output, "conv_output");
  const ScalarType a_dtype = check.float_dtype(a, "a");
  const ScalarType b_dtype = check.float_dtype(b, "b");
  const ScalarType A_log_dtype = check.float_dtype(A_log, "A_log");
  const ScalarType dt_bias_dtype = check.float_dtype(dt_bias, "dt_bias");

  check.same_device(a, "a");
  check.same_device(b, "b");
  check.same_device(A_log, "A_log");
  check.same_device(dt_bias, "dt_bias");

  const int64_t L = conv_output.size(0);
  const int64_t H = num_k_heads, K = head_k_dim, V = head_v_dim;
  check.feature_width(conv_output, "conv_output", A_log, H, K, V);
  const int64_t HV = A_log.size(0);
  check.gate_shapes(a, b, dt_bias, L, "L", HV);

  PostConvPrepParams p{};
  p.L = L, p.H = H, p.HV = HV, p.K = K, p.V = V;
  p.conv = conv_output.const_data_ptr();
  p.conv_stride_row = conv_output.stride(0);
  p.conv_stride_feat = conv_output.stride(1);
  p.conv_kind = scalar_kind(activation);
  p.a = strided_input(a, a_dtype);
  p.b = strided_input(b, b_dtype);
  p.A_log = strided_input(A_log, A_log_dtype);
  p.dt_bias = strided_input(dt_bias, dt_bias_dtype);
  p.apply_l2norm = apply_l2norm;
  p.output_g_exp = output_g_exp;
  return {p, check, device, activation};
}

}  // namespace

PostConvPrepOutputs post_conv_prep(const Tensor& conv_output, const Tensor& a, const Tensor& b,
                                   const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads,
                                   int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
                                   bool output_g_exp, PostConvPrepKernel kernel) {
  CheckedCall call = checked_call(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                                  head_v_dim, apply_l2norm, output_g_exp);
  const Outputs out = new_outputs(call.layout());
  set_outputs(&call.params, out);
  if (call.params.L > 0) kernel(call.params, call.device.index);
  return {out[0], out[1], out[2], out[3], out[4]};
}

void post_conv_prep_out(const Tensor& conv_output, const Tensor& a, const Tensor& b,
                        const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads,
                        int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
                        bool output_g_exp, Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta,
                        PostConvPrepKernel kernel) {
  CheckedCall call = checked_call(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                                  head_v_dim, apply_l2norm, output_g_exp);
  OutTargets out(call.checks, "conv_output", call.layout(), {q, k, v, g, beta});
  set_outputs(&call.params, out.written());
  if (call.params.L > 0) {
    kernel(call.params, call.device.index);
    out.finish();
  }
}

}  // namespace gdn
