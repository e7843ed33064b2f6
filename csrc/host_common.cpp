#include "host_common.h"

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/ops.h>
#include <torch/headeronly/util/Exception.h>
#include <torch/headeronly/util/shim_utils.h>

namespace gdn {
namespace {

template <typename Size>
std::string shape_text(int64_t dim, const Size& size) {
  std::string s = "[";
  for (int64_t i = 0; i < dim; ++i) s += (i ? ", " : "") + std::to_string(size(i));
  return s + "]";
}

bool is_activation_dtype(ScalarType dt) {
  return dt == ScalarType::BFloat16 || dt == ScalarType::Half || dt == ScalarType::Float;
}

// "cpu", "cuda:1": as torch prints a device.
std::string device_name(DeviceOf d) {
  if (d.type == aoti_torch_device_type_cpu()) return "cpu";
  const std::string type = d.type == aoti_torch_device_type_cuda()
                               ? "cuda"
                               : "device type " + std::to_string(d.type);
  return d.index < 0 ? type : type + ":" + std::to_string(d.index);
}

// "torch.int32": as Python prints a dtype (the Python checks' messages).
std::string dtype_name(ScalarType dtype) {
  switch (dtype) {
    case ScalarType::Int: return "torch.int32";
    case ScalarType::Bool: return "torch.bool";
    default: return torch::headeronly::toString(dtype);
  }
}

int32_t dtype_code(ScalarType dtype) {
  switch (dtype) {
    case ScalarType::BFloat16: return aoti_torch_dtype_bfloat16();
    case ScalarType::Half: return aoti_torch_dtype_float16();
    default: return aoti_torch_dtype_float32();
  }
}

// Output i of the five: its name, shape and whether it has the activation dtype.
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

// An uninitialised contiguous tensor. aoti_torch_empty_strided calls
// at::empty_strided directly; torch::stable::empty boxes its arguments and
// goes through the dispatcher by name.
Tensor empty_for(const OutputSpec& spec, const OutputLayout& layout) {
  std::array<int64_t, 3> strides{};
  int64_t stride = 1;
  for (int64_t i = spec.dim - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= spec.shape[i];
  }
  const int32_t dtype = dtype_code(spec.activation_dtype ? layout.activation : ScalarType::Float);
  AtenTensorHandle handle = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_empty_strided(spec.dim, spec.shape.data(), strides.data(),
                                                  dtype, layout.device.type, layout.device.index,
                                                  &handle));
  return Tensor(handle);
}

}  // namespace

DeviceOf device_of(const Tensor& t) {
  DeviceOf d{};
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(t.get(), &d.type));
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_index(t.get(), &d.index));
  return d;
}

std::string shape_of(const Tensor& t) {
  return shape_text(t.dim(), [&](int64_t i) { return t.size(i); });
}

ScalarKind scalar_kind(ScalarType dtype) {
  switch (dtype) {
    case ScalarType::BFloat16: return ScalarKind::kBFloat16;
    case ScalarType::Half: return ScalarKind::kFloat16;
    default: return ScalarKind::kFloat32;
  }
}

StridedInput strided_input(const Tensor& t, ScalarType dtype) {
  return {t.const_data_ptr(), t.stride(0), t.dim() > 1 ? t.stride(1) : 0, scalar_kind(dtype)};
}

void ArgChecks::positive(int64_t value, const char* name) const {
  STD_TORCH_CHECK(value > 0, op_, name, " must be >= 1, but got ", value);
}

void ArgChecks::dim(const Tensor& t, const char* name, int64_t dim,
                    const char* expected_shape) const {
  STD_TORCH_CHECK(t.dim() == dim, op_, name, " must be a ", dim, "-D tensor ", expected_shape,
                  ", but got a ", t.dim(), "-D tensor of shape ", shape_of(t));
}

ScalarType ArgChecks::float_dtype(const Tensor& t, const char* name) const {
  const ScalarType dtype = t.scalar_type();
  STD_TORCH_CHECK(is_activation_dtype(dtype), op_, name,
                  " must have dtype bfloat16, float16 or float32, but got ",
                  torch::headeronly::toString(dtype));
  return dtype;
}

void ArgChecks::dtype_is(const Tensor& t, const char* name, ScalarType want) const {
  const ScalarType dtype = t.scalar_type();
  STD_TORCH_CHECK(dtype == want, op_, name, " must have dtype ", dtype_name(want), ", but got ",
                  dtype_name(dtype));
}

void ArgChecks::same_device(const Tensor& t, const char* name) const {
  const DeviceOf got = device_of(t);
  STD_TORCH_CHECK(got == device_, op_, "all tensors must be on one device: ", first_, " is on ",
                  device_name(device_), " but ", name, " is on ", device_name(got));
}

int64_t ArgChecks::feature_width(const Tensor& input, const char* input_name, const Tensor& A_log,
                                 int64_t H, int64_t K, int64_t V) const {
  const int64_t HV = A_log.size(0);
  STD_TORCH_CHECK(HV >= 1, op_,
                  "A_log must have HV >= 1 elements (one per value head), but got shape ",
                  shape_of(A_log));
  int64_t qk_width = 0, v_width = 0, width = 0;
  const bool overflow = __builtin_mul_overflow(2 * H, K, &qk_width) ||
                        __builtin_mul_overflow(HV, V, &v_width) ||
                        __builtin_add_overflow(qk_width, v_width, &width);
  const int64_t got = input.size(1);
  STD_TORCH_CHECK(!overflow && got == width, op_, input_name,
                  ".size(1) must be 2*H*K + HV*V = 2*", H, "*", K, " + ", HV, "*", V,
                  (overflow ? " (overflows int64)" : ""), " for num_k_heads=", H,
                  ", head_k_dim=", K, ", head_v_dim=", V, " and HV=A_log.size(0)=", HV,
                  ", but got ", got);
  return width;
}

void ArgChecks::gate_shapes(const Tensor& a, const Tensor& b, const Tensor& dt_bias, int64_t rows,
                            const char* rows_name, int64_t HV) const {
  STD_TORCH_CHECK(a.size(0) == rows && a.size(1) == HV, op_, "a must have shape [", rows_name,
                  ", HV] = [", rows, ", ", HV, "], but got ", shape_of(a));
  STD_TORCH_CHECK(b.size(0) == rows && b.size(1) == HV, op_, "b must have shape [", rows_name,
                  ", HV] = [", rows, ", ", HV, "], but got ", shape_of(b));
  STD_TORCH_CHECK(dt_bias.size(0) == HV, op_, "dt_bias must have shape [HV] = [", HV,
                  "], but got ", shape_of(dt_bias));
}

Outputs new_outputs(const OutputLayout& layout) {
  const auto specs = output_specs(*layout.sizes);
  return {empty_for(specs[0], layout), empty_for(specs[1], layout), empty_for(specs[2], layout),
          empty_for(specs[3], layout), empty_for(specs[4], layout)};
}

void set_outputs(PostConvPrepParams* p, const Outputs& out) {
  p->q = out[0].mutable_data_ptr();
  p->k = out[1].mutable_data_ptr();
  p->v = out[2].mutable_data_ptr();
  p->g = static_cast<float*>(out[3].mutable_data_ptr());
  p->beta = static_cast<float*>(out[4].mutable_data_ptr());
}

OutTargets::OutTargets(const ArgChecks& checks, const char* input, const OutputLayout& layout,
                       const Outputs& targets)
    : targets_(targets), written_(targets) {
  const auto specs = output_specs(*layout.sizes);
  for (size_t i = 0; i < targets.size(); ++i) {
    const Tensor& t = targets[i];
    const OutputSpec& spec = specs[i];
    bool shape_ok = t.dim() == spec.dim;
    for (int64_t d = 0; shape_ok && d < spec.dim; ++d) shape_ok = t.size(d) == spec.shape[d];
    STD_TORCH_CHECK(shape_ok, checks.op(), "out ", spec.name, " must have shape ",
                    shape_text(spec.dim, [&](int64_t d) { return spec.shape[d]; }), ", but got ",
                    shape_of(t));
    const ScalarType want = spec.activation_dtype ? layout.activation : ScalarType::Float;
    const ScalarType dtype = t.scalar_type();
    STD_TORCH_CHECK(dtype == want, checks.op(), "out ", spec.name, " must have dtype ",
                    torch::headeronly::toString(want), ", but got ",
                    torch::headeronly::toString(dtype));
    const DeviceOf device = device_of(t);
    STD_TORCH_CHECK(device == layout.device, checks.op(), "out ", spec.name, " must be on ",
                    input, "'s device ", device_name(layout.device), ", but is on ",
                    device_name(device));
    // The kernels write the functional op's layout; anything else (a view
    // with padded rows, say) is written through a buffer.
    if (!t.is_contiguous()) {
      written_[i] = empty_for(spec, layout);
      copy_back_[i] = true;
    }
  }
}

void OutTargets::finish() {
  for (size_t i = 0; i < targets_.size(); ++i) {
    if (copy_back_[i]) torch::stable::copy_(targets_[i], written_[i]);
  }
}

}  // namespace gdn
