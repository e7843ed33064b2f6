// Chooses the CPU kernels' instruction set once per process.
#include <cstdlib>
#include <string>

#include "kernels.h"

namespace gdn::cpu {
namespace {

#define GDN_CPU_KERNELS(isa) {#isa, &isa::post_conv_prep_rows, &isa::causal_conv_prep_rows}

// The best instruction set this CPU runs, lowered by GDN_CPU_CAPABILITY or,
// where that is unset, ATEN_CPU_CAPABILITY ("default", "avx2", "avx512"), as
// ATen lowers its own kernels' choice.
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
  if (avx512 && wanted != "default" && wanted != "avx2") return GDN_CPU_KERNELS(AVX512);
  if (avx2 && wanted != "default") return GDN_CPU_KERNELS(AVX2);
#endif
  return GDN_CPU_KERNELS(DEFAULT);
}

}  // namespace

const Capability& capability() {
  static const Capability chosen = choose_capability();
  return chosen;
}

}  // namespace gdn::cpu

// Which kernels the ops run here ("DEFAULT", "AVX2", "AVX512"), for the
// tests (through ctypes) and bug reports.
extern "C" __attribute__((visibility("default"))) const char* gdn_ext_cpu_capability() {
  return gdn::cpu::capability().name;
}
