// The op's schema (declared once, here), the argument checks and the output
// handling shared by every C++ backend. Backends register their kernels with
// STABLE_TORCH_LIBRARY_IMPL in their own files.
#include "post_conv_prep.h"

#include <array>
#include <string>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>
#include <torch/headeronly/util/shim_utils.h>

namespace gdn {
namespace {

using torch::headeronly::ScalarType;

// The message prefix; STD_TORCH_CHECK puts the function, file and line first.
constexpr const char* kOp = "gdn::fused_post_conv_prep: ";

// "[2, 3]": the same text gdn_ext/_checks.py prints for a shape.
template <typename Size>
std::string shape_text(int64_t dim, const Size& size) {
  std::string s = "[";
  for (int64_t i = 0; i < dim; ++i) s += (i ? ", " : "") + std::to_string(size(i));
  return s + "]";
}

std::string shape_of(const Tensor& t) {
  return shape_text(t.dim(), [&](int64_t i) { return t.size(i); });
}

bool is_activation_dtype(ScalarType dt) {
  return dt == ScalarType::BFloat16 || dt == ScalarType::Half || dt == ScalarType::Float;
}

ScalarKind scalar_kind(ScalarType dtype) {
  switch (dtype) {
    case ScalarType::BFloat16: return ScalarKind::kBFloat16;
    case ScalarType::Half: return ScalarKind::kFloat16;
    default: return ScalarKind::kFloat32;
  }
}

struct DeviceOf {
  int32_t type, index;
  bool operator==(const DeviceOf& o) const { return type == o.type && index == o.index; }
};

DeviceOf device_of(const Tensor& t) {
  DeviceOf d{};
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(t.get(), &d.type));
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_index(t.get(), &d.index));
  return d;
}

// "cpu", "cuda:1": as torch prints a device.
std::string device_name(DeviceOf d) {
  if (d.type == aoti_torch_device_type_cpu()) return "cpu";
  const std::string type = d.type == aoti_torch_device_type_cuda()
                               ? "cuda"
                               : "device type " + std::to_string(d.type);
  return d.index < 0 ? type : type + ":" + std::to_string(d.index);
}

void check_dim(const Tensor& t, const char* name, int64_t dim, const char* expected_shape) {
  STD_TORCH_CHECK(t.dim() == dim, kOp, name, " must be a ", dim, "-D tensor ", expected_shape,
                  ", but got a ", t.dim(), "-D tensor of shape ", shape_of(t));
}

ScalarType check_float_dtype(const Tensor& t, const char* name) {
  const ScalarType dtype = t.scalar_type();
  STD_TORCH_CHECK(is_activation_dtype(dtype), kOp, name,
                  " must have dtype bfloat16, float16 or float32, but got ",
                  torch::headeronly::toString(dtype));
  return dtype;
}

void check_device(const Tensor& t, const char* name, DeviceOf want) {
  const DeviceOf got = device_of(t);
  STD_TORCH_CHECK(got == want, kOp, "all tensors must be on one device: conv_output is on ",
                  device_name(want), " but ", name, " is on ", device_name(got));
}

void check_positive(int64_t value, const char* name) {
  STD_TORCH_CHECK(value > 0, kOp, name, " must be >= 1, but got ", value);
}

StridedInput strided_input(const Tensor& t, ScalarType dtype) {
  return {t.const_data_ptr(), t.stride(0), t.dim() > 1 ? t.stride(1) : 0, scalar_kind(dtype)};
}

// The checked inputs: the params with the outputs still null, and what the
// outputs are made from. Each tensor property is one call into torch's C
// shim, so each is read once (host time per call, bench_host.py).
struct CheckedCall {
  PostConvPrepParams params;
  DeviceOf device;        // conv_output's
  ScalarType activation;  // conv_output's dtype
};

// Everything SPEC.md's "Bad input" lists.
CheckedCall checked_call(const Tensor& conv_output, const Tensor& a, const Tensor& b,
                                  const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads,
                                  int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
                                  bool output_g_exp) {
  check_positive(num_k_heads, "num_k_heads");
  check_positive(head_k_dim, "head_k_dim");
  check_positive(head_v_dim, "head_v_dim");

  check_dim(conv_output, "conv_output", 2, "[L, 2*H*K + HV*V]");
  check_dim(a, "a", 2, "[L, HV]");
  check_dim(b, "b", 2, "[L, HV]");
  check_dim(A_log, "A_log", 1, "[HV]");
  check_dim(dt_bias, "dt_bias", 1, "[HV]");

  const ScalarType activation = check_float_dtype(conv_output, "conv_output");
  const ScalarType a_dtype = check_float_dtype(a, "a");
  const ScalarType b_dtype = check_float_dtype(b, "b");
  const ScalarType A_log_dtype = check_float_dtype(A_log, "A_log");
  const ScalarType dt_bias_dtype = check_float_dtype(dt_bias, "dt_bias");

  const DeviceOf device = device_of(conv_output);
  check_device(a, "a", device);
  check_device(b, "b", device);
  check_device(A_log, "A_log", device);
  check_device(dt_bias, "dt_bias", device);

  const int64_t L = conv_output.size(0);
  const int64_t H = num_k_heads, K = head_k_dim, V = head_v_dim;
  const int64_t HV = A_log.size(0);
  STD_TORCH_CHECK(HV >= 1, kOp,
                  "A_log must have HV >= 1 elements (one per value head), but got shape ",
                  shape_of(A_log));

  int64_t qk_width = 0, v_width = 0, width = 0;
  const bool overflow = __builtin_mul_overflow(2 * H, K, &qk_width) ||
                        __builtin_mul_overflow(HV, V, &v_width) ||
                        __builtin_add_overflow(qk_width, v_width, &width);
  STD_TORCH_CHECK(!overflow && conv_output.size(1) == width, kOp,
                  "conv_output.size(1) must be 2*H*K + HV*V = 2*", H, "*", K, " + ", HV, "*", V,
                  (overflow ? " (overflows int64)" : ""), " for num_k_heads=", H,
                  ", head_k_dim=", K, ", head_v_dim=", V, " and HV=A_log.size(0)=", HV,
                  ", but got ", conv_output.size(1));
  STD_TORCH_CHECK(a.size(0) == L && a.size(1) == HV, kOp, "a must have shape [L, HV] = [", L,
                  ", ", HV, "], but got ", shape_of(a));
  STD_TORCH_CHECK(b.size(0) == L && b.size(1) == HV, kOp, "b must have shape [L, HV] = [", L,
                  ", ", HV, "], but got ", shape_of(b));
  STD_TORCH_CHECK(dt_bias.size(0) == HV, kOp, "dt_bias must have shape [HV] = [", HV,
                  "], but got ", shape_of(dt_bias));

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
  return {p, device, activation};
}

// The shapes of q, k, v, g and beta, in that order, and whether each has
// conv_output's dtype (else float32).
struct OutputSpec {
  const char* name;
  std::array<int64_t, 3> shape;
  int64_t dim;
  bool activation_dtype;
};

std::array<OutputSpec, 5> output_specs(const PostConvPrepParams& p) {
  return {{{"q", {p.L, p.H, p.K}, 3, true},
           {"k", {p.L, p.H, p.K}, 3, true},
           {"v", {p.L, p.HV, p.V}, 3, true},
           {"g", {p.L, p.HV, 0}, 2, false},
           {"beta", {p.L, p.HV, 0}, 2, false}}};
}

// The C shim's code of an output dtype.
int32_t dtype_code(ScalarType dtype) {
  switch (dtype) {
    case ScalarType::BFloat16: return aoti_torch_dtype_bfloat16();
    case ScalarType::Half: return aoti_torch_dtype_float16();
    default: return aoti_torch_dtype_float32();
  }
}

// An uninitialised contiguous tensor. aoti_torch_empty_strided calls
// at::empty_strided directly; torch::stable::empty boxes its arguments and
// goes through the dispatcher by name.
Tensor empty_for(const OutputSpec& spec, const CheckedCall& call) {
  std::array<int64_t, 3> strides{};
  int64_t stride = 1;
  for (int64_t i = spec.dim - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= spec.shape[i];
  }
  const int32_t dtype = dtype_code(spec.activation_dtype ? call.activation : ScalarType::Float);
  AtenTensorHandle handle = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_empty_strided(spec.dim, spec.shape.data(), strides.data(),
                                                  dtype, call.device.type, call.device.index,
                                                  &handle));
  return Tensor(handle);
}

void set_outputs(PostConvPrepParams* p, const std::array<Tensor, 5>& out) {
  p->q = out[0].mutable_data_ptr();
  p->k = out[1].mutable_data_ptr();
  p->v = out[2].mutable_data_ptr();
  p->g = static_cast<float*>(out[3].mutable_data_ptr());
  p->beta = static_cast<float*>(out[4].mutable_data_ptr());
}

void check_output(const Tensor& t, const OutputSpec& spec, const CheckedCall& call) {
  bool shape_ok = t.dim() == spec.dim;
  for (int64_t i = 0; shape_ok && i < spec.dim; ++i) shape_ok = t.size(i) == spec.shape[i];
  STD_TORCH_CHECK(shape_ok, kOp, "out ", spec.name, " must have shape ",
                  shape_text(spec.dim, [&](int64_t i) { return spec.shape[i]; }), ", but got ",
                  shape_of(t));
  const ScalarType want = spec.activation_dtype ? call.activation : ScalarType::Float;
  const ScalarType dtype = t.scalar_type();
  STD_TORCH_CHECK(dtype == want, kOp, "out ", spec.name, " must have dtype ",
                  torch::headeronly::toString(want), ", but got ",
                  torch::headeronly::toString(dtype));
  const DeviceOf device = device_of(t);
  STD_TORCH_CHECK(device == call.device, kOp, "out ", spec.name,
                  " must be on conv_output's device ", device_name(call.device), ", but is on ",
                  device_name(device));
}

}  // namespace

PostConvPrepOutputs post_conv_prep(const Tensor& conv_output, const Tensor& a, const Tensor& b,
                                   const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads,
                                   int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
                                   bool output_g_exp, PostConvPrepKernel kernel) {
  CheckedCall call = checked_call(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                                  head_v_dim, apply_l2norm, output_g_exp);
  const auto specs = output_specs(call.params);
  std::array<Tensor, 5> out{empty_for(specs[0], call), empty_for(specs[1], call),
                            empty_for(specs[2], call), empty_for(specs[3], call),
                            empty_for(specs[4], call)};
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
  const auto specs = output_specs(call.params);
  std::array<Tensor, 5> targets{q, k, v, g, beta};
  std::array<Tensor, 5> written = targets;
  std::array<bool, 5> copy_back{};
  for (size_t i = 0; i < targets.size(); ++i) {
    check_output(targets[i], specs[i], call);
    // The kernels write the functional op's layout; anything else (a view
    // with padded rows, say) is written through a buffer.
    if (!targets[i].is_contiguous()) {
      written[i] = empty_for(specs[i], call);
      copy_back[i] = true;
    }
  }
  set_outputs(&call.params, written);
  if (call.params.L > 0) {
    kernel(call.params, call.device.index);
    for (size_t i = 0; i < targets.size(); ++i) {
      if (copy_back[i]) torch::stable::copy_(targets[i], written[i]);
    }
  }
}

}  // namespace gdn

STABLE_TORCH_LIBRARY(gdn, m) {
  m.def(
      "fused_post_conv_prep(Tensor conv_output, Tensor a, Tensor b, "
      "Tensor A_log, Tensor dt_bias, int num_k_heads, int head_k_dim, "
      "int head_v_dim, bool apply_l2norm=True, bool output_g_exp=False) -> "
      "(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)");
  m.def(
      "fused_post_conv_prep.out(Tensor conv_output, Tensor a, Tensor b, "
      "Tensor A_log, Tensor dt_bias, int num_k_heads, int head_k_dim, "
      "int head_v_dim, bool apply_l2norm=True, bool output_g_exp=False, *, "
      "Tensor(a!) q, Tensor(b!) k, Tensor(c!) v, Tensor(d!) g, Tensor(e!) beta) -> ()");
}
