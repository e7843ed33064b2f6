// The row kernels for AVX2 (with FMA and F16C, as PyTorch's AVX2 kernels):
// 32-byte vectors.
#include "kernels.h"
#if GDN_CPU_HAS_X86_VARIANTS
#include "baseline_includes.h"
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#define GDN_VEC_BYTES 32
#include "post_conv_prep_rows.h"
#include "causal_conv_rows.h"
#pragma GCC pop_options
#endif
