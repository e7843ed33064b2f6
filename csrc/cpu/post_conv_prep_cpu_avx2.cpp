// The row kernel for AVX2 (with FMA and F16C, as PyTorch's AVX2 kernels).
// GCC 12's AVX-512 intrinsics read a deliberately undefined register
// (_mm512_undefined_*), which -W(maybe-)uninitialized reports once inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "post_conv_prep_cpu.h"
#if GDN_CPU_HAS_X86_VARIANTS
#include "baseline_includes.h"
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
// The target pragma enables the instructions but defines none of the
// __AVX*__ macros, and sleef.h (at::vec's exp, log1p, ...) declares its
// vector functions only under them.
#if !defined(__AVX2__)
#define __AVX__ 1
#define __AVX2__ 1
#include <sleef.h>
#undef __AVX2__
#undef __AVX__
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "post_conv_prep_cpu_rows.h"
#pragma GCC pop_options
#endif
