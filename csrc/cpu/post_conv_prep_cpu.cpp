// CPU backend: checks and allocation (shared with CUDA), then the row kernel
// for this CPU's instruction set, parallel over tokens.
#include "post_conv_prep_cpu.h"

#include <algorithm>
#include <string>

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>

namespace gdn::cpu {
namespace {

// The same choice ATen makes for its own kernels (ATEN_CPU_CAPABILITY can
// lower it), made once per process.
RowsKernel rows_kernel() {
  static const RowsKernel kernel = [] {
    const std::string capability = at::get_cpu_capability();
#if GDN_CPU_HAS_X86_VARIANTS
    if (capability == "AVX512") return &AVX512::post_conv_prep_rows;
    if (capability == "AVX2") return &AVX2::post_conv_prep_rows;
#endif
    return &DEFAULT::post_conv_prep_rows;
  }();
  return kernel;
}

PostConvPrepOutputs fused_post_conv_prep_cpu(
    const at::Tensor& conv_output, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& A_log, const at::Tensor& dt_bias, int64_t num_k_heads,
    int64_t head_k_dim, int64_t head_v_dim, bool apply_l2norm,
    bool output_g_exp) {
  PostConvPrepParams p;
  auto outputs = prepare_post_conv_prep(conv_output, a, b, A_log, dt_bias,
                                        num_k_heads, head_k_dim, head_v_dim,
                                        apply_l2norm, output_g_exp, &p);
  if (p.L == 0) return outputs;
  // About 64 KiB of input per task: enough to hide the task's start-up,
  // small enough to split short sequences across threads.
  const int64_t row_bytes = conv_output.size(1) * conv_output.element_size() + 8 * p.HV;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / row_bytes);
  const RowsKernel kernel = rows_kernel();
  // Outputs past a core's L2 (1-2 MiB on current server cores) would leave
  // the caches before anything reads them; for those, streaming stores skip
  // the read for ownership a plain store makes, a third of the traffic.
  // Smaller outputs stay cached for the next op.
  constexpr int64_t kStreamBytes = int64_t{1} << 20;
  const bool stream_stores = p.L * row_bytes >= kStreamBytes;
  at::parallel_for(0, p.L, grain,
                   [&](int64_t begin, int64_t end) { kernel(p, begin, end, stream_stores); });
  return outputs;
}

}  // namespace
}  // namespace gdn::cpu

TORCH_LIBRARY_IMPL(gdn, CPU, m) {
  m.impl("fused_post_conv_prep", &gdn::cpu::fused_post_conv_prep_cpu);
}
