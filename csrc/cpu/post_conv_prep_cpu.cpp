// CPU backend: the row kernel for this CPU's instruction set, parallel over
// tokens. Checks and allocation are shared with CUDA (post_conv_prep.cpp).
#include "post_conv_prep_cpu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>

namespace gdn::cpu {
namespace {

struct Capability {
  const char* name;
  RowsKernel kernel;
};

// The best instruction set this CPU runs, lowered by GDN_CPU_CAPABILITY or,
// where that is unset, ATEN_CPU_CAPABILITY ("default", "avx2", "avx512"), as
// ATen lowers its own kernels' choice. Made once per process.
Capability choose_capability() {
  const char* env = std::getenv("GDN_CPU_CAPABILITY");
  if (env == nullptr || *env == '\0') env = std::getenv("ATEN_CPU_CAPABILITY");
  const std::string wanted = env != nullptr ? env : "";
#if GDN_CPU_HAS_X86_VARIANTS
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
  if (avx512 && wanted != "default" && wanted != "avx2") {
    return {"AVX512", &AVX512::post_conv_prep_rows};
  }
  if (avx2 && wanted != "default") return {"AVX2", &AVX2::post_conv_prep_rows};
#endif
  return {"DEFAULT", &DEFAULT::post_conv_prep_rows};
}

const Capability& capability() {
  static const Capability chosen = choose_capability();
  return chosen;
}

void run_cpu(const PostConvPrepParams& p, int32_t /*device_index*/) {
  // About 64 KiB of input per task: enough to hide the task's start-up,
  // small enough to split short sequences across threads.
  const int64_t element_bytes = p.conv_kind == ScalarKind::kFloat32 ? 4 : 2;
  const int64_t row_bytes = (2 * p.H * p.K + p.HV * p.V) * element_bytes + 8 * p.HV;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / row_bytes);
  const RowsKernel kernel = capability().kernel;
  // Outputs past a core's L2 (1-2 MiB on current server cores) would leave
  // the caches before anything reads them; for those, streaming stores skip
  // the read for ownership a plain store makes, a third of the traffic.
  // Smaller outputs stay cached for the next op.
  constexpr int64_t kStreamBytes = int64_t{1} << 20;
  const bool stream_stores = p.L * row_bytes >= kStreamBytes;
  torch::stable::parallel_for(0, p.L, grain, [&](int64_t begin, int64_t end) {
    kernel(p, begin, end, stream_stores);
  });
}

}  // namespace
}  // namespace gdn::cpu

// Which row kernel the op runs here ("DEFAULT", "AVX2", "AVX512"), for the
// tests (through ctypes) and bug reports.
extern "C" __attribute__((visibility("default"))) const char* gdn_ext_cpu_capability() {
  return gdn::cpu::capability().name;
}

STABLE_TORCH_LIBRARY_IMPL(gdn, CPU, m) {
  m.impl("fused_post_conv_prep", TORCH_BOX(&gdn::post_conv_prep_with<&gdn::cpu::run_cpu>));
  m.impl("fused_post_conv_prep.out", TORCH_BOX(&gdn::post_conv_prep_out_with<&gdn::cpu::run_cpu>));
}
