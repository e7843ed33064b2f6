// Op 1's CPU backend: the row kernel for this CPU's instruction set, parallel
// over tokens. Checks and allocation are shared with CUDA (post_conv_prep.cpp).
#include "kernels.h"

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>

namespace gdn::cpu {
namespace {

void run_cpu(const PostConvPrepParams& p, int32_t /*device_index*/) {
  const int64_t row_bytes = (2 * p.H * p.K + p.HV * p.V) * element_bytes(p.conv_kind) + 8 * p.HV;
  const RowSchedule schedule = row_schedule(p.L, row_bytes);
  const RowsKernel kernel = capability().rows;
  torch::stable::parallel_for(0, p.L, schedule.grain, [&](int64_t begin, int64_t end) {
    kernel(p, begin, end, schedule.stream_stores);
  });
}

}  // namespace
}  // namespace gdn::cpu

STABLE_TORCH_LIBRARY_IMPL(gdn, CPU, m) {
  m.impl("fused_post_conv_prep", TORCH_BOX(&gdn::post_conv_prep_with<&gdn::cpu::run_cpu>));
  m.impl("fused_post_conv_prep.out", TORCH_BOX(&gdn::post_conv_prep_out_with<&gdn::cpu::run_cpu>));
}
