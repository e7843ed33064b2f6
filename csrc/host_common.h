// Host-side helpers both ops share: argument checks whose messages name the
// op and the argument, and the five outputs (q, k, v, g, beta) both ops
// return: their layout, allocation, and the .out variant's checks and
// buffers. Each tensor property is one call into torch's C shim, so the
// callers read each one once.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>

#include "post_conv_prep.h"

namespace gdn {

using torch::headeronly::ScalarType;

struct DeviceOf {
  int32_t type, index;
  bool operator==(const DeviceOf& o) const { return type == o.type && index == o.index; }
};

DeviceOf device_of(const Tensor& t);

// "[2, 3]": the same text gdn_ext/_checks.py prints for a shape.
std::string shape_of(const Tensor& t);

ScalarKind scalar_kind(ScalarType dtype);

StridedInput strided_input(const Tensor& t, ScalarType dtype);

// The checks of one op: every message starts with the op's name ("gdn::<op>: ")
// and names the argument, what was expected and what was given.
class ArgChecks {
 public:
  // `first` names the tensor whose device all others must share.
  ArgChecks(const char* op_prefix, const char* first, DeviceOf device)
      : op_(op_prefix), first_(first), device_(device) {}

  const char* op() const { return op_; }
  void positive(int64_t value, const char* name) const;
  void dim(const Tensor& t, const char* name, int64_t dim, const char* expected_shape) const;
  // bfloat16, float16 or float32; returns the dtype.
  ScalarType float_dtype(const Tensor& t, const char* name) const;
  void dtype_is(const Tensor& t, const char* name, ScalarType want) const;
  void same_device(const Tensor& t, const char* name) const;
  // 2*H*K + HV*V with HV = A_log.size(0) >= 1: checks that it does not
  // overflow and that input.size(1) (the op's activation input) equals it.
  int64_t feature_width(const Tensor& input, const char* input_name, const Tensor& A_log,
                        int64_t H, int64_t K, int64_t V) const;
  // a and b [rows, HV] (rows named rows_name, "L" or "T"), dt_bias [HV].
  void gate_shapes(const Tensor& a, const Tensor& b, const Tensor& dt_bias, int64_t rows,
                   const char* rows_name, int64_t HV) const;

 private:
  const char* op_;
  const char* first_;
  DeviceOf device_;
};

// The five outputs of both ops, for T tokens and the params' sizes; q, k
// and v in `activation`, g and beta in float32, on `device`.
struct OutputLayout {
  const PostConvPrepParams* sizes;
  ScalarType activation;
  DeviceOf device;
};

using Outputs = std::array<Tensor, 5>;

// Fresh contiguous outputs.
Outputs new_outputs(const OutputLayout& layout);

// Points the params' q, k, v, g and beta at the tensors.
void set_outputs(PostConvPrepParams* p, const Outputs& out);

// The .out variant's tensors: each checked (shape, dtype, device; errors
// name the output and `input`, the op's activation input). Those laid out as
// the functional op's are written in place; any other strides get a
// contiguous buffer, copied into the caller's tensor by finish(). Hidden, as
// torch::stable::Tensor is: the library exports nothing of it.
class __attribute__((visibility("hidden"))) OutTargets {
 public:
  OutTargets(const ArgChecks& checks, const char* input, const OutputLayout& layout,
             const Outputs& targets);
  const Outputs& written() const { return written_; }
  void finish();

 private:
  Outputs targets_, written_;
  std::array<bool, 5> copy_back_{};
};

}  // namespace gdn
