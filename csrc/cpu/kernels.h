// The CPU row kernels of both ops, compiled once per instruction set the way ATen's own
// CPU kernels are (DEFAULT, AVX2, AVX512), and chosen at run time from what
// the CPU supports; GDN_CPU_CAPABILITY (else ATEN_CPU_CAPABILITY, as ATen
// reads it) can lower the choice. Each copy lives in a namespace named for
// its instruction set.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../causal_conv_prep.h"
#include "../post_conv_prep.h"

// The AVX2 and AVX512 copies are compiled with `#pragma GCC target` (setup.py
// and CMake pass one set of flags for every file); other compilers and other
// architectures build the baseline copy alone.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GDN_CPU_HAS_X86_VARIANTS 1
#else
#define GDN_CPU_HAS_X86_VARIANTS 0
#endif

namespace gdn::cpu {

// Writes q, k, v, g and beta for the token rows [begin, end); with
// stream_stores, full aligned vectors bypass the caches.
using RowsKernel = void (*)(const PostConvPrepParams& p, int64_t begin, int64_t end,
                            bool stream_stores);

// Op 2's weights and bias as float, [W][D] and [D] (zeros where there is no
// bias), made once per call: the kernel then loads them as full vectors.
struct ConvTables {
  const float* weight;
  const float* bias;
};

// Op 2 for the tokens [begin, end): the conv of each token into a small
// buffer of rows, then op 1's row kernel on those rows. Reads the cache
// lines; writing them is the caller's second step.
using ConvRowsKernel = void (*)(const CausalConvPrepParams& p, const ConvTables& tables,
                                int64_t begin, int64_t end, bool stream_stores);

#define GDN_CPU_DECLARE_KERNELS                                                              \
  void post_conv_prep_rows(const PostConvPrepParams& p, int64_t begin, int64_t end,         \
                           bool stream_stores);                                             \
  void causal_conv_prep_rows(const CausalConvPrepParams& p, const ConvTables& tables,       \
                             int64_t begin, int64_t end, bool stream_stores);

namespace DEFAULT {
GDN_CPU_DECLARE_KERNELS
}
#if GDN_CPU_HAS_X86_VARIANTS
namespace AVX2 {
GDN_CPU_DECLARE_KERNELS
}
namespace AVX512 {
GDN_CPU_DECLARE_KERNELS
}
#endif
#undef GDN_CPU_DECLARE_KERNELS

// The kernels of the best instruction set this CPU runs (capability.cpp).
struct Capability {
  const char* name;
  RowsKernel rows;
  ConvRowsKernel conv_rows;
};

const Capability& capability();

// How a call over `rows` token rows of `row_bytes` each is split over threads.
struct RowSchedule {
  int64_t grain;       // rows per task
  bool stream_stores;  // outputs bypass the caches
};

inline RowSchedule row_schedule(int64_t rows, int64_t row_bytes) {
  // About 64 KiB of input per task: enough to hide the task's start-up,
  // small enough to split short sequences across threads.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / row_bytes);
  // Outputs past a core's L2 (1-2 MiB on current server cores) would leave
  // the caches before anything reads them; for those, streaming stores skip
  // the read for ownership a plain store makes, a third of the traffic.
  // Smaller outputs stay cached for the next op.
  constexpr int64_t kStreamBytes = int64_t{1} << 20;
  return {grain, rows * row_bytes >= kStreamBytes};
}

}  // namespace gdn::cpu
