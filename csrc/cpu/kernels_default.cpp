// The row kernels for any CPU: 16-byte vectors (SSE2 on x86-64), float16
// converted one element at a time.
#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT
#define GDN_VEC_BYTES 16
#include "baseline_includes.h"
#include "post_conv_prep_rows.h"
#include "causal_conv_rows.h"
