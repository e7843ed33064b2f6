// Op 2's argument checks and host entry points, shared by every C++ backend
// (the schema is in schemas.cpp). gdn_ext/_conv_checks.py mirrors the checks
// message for message.
#include "causal_conv_prep.h"

#include <torch/headeronly/util/Exception.h>

#include "host_common.h"

namespace gdn {
namespace {

constexpr const char* kOp = "gdn::causal_conv1d_post_conv_prep: ";
constexpr int64_t kMaxWidth = 4;

struct CheckedCall {
  CausalConvPrepParams params;
  ArgChecks checks;
  DeviceOf device;        // x's
  ScalarType activation;  // x's dtype
  OutputLayout layout() const { return {&params.prep, activation, device}; }
};

int64_t stride_or_zero(const OptionalTensor& t) { return t ? t->stride(0) : 0; }

CheckedCall checked_call(const Tensor& x, const Tensor& conv_weight,
                         const OptionalTensor& conv_bias, const Tensor& conv_states,
                         const Tensor& query_start_loc, const OptionalTensor& cache_indices,
                         const OptionalTensor& has_initial_state, const Tensor& a,
                         const Tensor& b, const Tensor& A_log, const Tensor& dt_bias,
                         int64_t num_k_heads, int64_t head_k_dim, int64_t head_v_dim,
                         bool apply_l2norm, bool output_g_exp, bool silu, int64_t pad_slot_id) {
  const DeviceOf device = device_of(x);
  const ArgChecks check(kOp, "x", device);
  check.positive(num_k_heads, "num_k_heads");
  check.positive(head_k_dim, "head_k_dim");
  check.positive(head_v_dim, "head_v_dim");

  check.dim(x, "x", 2, "[T, 2*H*K + HV*V]");
  check.dim(conv_weight, "conv_weight", 2, "[D, W]");
  if (conv_bias) check.dim(*conv_bias, "conv_bias", 1, "[D]");
  check.dim(conv_states, "conv_states", 3, "[N, D, W-1]");
  check.dim(query_start_loc, "query_start_loc", 1, "[B+1]");
  if (cache_indices) check.dim(*cache_indices, "cache_indices", 1, "[B]");
  if (has_initial_state) check.dim(*has_initial_state, "has_initial_state", 1, "[B]");
  check.dim(a, "a", 2, "[T, HV]");
  check.dim(b, "b", 2, "[T, HV]");
  check.dim(A_log, "A_log", 1, "[HV]");
  check.dim(dt_bias, "dt_bias", 1, "[HV]");

  const ScalarType activation = check.float_dtype(x, "x");
  const ScalarType weight_dtype = check.float_dtype(conv_weight, "conv_weight");
  const ScalarType bias_dtype =
      conv_bias ? check.float_dtype(*conv_bias, "conv_bias") : ScalarType::Float;
  const ScalarType a_dtype = check.float_dtype(a, "a");
  const ScalarType b_dtype = check.float_dtype(b, "b");
  const ScalarType A_log_dtype = check.float_dtype(A_log, "A_log");
  const ScalarType dt_bias_dtype = check.float_dtype(dt_bias, "dt_bias");
  const ScalarType states_dtype = conv_states.scalar_type();
  STD_TORCH_CHECK(states_dtype == activation, kOp, "conv_states must have x's dtype ",
                  torch::headeronly::toString(activation), ", but got ",
                  torch::headeronly::toString(states_dtype));
  check.dtype_is(query_start_loc, "query_start_loc", ScalarType::Int);
  if (cache_indices) check.dtype_is(*cache_indices, "cache_indices", ScalarType::Int);
  if (has_initial_state) check.dtype_is(*has_initial_state, "has_initial_state", ScalarType::Bool);

  check.same_device(conv_weight, "conv_weight");
  if (conv_bias) check.same_device(*conv_bias, "conv_bias");
  check.same_device(conv_states, "conv_states");
  check.same_device(query_start_loc, "query_start_loc");
  if (cache_indices) check.same_device(*cache_indices, "cache_indices");
  if (has_initial_state) check.same_device(*has_initial_state, "has_initial_state");
  check.same_device(a, "a");
  check.same_device(b, "b");
  check.same_device(A_log, "A_log");
  check.same_device(dt_bias, "dt_bias");

  const int64_t T = x.size(0);
  const int64_t H = num_k_heads, K = head_k_dim, V = head_v_dim;
  const int64_t D = check.feature_width(x, "x", A_log, H, K, V);
  const int64_t HV = A_log.size(0);
  const int64_t W = conv_weight.size(1);
  STD_TORCH_CHECK(conv_weight.size(0) == D && W >= 2 && W <= kMaxWidth, kOp,
                  "conv_weight must have shape [D, W] with D = ", D, " and 2 <= W <= ", kMaxWidth,
                  ", but got ", shape_of(conv_weight));
  STD_TORCH_CHECK(!conv_bias || conv_bias->size(0) == D, kOp, "conv_bias must have shape [D] = [",
                  D, "], but got ", conv_bias ? shape_of(*conv_bias) : "");
  STD_TORCH_CHECK(conv_states.size(1) == D && conv_states.size(2) == W - 1, kOp,
                  "conv_states must have shape [N, D, W-1] = [N, ", D, ", ", W - 1, "], but got ",
                  shape_of(conv_states));
  const int64_t B = query_start_loc.size(0) - 1;
  STD_TORCH_CHECK(B >= 1, kOp, "query_start_loc must have shape [B+1] with B >= 1, but got ",
                  shape_of(query_start_loc));
  STD_TORCH_CHECK(!cache_indices || cache_indices->size(0) == B, kOp,
                  "cache_indices must have shape [B] = [", B, "], but got ",
                  cache_indices ? shape_of(*cache_indices) : "");
  STD_TORCH_CHECK(!has_initial_state || has_initial_state->size(0) == B, kOp,
                  "has_initial_state must have shape [B] = [", B, "], but got ",
                  has_initial_state ? shape_of(*has_initial_state) : "");
  check.gate_shapes(a, b, dt_bias, T, "T", HV);

  CausalConvPrepParams p{};
  PostConvPrepParams& prep = p.prep;
  prep.L = T, prep.H = H, prep.HV = HV, prep.K = K, prep.V = V;
  prep.conv = nullptr;
  prep.conv_kind = scalar_kind(activation);
  prep.a = strided_input(a, a_dtype);
  prep.b = strided_input(b, b_dtype);
  prep.A_log = strided_input(A_log, A_log_dtype);
  prep.dt_bias = strided_input(dt_bias, dt_bias_dtype);
  prep.apply_l2norm = apply_l2norm;
  prep.output_g_exp = output_g_exp;
  p.D = D, p.W = W, p.B = B, p.N = conv_states.size(0);
  p.x = x.const_data_ptr();
  p.x_stride_row = x.stride(0);
  p.x_stride_feat = x.stride(1);
  p.weight = strided_input(conv_weight, weight_dtype);
  p.bias = conv_bias ? strided_input(*conv_bias, bias_dtype)
                     : StridedInput{nullptr, 0, 0, ScalarKind::kFloat32};
  p.states = conv_states.mutable_data_ptr();
  p.states_stride_line = conv_states.stride(0);
  p.states_stride_feat = conv_states.stride(1);
  p.states_stride_tap = conv_states.stride(2);
  p.query_start_loc = static_cast<const int32_t*>(query_start_loc.const_data_ptr());
  p.query_start_loc_stride = query_start_loc.stride(0);
  p.cache_indices =
      cache_indices ? static_cast<const int32_t*>(cache_indices->const_data_ptr()) : nullptr;
  p.cache_indices_stride = stride_or_zero(cache_indices);
  p.has_initial_state =
      has_initial_state ? static_cast<const bool*>(has_initial_state->const_data_ptr()) : nullptr;
  p.has_initial_state_stride = stride_or_zero(has_initial_state);
  p.pad_slot_id = pad_slot_id;
  p.silu = silu;
  return {p, check, device, activation};
}

}  // namespace

PostConvPrepOutputs causal_conv_prep(
    const Tensor& x, const Tensor& conv_weight, const OptionalTensor& conv_bias,
    const Tensor& conv_states, const Tensor& query_start_loc, const OptionalTensor& cache_indices,
    const OptionalTensor& has_initial_state, const Tensor& a, const Tensor& b,
    const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads, int64_t head_k_dim,
    int64_t head_v_dim, bool apply_l2norm, bool output_g_exp, bool silu, int64_t pad_slot_id,
    CausalConvPrepKernel kernel) {
  CheckedCall call = checked_call(x, conv_weight, conv_bias, conv_states, query_start_loc,
                                  cache_indices, has_initial_state, a, b, A_log, dt_bias,
                                  num_k_heads, head_k_dim, head_v_dim, apply_l2norm,
                                  output_g_exp, silu, pad_slot_id);
  const Outputs out = new_outputs(call.layout());
  set_outputs(&call.params.prep, out);
  if (call.params.prep.L > 0) kernel(call.params, call.device.index);
  return {out[0], out[1], out[2], out[3], out[4]};
}

void causal_conv_prep_out(
    const Tensor& x, const Tensor& conv_weight, const OptionalTensor& conv_bias,
    const Tensor& conv_states, const Tensor& query_start_loc, const OptionalTensor& cache_indices,
    const OptionalTensor& has_initial_state, const Tensor& a, const Tensor& b,
    const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads, int64_t head_k_dim,
    int64_t head_v_dim, bool apply_l2norm, bool output_g_exp, bool silu, int64_t pad_slot_id,
    Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, CausalConvPrepKernel kernel) {
  CheckedCall call = checked_call(x, conv_weight, conv_bias, conv_states, query_start_loc,
                                  cache_indices, has_initial_state, a, b, A_log, dt_bias,
                                  num_k_heads, head_k_dim, head_v_dim, apply_l2norm,
                                  output_g_exp, silu, pad_slot_id);
  OutTargets out(call.checks, "x", call.layout(), {q, k, v, g, beta});
  set_outputs(&call.params.prep, out.written());
  if (call.params.prep.L > 0) {
    kernel(call.params, call.device.index);
    out.finish();
  }
}

}  // namespace gdn
