// The floor of bench_host.py: an op with the schema of
// gdn::fused_post_conv_prep.out that does nothing, registered through the
// stable ABI as gdn_ext's ops are. Its eager host time is what the
// dispatcher and the boxing of ten tensors and five scalars cost.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>

using torch::stable::Tensor;

void empty_post_conv_prep_out(Tensor, Tensor, Tensor, Tensor, Tensor, int64_t, int64_t, int64_t,
                              bool, bool, Tensor, Tensor, Tensor, Tensor, Tensor) {}

STABLE_TORCH_LIBRARY(gdn_bench, m) {
  m.def(
      "empty_post_conv_prep_out(Tensor conv_output, Tensor a, Tensor b, Tensor A_log, "
      "Tensor dt_bias, int num_k_heads, int head_k_dim, int head_v_dim, "
      "bool apply_l2norm=True, bool output_g_exp=False, *, Tensor(a!) q, Tensor(b!) k, "
      "Tensor(c!) v, Tensor(d!) g, Tensor(e!) beta) -> ()");
}

STABLE_TORCH_LIBRARY_IMPL(gdn_bench, CompositeExplicitAutograd, m) {
  m.impl("empty_post_conv_prep_out", TORCH_BOX(&empty_post_conv_prep_out));
}
