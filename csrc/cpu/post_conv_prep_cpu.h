// The CPU row kernel, compiled once per instruction set the way ATen's own
// CPU kernels are (DEFAULT, AVX2, AVX512), and chosen at run time from what
// the CPU supports; GDN_CPU_CAPABILITY (else ATEN_CPU_CAPABILITY, as ATen
// reads it) can lower the choice. Each copy lives in a namespace named for
// its instruction set.
#pragma once

#include <cstdint>

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

namespace DEFAULT {
void post_conv_prep_rows(const PostConvPrepParams& p, int64_t begin, int64_t end,
                         bool stream_stores);
}
#if GDN_CPU_HAS_X86_VARIANTS
namespace AVX2 {
void post_conv_prep_rows(const PostConvPrepParams& p, int64_t begin, int64_t end,
                         bool stream_stores);
}
namespace AVX512 {
void post_conv_prep_rows(const PostConvPrepParams& p, int64_t begin, int64_t end,
                         bool stream_stores);
}
#endif

}  // namespace gdn::cpu
