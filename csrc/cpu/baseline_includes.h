// Every header the row kernel pulls in apart from its own per-ISA code. The
// AVX2 and AVX512 files include this before their `#pragma GCC target`, so
// the inline functions these headers define (the bfloat16 and float16
// conversions, the scalar gate loads) are compiled for the baseline ISA:
// otherwise the linker could keep an AVX512 copy of one for the whole
// library, and the baseline path would crash on a CPU without AVX512. The
// per-ISA code (vec.h, the row kernel) sits in a namespace per ISA.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../post_conv_prep_math.h"
#include "kernels.h"
