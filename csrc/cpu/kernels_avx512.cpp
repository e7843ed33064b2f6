// The row kernels for AVX512 (F, BW, VL and DQ with FMA: PyTorch's AVX512):
// 64-byte vectors. GCC 12's AVX-512 intrinsics read a deliberately undefined
// register (_mm512_undefined_*), which -W(maybe-)uninitialized reports once
// inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels.h"
#if GDN_CPU_HAS_X86_VARIANTS
#include "baseline_includes.h"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2")
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#define GDN_VEC_BYTES 64
#include "post_conv_prep_rows.h"
#include "causal_conv_rows.h"
#pragma GCC pop_options
#endif
